"""Why does a search strategy win or lose? Offline diagnostics of toy-world search runs (no model is run).

    python benchmarks/search_diagnostics.py bon demo_out/runs/bon --problems demo_out/problems_test.jsonl
    python benchmarks/search_diagnostics.py revisions demo_out/runs/revisions16_l16 --problems ...

`bon`: accuracy of best-of-N by PRM score (PRM-max) and of PRM-weighted voting at N = 1..16 (seeded subsets
of the run's candidates) for every step aggregation, majority and pass@N; on trap problems separately;
then, at the full N, for each problem where a wrong candidate outranks every correct one: the kind and
place of its first mistake and whether the PRM scored that step above 0.5 (blind to it) or not.
`revisions`: accuracy per attempt along a chain (overall, per level, on trap problems), how often an attempt keeps the previous answer, right ->
wrong and wrong -> right transitions, and the kinds of first mistakes per attempt.
The toy world's checker only measures here; nothing is fitted.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttscale.data import toy_world as tw  # noqa: E402
from ttscale.search.voting import aggregate  # noqa: E402

AGGREGATIONS = ("min", "last", "avg", "prod")


def load(run: str, problems: str):
    import datasets

    rows = {json.loads(line)["id"]: json.loads(line) for line in Path(problems).read_text().splitlines() if line}
    return list(datasets.load_from_disk(str(Path(run) / "dataset"))), rows


def choose(cands: list[dict], how: str, voting: str) -> dict | None:
    ok = [c for c in cands if c["finished"] and c["answer_key"] is not None]
    if not ok:
        return None
    if voting == "prm-max":
        return max(ok, key=lambda c: aggregate(c["step_scores"], how))
    weight: dict[str, float] = defaultdict(float)
    for c in ok:
        weight[c["answer_key"]] += aggregate(c["step_scores"], how) if voting == "prm-vote" else 1.0
    best = max(weight, key=weight.get)
    return next(c for c in ok if c["answer_key"] == best)


def bon(run: str, problems: str, subsets: int) -> None:
    ds, rows = load(run, problems)
    n_max = len(ds[0]["candidates"])
    budgets = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= n_max]
    groups = {"all": ds, "trap": [r for r in ds if rows[r["id"]]["program"].get("trap", -1) >= 0]}
    for name, part in groups.items():
        if not part:
            continue
        print(f"\n== {name} problems ({len(part)})")
        for how in AGGREGATIONS:
            for voting in ("prm-max", "prm-vote"):
                acc = {n: np.mean([bool((c := choose(random.Random(s * 7919 + n).sample(r["candidates"], n), how,
                                                     voting)) and c["correct"])
                                   for r in part for s in range(subsets if n < n_max else 1)]) for n in budgets}
                print(f"{voting:>9} {how:<5}", "  ".join(f"N={n}: {a:.3f}" for n, a in acc.items()))
        maj = {n: np.mean([bool((c := choose(random.Random(s * 7919 + n).sample(r["candidates"], n), "min",
                                             "majority")) and c["correct"])
                           for r in part for s in range(subsets if n < n_max else 1)]) for n in budgets}
        print(f"{'majority':>15}", "  ".join(f"N={n}: {a:.3f}" for n, a in maj.items()))
        print(f"{'pass@N':>15}", f"N={n_max}: {np.mean([any(c['correct'] for c in r['candidates']) for r in part]):.3f}")
    outranked, kinds = 0, Counter()
    mixed = [r for r in ds if len({c["correct"] for c in r["candidates"] if c["finished"]}) == 2]
    for r in mixed:
        ok = [c for c in r["candidates"] if c["finished"] and c["answer_key"] is not None]
        top = max(ok, key=lambda c: aggregate(c["step_scores"], "min"))
        if top["correct"]:
            continue
        outranked += 1
        where = tw.first_mistake(rows[r["id"]], top["steps"])
        if where:
            i, kind = where
            trap = rows[r["id"]]["program"].get("trap", -1) == i
            kinds[(("trap " if trap else "") + kind, "last step" if i == len(top["steps"]) - 1 else "earlier",
                   "PRM blind (>0.5)" if top["step_scores"][i] > 0.5 else "PRM saw it")] += 1
    print(f"\nPRM-max (min) at N={n_max}: a wrong candidate outranks every correct one on {outranked} of "
          f"{len(mixed)} problems with both; its first mistake:")
    for k, v in kinds.most_common():
        print(f"  {v:>3}  {' / '.join(k)}")


def revisions(run: str, problems: str) -> None:
    ds, rows = load(run, problems)
    acc, same, moves, kinds = defaultdict(list), defaultdict(list), Counter(), defaultdict(Counter)
    by_group: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))   # level / trap -> attempt -> hits
    for r in ds:
        chains = defaultdict(list)
        for c in r["candidates"]:
            chains[c.get("chain", c.get("group"))].append(c)   # a chain's attempts, in order (older runs: "group")
        problem = rows[r["id"]]
        groups = [f"level {problem['level']}"] + (["trap"] if problem["program"].get("trap", -1) >= 0 else [])
        for chain in chains.values():
            for t, c in enumerate(chain):
                acc[t].append(c["correct"])
                for g in groups:
                    by_group[g][t].append(c["correct"])
                if t:
                    same[t].append(c["answer_key"] == chain[t - 1]["answer_key"])
                    moves[("right" if chain[t - 1]["correct"] else "wrong") + " -> "
                          + ("right" if c["correct"] else "wrong")] += 1
                if not c["correct"]:
                    where = tw.first_mistake(rows[r["id"]], c["steps"])
                    kinds[min(t, 4)][where[1] if where else "unfinished"] += 1
    print("accuracy per attempt:", "  ".join(f"{t + 1}: {np.mean(v):.3f}" for t, v in sorted(acc.items())))
    for g, hits in sorted(by_group.items()):
        print(f"  {g:>8} ({len(hits[0])} chains):", "  ".join(f"{t + 1}: {np.mean(v):.2f}" for t, v in sorted(hits.items())
                                                              if t < 8))
    print("same answer as the previous attempt:", "  ".join(f"{t + 1}: {np.mean(v):.2f}" for t, v in sorted(same.items())))
    print("transitions:", dict(moves))
    for t, k in sorted(kinds.items()):
        print(f"first mistakes at attempt {t + 1}{'+' if t == 4 else ''}:", dict(k.most_common()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["bon", "revisions"])
    p.add_argument("run", help="a `ttscale search` output folder")
    p.add_argument("--problems", required=True, help="the toy-world problems the run searched")
    p.add_argument("--subsets", type=int, default=8, help="seeded candidate subsets per N below the run's N")
    args = p.parse_args()
    bon(args.run, args.problems, args.subsets) if args.what == "bon" else revisions(args.run, args.problems)


if __name__ == "__main__":
    main()
