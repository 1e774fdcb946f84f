"""Labelling economy and quality on the toy world with the tiny policy.

Prints, per method: rollouts per labelled solution, first-error agreement with per-step (the reference),
agreement of hard labels with the TRUE step labels (toy-world checker), and rollouts/s.
Goals (issue): binary search ≤ 0.4× the rollouts of per-step at ≥ 95% first-error agreement; hard labels
agree with truth ≥ 90%.

    .venv/bin/python benchmarks/labeling.py --policy demo_out/policy --problems 40

All methods share one sample store: per-step runs first and pays for generation; the others are served
from the cache for the prefixes they probe, so their rollout counts are what they would have generated.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ttscale.train.labeling.labeler import LabelArgs, label_chunk
from ttscale.inference.sample_store import SampleStore
from ttscale.train.labeling.rollouts import RolloutEngine
from ttscale.data.toy_world import generate_problems
from ttscale.inference.transformers_backend import TransformersGenerator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="demo_out/policy", help="trained toy policy (ttscale train-policy)")
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--solutions", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not Path(args.policy, "config.json").exists():
        raise SystemExit(f"{args.policy}: no policy; train one with `ttscale train-policy {args.policy}` or `make demo`")
    problems = generate_problems(args.problems, seed=100 + args.seed)
    gen = TransformersGenerator(args.policy, threads=args.threads, batch_size=64, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        engine = RolloutEngine(gen, model_id=args.policy, cache=SampleStore(Path(tmp) / "cache.sqlite"))
        results: dict[str, dict] = {}
        reference = None
        for method in ("per-step", "first-error", "binary-search"):
            st = LabelArgs(method=method, num_solutions=args.solutions, rollouts=args.rollouts,
                               max_new_tokens=160, seed=args.seed, prefilter=False)
            before, t0 = engine.stats.generated, time.time()
            rows, _ = label_chunk(problems, engine, gen.tokenizer, st)
            seconds = time.time() - t0
            spent = sum(r["rollouts"] for r in rows)
            agree = total = 0
            for r in rows:
                hard = [x > 0.5 for x in r["labels"]]
                agree += sum(h == t for h, t in zip(hard, r["true_labels"]))
                total += len(hard)
            true_first = [next((i for i, t in enumerate(r["true_labels"]) if not t), -1) for r in rows]
            if reference is None:
                reference = [r["first_error"] for r in rows]
            results[method] = {
                "solutions": len(rows),
                "rollouts_per_solution": spent / len(rows),
                "first_error_agreement_with_per_step": sum(
                    a == b for a, b in zip(reference, (r["first_error"] for r in rows))) / len(rows),
                "first_error_agreement_with_truth": sum(
                    a == b for a, b in zip(true_first, (r["first_error"] for r in rows))) / len(rows),
                "hard_label_agreement_with_truth": agree / total if total else None,
                "generated_rollouts": engine.stats.generated - before,
                "rollouts_per_s_generated": (engine.stats.generated - before) / seconds if seconds else None,
            }
        base = results["per-step"]["rollouts_per_solution"]
        for m in results:
            results[m]["rollouts_vs_per_step"] = results[m]["rollouts_per_solution"] / base if base else None
        accuracy = sum(r["solution_correct"] for r in rows) / len(rows)
    print(json.dumps({"problems": args.problems, "solution_accuracy": accuracy, "k": args.rollouts,
                      "methods": results}, indent=1))


if __name__ == "__main__":
    main()
