"""`ttscale toy-world OUTPUT`: write a synthetic multi-step arithmetic problem set (see ttscale.data.toy_world)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ttscale.config import field
from ttscale.data.threads import ThreadArgs
from ttscale.data.toy_world import MISTAKE_KINDS


@dataclass
class Config(ThreadArgs):
    """Write toy-world problems {id, problem, answer, level, solution, program} to a table."""
    output: str = field(help="where to write the problems: .jsonl, .parquet, or a datasets folder", positional=True)
    n: int = field(200, ge=1, help="number of problems (levels assigned round-robin)")
    seed: int = field(0, help="random seed; same seed, same problems")
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5], ge=1, le=5,
                              help="difficulty levels to include (1 = 2 steps, small numbers ... 5 = 6 steps, large)")
    processbench: bool = field(False, help="write ProcessBench rows {id, problem, steps, label, level} instead "
                               "(label = index of the first wrong step, -1 if none): held-out data for eval-prm")
    mistake_fraction: float = field(0.5, ge=0, le=1, help="with --processbench: fraction of rows given an injected mistake")
    mistake_kinds: list[str] = field(default_factory=lambda: list(MISTAKE_KINDS),
                                     help="with --processbench: kinds of injected mistakes (slip, operand, operation, "
                                          "drop); e.g. the ones the policy was trained to make")
    misread_fraction: float = field(0.5, ge=0, le=1, help="with --processbench: of the rows given a mistake that have "
                                    "a trap clause, the fraction whose mistake is the trap's misreading (the policy's "
                                    "systematic one) instead of a random injected one")

    def __post_init__(self):
        from ttscale.data.toy_world import check_mistake_kinds
        check_mistake_kinds(self.mistake_kinds)


def run(cfg: Config) -> int:
    cfg.apply_threads()
    from ttscale.data.io import write_table
    from ttscale.data.toy_world import generate_problems

    rows = generate_problems(cfg.n, seed=cfg.seed, levels=cfg.levels)
    if cfg.processbench:
        rows = processbench_rows(rows, cfg.mistake_fraction, cfg.seed, cfg.misread_fraction, cfg.mistake_kinds)
    path = write_table(rows, cfg.output)
    per_level = Counter(r["level"] for r in rows)
    print(f"wrote {len(rows)} problems to {path} (per level: {dict(sorted(per_level.items()))})")
    return 0


def processbench_rows(rows: list[dict], mistake_fraction: float, seed: int, misread_fraction: float = 0.0,
                      kinds: Sequence[str] = MISTAKE_KINDS) -> list[dict]:
    """Reference solutions, a seeded fraction of them with one mistake (injected, or on a trap problem the
    trap's misreading with probability misread_fraction): exact first-error labels, and the mistake's kind
    (`mistake`: misread, or first_mistake's kind; null for a right solution) for per-kind analysis."""
    import random

    from ttscale.data.steps import split_steps
    from ttscale.data.toy_world import check_mistake_kinds, first_mistake, inject_mistake, misread_solution

    kinds = check_mistake_kinds(kinds)
    rng = random.Random(seed)
    out = []
    for r in rows:
        text, label, kind = r["solution"], -1, None
        if rng.random() < mistake_fraction:
            misread = misread_solution(r)
            if misread is not None and rng.random() < misread_fraction:
                text, label, kind = misread, r["program"]["trap"], "misread"
            else:
                text, label = inject_mistake(r, rng, kinds)
                kind = first_mistake(r, split_steps(text))[1]
        out.append({"id": r["id"], "problem": r["problem"], "steps": split_steps(text), "label": label,
                    "level": r["level"], "mistake": kind})
    return out
