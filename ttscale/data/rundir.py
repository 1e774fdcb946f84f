"""Run folders shared by every resumable stage (label, search): claim, numbered parts, collect.

A run folder holds run.json (the settings a resume must match) and parts/part-CCCCC.jsonl, each written
atomically (data.io.write_table renames into place), so a part that exists is complete.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

_PART = re.compile(r"^part-(\d{5})\.jsonl$")


def part_path(out: Path, chunk: int) -> Path:
    return Path(out) / "parts" / f"part-{chunk:05d}.jsonl"


def claim_run_dir(out: Path, settings: dict, kind: str) -> None:
    """Record a run's settings in out/run.json, or check a resumed run uses the same ones (else exit)."""
    out, meta = Path(out), Path(out) / "run.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            raise SystemExit(f"{out} holds a {kind} run with other settings {diff} (old, new): resume with the "
                             f"same options, or use a new output folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(settings, indent=1))


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
