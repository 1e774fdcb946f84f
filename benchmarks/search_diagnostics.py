"""Why does a search strategy win or lose? Offline diagnostics of toy-world search runs (no model is run).

    python benchmarks/search_diagnostics.py bon demo_out/runs/bon --problems demo_out/problems_test.jsonl
    python benchmarks/search_diagnostics.py revisions demo_out/runs/revisions16_l16 --problems ...
    python benchmarks/search_diagnostics.py compare demo_out/runs/revisions16_l1 demo_out/runs/revisions16 --problems ...

`bon`: accuracy of best-of-N by PRM score (PRM-max) and of PRM-weighted voting at N = 1..16 (seeded subsets
of the run's candidates) for every step aggregation, majority and pass@N; on trap problems separately;
then, at the full N, for each problem where a wrong candidate outranks every correct one: the kind and
place of its first mistake and whether the PRM scored that step above 0.5 (blind to it) or not.
`revisions` (one report per run given, e.g. one per reviser variant): accuracy per attempt along a chain
(overall, per level, on trap problems); per attempt the fix rate f (wrong -> right), the break rate b
(right -> wrong) and the copy rate (same answer as the attempt before); overall f, b and f/(f+b), the
accuracy a long chain settles near; attempt 4 minus attempt 1 with its paired 95% interval over problems;
the kinds of first mistakes per attempt.
`compare A B`: selected-answer accuracy of two runs on the same problems, overall and per level, with the paired
95% interval of B - A.
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


def chains_of(ds: list[dict]) -> list[tuple[str, list[list[dict]]]]:
    """(problem id, its chains: each a list of attempts in order) per searched problem."""
    out = []
    for r in ds:
        chains = defaultdict(list)
        for c in r["candidates"]:
            chains[c.get("chain", c.get("group"))].append(c)   # a chain's attempts, in order (older runs: "group")
        out.append((r["id"], list(chains.values())))
    return out


def paired_gain(per_problem: list[tuple[float, float]], seed: int = 0, reps: int = 2000) -> tuple[float, float, float]:
    """Mean of (b - a) over problems with a 95% bootstrap interval (problems resampled; a problem's chains
    stay together, so the pairing is kept)."""
    d = np.array([b - a for a, b in per_problem])
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (reps, len(d)))].mean(1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def transitions(chains: list[list[dict]], t: int) -> tuple[int, int, int, int, int]:
    """(wrong before, fixed, right before, broken, same answer) from attempt t-1 to attempt t."""
    wb = fix = rb = brk = same = 0
    for ch in chains:
        if t < len(ch):
            prev, cur = ch[t - 1], ch[t]
            wb, fix = wb + (not prev["correct"]), fix + (not prev["correct"] and cur["correct"])
            rb, brk = rb + prev["correct"], brk + (prev["correct"] and not cur["correct"])
            same += cur["answer_key"] == prev["answer_key"]
    return wb, fix, rb, brk, same


def revisions(run: str, problems: str) -> None:
    """Per attempt: accuracy, fix rate f (wrong -> right), break rate b (right -> wrong), copy rate (same
    answer as the attempt before); overall f, b and f/(f+b), where a long chain's accuracy settles; the paired
    interval of attempt 4 minus attempt 1 over problems."""
    ds, rows = load(run, problems)
    per = chains_of(ds)
    acc, kinds = defaultdict(list), defaultdict(Counter)
    by_group: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))   # level / trap -> attempt -> hits
    for pid, chains in per:
        problem = rows[pid]
        groups = [f"level {problem['level']}"] + (["trap"] if problem["program"].get("trap", -1) >= 0 else [])
        for chain in chains:
            for t, c in enumerate(chain):
                acc[t].append(c["correct"])
                for g in groups:
                    by_group[g][t].append(c["correct"])
                if not c["correct"]:
                    where = tw.first_mistake(problem, c["steps"])
                    kinds[min(t, 4)][where[1] if where else "unfinished"] += 1
    print(f"== {run}")
    print("accuracy per attempt:", "  ".join(f"{t + 1}: {np.mean(v):.3f}" for t, v in sorted(acc.items())))
    for g, hits in sorted(by_group.items()):
        print(f"  {g:>8} ({len(hits[0])} chains):", "  ".join(f"{t + 1}: {np.mean(v):.2f}" for t, v in sorted(hits.items())
                                                              if t < 8))
    all_chains = [ch for _, chains in per for ch in chains]
    tot = np.zeros(5, dtype=int)
    cells = []
    for t in range(1, max(acc) + 1):
        wb, fix, rb, brk, same = (x := transitions(all_chains, t))
        tot += x
        cells.append(f"{t + 1}: f {fix / max(wb, 1):.2f} b {brk / max(rb, 1):.3f} copy {same / max(wb + rb, 1):.2f}")
    print("fix rate f (wrong -> right), break rate b (right -> wrong), copy rate, per attempt:")
    print("  " + "\n  ".join(cells))
    f, b = tot[1] / max(tot[0], 1), tot[3] / max(tot[2], 1)
    print(f"overall: f {f:.3f} ({tot[1]}/{tot[0]})  b {b:.3f} ({tot[3]}/{tot[2]})  copy {tot[4] / max(tot[0] + tot[2], 1):.2f}"
          f"  f/(f+b) {f / (f + b) if f + b else float('nan'):.3f} (where a long chain settles)")
    last = min(3, max(acc))
    if last:
        gain = paired_gain([(np.mean([ch[0]["correct"] for ch in chains]),
                             np.mean([ch[last]["correct"] for ch in chains])) for _, chains in per])
        print(f"attempt {last + 1} - attempt 1: {gain[0]:+.3f}  95% paired interval [{gain[1]:+.3f}, {gain[2]:+.3f}] "
              f"over {len(per)} problems")
    for t, k in sorted(kinds.items()):
        print(f"first mistakes at attempt {t + 1}{'+' if t == 4 else ''}:", dict(k.most_common()))


def compare(run_a: str, run_b: str, problems: str) -> None:
    """Selected-answer accuracy of two runs on the same problems, overall and per level, with the paired
    95% interval of B - A (e.g. sequential vs parallel revisions, or one verifier vs another on the same chains)."""
    (a, rows), (b, _) = load(run_a, problems), load(run_b, problems)
    hit_a, hit_b = ({r["id"]: float(r["correct"]) for r in ds} for ds in (a, b))
    ids = sorted(set(hit_a) & set(hit_b))
    print(f"A = {run_a}\nB = {run_b}")
    for level in [None, *sorted({rows[i]["level"] for i in ids})]:
        sel = [i for i in ids if level is None or rows[i]["level"] == level]
        gain = paired_gain([(hit_a[i], hit_b[i]) for i in sel])
        print(f"  {'all' if level is None else f'level {level}':>8} ({len(sel)}): A {np.mean([hit_a[i] for i in sel]):.3f}  "
              f"B {np.mean([hit_b[i] for i in sel]):.3f}  B - A {gain[0]:+.3f} [{gain[1]:+.3f}, {gain[2]:+.3f}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["bon", "revisions", "compare"])
    p.add_argument("run", nargs="+", help="`ttscale search` output folder(s); revisions: one report per run (variant)")
    p.add_argument("--problems", required=True, help="the toy-world problems the run searched")
    p.add_argument("--subsets", type=int, default=8, help="seeded candidate subsets per N below the run's N")
    args = p.parse_args()
    if args.what == "compare":
        if len(args.run) != 2:
            p.error("compare takes two runs: A B")
        return compare(*args.run, args.problems)
    for run in args.run:
        bon(run, args.problems, args.subsets) if args.what == "bon" else revisions(run, args.problems)


if __name__ == "__main__":
    main()
