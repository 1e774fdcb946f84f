"""Read and write tables by path: `.jsonl`/`.json`, `.parquet`, or a directory saved with `save_to_disk`.

Stages talk through these files, so any stage can be run alone or replaced by a user's own tool.
Writes are atomic (temp path + rename): a killed job never leaves a half-written output that looks done.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import datasets

from ttscale.errors import UserError

SUPPORTED = ".jsonl, .json, .parquet, or a datasets directory (save_to_disk)"


def table_kind(path: str | os.PathLike) -> str:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if suffix == "" or p.is_dir():
        return "dir"
    raise UserError(f"{path}: unsupported table format {suffix!r}; use {SUPPORTED}")


def read_table(path: str | os.PathLike) -> datasets.Dataset:
    """Load a local table as a `datasets.Dataset` (row order preserved)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    kind = table_kind(p)
    if kind == "dir":
        obj = datasets.load_from_disk(str(p))
        if isinstance(obj, datasets.DatasetDict):
            if len(obj) != 1:
                raise UserError(f"{path}: a DatasetDict with splits {list(obj)}; pass the split folder itself")
            obj = next(iter(obj.values()))
        return obj
    if kind == "parquet":
        return datasets.Dataset.from_parquet(str(p))
    return datasets.Dataset.from_list(read_jsonl(p))


def read_jsonl(path: str | os.PathLike, skip_invalid: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (or a .json list); errors name the file and line."""
    return [row for _, row in read_jsonl_numbered(path, skip_invalid)[0]]


def read_jsonl_numbered(path: str | os.PathLike, skip_invalid: bool = False
                        ) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """([(line number, row)], [one message per skipped line]).

    A line that is not a JSON object raises UserError naming the file and line, or with `skip_invalid` is
    skipped (its message returned). A .json list is one document: it parses whole or not at all.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None
        if not all(isinstance(r, dict) for r in rows):
            raise UserError(f"{path}: expected a list of objects")
        return list(enumerate(rows, start=1)), []
    rows, skipped = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            problem = None if isinstance(row, dict) else f"expected a JSON object per line, got {type(row).__name__}"
        except json.JSONDecodeError as e:
            problem = f"invalid JSON ({e.msg} at column {e.colno})"
        if problem is None:
            rows.append((lineno, row))
        elif skip_invalid:
            skipped.append(f"{path}:{lineno}: {problem}")
        else:
            raise UserError(f"{path}:{lineno}: {problem}; fix the line, or pass --skip-invalid to skip such lines")
    return rows, skipped


def _tmp_path(p: Path) -> Path:
    return p.with_name(f".{p.name}.tmp-{os.getpid()}")


def write_table(data: datasets.Dataset | Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write rows to `path` (format from the extension) atomically; returns the path."""
    p = Path(path)
    kind = table_kind(p) if p.suffix else "dir"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(p)
    if kind == "jsonl":
        rows = data if not isinstance(data, datasets.Dataset) else data.to_list()
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
    else:
        ds = data if isinstance(data, datasets.Dataset) else datasets.Dataset.from_list(list(data))
        if kind == "parquet":
            ds.to_parquet(str(tmp))
        else:
            ds.save_to_disk(str(tmp))
    replace_path(tmp, p)
    return p


def replace_path(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Put `tmp` (a file or folder) at `final`, replacing what is there: a link is removed, never followed (what
    it points to is left alone), a folder is deleted first (rename cannot replace a non-empty one)."""
    final = Path(final)
    if final.is_symlink():
        final.unlink()
    elif final.is_dir():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file atomically (temp file + rename): a kill never leaves half of it, and a link at
    `path` is replaced by the file, not written through."""
    p = Path(path)
    tmp = _tmp_path(p)
    tmp.write_text(text, encoding="utf-8")
    replace_path(tmp, p)
    return p
