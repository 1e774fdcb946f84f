"""Join labelling parts into one `datasets` folder and summarise label quality, streaming (flat memory)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import datasets

from ttscale.data.rundir import collect_parts, missing_chunks


def _rows(parts: list[Path]) -> Iterator[dict]:
    for p in parts:
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def summarize(parts: list[Path]) -> dict:
    """Label balance, steps and rollouts per solution, cost, and agreement with true labels if known."""
    n = steps = labelled = positive = rollouts = correct_sol = 0
    agree = truth_total = fe_agree = fe_total = 0
    ids = set()
    for r in _rows(parts):
        if r["id"] in ids:
            raise ValueError(f"duplicate row id {r['id']!r} in the labelling parts")
        ids.add(r["id"])
        n += 1
        steps += len(r["steps"])
        labelled += len(r["labels"])
        positive += sum(1 for x in r["labels"] if x > 0.5)
        rollouts += r["rollouts"]
        correct_sol += bool(r["solution_correct"])
        truth = r.get("true_labels")
        if truth is not None:
            hard = [x > 0.5 for x in r["labels"]]
            agree += sum(h == t for h, t in zip(hard, truth))
            truth_total += len(hard)
            true_first = next((i for i, t in enumerate(truth) if not t), -1)
            fe_agree += int(r["first_error"] == true_first)
            fe_total += 1
    stats = [json.loads(p.with_suffix(".stats.json").read_text()) for p in parts
             if p.with_suffix(".stats.json").exists()]
    seconds = sum(s["seconds"] for s in stats)
    generated = sum(s["generated"] for s in stats)
    summary = {
        "solutions": n,
        "problems": sum(s["problems"] for s in stats),
        "problems_dropped_by_prefilter": sum(s["dropped"] for s in stats),
        "solution_accuracy": correct_sol / n if n else None,
        "steps_per_solution": steps / n if n else None,
        "labelled_steps": labelled,
        "positive_label_fraction": positive / labelled if labelled else None,
        "rollouts": rollouts,
        "rollouts_per_solution": rollouts / n if n else None,
        "rollouts_generated": generated,
        "rollouts_from_cache": sum(s["cached"] for s in stats),
        "generated_tokens": sum(s["tokens"] for s in stats),
        "seconds": seconds,
        "rollouts_per_second": generated / seconds if seconds else None,
    }
    if truth_total:
        summary["label_agreement"] = agree / truth_total
        summary["first_error_agreement"] = fe_agree / fe_total
    return summary


def finalize(run_dirs: list[Path], out: Path, export: str | None = None) -> dict:
    """Write out/dataset (save_to_disk) and out/summary.json from the parts of `run_dirs`."""
    out = Path(out)
    parts = collect_parts(run_dirs)
    missing = missing_chunks(parts, run_dirs)
    if missing:
        raise SystemExit(f"parts {missing[:10]}{'…' if len(missing) > 10 else ''} are missing: run the shards "
                         f"that own them (chunk c belongs to shard c % num_shards) before merging")
    if not parts:
        raise SystemExit(f"no labelled parts found in {', '.join(map(str, run_dirs))}")
    summary = summarize(parts)
    # Arrow-backed build from the jsonl files: rows are never all held in Python memory.
    ds = datasets.load_dataset("json", data_files=[str(p) for p in parts], split="train",
                               cache_dir=str(out / ".hf_cache"))
    tmp = out / ".dataset.tmp"
    ds.save_to_disk(str(tmp))
    final = out / "dataset"
    if final.exists():
        import shutil
        shutil.rmtree(final)
    tmp.rename(final)
    if export:
        from ttscale.data.formats import write_rows
        write_rows(export, _rows(parts), out / "export.jsonl")
        summary["export"] = str(out / "export.jsonl")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
