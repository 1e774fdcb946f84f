"""Evaluate's own knobs chosen on a split of their own (the split protocol: dev chooses, test reports).

`evaluate --tune KNOB=V1,V2,...` on a dev split's runs fits the compute-optimal allocation once per
combination of the listed values and keeps the combination with the best score (`--tune-by`): accuracy, the
mean over the budget grid of the k-fold held-out accuracy, counted 0 at a budget where the held-out choices
spent more than the budget (a probe that does not fit the budget buys nothing there), or efficiency, the
headline figure itself (the held-out allocation's efficiency against the tuned baseline; 0 where undefined).
The accuracy score weighs every budget alike, so the smallest budgets, where only a 1-sample probe fits,
decide the probe; the efficiency score reads the budget where the baseline peaks. Ties: the first listed.
It writes OUT/tuned.yaml: the chosen values, every combination's score, and which runs (problems) chose them. `evaluate --tuned FILE` on the test
split's runs takes those values instead of its own, and its summary.json records where they came from, so a
figure is never reported on the problems its knobs were chosen on.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from ttscale.errors import UserError

KNOBS = {"pooling": float, "probe_samples": int, "n_bins": int}   # what the allocation's held-out curve depends on
TUNED_VERSION = 1


def parse_tune(specs: Sequence[str]) -> dict[str, list[Any]]:
    """['pooling=0,10', 'n_bins=3,5'] -> {'pooling': [0.0, 10.0], 'n_bins': [3, 5]}; a bad spec is a user error."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in KNOBS or not values.strip():
            raise UserError(f"--tune {spec!r}: expected KNOB=V1,V2,... with KNOB one of {', '.join(KNOBS)}")
        try:
            grid[name] = [KNOBS[name](v) for v in values.split(",")]
        except ValueError:
            raise UserError(f"--tune {spec!r}: {name} takes {KNOBS[name].__name__} values") from None
    return grid


CRITERIA = {"accuracy": "mean over the budgets of the k-fold held-out accuracy, 0 where it overspent the budget",
            "efficiency": "efficiency of the k-fold held-out allocation against the tuned baseline (0 if undefined)"}


def efficiency_score(alloc: Any, tuned: Any) -> float:
    """The held-out allocation's efficiency against the tuned baseline's held-out curve; 0 where undefined."""
    from ttscale.eval.efficiency import compute_optimal_efficiency, held_curve

    value = compute_optimal_efficiency(held_curve(tuned.held, tuned.held_cost), held_curve(alloc.held, alloc.held_cost))
    return float(value or 0.0)


def equal_cost_score(alloc: Any) -> float:
    """Mean held-out accuracy over the budgets, 0 where the held-out choices overspent the budget."""
    scores = [acc if alloc.curve_cost[b] <= alloc.budget_cost[b] * (1 + 1e-9) else 0.0
              for b, acc in alloc.curve.items()]
    return float(sum(scores) / len(scores)) if scores else 0.0


def choose(grid: Mapping[str, Sequence[Any]], score: Callable[[dict[str, Any]], float]) -> tuple[dict[str, Any], list]:
    """(the best combination, [{knobs..., score}] for every combination) under `score` (higher is better)."""
    names = list(grid)
    rows = []
    for values in itertools.product(*(grid[n] for n in names)):
        knobs = dict(zip(names, values))
        rows.append({**knobs, "score": round(float(score(knobs)), 6)})
    best = max(range(len(rows)), key=lambda i: (rows[i]["score"], -i))
    return {n: rows[best][n] for n in names}, rows


def write_tuned(path: Path, knobs: Mapping[str, Any], rows: list, runs: Sequence[str], problems: int,
                by: str = "accuracy") -> Path:
    path.write_text(yaml.safe_dump({
        "version": TUNED_VERSION, "knobs": dict(knobs), "chosen_on": {"runs": list(runs), "problems": problems},
        "criterion": CRITERIA[by],
        "table": rows},
        sort_keys=False))
    return path


def read_tuned(path: str | Path) -> dict[str, Any]:
    """The file `--tune` wrote: {'knobs': ..., 'chosen_on': ...}; anything else is a one-line user error."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"--tuned {path}: cannot read it ({e})") from None
    if not isinstance(data, dict) or data.get("version") != TUNED_VERSION or not isinstance(data.get("knobs"), dict):
        raise UserError(f"--tuned {path}: not a file written by `ttscale evaluate --tune` (OUT/tuned.yaml)")
    unknown = set(data["knobs"]) - set(KNOBS)
    if unknown:
        raise UserError(f"--tuned {path}: unknown knobs {sorted(unknown)}; it may set {', '.join(KNOBS)}")
    return {"knobs": {k: KNOBS[k](v) for k, v in data["knobs"].items()}, "chosen_on": data.get("chosen_on"),
            "file": str(path)}
