"""Problem sets: load a user's table (jsonl, parquet, a `save_to_disk` folder or a hub dataset name)
into normalised columns `id, problem, answer` (+ `level`, `solution` when present).

Every stage that reads problems inherits `ProblemArgs`, so the same options (`--problems`,
`--answer-field`, `--skip-invalid`, ...) mean the same thing everywhere.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import datasets
from tqdm.auto import tqdm

from ttscale.errors import UserError
from ttscale.config import field
from ttscale.data.io import read_jsonl_numbered, read_table, table_kind

logger = logging.getLogger(__name__)

_LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow", ".csv")
_FLAG = {"problem": "--problem-field", "answer": "--answer-field", "id": "--id-field"}


def _read_source(source: str, split: str, skip_invalid: bool) -> tuple[Sequence[dict[str, Any]], Any, list[str]]:
    """(rows, locate, skipped): locate(i) names row i for error messages ("f.jsonl:3", "f.parquet row 2");
    skipped = messages for jsonl lines that are not JSON objects (only with skip_invalid)."""
    p = Path(source).expanduser()
    if p.exists():
        if table_kind(p) != "jsonl":
            return read_table(p), lambda i: f"{source} row {i}", []
        # Rows as read, not through Arrow: mixed answer types (5 and "5") are normal in jsonl.
        numbered, skipped = read_jsonl_numbered(p, skip_invalid)
        rows = [row for _, row in numbered]
        if _is_json_list(p):
            return rows, lambda i: f"{source} row {i}", skipped
        return rows, lambda i: f"{source}:{numbered[i][0]}", skipped
    if source.lower().endswith(_LOCAL_SUFFIXES) or source.startswith((".", "/", "~")) or os.sep + os.sep in source:
        raise FileNotFoundError(f"{source}: no such file or directory")
    try:  # not a local path: a hub dataset name such as "HuggingFaceH4/MATH-500"
        ds = datasets.load_dataset(source, split=split)
    except Exception as e:  # noqa: BLE001 - hub errors come in many types; name the source and the cause
        raise UserError(f"{source}: not a local file or folder, and loading it from the hub "
                        f"(split {split!r}) failed: {type(e).__name__}: {e}") from e
    if not isinstance(ds, datasets.Dataset):
        raise UserError(f"{source}: expected one split, got {type(ds).__name__}; pass --split")
    return ds, lambda i: f"{source} (split {split}) row {i}", []


def _is_json_list(p: Path) -> bool:
    if p.suffix.lower() != ".json":
        return False
    with open(p, encoding="utf-8") as f:
        return f.read(4096).lstrip().startswith("[")


def _text(value: Any) -> str | None:
    """A required text cell as a non-empty string; numbers become strings; anything else is invalid."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # parquet turns integer answers with a null somewhere into floats
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _level(value: Any) -> int | str | None:
    """Levels as ints when they are ints or "3" / "Level 3" (MATH style); other values stay strings."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(?:level\s*)?(-?\d+)\s*", str(value), flags=re.IGNORECASE)
    return int(m.group(1)) if m else str(value)


def load_problems_with_skips(
    source: str | os.PathLike, *, problem_field: str = "problem", answer_field: str = "answer",
    id_field: str = "id", level_field: str = "level", solution_field: str = "solution",
    split: str = "train", skip_invalid: bool = False, require_answer: bool = True,
) -> tuple[datasets.Dataset, list[str]]:
    """`load_problems`, also returning one message per skipped row ("f.jsonl:3: missing field 'answer'")."""
    source = str(source)
    ds, locate, skipped = _read_source(source, split, skip_invalid)
    names = ds.column_names if isinstance(ds, datasets.Dataset) else list(dict.fromkeys(k for r in ds for k in r))
    columns = set(names)
    if len(ds) == 0:
        raise UserError(f"{source}: no rows" + (f" (first skipped: {skipped[0]})" if skipped else ""))
    for role, name in (("problem", problem_field), ("answer", answer_field)):
        if name not in columns and not skip_invalid and (role == "problem" or require_answer):
            raise UserError(f"{source}: no column {name!r} (columns: {', '.join(sorted(columns))}); "
                             f"name the {role} column with {_FLAG[role]}")
    sources = {problem_field, answer_field, id_field, level_field, solution_field}
    extras = [c for c in names if c not in sources | {"id", "problem", "answer", "level", "solution"}]
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(tqdm(ds, desc=f"reading {Path(source).name}", disable=len(ds) < 20000)):
        values = {"problem": _text(row.get(problem_field)), "answer": _text(row.get(answer_field))}
        bad = [role for role, v in values.items() if v is None and (role == "problem" or require_answer)]
        if bad:
            role = bad[0]
            name = problem_field if role == "problem" else answer_field
            msg = f"{locate(i)}: missing or empty field {name!r} (the {role}; must be text or a number)"
            if not skip_invalid:
                raise UserError(f"{msg}; fields in this row: {', '.join(sorted(row))}. Name the {role} "
                                 f"column with {_FLAG[role]}, or pass --skip-invalid to skip such rows")
            skipped.append(msg)
            continue
        pid = _text(row.get(id_field)) if id_field in columns else None
        pid = pid if pid is not None else f"row-{i}"  # stable: the row's index in the source
        if pid in seen:
            raise UserError(f"{source}: duplicate id {pid!r} at {locate(seen[pid])} and {locate(i)}; "
                             f"ids must be unique (pick another column with {_FLAG['id']})")
        seen[pid] = i
        out = {"id": pid, **values}
        if level_field in columns:
            out["level"] = _level(row.get(level_field))
        if solution_field in columns:
            out["solution"] = None if row.get(solution_field) is None else str(row[solution_field])
        out.update({c: row.get(c) for c in extras})
        rows.append(out)
    if not rows:
        raise UserError(f"{source}: all {len(ds)} rows are invalid (first: {skipped[0]}); "
                         f"check {_FLAG['problem']} / {_FLAG['answer']}")
    if "level" in rows[0] and any(isinstance(r["level"], str) for r in rows):
        for r in rows:  # one column type: mixed int/str levels all become strings
            r["level"] = None if r["level"] is None else str(r["level"])
    table = {c: [r.get(c) for r in rows] for c in rows[0]}
    try:
        return datasets.Dataset.from_dict(table), skipped
    except (TypeError, ValueError) as e:  # pyarrow: an extra column mixing types
        raise UserError(f"{source}: cannot build a table from these rows ({e}); an extra column "
                         f"mixes types (e.g. numbers and text) - fix or drop it") from e


def load_problems(
    source: str | os.PathLike, *, problem_field: str = "problem", answer_field: str = "answer",
    id_field: str = "id", level_field: str = "level", solution_field: str = "solution",
    split: str = "train", skip_invalid: bool = False, require_answer: bool = True,
) -> datasets.Dataset:
    """Load a problem set with columns `id, problem, answer` (+ `level`, `solution`, other columns kept).

    `source` is a .jsonl/.json/.parquet file, a `save_to_disk` folder, or else a hub dataset name.
    A row with a missing/empty problem or answer raises ValueError naming the file, line (jsonl) or row
    and the field (with `require_answer=False` a missing answer is kept as None: search needs no gold);
    with `skip_invalid=True` such rows are skipped and "skipped N rows" is logged (use
    `load_problems_with_skips` to get the messages). Duplicate ids raise ValueError naming both rows.
    """
    ds, skipped = load_problems_with_skips(
        source, problem_field=problem_field, answer_field=answer_field, id_field=id_field,
        level_field=level_field, solution_field=solution_field, split=split, skip_invalid=skip_invalid,
        require_answer=require_answer)
    if skipped:
        logger.warning("%s: skipped %d invalid row(s), kept %d; first: %s", source, len(skipped), len(ds), skipped[0])
    return ds


@dataclass
class ProblemArgs:
    """Options for reading a problem set; stage configs inherit these instead of repeating them."""

    problems: str | None = field(None, help="problem set: .jsonl/.json/.parquet file, save_to_disk folder, "
                                            "or a hub dataset name")
    problem_field: str = field("problem", help="column holding the problem text")
    answer_field: str = field("answer", help="column holding the gold final answer (text or number)")
    id_field: str = field("id", help="column holding a unique problem id (absent: ids 'row-N' by position)")
    level_field: str = field("level", help="column holding the difficulty level, if any ('Level 3' -> 3)")
    solution_field: str = field("solution", help="column holding a reference solution, if any")
    split: str = field("train", help="split to load when --problems is a hub dataset name")
    skip_invalid: bool = field(False, help="skip rows with a missing/empty problem or answer, and lines that are "
                               "not valid JSON, instead of failing")
    limit: int | None = field(None, ge=0, help="use only the first N problems (after skipping invalid rows)")
    allow_missing_answer: bool = field(False, help="keep problems without a gold answer (answer = null); only "
                                       "stages that need no gold (search) accept this")

    def load(self) -> datasets.Dataset:
        if not self.problems:
            raise UserError("no problem set given: pass --problems FILE (jsonl, parquet, a datasets folder "
                             "or a hub dataset name)")
        if self.limit is not None and self.limit < 0:
            raise UserError(f"--limit must be >= 0, got {self.limit}")
        ds = load_problems(
            self.problems, problem_field=self.problem_field, answer_field=self.answer_field,
            id_field=self.id_field, level_field=self.level_field, solution_field=self.solution_field,
            split=self.split, skip_invalid=self.skip_invalid, require_answer=not self.allow_missing_answer)
        if self.limit is not None:
            ds = ds.select(range(min(self.limit, len(ds))))
        return ds
