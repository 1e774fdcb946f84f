"""`ttscale eval-prm --data FILE --prm DIR`: ProcessBench-style evaluation of a PRM.

Rows are {problem, steps, label} with label = index of the first wrong step or -1 (optional id and a
split/source column). The PRM scores every step (through ttscale.inference.scorers, batched); its
predicted first error is the first step with score <= threshold. Per split: accuracy on erroneous rows
(predicted first error == label), on correct rows (no step predicted wrong), and their harmonic mean F1.
`f1` in the summary is the mean of the per-split F1s (how ProcessBench averages its subsets). Step AUC
and step accuracy are computed on the step labels each row implies (see ttscale.eval.prm_rows).

The threshold is never fitted on the rows it is reported on: it is fixed (--threshold, default 0.5) or
fitted to maximise F1 on another file (--threshold-from). A row that cannot be scored is skipped (or
truncated, or stops the job: --on-error) and listed in OUT/skipped.jsonl.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.config import field
from ttscale.errors import UserError
from ttscale.eval.prm_rows import ON_ERROR, first_error_judgeable, score_rows, step_metrics
from ttscale.inference.scorers_load import ScorerArgs
from ttscale.train.prm_metrics import best_threshold, first_error, first_error_scores

SPLIT_COLUMNS = ("split", "source")
DEFAULT_THRESHOLD = 0.5


@dataclass(kw_only=True)
class Config(ScorerArgs):
    """Evaluate a PRM on ProcessBench-format data: first-error F1, step AUC and step accuracy."""
    data: str = field(help="ProcessBench-format rows {problem, steps, label (first wrong step or -1)} "
                      "(.jsonl, .parquet or a datasets folder); an optional split or source column groups them")
    threshold: float | None = field(None, ge=0, le=1, help=f"a step is predicted wrong when its score is <= this (default "
                                    f"{DEFAULT_THRESHOLD} unless --threshold-from)")
    threshold_from: str | None = field(None, help="another ProcessBench-format file: the threshold maximising F1 "
                                       "there is applied to --data (never fitted on the rows it reports)")
    on_error: str = field("skip", choices=list(ON_ERROR),
                          help="a row that cannot be scored (longer than the PRM's max length, ...): skip it, "
                          "truncate it to the steps that fit (over-long rows only; others are skipped), or fail; "
                          "skipped rows go to OUT/skipped.jsonl")
    out: str | None = field(None, help="output folder: summary.json, predictions.jsonl, skipped.jsonl (default: "
                            "the folder of --summary if given, else prm_eval)")
    predictions: str | None = field(None, help="where per-row predictions are written (default OUT/predictions.jsonl)")
    summary: str | None = field(None, help="where the JSON summary is written (default OUT/summary.json)")
    limit: int = field(0, ge=0, help="evaluate only the first N rows (0 = all)")
    threads: int = field(0, ge=0, help="CPU threads for torch (0 = leave torch's default)")

    def __post_init__(self) -> None:
        if self.threshold is not None and self.threshold_from:
            raise UserError("pass --threshold or --threshold-from, not both")
        if self.limit < 0:
            raise UserError(f"--limit must be >= 0, got {self.limit}")

    def paths(self) -> tuple[Path, Path, Path]:
        """(output folder, predictions file, summary file)."""
        out = Path(self.out) if self.out else Path(self.summary).parent if self.summary else Path("prm_eval")
        return (out, Path(self.predictions) if self.predictions else out / "predictions.jsonl",
                Path(self.summary) if self.summary else out / "summary.json")


def read_processbench(path: str, limit: int = 0) -> list[dict[str, Any]]:
    """Validated rows {id, problem, steps, label, split}; errors name the file, row and field."""
    from ttscale.data.io import read_jsonl, read_table, table_kind

    records = read_jsonl(path) if table_kind(path) == "jsonl" else read_table(path).to_list()
    if limit > 0:
        records = records[:limit]
    rows = []
    for i, rec in enumerate(records):
        where = f"{path}: row {i + 1}"
        if not isinstance(rec, dict):
            raise UserError(f"{where}: expected an object {{problem, steps, label}}, got {type(rec).__name__}")
        problem, steps, label = rec.get("problem"), rec.get("steps"), rec.get("label")
        if not isinstance(problem, str):
            raise UserError(f"{where}: field 'problem': expected a string, got {type(problem).__name__}")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise UserError(f"{where}: field 'steps': expected a non-empty list of strings")
        if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
            raise UserError(f"{where}: field 'label': {label!r} is not -1 (all correct) or the index of the "
                             f"first wrong step (the row has {len(steps)} steps)")
        split = next((str(rec[c]) for c in SPLIT_COLUMNS if rec.get(c) not in (None, "")), "all")
        rows.append({"id": str(rec.get("id", i)), "problem": problem, "steps": steps, "label": label,
                     "split": split})
    if not rows:
        raise UserError(f"{path}: no rows to evaluate")
    return rows


def evaluate(rows: list[dict], threshold: float) -> dict[str, Any]:
    """Per-split and pooled first-error and step scores at `threshold` of scored rows; adds `pred` to each.

    First-error F1 counts only rows whose verdict is known (a truncated row only when its first error was
    scored); step metrics use every scored step that carries an implied label.
    """
    scored = [r for r in rows if r["scores"] is not None]
    for row in scored:
        row["pred"] = first_error(row["scores"], threshold)
        row["in_f1"] = first_error_judgeable(row)
        row["match"] = row["pred"] == row["label"] if row["in_f1"] else None

    def scores(part: list[dict]) -> dict[str, Any]:
        judged = [r for r in part if r["in_f1"]]
        out = first_error_scores([r["pred"] for r in judged], [r["label"] for r in judged])
        return {**out, **step_metrics(part, threshold)}

    splits = {name: scores([r for r in scored if r["split"] == name]) for name in sorted({r["split"] for r in scored})}
    overall = scores(scored)
    return {"f1": sum(s["f1"] for s in splits.values()) / len(splits), "step_auc": overall["step_auc"],
            "step_accuracy": overall["step_accuracy"], "splits": splits, "overall": overall}


def fit_threshold(rows: list[dict]) -> tuple[float, float]:
    """(threshold maximising first-error F1 on these scored rows, that F1)."""
    fit = [r for r in rows if r["scores"] is not None and first_error_judgeable(r)]
    if not fit:
        raise UserError("--threshold-from: no row there could be scored in full, so no threshold can be fitted")
    return best_threshold([r["scores"] for r in fit], [r["label"] for r in fit])


def run(cfg: Config) -> int:
    from ttscale.data.io import write_table

    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    rows = read_processbench(cfg.data, cfg.limit)
    fit_rows = read_processbench(cfg.threshold_from) if cfg.threshold_from else []
    if not cfg.prm:
        raise UserError("--prm is required (a PRM checkpoint folder, e.g. the output of train-prm)")
    scorer = cfg.build()
    skipped = score_rows(scorer, rows, cfg.on_error, cfg.data)
    fit_skipped = score_rows(scorer, fit_rows, cfg.on_error, cfg.threshold_from) if fit_rows else []
    fit: dict[str, Any] | None = None
    if cfg.threshold_from:
        threshold, f1_there = fit_threshold(fit_rows)
        fit = {"file": cfg.threshold_from, "rows": len(fit_rows), "skipped": len(fit_skipped), "f1": f1_there}
    else:
        threshold = DEFAULT_THRESHOLD if cfg.threshold is None else cfg.threshold
    result = evaluate(rows, threshold)
    out, predictions, summary_path = cfg.paths()
    write_table([r for r in rows if r["scores"] is not None], predictions)
    write_table(skipped + fit_skipped, out / "skipped.jsonl")
    summary = {"prm": cfg.prm, "data": cfg.data, "rows": len(rows),
               "scored": sum(r["scores"] is not None for r in rows), "skipped": len(skipped),
               "truncated": sum(bool(r.get("truncated")) and r["scores"] is not None for r in rows),
               "on_error": cfg.on_error, "threshold": threshold,
               "threshold_source": "threshold-from" if fit else "fixed", "threshold_fit": fit, **result,
               "predictions": str(predictions), "skipped_rows": str(out / "skipped.jsonl"),
               "scored_tokens": scorer.usage.tokens}
    text = json.dumps(summary, indent=2)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(text + "\n")
    print(text)
    # stdout stays the summary's JSON; where it wrote goes beside the progress bars
    print(f"eval-prm: wrote {summary_path}, {predictions} and {out / 'skipped.jsonl'}", file=sys.stderr)
    return 0
