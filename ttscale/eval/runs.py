"""Read search runs back from disk (the `ttscale search` output) into graded per-problem records.

A run folder holds `dataset/` (save_to_disk) and `summary.json`; the dataset folder itself, or a
.jsonl/.parquet table with the same columns, is accepted too. One run = one strategy at one budget.
Candidates are turned back into `search.types.Candidate` so `search.voting.select` re-votes them exactly
as the search did. Per-candidate correctness comes from the run's `correct` field (graded by
`data.answers` when the run was written); rows without it are graded here with `data.answers.grade_many`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ttscale.data.answers import grade_many
from ttscale.data.io import read_table
from ttscale.errors import UserError
from ttscale.search.registry import get_strategy
from ttscale.search.strategy import Strategy
from ttscale.search.types import Candidate

REQUIRED = ("id", "strategy", "budget", "candidates", "spent")
_CANDIDATE_FIELDS = tuple(f.name for f in dataclasses.fields(Candidate))


@dataclass
class ProblemRecord:
    id: str
    gold: str | None
    candidates: list[Candidate]
    correct: list[bool]           # per candidate (False without an answer); all False when gold is None
    spent: dict[str, float]
    chosen: int = -1              # the candidate the search itself selected (-1: none)


@dataclass
class Run:
    path: str
    strategy: str
    budget: int
    params: dict[str, Any]
    problems: list[ProblemRecord]

    @property
    def search(self) -> Strategy:
        """The strategy class behind the run, with the hyperparameters it ran with."""
        return get_strategy(self.strategy, self.params)

    @property
    def parallel(self) -> bool:
        """One sample set, re-votable at any N' <= N."""
        return self.search.family == "parallel"

    @property
    def graded(self) -> list[ProblemRecord]:
        return [p for p in self.problems if p.gold is not None]


def _dataset_path(path: Path) -> Path:
    if path.is_dir() and (path / "dataset").is_dir():
        return path / "dataset"
    return path


def _candidate(raw: dict[str, Any]) -> Candidate:
    c = Candidate(**{k: raw[k] for k in _CANDIDATE_FIELDS if k in raw and raw[k] is not None})
    if "group" in raw and "chain" not in raw:   # runs written before chain/subtree had fields of their own
        c.chain = c.subtree = int(raw["group"] or 0)
    c.step_scores = [float(s) for s in (c.step_scores or [])]
    return c


def load_run(path: str | Path) -> Run:
    path = Path(path)
    table = read_table(_dataset_path(path))
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a search run, missing column(s) {', '.join(missing)} "
                         f"(expected the output folder of `ttscale search`)")
    rows = table.to_list()
    if not rows:
        raise ValueError(f"{path}: the run has no rows")
    kinds = {(r["strategy"], int(r["budget"])) for r in rows}
    if len(kinds) > 1:
        raise ValueError(f"{path}: rows mix strategies/budgets {sorted(kinds)}; write one run per strategy and budget")
    strategy, budget = kinds.pop()
    problems, to_grade = [], []
    for i, r in enumerate(rows):
        cands = [_candidate(c) for c in r["candidates"] or []]
        gold = r.get("answer")
        flags = [c.get("correct") for c in r["candidates"] or []]
        if gold is not None and any(f is None for f in flags):
            to_grade.append(i)
        chosen = r.get("chosen")
        problems.append(ProblemRecord(id=str(r["id"]), gold=None if gold is None else str(gold), candidates=cands,
                                      correct=[bool(f) for f in flags], spent=dict(r["spent"] or {}),
                                      chosen=-1 if chosen is None else int(chosen)))
    if to_grade:  # runs written without per-candidate verdicts: grade with the same grader the search uses
        pairs = [(c.answer, problems[i].gold) for i in to_grade for c in problems[i].candidates]
        verdicts = iter(grade_many(pairs))
        for i in to_grade:
            problems[i].correct = [next(verdicts) for _ in problems[i].candidates]
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate problem ids; each problem must appear once per run")
    return Run(path=str(path), strategy=strategy, budget=budget, params=dict(rows[0].get("params") or {}),
               problems=problems)


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    if not paths:
        raise ValueError("no run folders given: pass one or more `ttscale search` output folders")
    return [load_run(p) for p in paths]


def common_problems(runs: Sequence[Run]) -> tuple[list[Run], list[str]]:
    """The runs restricted to the graded problems every one of them has, and notes saying what was left out.

    Comparing methods on different problems would compare the problems, not the methods: a run over a subset
    (--limit) or over another problem file must not be set beside the others silently. No common problem at
    all is a user error naming the runs whose problem sets differ."""
    sets = {r.path: {p.id for p in r.graded} for r in runs}
    common = set.intersection(*sets.values()) if sets else set()
    if not common:
        groups: dict[frozenset, list[str]] = {}
        for path, ids in sets.items():
            groups.setdefault(frozenset(ids), []).append(path)
        listing = "; ".join(f"{', '.join(paths)} ({len(ids)} problems)" for ids, paths in groups.items())
        raise UserError(f"no problem is graded in every run, so they cannot be compared: {listing}. Evaluate runs "
                        f"over the same problems together (separately otherwise)")
    notes = [f"{path}: {len(ids - common)} of its {len(ids)} graded problems are not in every run and are left out; "
             f"all comparisons use the {len(common)} problems every run has" for path, ids in sets.items()
             if ids != common]
    out = [dataclasses.replace(r, problems=[p for p in r.problems if p.id in common or p.gold is None])
           for r in runs]
    return out, notes
