"""`ttscale label`: Monte Carlo step labels from a policy, written in resumable shards.

Problems are cut into fixed chunks of --chunk-size (before sharding, so chunk c is the same whatever the
sharding); chunk c belongs to shard c % num_shards. Each finished chunk is written atomically as
parts/part-CCCCC.jsonl, so a killed run (even SIGKILL) resumes at the first missing chunk with nothing lost
or duplicated, and rollouts it had already generated come back from the SQLite rollout cache. A single
shard finalises itself; several are joined with `ttscale merge`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ttscale.config import field, run_identity, to_yaml
from ttscale.data.io import write_table
from ttscale.distributed.executor import ExecutorArgs, make_executor
from ttscale.train.labeling.labeler import LabelArgs
from ttscale.train.labeling.label_work import CACHE_NAME, ChunkResult, LabelWork
from ttscale.data.rundir import claim_run_dir, part_path
from ttscale.train.labeling.output import finalize
from ttscale.train.labeling.rollouts import RolloutCache
from ttscale.data.problems import ProblemArgs
from ttscale.inference.loading import GeneratorArgs


@dataclass(kw_only=True)
class Config(ExecutorArgs, LabelArgs, GeneratorArgs, ProblemArgs):
    """Monte Carlo step labels (Math-Shepherd / OmegaPRM) from a policy, resumable and shardable."""
    output_dir: str = field(help="output folder: parts/, dataset/, summary.json, rollout cache", positional=True,
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
    n_chunks = (len(problems) + cfg.chunk_size - 1) // cfg.chunk_size
    claim_run_dir(out, {**run_identity(cfg), "n_chunks": n_chunks}, "labelling")
    (out / f"config-shard{cfg.shard_index}.yaml").write_text(to_yaml(cfg))
    mine = [c for c in range(n_chunks) if c % cfg.num_shards == cfg.shard_index]
    todo = [c for c in mine if not part_path(out, c).exists()]
    print(f"[label] {len(problems)} problems, {len(mine)} parts in shard {cfg.shard_index}/{cfg.num_shards}, "
          f"{len(mine) - len(todo)} already done, method={cfg.method} k={cfg.rollouts}")
    if todo:
        (out / "parts").mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=sum(min(cfg.chunk_size, len(problems) - c * cfg.chunk_size) for c in todo),
                   unit="problem", desc=f"label {cfg.method}")
        cache: RolloutCache | None = None   # the driver's handle, for rollouts a Ray replica sends back
        generated = seconds = 0.0

        def write(c: int, res: ChunkResult) -> None:
            nonlocal cache, generated, seconds
            if res.rollouts:
                cache = cache or RolloutCache(out / CACHE_NAME)
                cache.put_many(res.rollouts)
            part_path(out, c).with_suffix(".stats.json").write_text(json.dumps({"chunk": c, **res.stats}))
            write_table(res.rows, part_path(out, c))  # the rename that marks the part done comes last
            generated, seconds = generated + res.stats["generated"], seconds + res.stats["seconds"]
            bar.update(res.stats["problems"])
            bar.set_postfix(rollouts_per_s=f"{generated / max(seconds, 1e-9):.1f}")

        chunks = ((c, problems.select(range(c * cfg.chunk_size, min((c + 1) * cfg.chunk_size, len(problems))))
                   .to_list()) for c in todo)
        make_executor(cfg).map_parts(chunks, LabelWork(cfg, str(out)), write)
        bar.close()
        if cache:
            cache.close()
    if cfg.num_shards == 1:
        summary = finalize([out], out, export=cfg.export or None)
        print(json.dumps(summary, indent=1))
    else:
        print(f"[label] shard {cfg.shard_index} done; join the shards with: ttscale merge OUT {out} ...")
    return 0
