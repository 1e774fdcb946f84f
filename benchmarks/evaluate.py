"""Speed of `ttscale evaluate`'s core: re-voting every aggregation × voting on subsampled candidates.

    PYTHONPATH=. .venv/bin/python benchmarks/evaluate.py --problems 200 --budget 32 --subsamples 16
Builds a best-of-N run in memory (PRM-scored candidates, 3 answers per problem) and prints the seconds for
`evaluate_run` and `allocate`, and the number of `select` calls per second.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ttscale.eval.allocation import allocate
from ttscale.eval.metrics import evaluate_run, parallel_budgets, selections
from ttscale.eval.runs import ProblemRecord, Run
from ttscale.search.types import Candidate


def synthetic_run(problems: int, budget: int, seed: int) -> Run:
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(problems):
        answers = rng.choice(["1", "2", "3"], size=budget, p=[0.5, 0.3, 0.2])
        cands = [Candidate(steps=["a", "b", "c"], step_scores=rng.random(3).tolist(), answer=str(a),
                           answer_key=str(a), finished=True, tokens=50) for a in answers]
        recs.append(ProblemRecord(id=str(i), gold="1", candidates=cands, correct=[a == "1" for a in answers],
                                  spent={"generated_tokens": 50 * budget, "policy_flops": 1e9}))
    return Run(path="bench", strategy="best-of-n", budget=budget, params={"aggregation": "last"}, problems=recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--subsamples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = synthetic_run(args.problems, args.budget, args.seed)
    t0 = time.perf_counter()
    points = evaluate_run(run, args.subsamples, args.seed)
    t1 = time.perf_counter()
    alloc = allocate(points, {str(i): "all" for i in range(args.problems)}, folds=5)
    t2 = time.perf_counter()
    budgets = parallel_budgets(args.budget)
    calls = args.problems * len(selections(run)) * (args.subsamples * (len(budgets) - 1) + 1)
    print(f"evaluate_run: {t1 - t0:.2f} s for {len(points)} points, {calls} select calls "
          f"({calls / (t1 - t0):.0f}/s); allocate: {t2 - t1:.2f} s; compute-optimal @N={budgets[-1]}: "
          f"{alloc.curve[budgets[-1]]:.3f}")


if __name__ == "__main__":
    main()
