"""Which mistakes can a PRM see? Pairwise accuracy per toy-world mistake kind.

For held-out toy-world problems, the same correct prefix is continued once with the reference step and
once with a wrong version of it (slip = arithmetic off by a little, operand = wrong number, operation =
wrong sign); the PRM should score the reference step higher. 0.5 = blind to that kind, 1.0 = always sees it.
Step AUC mixes difficulty with checking; this isolates checking, which is what best-of-N ranking needs.

    .venv/bin/python benchmarks/prm_probe.py demo_out/prm --problems 300
"""
from __future__ import annotations

import argparse
import random
from collections import defaultdict

import torch

from ttscale.data import toy_world as tw
from ttscale.data.steps import split_steps
from ttscale.inference.scorers_load import load_scorer

KINDS = ("slip", "operand", "operation")


def pairs(problems: int, seed: int) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(problem, steps) items two by two (reference step, wrong step) and the mistake kind of each pair."""
    rng = random.Random(seed)
    items, kinds = [], []
    for row in tw.generate_problems(problems, seed=seed):
        program, steps = row["program"], split_steps(row["solution"])
        values, n = tw._values(program), len(program["ops"])
        i = rng.randrange(n)
        for kind in KINDS:
            wrong = tw._wrong_step(program, i, values[i], kind, rng)
            if wrong is None:
                continue
            op, k, c, clause_k = wrong
            bad = tw.format_step(program, i, values[i], op, k, c, last=i == n - 1, clause_k=clause_k)
            items += [(row["problem"], steps[:i + 1]), (row["problem"], steps[:i] + [bad])]
            kinds.append(kind)
    return items, kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prm", help="a PRM folder (ttscale train-prm output) or any load_scorer checkpoint")
    ap.add_argument("--problems", type=int, default=300, help="held-out toy-world problems (one pair per kind)")
    ap.add_argument("--seed", type=int, default=77, help="seed of the problems and of the mistake positions")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    items, kinds = pairs(args.problems, args.seed)
    scores = load_scorer(args.prm, batch_size=64).score(items)
    hits = defaultdict(list)
    for j, kind in enumerate(kinds):
        hits[kind].append(scores[2 * j][-1] > scores[2 * j + 1][-1])
    print(f"{'mistake':<10} {'pairs':>6} {'pairwise accuracy':>18}")
    for kind in KINDS:
        print(f"{kind:<10} {len(hits[kind]):>6} {sum(hits[kind]) / max(len(hits[kind]), 1):>18.3f}")


if __name__ == "__main__":
    main()
