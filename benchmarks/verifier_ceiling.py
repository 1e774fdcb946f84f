"""How much could a better verifier buy? Best-of-N accuracy with the run's PRM vs oracle verifiers.

Takes a toy-world best-of-N run and re-selects its candidates with oracle step scores: 1 for every step
before a candidate's first mistake, 0 from it on (`toy_world.first_mistake`), and with oracles that are
blind to one mistake kind (those candidates keep 1 throughout, as a PRM that cannot see the kind would
score them). Selection and subsampling are `ttscale evaluate`'s own (`evaluate_run`), so the rows compare
directly with the report. A kind whose blind oracle falls far below the perfect one is what caps PRM-max.
It also prints, per mistake kind, how often the run's PRM (min step score) ranks a correct candidate above
a candidate of the SAME problem whose first mistake is that kind (ties count half): 0.5 = blind to the kind
on the policy's own samples. Within a problem, so difficulty cannot stand in for checking.

    .venv/bin/python benchmarks/verifier_ceiling.py demo_out/runs/bon demo_out/problems_test.jsonl
"""
from __future__ import annotations

import argparse
import copy
import json
from collections import Counter, defaultdict

from ttscale.data.toy_world import first_mistake
from ttscale.eval.metrics import evaluate_run
from ttscale.eval.runs import Run, load_run
from ttscale.search.voting import aggregate

SELECTIONS = (("min", "prm-max"), ("min", "prm-vote"))


def with_oracle(run: Run, mistakes: dict[str, list], blind: str | None) -> Run:
    """A copy of the run whose step scores are an oracle's that cannot see mistakes of kind `blind`."""
    out = copy.deepcopy(run)
    for p in out.problems:
        for c, found in zip(p.candidates, mistakes[p.id]):
            cut = len(c.steps) if found is None or found[1] == blind else found[0]
            c.step_scores = [1.0 if i < cut else 0.0 for i in range(len(c.steps))]
    return out


def curves(run: Run, subsamples: int) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for pt in evaluate_run(run, subsamples=subsamples):
        agg, voting = pt.config["aggregation"], pt.config["voting"]
        if (agg, voting) in SELECTIONS or (voting == "majority" and agg == "min"):
            out.setdefault(voting, {})[pt.budget] = pt.accuracy()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a `ttscale search --strategy best-of-n` output folder on toy-world problems")
    ap.add_argument("problems", help="the toy-world problem set it searched (rows carry the program)")
    ap.add_argument("--subsamples", type=int, default=16, help="subsamples per budget below the run's N")
    args = ap.parse_args()
    rows = {r["id"]: r for r in map(json.loads, open(args.problems))}
    run = load_run(args.run)
    if missing := [p.id for p in run.problems if p.id not in rows]:
        raise SystemExit(f"{args.problems}: no row for problem(s) {missing[:3]} of {args.run}")
    mistakes = {p.id: [first_mistake(rows[p.id], c.steps) for c in p.candidates] for p in run.problems}
    kinds, wins = Counter(), defaultdict(list)
    for p in run.problems:
        scored = [(found[1] if found else "correct", aggregate(c.step_scores, "min"))
                  for c, found in zip(p.candidates, mistakes[p.id])]
        right = [s for kind, s in scored if kind == "correct"]
        for kind, s in scored:
            if kind != "correct":
                kinds[kind] += 1
                wins[kind] += [1.0 if r > s else 0.5 if r == s else 0.0 for r in right]
    print(f"{sum(len(p.candidates) for p in run.problems)} candidates, {sum(kinds.values())} wrong. First mistake, "
          "count, and how often the run's PRM ranks a correct candidate of the same problem above it:")
    for kind, n in kinds.most_common():
        print(f"  {kind:<10} {n:>5}  {sum(wins[kind]) / max(len(wins[kind]), 1):.3f} over {len(wins[kind])} pairs")
    table = {"run's PRM": curves(run, args.subsamples), "oracle": curves(with_oracle(run, mistakes, None), args.subsamples)}
    for kind, _ in kinds.most_common():
        table[f"oracle blind to {kind}"] = curves(with_oracle(run, mistakes, kind), args.subsamples)
    budgets = sorted(table["oracle"]["prm-max"])
    print(f"\n{'verifier':<26} {'selection':<10} " + " ".join(f"N={b:<5}" for b in budgets))
    for name, by_voting in table.items():
        for voting in ("prm-max", "prm-vote"):
            print(f"{name:<26} {voting:<10} " + " ".join(f"{by_voting[voting][b]:<7.3f}" for b in budgets))
    print(f"{'(no verifier)':<26} {'majority':<10} " + " ".join(f"{table['oracle']['majority'][b]:<7.3f}" for b in budgets))


if __name__ == "__main__":
    main()
