"""The allocation file `ttscale evaluate` writes and `search --strategy auto` reads: its reader, the difficulty
binning it stores, and the choice of configuration for a new problem.

A problem's predicted difficulty is the mean final-step PRM score of a few samples (no gold needed); the file
maps (difficulty bin, budget) to the configuration that was compute-optimal there on held-out problems.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ttscale.search.types import Candidate

ALLOCATION_VERSION = 1

LIU_THRESHOLDS = (0.1, 0.5)
LIU_LABELS = ("hard", "medium", "easy")


@dataclass(frozen=True)
class Binning:
    """Ascending edges on the difficulty measure; labels[i] covers [edges[i-1], edges[i]) (hardest first)."""
    kind: str
    edges: tuple[float, ...]
    labels: tuple[str, ...]

    def __post_init__(self):
        if len(self.labels) != len(self.edges) + 1:
            raise ValueError(f"binning needs one more label than edges; got {len(self.edges)} edges, "
                             f"labels {list(self.labels)}")
        if any(b < a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"binning edges must ascend, got {list(self.edges)}")

    def assign(self, value: float) -> str:
        return self.labels[int(np.searchsorted(np.asarray(self.edges, dtype=float), value, side="right"))]

    def assign_all(self, values: Mapping[str, float]) -> dict[str, str]:
        return {k: self.assign(v) for k, v in values.items()}

    def order(self) -> list[str]:
        """Labels easiest first (the order tables and plots use)."""
        return list(reversed(self.labels))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": [float(e) for e in self.edges], "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Binning":
        try:
            return cls(kind=str(d.get("kind", "custom")), edges=tuple(float(e) for e in d["edges"]),
                       labels=tuple(str(x) for x in d["labels"]))
        except KeyError as e:
            raise ValueError(f"binning needs 'edges' and 'labels'; missing {e}") from None


def predicted_difficulty_of(candidates: Sequence[Candidate]) -> float | None:
    """Mean final-step PRM score over the samples that were scored; None when none was.

    The search stage can call this on a first round of samples to bin a new problem (no gold needed).
    """
    finals = [c.step_scores[-1] for c in candidates if c.step_scores]
    return float(np.mean(finals)) if finals else None


def load_allocation(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = json.loads(path.read_text()) if path.suffix.lower() == ".json" else yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "bins" not in data or "difficulty" not in data:
        raise ValueError(f"{path}: not a ttscale allocation file (needs 'difficulty' and 'bins'; "
                         f"write one with `ttscale evaluate ... --out DIR`)")
    return data


def choose_config(allocation: Mapping[str, Any], predicted_difficulty: float | None, budget: int) -> dict[str, Any]:
    """The configuration to run for a problem of this predicted difficulty at this budget.

    Uses the largest allocation budget <= `budget`; `predicted_difficulty` None (e.g. no PRM) uses the fallback
    chosen over all bins. Returns the config dict (strategy, budget, aggregation, voting, and beam_width /
    lookahead / revision_length where they apply) plus "bin" (the bin label, or "all" for the fallback), and,
    in files that record them, "cost" (its expected cost per problem there) with "cost_axis".
    """
    chosen = _entry(allocation, predicted_difficulty, budget)
    axis = (allocation.get("cost") or {}).get("axis")
    return {**chosen, **({"cost_axis": axis} if axis and "cost" in chosen else {})}


def _entry(allocation: Mapping[str, Any], predicted_difficulty: float | None, budget: int) -> dict[str, Any]:
    budgets = sorted(int(b) for b in allocation["fallback"])
    usable = [b for b in budgets if b <= budget]
    if not usable:
        raise ValueError(f"budget {budget} is below the smallest budget in the allocation file ({budgets[0]}); "
                         f"use a budget >= {budgets[0]}")
    key = str(usable[-1])
    if predicted_difficulty is None or (isinstance(predicted_difficulty, float) and math.isnan(predicted_difficulty)):
        return {**allocation["fallback"][key], "bin": "all"}
    label = Binning.from_dict(allocation["difficulty"]).assign(float(predicted_difficulty))
    per_bin = allocation["bins"].get(label, {})
    if key not in per_bin:
        return {**allocation["fallback"][key], "bin": "all"}
    return {**per_bin[key], "bin": label}
