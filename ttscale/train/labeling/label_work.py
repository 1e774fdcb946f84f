"""What one labelling replica does (the executor's `Work`): load the policy once, then label chunks.

In-process the replica writes rollouts straight into the run's sample store; a Ray replica reads that
store and returns its new rollouts with the chunk for the driver to store (see rollouts.py). A problem
that cannot be labelled is skipped or stops the job (--on-error, see data.row_errors).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.data.row_errors import run_per_problem
from ttscale.distributed.executor import Work
from ttscale.train.labeling.labeler import label_chunk
from ttscale.inference.sample_store import Held, SampleStore, StoreOverlay
from ttscale.train.labeling.rollouts import RolloutEngine

CACHE_NAME = "samples.sqlite"


@dataclass
class ChunkResult:
    rows: list[dict]
    stats: dict[str, Any]                                         # what the part's .stats.json records
    rollouts: dict[str, Held] = dataclasses.field(default_factory=dict)   # for the driver's store
    skipped: list[dict] = dataclasses.field(default_factory=list)   # {id, stage, reason} per problem lost


@dataclass
class LabelWork(Work):
    cfg: Any        # label_cmd.Config: LabelArgs + GeneratorArgs + OnErrorArgs (+ rollout_batch)
    output_dir: str
    model: str      # the policy's sample-store id, taken once by the driver (inference.sample_store.model_id)

    def setup(self, replica: int | None) -> tuple[Any, RolloutEngine]:
        generator = self.cfg.build()
        path = Path(self.output_dir) / CACHE_NAME
        cache = SampleStore(path) if replica is None else StoreOverlay(SampleStore.open_readonly(path))
        engine = RolloutEngine(generator, model_id=self.model, cache=cache,
                               batch_prompts=self.cfg.rollout_batch)
        return generator, engine

    def run(self, state: tuple[Any, RolloutEngine], problems: list[dict]) -> ChunkResult:
        generator, engine = state
        before, t0 = dataclasses.replace(engine.stats), time.time()
        done, skipped = run_per_problem(problems, lambda ps: label_chunk(ps, engine, generator.tokenizer, self.cfg),
                                        stage="label", on_error=self.cfg.on_error)
        rows = [row for _, (rs, _) in done for row in rs]
        stats = {"problems": len(problems), "problem_ids": [str(p["id"]) for p in problems],
                 "dropped": sum(d for _, (_, d) in done), "skipped": len(skipped), "seconds": time.time() - t0,
                 **{k: v - getattr(before, k) for k, v in dataclasses.asdict(engine.stats).items()}}
        fresh = engine.cache.drain() if isinstance(engine.cache, StoreOverlay) else {}
        return ChunkResult(rows, stats, fresh, skipped)

    def close(self, state: tuple[Any, RolloutEngine]) -> None:
        state[1].cache.close()
