"""`ttscale convert`: step-labelled data from one format to another (native `ttscale` rows in between).

With --skip-invalid, a line that is not JSON, a row that fails validation and a row that loads but cannot be
written in the target format are left out, counted in what convert prints, and listed with their id and the
reason in OUTPUT.skipped.jsonl beside the output.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from ttscale.config import field
from ttscale.data.formats import FORMATS, ConversionWarning, read_rows, write_rows
from ttscale.data.labels import relabel
from ttscale.data.threads import ThreadArgs

_FORMAT_HELP = "; ".join(f"{name} = {f.columns}" for name, f in FORMATS.items())


@dataclass
class Config(ThreadArgs):
    """Convert step-labelled data between formats (through native `ttscale` rows)."""

    input: str = field(help="file to read: .jsonl/.json, .parquet, or a datasets directory (save_to_disk)",
                       positional=True)
    output: str = field(help="file to write, format by extension: .jsonl, .parquet, or a path without "
                        "extension for a datasets directory", positional=True)
    from_format: str = field("ttscale", flag="--from", choices=list(FORMATS),
                             help="format of INPUT. "
                             "Formats: " + _FORMAT_HELP)
    to_format: str = field("ttscale", flag="--to", choices=[n for n, f in FORMATS.items() if f.write],
                           help="format of OUTPUT; fields it has no place for (answer, mc_correct/mc_total, "
                           "method, ...) are not written, and label losses are reported as warnings")
    neutral: str = field("correct", choices=["correct", "incorrect"],
                         help="PRM800K only: whether a step rated 0 (neutral: valid but no progress) counts as "
                         "correct or incorrect; steps after the first -1 are always dropped")
    prm800k_alternatives: bool = field(False, help="PRM800K only: also emit one row per rated alternative "
                                       "completion (trajectory prefix + that completion, id suffix -s<step>c<k>)")
    relabel: str = field("keep", choices=["keep", "hard", "soft"],
                         help="re-derive labels from the mc_correct/mc_total evidence before writing: hard = "
                         "1 if correct/total > --hard-threshold, soft = correct/total; keep = leave labels")
    hard_threshold: float = field(0.0, ge=0, lt=1, help="a soft label (or MC fraction) above this counts as a correct step "
                                  "when a hard label is needed (+/-, booleans, ProcessBench's first error); "
                                  "0 = any rollout correct, as in Math-Shepherd")
    skip_invalid: bool = field(False, help="skip lines that are not JSON and rows that fail validation or "
                               "conversion (counted, and listed in OUTPUT.skipped.jsonl) instead of stopping at "
                               "the first bad row")

    def __post_init__(self) -> None:
        if self.to_format not in FORMATS or FORMATS[self.to_format].write is None:
            raise ValueError(f"--to {self.to_format}: cannot write this format")
        if not 0.0 <= self.hard_threshold < 1.0:
            raise ValueError(f"--hard-threshold {self.hard_threshold}: must be in [0, 1)")


def skipped_path(output: str) -> Path:
    """Where convert lists the rows it skipped: beside OUTPUT, named after it."""
    out = Path(output)
    return out.with_name(f"{out.stem if out.suffix else out.name}.skipped.jsonl")


def run(cfg: Config) -> int:
    from ttscale.data.io import write_table

    cfg.apply_threads()
    skipped: list[dict] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConversionWarning)
        try:
            rows = read_rows(cfg.from_format, cfg.input, neutral=cfg.neutral,
                             alternatives=cfg.prm800k_alternatives, skip_invalid=cfg.skip_invalid,
                             skipped=skipped)
            if cfg.relabel != "keep":
                rows = [relabel(r, cfg.relabel, cfg.hard_threshold) for r in rows]
            n = write_rows(cfg.to_format, rows, cfg.output, hard_threshold=cfg.hard_threshold,
                           skip_invalid=cfg.skip_invalid, skipped=skipped)
        except (ValueError, FileNotFoundError) as e:  # a bad row or file: one line, exit 2 like every stage
            print(f"ttscale convert: error: {e}", file=sys.stderr)
            return 2
    for w in caught:
        if issubclass(w.category, ConversionWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    listed = ""
    if skipped:
        write_table(skipped, skipped_path(cfg.output))
        listed = f"; skipped {len(skipped)} rows (listed in {skipped_path(cfg.output)})"
    elif skipped_path(cfg.output).exists():   # a stale list from an earlier conversion to this output
        skipped_path(cfg.output).unlink()
    print(f"read {len(rows)} rows from {cfg.input} ({cfg.from_format}); "
          f"wrote {n} rows to {cfg.output} ({cfg.to_format}){listed}")
    return 0
