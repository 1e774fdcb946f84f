"""Which PRM training choice checks steps best? Choices compared on the same Monte Carlo labels.

Each choice trains a PRM with `ttscale train-prm` (same base model, labels, seed, steps, batch and learning
rate; only the choice differs), then scores held-out ProcessBench-style rows; the step AUC of each is reported
with a paired 95% bootstrap interval (resampling rows) of its difference from the first choice. With --fit
(another split) each PRM's first-error F1 is reported at the threshold fitted there; rows that carry a
`mistake` column (`ttscale toy-world --processbench` writes it) get a step AUC per kind of mistake (correct
steps of every row against the first wrong steps of that kind).

Step-tag choices:

- new-mean:      a new `<|step|>` token, embedding = vocabulary mean (transformers' resize; ttscale's old default)
- new-delimiter: a new `<|step|>` token, embedding = the step delimiter's ("\\n\\n"; the default now)
- newline:       the existing newline token as the tag (TRL's PRMTrainer reads its label at the newline)

    python benchmarks/prm_tags.py --model demo_out/policy --labels demo_out/labels/dataset \\
        --heldout demo_out/prm_heldout.jsonl --max-steps 1000 --seeds 0 1

Any other `train-prm` options, as --variant NAME="FLAGS" (the tag is then the default, new-delimiter), and
PRMs trained already as --prm NAME=FOLDER (e.g. the demo's own, as the reference):

    python benchmarks/prm_tags.py ... --fit demo_out/prm_fit.jsonl --choices new-delimiter --max-steps 2000 \\
        --variant steps6000="--max-steps 6000" --variant clean-base="--model verifier_base/"

    python benchmarks/prm_tags.py ... --max-steps 4000 --prm demo=demo_out/prm --choices demo soft implicit \\
        --variant soft="--label-mode soft" --variant implicit="--formulation implicit --beta 0.05" \\
        --bon demo_out/runs/bon

With --fit, F1 gets a paired interval too (rows resampled, each PRM's threshold fixed). With --bon RUN (a
parallel-sampling search run, e.g. the demo's test-split best-of-N at 16), every PRM rescores the run's
finished candidates and reports weighted best-of-N accuracy at N = 16 and the measured FLOPs per problem
(the run's policy FLOPs plus 2 x the PRM's parameters, both models for an implicit PRM, per token it scored),
with a paired interval against the first choice.

Measured (previous world's demo labels, PRM from the policy, 1,000 steps, seed 0): new-mean 0.522,
newline 0.588 (+0.066 [+0.017, +0.120]), new-delimiter 0.644 (+0.122 [+0.065, +0.177]). At 250-300 steps
every choice is still below 0.5 on these rows, so short runs do not rank them.

Measured (this world's demo labels, 6,000 problems x 2 solutions, seed 0; F1 at the threshold from
prm_fit.jsonl; one run each; step AUC / F1 / wrong-operand AUC): 2,000 steps (the old default) 0.747 /
0.665 / 0.48; 4,000 steps (the recipe now) 0.805 / 0.755 / 0.60; 6,000 steps 0.822 / 0.749 / 0.64. At 2,000
steps, a base model pretrained apart from the policy on clean solutions (train-policy, same size, seed 1)
0.714 / 0.601 / 0.47; a larger one (128 wide, 4 layers) 0.773 / 0.654 / 0.61; learning rate 1e-3 or 2e-3
instead of 3e-4 0.661 / 0.564 / 0.41 and 0.629 / 0.515 / 0.39.

Measured (the demo's labels, one seed, 4,000 steps each, the demo's PRM as the reference; the table and what
to pick: docs/training.md): implicit step AUC 0.928 (+0.144 [+0.077, +0.205]), F1 0.837 (+0.065 [+0.011,
+0.125]); soft targets and a balanced class weight within noise of the reference; generative 0.50 (its
verdicts follow the prior, not its checks), 0.67 on balanced checks.
"""
from __future__ import annotations

import argparse
import json
import shlex
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


def choice_options(choice: str, args) -> list[str]:
    """train-prm flags of a tag choice or a --variant (later flags override earlier ones)."""
    return shlex.split(args.variants[choice]) if choice in args.variants else tag_options(choice, args.model)


def train(choice: str, args, seed: int, out: Path) -> Path:
    from ttscale.cli import main

    argv = ["train-prm", str(out), "--model", args.model, "--data", args.labels,
            "--max-steps", str(args.max_steps), "--learning-rate", str(args.learning_rate),
            "--per-device-train-batch-size", "16", "--eval-fraction", "0", "--seed", str(seed),
            "--threads", str(args.threads), "--logging-steps", "1000", *choice_options(choice, args)]
    if main(argv):
        raise SystemExit(f"train-prm failed for {choice}")
    return out


def step_pairs(scorer, rows: list[dict]) -> list[tuple[list[float], list[int]]]:
    """Per row: (scores, implied step labels) up to and including the first wrong step."""
    from ttscale.eval.prm_rows import implied_step_labels

    scores = scorer.score([(r["problem"], r["steps"]) for r in rows])
    out = []
    for r, s in zip(rows, scores):
        y = implied_step_labels(r["label"], len(r["steps"]))
        out.append((list(s[:len(y)]), y))
    return out


def _scored(ps, rows):
    return [{**r, "split": "all", "scores": s, "scored_steps": len(r["steps"]), "truncated": False}
            for (s, _), r in zip(ps, rows)]


def f1_at_fitted(pairs, heldout: list[dict], fit_pairs, fit: list[dict]) -> tuple[float, float]:
    """(threshold fitted on the --fit rows, first-error F1 on the held-out rows at it): eval-prm's own code."""
    from ttscale.eval.eval_prm_cmd import evaluate, fit_threshold

    # step_pairs cut scores at the first error; eval-prm reads the first score below the threshold, so equal
    threshold, _ = fit_threshold(_scored(fit_pairs, fit))
    return threshold, evaluate(_scored(pairs, heldout), threshold)["f1"]


def paired_f1(a, thr_a: float, b, thr_b: float, rows: list[dict], replicates: int = 1000,
              seed: int = 0) -> tuple[float, float, float]:
    """F1(b) - F1(a) on the same held-out rows, each at its own fitted threshold, 95% bootstrap over rows."""
    from ttscale.eval.eval_prm_cmd import evaluate

    sa, sb = _scored(a, rows), _scored(b, rows)

    def diff(idx):
        return evaluate([sb[i] for i in idx], thr_b)["f1"] - evaluate([sa[i] for i in idx], thr_a)["f1"]

    rng = np.random.default_rng(seed)
    boots = [diff(rng.integers(0, len(rows), len(rows))) for _ in range(replicates)]
    return diff(range(len(rows))), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def weighted_bon(scorer, run, texts: dict[str, str], aggregation: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per problem of a parallel-sampling run: (weighted best-of-N hit with this PRM's scores, FLOPs = the run's
    policy FLOPs + 2 x the scorer's parameters per token it scored), every finished candidate scored in one call;
    and the curve {N': (accuracy, mean FLOPs)} for each problem's first N' samples (what a run of N' with the
    same seed draws), the policy's FLOPs in the share of the generated tokens those samples hold."""
    import dataclasses

    from ttscale.search.voting import select

    cands = {p.id: [dataclasses.replace(c, step_scores=[]) for c in p.candidates] for p in run.graded}
    todo = [(p.id, c) for p in run.graded for c in cands[p.id] if c.finished and c.steps]
    scores = scorer.score([(texts[pid], c.steps) for pid, c in todo])
    scored = {}
    for (pid, c), s, n in zip(todo, scores, scorer.last_item_tokens):
        c.step_scores, scored[id(c)] = list(s), n
    budgets = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= min(len(cands[p.id]) for p in run.graded)]
    curve, full_hits, full_flops = {}, None, None
    for n in budgets:
        hits, flops = [], []
        for p in run.graded:
            first = cands[p.id][:n]
            _, chosen = select(first, "prm-vote", aggregation)
            hits.append(chosen >= 0 and p.correct[chosen])
            share = sum(c.tokens for c in first) / max(1, sum(c.tokens for c in cands[p.id]))
            flops.append(p.spent.get("policy_flops", 0.0) * share
                         + 2.0 * scorer.num_params * sum(scored.get(id(c), 0) for c in first))
        curve[n] = (float(np.mean(hits)), float(np.mean(flops)))
        full_hits, full_flops = np.array(hits, dtype=float), np.array(flops)
    return full_hits, full_flops, curve


def paired_mean(a: np.ndarray, b: np.ndarray, replicates: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (replicates, len(a)))
    boots = (b[idx] - a[idx]).mean(axis=1)
    return float((b - a).mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def auc_per_kind(pairs, rows: list[dict]) -> dict[str, float]:
    """Correct steps of every row vs the first wrong steps of one kind of mistake (rows' `mistake` column)."""
    from sklearn.metrics import roc_auc_score

    good = [x for s, y in pairs for x, ok in zip(s, y) if ok]
    kinds: dict[str, list[float]] = {}
    for (s, y), r in zip(pairs, rows):
        if r.get("mistake") and r["label"] >= 0:
            kinds.setdefault(r["mistake"], []).append(s[r["label"]])
    return {k: round(float(roc_auc_score([1] * len(good) + [0] * len(v), good + v)), 3)
            for k, v in sorted(kinds.items())}


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
    p.add_argument("--fit", default=None, help="ProcessBench-style rows to fit each PRM's threshold on (the "
                   "demo's prm_fit.jsonl); adds first-error F1 on --heldout at that threshold")
    p.add_argument("--variant", action="append", default=[], metavar='NAME="FLAGS"',
                   help="another choice: train-prm flags added after the common ones (repeatable)")
    p.add_argument("--prm", action="append", default=[], metavar="NAME=FOLDER",
                   help="a PRM trained already, compared as choice NAME (repeatable)")
    p.add_argument("--bon", default=None, help="a parallel-sampling search run (the demo's runs/bon): each PRM "
                   "rescores its candidates; weighted best-of-N accuracy and FLOPs per problem")
    p.add_argument("--aggregation", default="min", help="--bon: step-score aggregation of weighted best-of-N")
    p.add_argument("--choices", nargs="+", default=None,
                   help=f"tag choices among {', '.join(CHOICES)} and --variant names, the first is the "
                        "reference (default: every tag choice, then the variants)")
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="keep the trained PRMs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    args.variants = dict(v.split("=", 1) for v in args.variant if "=" in v)
    if len(args.variants) != len(args.variant):
        p.error('--variant takes NAME="FLAGS"')
    args.prms = dict(v.split("=", 1) for v in args.prm if "=" in v)
    if len(args.prms) != len(args.prm):
        p.error("--prm takes NAME=FOLDER")
    args.choices = args.choices or [*CHOICES, *args.variants, *args.prms]
    unknown = [c for c in args.choices if c not in CHOICES and c not in args.variants and c not in args.prms]
    if unknown:
        p.error(f"unknown choices {unknown}: use {', '.join(CHOICES)} or a --variant name")

    def read(path):
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

    rows, fit = read(args.heldout), (read(args.fit) if args.fit else None)
    from ttscale.inference.scorers_load import load_scorer

    bon = texts = None
    if args.bon:
        import datasets

        from ttscale.eval.runs import load_runs

        bon = load_runs([args.bon])[0]
        ds = datasets.load_from_disk(str(Path(args.bon) / "dataset"))
        texts = dict(zip(ds["id"], ds["problem"]))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        for seed in args.seeds:
            pairs, extra, bons = {}, {}, {}
            for c in args.choices:
                path = args.prms.get(c) or train(c, args, seed, root / f"{c}-seed{seed}")
                scorer = load_scorer(path, batch_size=32, threads=args.threads)
                pairs[c] = step_pairs(scorer, rows)
                extra[c] = {"auc_per_kind": auc_per_kind(pairs[c], rows)}
                if fit:
                    threshold, f1 = f1_at_fitted(pairs[c], rows, step_pairs(scorer, fit), fit)
                    extra[c].update(threshold=round(threshold, 3), f1=round(f1, 4))
                if bon is not None:
                    bons[c] = weighted_bon(scorer, bon, texts, args.aggregation)
                    extra[c].update(bon_accuracy=round(float(bons[c][0].mean()), 4),
                                    bon_gflops=round(float(bons[c][1].mean()) / 1e9, 4),
                                    bon_curve={n: [round(a, 4), round(f / 1e9, 4)] for n, (a, f) in bons[c][2].items()})
            ref = args.choices[0]
            for c in args.choices:
                every = np.arange(len(rows))
                d = paired(pairs[ref], pairs[c]) if c != ref else None
                if c != ref and fit:
                    df = paired_f1(pairs[ref], extra[ref]["threshold"], pairs[c], extra[c]["threshold"], rows)
                    extra[c]["f1_diff"] = [round(x, 4) for x in df]
                if c != ref and bon is not None:
                    extra[c]["bon_diff"] = [round(x, 4) for x in paired_mean(bons[ref][0], bons[c][0])]
                if bon is not None:   # at the reference's full-budget cost: equal measured FLOPs
                    from ttscale.eval.deployment import accuracy_at_cost

                    budget = float(bons[ref][1].mean())
                    at = accuracy_at_cost({f: a for a, f in bons[c][2].values()}, budget)
                    extra[c]["bon_at_reference_flops"] = None if at is None else round(at, 4)
                results.append({"seed": seed, "choice": c, "step_auc": round(auc(pairs[c], every), 4),
                                **extra[c], "vs": ref, "diff": d and [round(x, 4) for x in d]})
                print(json.dumps(results[-1]), flush=True)
    print(f"\n{'seed':>4}  {'choice':<14} {'step AUC':>8} {'F1':>6}   difference vs {args.choices[0]} "
          "[95% paired interval]   AUC per kind")
    def interval(d):
        return f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" if d else "-"

    for r in results:
        f1 = f"{r['f1']:.3f}" if "f1" in r else "-"
        kinds = " ".join(f"{k} {v:.2f}" for k, v in r["auc_per_kind"].items())
        print(f"{r['seed']:>4}  {r['choice']:<14} {r['step_auc']:>8.3f} {f1:>6}   {interval(r['diff']):<30} {kinds}")
        if "f1_diff" in r or "bon_accuracy" in r:
            at = r.get("bon_at_reference_flops")
            bon = (f"; weighted BoN@N {r['bon_accuracy']:.3f} at {r['bon_gflops']:.3f} GFLOPs/problem, "
                   f"{'-' if at is None else f'{at:.3f}'} at the reference's FLOPs" if "bon_accuracy" in r else "")
            print(f"{'':>20} F1 vs {r['vs']}: {interval(r.get('f1_diff'))}{bon}"
                  + (f", vs {r['vs']}: {interval(r['bon_diff'])}" if "bon_diff" in r else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
