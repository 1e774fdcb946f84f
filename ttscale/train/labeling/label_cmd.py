"""`ttscale label`: Monte Carlo step labels from a policy, written in resumable shards.

Problems are cut into fixed chunks of --chunk-size (before sharding, so chunk c is the same whatever the
sharding); chunk c belongs to shard c % num_shards. Each finished chunk is written atomically as
parts/part-CCCCC.jsonl, so a killed run (even SIGKILL) resumes at the first missing chunk with nothing lost
or duplicated, and rollouts it had already generated come back from the SQLite rollout cache. A single
shard finalises itself; several are joined with `ttscale merge`.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ttscale.config import field, to_yaml
from ttscale.data.io import write_table
from ttscale.train.labeling.labeler import LabelSettings, label_chunk
from ttscale.train.labeling.methods import METHODS
from ttscale.data.rundir import claim_run_dir, part_path
from ttscale.train.labeling.output import finalize
from ttscale.train.labeling.rollouts import RolloutCache, RolloutEngine
from ttscale.data.problems import ProblemArgs
from ttscale.inference.loading import GeneratorArgs


@dataclass(kw_only=True)
class Config(GeneratorArgs, ProblemArgs):
    """Monte Carlo step labels (Math-Shepherd / OmegaPRM) from a policy, resumable and shardable."""
    output_dir: str = field(help="output folder: parts/, dataset/, summary.json, rollout cache", positional=True)
    method: str = field("per-step", help="per-step: roll out after every step (Math-Shepherd); first-error: "
                        "scan steps in order, stop at the first prefix with no correct rollout; binary-search: "
                        "find that first error in O(k log M) rollouts (OmegaPRM)", choices=list(METHODS))
    num_solutions: int = field(4, help="S: solutions sampled per problem (ignored with --solutions-field)")
    rollouts: int = field(8, help="k: rollouts per probed step prefix")
    temperature: float = field(0.8, help="sampling temperature for solutions and rollouts")
    top_p: float = field(1.0, help="nucleus sampling for solutions and rollouts")
    max_new_tokens: int = field(256, help="token limit per solution / rollout")
    seed: int = field(0, help="sampling seed: same seed, same labels")
    threshold: float = field(0.0, help="τ: a step is correct when its rollout success rate > τ (0 = any rollout correct)")
    label_mode: str = field("hard", help="what the `labels` column holds: hard (0/1 by τ) or soft (the success "
                            "rate); mc_correct/mc_total are always stored so either can be re-derived",
                            choices=["hard", "soft"])
    prefilter: bool = field(True, help="drop problems whose sampled solutions' pass rate is <= --min-pass or "
                            ">= --max-pass (no step signal there)")
    min_pass: float = field(0.0, help="pre-filter lower bound (exclusive)")
    max_pass: float = field(1.0, help="pre-filter upper bound (exclusive)")
    solutions_field: str = field("", help="label the solutions in this problem column (str or list of str) "
                                 "instead of sampling them")
    step_delimiter: str = field("\n\n", help="step separator in solutions")
    chunk_size: int = field(32, help="problems per written part (a killed run redoes at most one part)")
    rollout_batch: int = field(64, help="prompts per generate call (each with k rollouts)")
    num_shards: int = field(1, help="split the problems across this many machines/processes")
    shard_index: int = field(0, help="which shard this process labels (0-based)")
    export: str = field("", help="also export the dataset in this format (trl-stepwise, math-shepherd, "
                        "processbench, ...): written to OUTPUT_DIR/export.jsonl")

    def __post_init__(self):
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"--shard-index {self.shard_index} must be in [0, --num-shards {self.num_shards})")
        if self.allow_missing_answer:
            raise ValueError("labelling grades rollouts against the gold answer: --allow-missing-answer is not allowed")
        if self.rollouts < 1 or self.num_solutions < 1:
            raise ValueError("--rollouts and --num-solutions must be >= 1")

    def settings(self) -> LabelSettings:
        return LabelSettings(
            method=self.method, num_solutions=self.num_solutions, rollouts=self.rollouts,
            temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=self.seed,
            threshold=self.threshold, label_mode=self.label_mode, min_pass=self.min_pass,
            max_pass=self.max_pass, prefilter=self.prefilter, delimiter=self.step_delimiter)


# Options that change labels: a resumed run must use the same ones as the parts already written.
_RUN_KEYS = ("method", "num_solutions", "rollouts", "temperature", "top_p", "max_new_tokens", "seed", "threshold",
             "label_mode", "prefilter", "min_pass", "max_pass", "solutions_field", "step_delimiter", "chunk_size",
             "policy")


def run(cfg: Config) -> int:
    out = Path(cfg.output_dir)
    problems = cfg.load()
    n_chunks = (len(problems) + cfg.chunk_size - 1) // cfg.chunk_size
    claim_run_dir(out, {**{k: getattr(cfg, k) for k in _RUN_KEYS}, "n_chunks": n_chunks}, "labelling")
    (out / f"config-shard{cfg.shard_index}.yaml").write_text(to_yaml(cfg))
    mine = [c for c in range(n_chunks) if c % cfg.num_shards == cfg.shard_index]
    todo = [c for c in mine if not part_path(out, c).exists()]
    print(f"[label] {len(problems)} problems, {len(mine)} parts in shard {cfg.shard_index}/{cfg.num_shards}, "
          f"{len(mine) - len(todo)} already done, method={cfg.method} k={cfg.rollouts}")
    if todo:
        (out / "parts").mkdir(parents=True, exist_ok=True)
        generator = cfg.build()
        cache = RolloutCache(out / "rollout_cache.sqlite")
        engine = RolloutEngine(generator, model_id=cfg.policy, cache=cache, batch_prompts=cfg.rollout_batch)
        st = cfg.settings()
        start = time.time()
        bar = tqdm(total=sum(min(cfg.chunk_size, len(problems) - c * cfg.chunk_size) for c in todo),
                   unit="problem", desc=f"label {cfg.method}")

        def on_batch(n: int) -> None:
            rate = engine.stats.generated / max(time.time() - start, 1e-9)
            bar.set_postfix(rollouts=engine.stats.generated + engine.stats.cached, per_s=f"{rate:.1f}")

        for c in todo:
            before = dataclasses.replace(engine.stats)
            t0 = time.time()
            chunk = problems.select(range(c * cfg.chunk_size, min((c + 1) * cfg.chunk_size, len(problems))))
            rows, dropped = label_chunk(chunk.to_list(), engine, generator.tokenizer, st,
                                        solutions_field=cfg.solutions_field or None, on_batch=on_batch)
            after = dataclasses.asdict(engine.stats)
            stats = {"chunk": c, "problems": len(chunk), "dropped": dropped, "seconds": time.time() - t0,
                     **{k: v - getattr(before, k) for k, v in after.items()}}
            part_path(out, c).with_suffix(".stats.json").write_text(json.dumps(stats))
            write_table(rows, part_path(out, c))  # the rename that marks the part done comes last
            bar.update(len(chunk))
        bar.close()
        cache.close()
    if cfg.num_shards == 1:
        summary = finalize([out], out, export=cfg.export or None)
        print(json.dumps(summary, indent=1))
    else:
        print(f"[label] shard {cfg.shard_index} done; join the shards with: ttscale merge OUT {out} ...")
    return 0
