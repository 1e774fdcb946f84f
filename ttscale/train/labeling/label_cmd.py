"""`ttscale label`: Monte Carlo step labels from a policy, written in resumable shards.

Problem i belongs to shard i % num_shards; each shard cuts its problems into chunks of --chunk-size with
globally unique ids (shards.py). Each finished chunk is written atomically as parts/part-CCCCC.jsonl, so a
killed run (even SIGKILL) resumes at the first missing chunk with nothing lost or duplicated, and rollouts
it had already generated come back from the SQLite sample store (samples.sqlite). A single shard finalises itself; several
are joined with `ttscale merge`, which puts the rows back in problem order (= one unsharded run). A problem
that cannot be labelled is skipped to skipped.jsonl or stops the job (--on-error, data.row_errors).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ttscale.config import field, run_identity, to_yaml
from ttscale.data.io import write_table
from ttscale.data.row_errors import OnErrorArgs, write_sidecar
from ttscale.distributed.executor import ExecutorArgs, make_executor
from ttscale.train.labeling.labeler import LabelArgs
from ttscale.train.labeling.label_work import CACHE_NAME, ChunkResult, LabelWork
from ttscale.data.io import write_text
from ttscale.data.rundir import RunDirArgs, claim_run_dir, fingerprint_model, fingerprint_rows, part_path
from ttscale.train.labeling.output import finalize, layout_of, write_export
from ttscale.train.labeling.shards import Layout
from ttscale.inference.sample_store import SampleStore, model_id
from ttscale.data.problems import ProblemArgs
from ttscale.inference.loading import GeneratorArgs


@dataclass(kw_only=True)
class Config(RunDirArgs, OnErrorArgs, ExecutorArgs, LabelArgs, GeneratorArgs, ProblemArgs):
    """Monte Carlo step labels (Math-Shepherd / OmegaPRM) from a policy, resumable and shardable."""
    output_dir: str = field(help="output folder: parts/, dataset/, summary.json, sample store (samples.sqlite)", positional=True,
                            run_key=False)
    chunk_size: int = field(32, ge=1, help="problems per written part (a killed run redoes at most one part)")
    rollout_batch: int = field(64, ge=1, run_key=False, help="prompts per generate call (each with k rollouts)")
    num_shards: int = field(1, ge=1, run_key=False, help="split the problems across this many machines/processes")
    shard_index: int = field(0, ge=0, run_key=False, help="which shard this process labels (0-based)")
    export: str = field("", run_key=False, help="also export the dataset in this format (trl-stepwise, "
                        "math-shepherd, processbench, ...): written to OUTPUT_DIR/export.jsonl")

    def __post_init__(self):
        if self.shard_index >= self.num_shards:
            raise ValueError(f"--shard-index {self.shard_index} must be in [0, --num-shards {self.num_shards})")
        if self.allow_missing_answer:
            raise ValueError("labelling grades rollouts against the gold answer: --allow-missing-answer is not allowed")


def run(cfg: Config) -> int:
    out = Path(cfg.output_dir)
    problems = cfg.load()
    layout = Layout(len(problems), cfg.num_shards, cfg.chunk_size)
    # The layout decides which chunk id holds which problems: a resume or a merge must see the same one.
    claim_run_dir(out, {**run_identity(cfg), "n_chunks": layout.n_chunks, "n_problems": len(problems),
                        "num_shards": cfg.num_shards}, "labelling",
                  inputs={"problems": fingerprint_rows(problems), "policy": fingerprint_model(cfg.policy)},
                  allow_changed=cfg.allow_changed_inputs)
    write_text(out / f"config-shard{cfg.shard_index}.yaml", to_yaml(cfg))
    mine = layout.chunks(cfg.shard_index)
    todo = [(c, idx) for c, idx in mine if not part_path(out, c).exists()]
    print(f"[label] {len(problems)} problems, {len(layout.shard_problems(cfg.shard_index))} in shard "
          f"{cfg.shard_index}/{cfg.num_shards} ({len(mine)} parts, {len(mine) - len(todo)} already done), "
          f"method={cfg.method} k={cfg.rollouts}")
    if todo:
        (out / "parts").mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=sum(len(idx) for _, idx in todo), unit="problem", desc=f"label {cfg.method}")
        cache: SampleStore | None = None   # the driver's handle, for rollouts a Ray replica sends back
        counts = {"generated": 0, "cached": 0, "seconds": 0.0}

        def write(c: int, res: ChunkResult) -> None:
            nonlocal cache
            if res.rollouts:
                cache = cache or SampleStore(out / CACHE_NAME)
                cache.put_many(res.rollouts)
            # problem_ids let `merge` put each row back at its problem's index (output.ordered_rows)
            part_path(out, c).with_suffix(".stats.json").write_text(json.dumps({"chunk": c, **res.stats}))
            write_sidecar(part_path(out, c), res.skipped)
            write_table(res.rows, part_path(out, c))  # the rename that marks the part done comes last
            for k in counts:
                counts[k] += res.stats[k]
            bar.update(res.stats["problems"])
            # the same names and counts as the summary's completions_generated / completions_from_cache
            bar.set_postfix(generated=counts["generated"], from_cache=counts["cached"],
                            per_s=f"{counts['generated'] / max(counts['seconds'], 1e-9):.1f}")

        chunks = ((c, problems.select(idx).to_list()) for c, idx in todo)
        make_executor(cfg).map_parts(chunks, LabelWork(cfg, str(out), model_id(cfg.policy)), write)
        bar.close()
        if cache:
            cache.close()
    if cfg.num_shards == 1:
        summary = finalize([out], out, export=cfg.export or None)
        print(json.dumps(summary, indent=1))
        print(f"[label] wrote {out / 'dataset'} and {out / 'summary.json'} ({summary['solutions']} labelled solutions)",
              file=sys.stderr)   # stdout stays the summary's JSON
    else:
        if cfg.export:  # this shard's own rows; `merge --export` writes the joined one
            parts = [part_path(out, c) for c, _ in mine]
            write_export(cfg.export, parts, layout_of(out), out / "export.jsonl")
            print(f"[label] shard export: {out / 'export.jsonl'}")
        print(f"[label] shard {cfg.shard_index} done; join the shards with: ttscale merge OUT {out} ...")
    return 0
