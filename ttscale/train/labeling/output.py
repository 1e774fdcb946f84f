"""Join labelling parts into one `datasets` folder and summarise label quality, streaming (flat memory)."""
from __future__ import annotations

import heapq
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import datasets

from ttscale.data.io import replace_path, write_text
from ttscale.data.row_errors import check_any_processed, join_sidecars
from ttscale.data.rundir import collect_parts, missing_chunks
from ttscale.train.labeling.shards import Layout


def _rows(parts: list[Path]) -> Iterator[dict]:
    for p in parts:
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def layout_of(run_dir: Path) -> Layout:
    meta = json.loads((Path(run_dir) / "run.json").read_text())
    if "n_problems" not in meta:
        raise SystemExit(f"{run_dir} was labelled by an older ttscale (parts cut by 32-problem chunks): "
                         f"label it again into a new folder")
    return Layout(meta["n_problems"], meta["num_shards"], meta["chunk_size"])


def _keyed_rows(parts: list[Path], layout: Layout) -> Iterator[tuple[int, dict]]:
    """(global problem index, row) for one shard's parts, in increasing index (rows of a problem in order)."""
    chunks = {c: idx for s in range(layout.num_shards) for c, idx in layout.chunks(s)}
    for p in parts:
        c = int(p.stem.split("-")[1])
        ids = json.loads(p.with_suffix(".stats.json").read_text())["problem_ids"]
        index = dict(zip(ids, chunks[c]))
        for row in _rows([p]):
            yield index[row["problem_id"]], row


def ordered_rows(parts: list[Path], layout: Layout) -> Iterator[dict]:
    """The rows of `parts` in problem order (what one unsharded run writes), streamed shard by shard."""
    owner = layout.shard_of_chunk()
    by_shard: dict[int, list[Path]] = {}
    for p in parts:
        by_shard.setdefault(owner[int(p.stem.split("-")[1])], []).append(p)
    # Each shard's stream is sorted by problem index and a problem lives in one shard, so merging the
    # streams by index restores problem order with each problem's rows kept together and in order.
    streams = [_keyed_rows(ps, layout) for _, ps in sorted(by_shard.items())]
    for _, row in heapq.merge(*streams, key=lambda t: t[0]):
        yield row


def write_export(fmt: str, parts: list[Path], layout: Layout, path: Path) -> None:
    from ttscale.data.formats import write_rows

    write_rows(fmt, ordered_rows(parts, layout), path)


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
    cached = sum(s["cached"] for s in stats)
    summary = {
        "solutions": n,
        "problems": sum(s["problems"] for s in stats),
        "problems_dropped_by_prefilter": sum(s["dropped"] for s in stats),
        "skipped": sum(s.get("skipped", 0) for s in stats),   # could not be labelled (--on-error skip)
        "solution_accuracy": correct_sol / n if n else None,
        "steps_per_solution": steps / n if n else None,
        "labelled_steps": labelled,
        "positive_label_fraction": positive / labelled if labelled else None,
        # label_rollouts: what the rows record as spent on their labels (a prompt repeated across rows counts
        # each time). completions_*: what the progress bar counts: every completion the policy was asked
        # for (sampled solutions + rollouts), generated now or served from the sample store.
        "label_rollouts": rollouts,
        "label_rollouts_per_solution": rollouts / n if n else None,
        "completions": generated + cached,
        "completions_generated": generated,
        "completions_from_cache": cached,
        "generated_tokens": sum(s["tokens"] for s in stats),
        "seconds": seconds,
        "completions_generated_per_second": generated / seconds if seconds else None,
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
    layout = layout_of(run_dirs[0])
    if missing:
        owner = layout.shard_of_chunk()
        shards = sorted({owner[c] for c in missing})
        raise SystemExit(f"parts {missing[:10]}{'…' if len(missing) > 10 else ''} are missing: run shard(s) "
                         f"{', '.join(map(str, shards))} (--shard-index) to the end before merging")
    if not parts:
        raise SystemExit(f"no labelled parts found in {', '.join(map(str, run_dirs))}")
    summary = summarize(parts)
    dropped = summary["problems_dropped_by_prefilter"]
    if dropped:
        print(f"[label] the pre-filter dropped {dropped} of {summary['problems']} problems: their sampled solutions "
              f"were all right or all wrong (pass rate <= --min-pass or >= --max-pass), so their steps carry no "
              f"signal; --prefilter false labels them anyway")
    if summary["solutions"] == 0 and dropped:
        for d in run_dirs:   # they hold no row: nothing to resume, and --prefilter false must start afresh
            shutil.rmtree(Path(d) / "parts", ignore_errors=True)
            (Path(d) / "run.json").unlink(missing_ok=True)
        raise SystemExit(f"nothing to label: the pre-filter dropped all {dropped} problems; use --prefilter false "
                         f"or harder problems")
    out.mkdir(parents=True, exist_ok=True)
    skipped = join_sidecars(parts, out)
    check_any_processed(summary["problems"] - summary["skipped"], skipped)
    # Arrow-backed build from one jsonl in problem order: rows are never all held in Python memory. The
    # datasets cache lives in a temporary folder that is removed, so no .hf_cache is left in `out`.
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmpdir:
        merged = Path(tmpdir) / "rows.jsonl"
        with open(merged, "w", encoding="utf-8") as f:
            for row in ordered_rows(parts, layout):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        ds = datasets.load_dataset("json", data_files=str(merged), split="train", cache_dir=str(Path(tmpdir) / "cache"))
        tmp = out / ".dataset.tmp"
        ds.save_to_disk(str(tmp))
        del ds
    replace_path(tmp, out / "dataset")
    if export:
        write_export(export, parts, layout, out / "export.jsonl")
        summary["export"] = str(out / "export.jsonl")
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary
