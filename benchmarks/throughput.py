"""Every token counts: before/after ratios measured in one run, on the demo's own models and data.

    python benchmarks/throughput.py generate --demo demo_out [--before f4ec8c7] [--problems 40]
    python benchmarks/throughput.py train --demo demo_out [--steps 300]

generate: the same workload (N = 16 full solutions per problem, as best-of-N draws them, and N = 16 next
steps per problem, as a step-wise search draws them: stop at the step delimiter) through the transformers
backend of this checkout and of `--before` (a git revision, checked out into a temporary worktree; the
default is the last commit before the continuous-batching engine), each in a fresh process on one thread;
prints generated tokens per CPU second and the ratio.
train: `train-prm`, `train-revision` and `train-policy` for --steps (the first two on the demo's labels and
revision rows) three ways: whole random batches (`--length-micro-batches false`, the old way), the default
(random batches run as length-sorted micro-batches: the same steps), and `--group-by-length` batches: real
(unpadded) tokens per second of training, real/padded, and each one's ratio to whole batches.
Run it on an otherwise idle machine; both sides of a ratio run back to back.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from ttscale.data.steps import build_prompt
from ttscale.inference.base import SamplingParams
from ttscale.inference.transformers_backend import TransformersGenerator
demo, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
problems = [json.loads(l) for l in open(f"{demo}/problems_test.jsonl")][:n]
gen = TransformersGenerator(f"{demo}/policy", batch_size=batch, progress=False)
prompts = [build_prompt(p["problem"], gen.tokenizer) for p in problems]
out = {}
for name, sp in [("solutions", SamplingParams(n=16, temperature=0.8, max_new_tokens=160, seed=0)),
                 ("steps", SamplingParams(n=16, temperature=0.8, max_new_tokens=40, seed=0, stop=("\n\n",)))]:
    t = time.process_time()
    res = gen.generate(prompts, sp)
    out[name] = {"cpu_s": time.process_time() - t, "tokens": sum(c.num_tokens for r in res for c in r)}
print(json.dumps(out))
'''


def _workload(src: Path, demo: str, n: int, batch: int) -> dict:
    res = subprocess.run([sys.executable, "-c", WORKLOAD, demo, str(n), str(batch)], cwd=src, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(src)})
    if res.returncode:
        sys.exit(f"workload failed in {src}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def generate(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", "--detach", str(before), args.before],
                       check=True, capture_output=True)
        try:
            old = _workload(before, args.demo, args.problems, args.before_batch)
            new = _workload(ROOT, args.demo, args.problems, args.batch)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
    print(f"| workload | before ({args.before}, batch {args.before_batch}) tok/CPU-s | after (batch {args.batch}) "
          f"tok/CPU-s | ratio |\n|---|---|---|---|")
    for name in ("solutions", "steps"):
        a, b = (r[name]["tokens"] / r[name]["cpu_s"] for r in (old, new))
        print(f"| {name} | {a:.0f} | {b:.0f} | {b / a:.2f} |")


def _train(stage: list[str], out: Path, mode: str) -> dict:
    t0 = time.time()
    flags = {"whole": ["--length-micro-batches", "false"], "micro": [], "grouped": ["--group-by-length", "true"]}
    res = subprocess.run([sys.executable, "-m", "ttscale", *stage, *flags[mode]], capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{' '.join(stage)} failed:\n{res.stderr[-2000:]}")
    report = out / {"train-prm": "metrics.json", "train-revision": "train_summary.json"}.get(stage[0],
                                                                                           "policy_report.json")
    info = json.loads(report.read_text())
    return {"tokens": info["tokens"], "wall_s": time.time() - t0,
            "train_s": info.get("train_runtime") or info.get("seconds") or info.get("train_seconds")}


def train(args) -> None:
    demo, rec = Path(args.demo), ROOT / "ttscale" / "recipes" / "toy"
    print("| trainer | batches | real/padded | real tokens | train s | real tok/s | vs whole |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.trainers:
            rates = {}
            for mode in ("whole", "micro", "grouped"):
                out = Path(tmp) / f"{name}-{mode}"
                stage = {"prm": ["train-prm", "--config", str(rec / "prm.yaml"), "--model", str(demo / "policy"),
                                 "--data", str(demo / "labels" / "dataset"), str(out)],
                         "reviser": ["train-revision", "--config", str(rec / "train_revision.yaml"), "--model",
                                     str(demo / "policy"), str(demo / "revisions.jsonl"), str(out)],
                         "policy": ["train-policy", "--config", str(rec / "policy.yaml"), "--eval-problems", "1",
                                    str(out)]}[name]
                r = _train([*stage, "--threads", "1", "--max-steps", str(args.steps)], out, mode)
                rates[mode] = r["tokens"]["real"] / r["train_s"]
                print(f"| {name} | {mode} | {r['tokens']['real_per_padded']:.3f} | {r['tokens']['real']} | "
                      f"{r['train_s']:.1f} | {rates[mode]:.0f} | {rates[mode] / rates['whole']:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--demo", default="demo_out", help="a finished demo's --out (its policy and test problems)")
    g.add_argument("--before", default="f4ec8c7", help="git revision to compare against")
    g.add_argument("--problems", type=int, default=40)
    g.add_argument("--batch", type=int, default=256, help="rows decoded at once, this checkout")
    g.add_argument("--before-batch", type=int, default=64, help="rows decoded at once, --before (its recipes' value)")
    t = sub.add_parser("train")
    t.add_argument("--demo", default="demo_out")
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--trainers", nargs="+", default=["prm", "reviser", "policy"], choices=["prm", "reviser", "policy"])
    args = ap.parse_args()
    generate(args) if args.what == "generate" else train(args)


if __name__ == "__main__":
    main()
