"""Problems from the `reasoning-gym` package (procedurally generated tasks) as ttscale problem rows.

Optional: install with `pip install 'ttscale[reasoning-gym]'`. Its entries {question, answer, metadata}
become rows {id, problem, answer, level?, source, metadata} that every stage reads like toy-world rows.
"""
from __future__ import annotations

import json
from typing import Any


def _import_reasoning_gym():
    try:
        import reasoning_gym
    except ImportError as e:
        raise ImportError("reasoning-gym is not installed; install the extra: pip install 'ttscale[reasoning-gym]' "
                          "(or pip install reasoning-gym)") from e
    return reasoning_gym


def _level(metadata: dict[str, Any]) -> int | None:
    """A difficulty level where the task records one as an integer (many tasks do not)."""
    for key in ("difficulty", "level"):
        value = metadata.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def load_reasoning_gym(name: str, size: int, seed: int = 0, **config: Any) -> list[dict[str, Any]]:
    """`size` problems of the reasoning-gym task `name` (e.g. "basic_arithmetic"); `config` goes to the task.

    metadata is kept as a JSON string so rows of different tasks share one column type.
    """
    rg = _import_reasoning_gym()
    try:
        dataset = rg.create_dataset(name, size=size, seed=seed, **config)
    except (KeyError, ValueError) as e:
        raise ValueError(f"reasoning-gym task {name!r} with config {config}: {e}") from e
    rows = []
    for i, entry in enumerate(dataset):
        meta = entry.get("metadata") or {}
        row = {"id": f"rg-{name}-{seed}-{i:05d}", "problem": str(entry["question"]), "answer": str(entry["answer"]),
               "source": f"reasoning-gym/{name}", "metadata": json.dumps(meta, default=str, sort_keys=True)}
        level = _level(meta)
        if level is not None:
            row["level"] = level
        rows.append(row)
    return rows
