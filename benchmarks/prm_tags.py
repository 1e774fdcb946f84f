"""Where should a PRM read each step's score? Step-tag choices compared on the same Monte Carlo labels.

Each choice trains a PRM with `ttscale train-prm` (same base model, labels, seed, steps, batch and learning
rate; only the tag differs), then scores held-out ProcessBench-style rows; the step AUC of each is reported
with a paired 95% bootstrap interval (resampling rows) of its difference from the first choice.

- new-mean:      a new `<|step|>` token, embedding = vocabulary mean (transformers' resize; ttscale's old default)
- new-delimiter: a new `<|step|>` token, embedding = the step delimiter's ("\\n\\n"; the default now)
- newline:       the existing newline token as the tag (TRL's PRMTrainer reads its label at the newline)

    python benchmarks/prm_tags.py --model demo_out/policy --labels demo_out/labels/dataset \\
        --heldout demo_out/prm_heldout.jsonl --max-steps 1000 --seeds 0 1

Measured (previous world's demo labels, PRM from the policy, 1,000 steps, seed 0): new-mean 0.522,
newline 0.588 (+0.066 [+0.017, +0.120]), new-delimiter 0.644 (+0.122 [+0.065, +0.177]). At 250-300 steps
every choice is still below 0.5 on these rows, so short runs do not rank them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHOICES = ("new-mean", "new-delimiter", "newline")


def tag_options(choice: str, model: str) -> list[str]:
    from transformers import AutoTokenizer

    if choice == "newline":   # the vocabulary entry the newline encodes to (byte-level BPE: "Ċ")
        tok = AutoTokenizer.from_pretrained(model)
        ids = tok.encode("\n", add_special_tokens=False)
        assert len(ids) == 1, f"the newline is not one token of {model}"
        return ["--step-tag", tok.convert_ids_to_tokens(ids)[0]]
    return ["--step-tag-init", {"new-mean": "mean", "new-delimiter": "delimiter"}[choice]]


def train(choice: str, args, seed: int, out: Path) -> Path:
    from ttscale.cli import main

    argv = ["train-prm", "--model", args.model, "--data", args.labels, "--output-dir", str(out),
            "--max-steps", str(args.max_steps), "--learning-rate", str(args.learning_rate),
            "--per-device-train-batch-size", "16", "--eval-fraction", "0", "--seed", str(seed),
            "--threads", str(args.threads), "--logging-steps", "1000", *tag_options(choice, args.model)]
    if main(argv):
        raise SystemExit(f"train-prm failed for {choice}")
    return out


def step_pairs(prm: Path, rows: list[dict], threads: int) -> list[tuple[list[float], list[int]]]:
    """Per row: (scores, implied step labels) up to and including the first wrong step."""
    from ttscale.eval.prm_rows import implied_step_labels
    from ttscale.inference.scorers_load import load_scorer

    scorer = load_scorer(prm, batch_size=32, threads=threads)
    scores = scorer.score([(r["problem"], r["steps"]) for r in rows])
    out = []
    for r, s in zip(rows, scores):
        y = implied_step_labels(r["label"], len(r["steps"]))
        out.append((list(s[:len(y)]), y))
    return out


def auc(pairs, idx) -> float:
    from sklearn.metrics import roc_auc_score

    s = np.concatenate([pairs[i][0] for i in idx])
    y = np.concatenate([pairs[i][1] for i in idx])
    return float(roc_auc_score(y, s))


def paired(a, b, replicates: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """AUC(b) - AUC(a) on the same rows, with a 95% percentile bootstrap over rows."""
    rng = np.random.default_rng(seed)
    n = len(a)
    diffs = []
    for _ in range(replicates):
        idx = rng.integers(0, n, n)
        diffs.append(auc(b, idx) - auc(a, idx))
    every = np.arange(n)
    return auc(b, every) - auc(a, every), float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="base model folder (the demo's policy or verifier)")
    p.add_argument("--labels", required=True, help="step-labelled data (the demo's labels/dataset)")
    p.add_argument("--heldout", required=True, help="ProcessBench-style rows (the demo's prm_heldout.jsonl)")
    p.add_argument("--choices", nargs="+", default=list(CHOICES), choices=CHOICES)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="keep the trained PRMs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    rows = [json.loads(line) for line in Path(args.heldout).read_text().splitlines() if line.strip()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        for seed in args.seeds:
            pairs = {c: step_pairs(train(c, args, seed, root / f"{c}-seed{seed}"), rows, args.threads)
                     for c in args.choices}
            ref = args.choices[0]
            for c in args.choices:
                every = np.arange(len(rows))
                d = paired(pairs[ref], pairs[c]) if c != ref else None
                results.append({"seed": seed, "choice": c, "step_auc": round(auc(pairs[c], every), 4),
                                "vs": ref, "diff": d and [round(x, 4) for x in d]})
                print(json.dumps(results[-1]), flush=True)
    print(f"\n{'seed':>4}  {'choice':<14} {'step AUC':>8}   difference vs {args.choices[0]} [95% paired interval]")
    for r in results:
        d = f"{r['diff'][0]:+.3f} [{r['diff'][1]:+.3f}, {r['diff'][2]:+.3f}]" if r["diff"] else "-"
        print(f"{r['seed']:>4}  {r['choice']:<14} {r['step_auc']:>8.3f}   {d}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
