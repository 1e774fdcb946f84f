"""Run folders shared by every resumable stage (label, search): claim, numbered parts, collect.

A run folder holds run.json (the settings a resume must match, and a fingerprint of what the run reads) and
parts/part-CCCCC.jsonl, each written atomically (data.io.write_table renames into place), so a part that
exists is complete. A resume over changed input (another problems file at the same path, a retrained model in
the same folder) would mix old and new rows, so it stops with one line naming what changed, unless
--allow-changed-inputs says the user means it. An output path that is a file, or a symbolic link inside the
folder where a run writes (parts/, dataset, summary.json, ...), is refused before any work: nothing is ever
written through a link to somewhere outside the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ttscale.config import field
from ttscale.data.io import write_text

_PART = re.compile(r"^part-(\d{5})\.jsonl$")


def part_path(out: Path, chunk: int) -> Path:
    return Path(out) / "parts" / f"part-{chunk:05d}.jsonl"


@dataclass(kw_only=True)
class RunDirArgs:
    """The option every resumable stage has for its run folder."""
    allow_changed_inputs: bool = field(False, run_key=False,
                                       help="resume even though the problems or a model changed since the run "
                                            "started (the run then mixes rows from both; off: it stops and says "
                                            "what changed)")


def check_output_dir(out: Path) -> None:
    """Refuse (one line) an output path that is a file, or a link inside the folder where a run writes."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"{out} is a file, not a folder: give the path of a new or existing output folder")
    for folder in (out, out / "parts"):   # a linked parts/ is found while scanning out/, before it is entered
        for entry in os.scandir(folder) if folder.is_dir() else ():
            if entry.is_symlink():
                raise SystemExit(f"{entry.path} is a symbolic link: a run writes nothing through links inside its "
                                 f"output folder; remove the link or use another folder")


def fingerprint_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """sha256 of the rows' content (their JSON, keys sorted): the same problems read from anywhere match."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


_WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def fingerprint_model(path: str | None) -> str | None:
    """A model folder's (or file's) identity without reading its weights: the content of its small JSON files
    (config, tokenizer, PRM/revision format, weights index) and each weight file's name, size and mtime; a
    single small file (an allocation file) by its content. A hub id or server model name (no such local path)
    is its own fingerprint."""
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        return f"name:{path}"
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        if not f.is_file():
            continue
        rel = str(f.relative_to(p)) if p.is_dir() else f.name
        if f.suffix in _WEIGHTS:
            st = f.stat()
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        elif (f.suffix == ".json" or not p.is_dir()) and f.stat().st_size < 8 << 20:
            h.update(f"{rel}:".encode() + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def claim_run_dir(out: Path, settings: dict, kind: str, inputs: Mapping[str, str | None] | None = None,
                  allow_changed: bool = False) -> None:
    """Record a run's settings and input fingerprints in out/run.json, or check a resumed run uses the same
    ones (else exit with one line)."""
    out, meta = Path(out), Path(out) / "run.json"
    check_output_dir(out)
    inputs = dict(inputs or {})
    if meta.exists():
        old = json.loads(meta.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            raise SystemExit(f"{out} holds a {kind} run with other settings {diff} (old, new): resume with the "
                             f"same options, or use a new output folder")
        before = old.get("inputs") or {}   # runs written before fingerprints existed have none to compare
        changed = [k for k, v in inputs.items() if k in before and before[k] != v]
        if changed and not allow_changed:
            raise SystemExit(f"{out} holds a {kind} run over other input: {', '.join(changed)} changed since it "
                             f"started (same path, other content), so resuming would mix rows of both; use a new "
                             f"output folder, or --allow-changed-inputs if you mean to mix them")
        if changed or set(inputs) - set(before):
            write_text(meta, json.dumps({**old, "inputs": {**before, **inputs}}, indent=1))
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_text(meta, json.dumps({**settings, "inputs": inputs}, indent=1))


def collect_parts(run_dirs: list[Path]) -> list[Path]:
    """All finished parts of the given run folders, in chunk order; a chunk present twice is an error."""
    found: dict[int, Path] = {}
    for d in run_dirs:
        for p in sorted((Path(d) / "parts").glob("part-*.jsonl")):
            m = _PART.match(p.name)
            if not m:
                continue
            c = int(m.group(1))
            if c in found:
                raise ValueError(f"chunk {c} is in both {found[c]} and {p}: were two shards given the same index?")
            found[c] = p
    return [found[c] for c in sorted(found)]


def missing_chunks(parts: list[Path], run_dirs: list[Path]) -> list[int]:
    have = {int(_PART.match(p.name).group(1)) for p in parts}
    expected = set()
    for d in run_dirs:
        meta = json.loads((Path(d) / "run.json").read_text())
        n = meta.get("n_chunks")
        if n is not None:
            expected |= set(range(n))
    return sorted(expected - have)
