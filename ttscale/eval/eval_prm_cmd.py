"""`ttscale eval-prm --data FILE --prm DIR`: ProcessBench-style evaluation of a PRM.

Rows are {problem, steps, label} with label = index of the first wrong step or -1 (optional id and a
split/source column). The PRM scores every step (through ttscale.inference.scorers, batched); its
predicted first error is the first step with score <= threshold. Per split: accuracy on erroneous rows
(predicted first error == label), on correct rows (no step predicted wrong), and their harmonic mean F1.
`f1` in the summary is the mean of the per-split F1s (how ProcessBench averages its subsets).
The threshold is given, or chosen to maximise F1 on one named split (then say so when reporting).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.config import field
from ttscale.inference.scorers_load import ScorerArgs
from ttscale.train.prm_metrics import best_threshold, first_error, first_error_scores

SPLIT_COLUMNS = ("split", "source")


@dataclass(kw_only=True)
class Config(ScorerArgs):
    """Evaluate a PRM on ProcessBench-format data: first-error accuracy on erroneous/correct rows and F1."""
    data: str = field(help="ProcessBench-format rows {problem, steps, label (first wrong step or -1)} "
                      "(.jsonl, .parquet or a datasets folder); an optional split or source column groups them")
    threshold: float | None = field(None, help="a step is predicted wrong when its score is <= this; default: "
                                    "chosen to maximise F1 on --threshold-split")
    threshold_split: str = field("all", help="split whose F1 picks the threshold when --threshold is not given "
                                 "('all' = every row pooled)")
    predictions: str = field("prm_eval_predictions.jsonl", help="where per-row predictions are written (jsonl)")
    summary: str | None = field(None, help="also write the JSON summary to this file")
    limit: int = field(0, help="evaluate only the first N rows (0 = all)")


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
            raise ValueError(f"{where}: expected an object {{problem, steps, label}}, got {type(rec).__name__}")
        problem, steps, label = rec.get("problem"), rec.get("steps"), rec.get("label")
        if not isinstance(problem, str):
            raise ValueError(f"{where}: field 'problem': expected a string, got {type(problem).__name__}")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise ValueError(f"{where}: field 'steps': expected a non-empty list of strings")
        if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
            raise ValueError(f"{where}: field 'label': {label!r} is not -1 (all correct) or the index of the "
                             f"first wrong step (the row has {len(steps)} steps)")
        split = next((str(rec[c]) for c in SPLIT_COLUMNS if rec.get(c) not in (None, "")), "all")
        rows.append({"id": str(rec.get("id", i)), "problem": problem, "steps": steps, "label": label,
                     "split": split})
    if not rows:
        raise ValueError(f"{path}: no rows to evaluate")
    return rows


def choose_threshold(rows: list[dict], scores: list[list[float]], split: str) -> tuple[float, float]:
    picked = [(s, r["label"]) for r, s in zip(rows, scores) if split == "all" or r["split"] == split]
    if not picked:
        known = sorted({r["split"] for r in rows})
        raise ValueError(f"--threshold-split {split!r} has no rows; splits in the data: {', '.join(known)} (or 'all')")
    return best_threshold([s for s, _ in picked], [k for _, k in picked])


def evaluate(rows: list[dict], scores: list[list[float]], threshold: float) -> dict[str, Any]:
    """Per-split and pooled first-error scores at `threshold`; adds `pred` to each row."""
    for row, s in zip(rows, scores):
        row["scores"], row["pred"] = s, first_error(s, threshold)
        row["match"] = row["pred"] == row["label"]
    splits = {}
    for name in sorted({r["split"] for r in rows}):
        part = [r for r in rows if r["split"] == name]
        splits[name] = first_error_scores([r["pred"] for r in part], [r["label"] for r in part])
    overall = first_error_scores([r["pred"] for r in rows], [r["label"] for r in rows])
    return {"f1": sum(s["f1"] for s in splits.values()) / len(splits), "splits": splits, "overall": overall}


def run(cfg: Config) -> int:
    from ttscale.data.io import write_table

    rows = read_processbench(cfg.data, cfg.limit)
    if not cfg.prm:
        raise SystemExit("eval-prm: --prm is required (a PRM checkpoint folder, e.g. the output of train-prm)")
    scorer = cfg.build()
    scores = scorer.score([(r["problem"], r["steps"]) for r in rows])
    if cfg.threshold is None:
        threshold, f1_at = choose_threshold(rows, scores, cfg.threshold_split)
        source = f"max F1 on split {cfg.threshold_split!r} ({f1_at:.4f})"
    else:
        threshold, source = cfg.threshold, "given"
    result = evaluate(rows, scores, threshold)
    write_table(rows, cfg.predictions)
    summary = {"prm": cfg.prm, "data": cfg.data, "rows": len(rows), "threshold": threshold,
               "threshold_from": source, **result, "predictions": str(Path(cfg.predictions)),
               "scored_tokens": scorer.usage.tokens}
    text = json.dumps(summary, indent=2)
    if cfg.summary:
        Path(cfg.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.summary).write_text(text + "\n")
    print(text)
    return 0
