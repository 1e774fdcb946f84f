"""`ttscale search OUTPUT_DIR --strategy S --budget N ...`: spend test-time compute on a problem set.

Problems are cut into batches of --problems-per-batch; each batch is searched with all its problems in the
same model calls and written atomically as parts/part-CCCCC.jsonl, so a killed run resumes at the first
missing batch. When all parts exist they are joined into OUTPUT_DIR/dataset (see search.output) with
summary.json; the resolved options are in config.yaml. Invalid options fail before any model loads.
A problem that cannot be searched is skipped to skipped.jsonl or stops the job (--on-error, data.row_errors).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ttscale.config import field, overrides, run_identity, to_yaml, tweak
from ttscale.data.problems import ProblemArgs
from ttscale.inference.loading import GeneratorArgs, ReviserArgs
from ttscale.inference.sampling_args import SamplingArgs
from ttscale.inference.scorers_load import ScorerArgs
from ttscale.data.row_errors import OnErrorArgs, run_per_problem, write_sidecar
from ttscale.data.io import write_text
from ttscale.data.rundir import RunDirArgs, claim_run_dir, fingerprint_model, fingerprint_rows, part_path
from ttscale.distributed.executor import ExecutorArgs, Work, make_executor
from ttscale.search.output import finalize, result_rows, write_part
from ttscale.search.search_args import SearchArgs
from ttscale.search.strategy import Strategy
from ttscale.search.types import SearchContext, SearchSettings


@dataclass(kw_only=True)  # keyword-only: a positional OUTPUT_DIR may follow inherited defaults
@overrides(temperature=tweak(help="sampling temperature (rollouts for lookahead are greedy)"),
           max_new_tokens=tweak(help="token limit per full sample or revision attempt"),
           seed=tweak(help="sampling seed: same seed, same search"))
class Config(RunDirArgs, OnErrorArgs, ExecutorArgs, SearchArgs, SamplingArgs, ReviserArgs, GeneratorArgs, ScorerArgs,
             ProblemArgs):
    """Test-time search (best-of-N, beam, lookahead, DVTS, particle filtering, REBASE, MCTS, adaptive majority,
    revisions) with a policy, a PRM and a revision model."""
    output_dir: str = field(help="output folder: parts/, dataset/, summary.json, config.yaml", positional=True,
                            run_key=False)
    policy: str | None = field(None, help="policy model: a local save_pretrained dir, a hub id, a PEFT adapter dir, "
                               "a .gguf file, or (backend openai) the served model name; not needed for revisions")
    problems_per_batch: int = field(16, ge=1, help="problems searched together (and written as one part)")
    sample_store: str | None = field(None, run_key=False, help="a SQLite file of completions shared between runs "
                                     "(created if missing): a sample another run drew with the same model, prompt "
                                     "and sampling settings is read back instead of drawn again, and charged as "
                                     "drawn (inference.sample_store); every replica must be able to open it")

    def __post_init__(self):
        self.check_models()


def build_context(cfg: Config, need_policy: bool) -> tuple[SearchContext, SearchSettings]:
    """Load the models `cfg` names (any config with the search, model and sampling option groups: `serve` too)."""
    reviser, max_attempts = None, 4
    reviser_args = cfg.reviser_generator_args(cfg)
    if reviser_args is not None:
        from ttscale.data.revision_format import read_revision_info

        max_attempts = read_revision_info(cfg.revision_model)["max_attempts"]
        reviser = reviser_args.build()
    settings = cfg.settings(max_attempts)
    generator = cfg.build() if cfg.policy and need_policy else None
    scorer = ScorerArgs.build(cfg) if cfg.prm else None
    return SearchContext(generator=generator, scorer=scorer, reviser=reviser, settings=settings), settings


@dataclasses.dataclass
class SearchWork(Work):
    """One search replica (the executor's Work): policy, PRM and reviser loaded once, then batches of problems."""
    cfg: Config

    def setup(self, replica: int | None) -> tuple[Strategy, SearchContext, dict[str, Any]]:
        strategy = self.cfg.make_strategy()
        ctx, settings = build_context(self.cfg, strategy.needs_policy)
        if self.cfg.sample_store:
            from ttscale.inference.sample_store import SampleStore, StoredGenerator, model_id

            store = SampleStore(self.cfg.sample_store)
            ctx = dataclasses.replace(
                ctx, generator=ctx.generator and StoredGenerator(ctx.generator, store, model_id(self.cfg.policy)),
                reviser=ctx.reviser and StoredGenerator(ctx.reviser, store, model_id(self.cfg.revision_model)))
        strategy.validate(self.cfg.budget, ctx)
        return strategy, ctx, {**dataclasses.asdict(settings), **self.cfg.strategy_options()}

    def run(self, state: tuple[Strategy, SearchContext, dict[str, Any]], batch: list[dict]
            ) -> tuple[list[dict], list[dict]]:
        """(result rows, {id, stage, reason} per problem skipped)."""
        strategy, ctx, params = state
        done, skipped = run_per_problem(batch, lambda ps: strategy.run(ps, ctx, self.cfg.budget), stage="search",
                                        on_error=self.cfg.on_error)
        results = [r for _, rs in done for r in rs]
        return result_rows(results, self.cfg.strategy, self.cfg.budget, params), skipped


def run(cfg: Config) -> int:
    out = Path(cfg.output_dir)
    problems = cfg.load()
    size = cfg.problems_per_batch
    n_parts = (len(problems) + size - 1) // size
    claim_run_dir(out, {**run_identity(cfg), "n_chunks": n_parts}, "search", inputs={
        "problems": fingerprint_rows(problems), "policy": fingerprint_model(cfg.policy),
        "prm": fingerprint_model(cfg.prm), "revision_model": fingerprint_model(cfg.revision_model),
        "allocation": fingerprint_model(cfg.allocation)}, allow_changed=cfg.allow_changed_inputs)
    write_text(out / "config.yaml", to_yaml(cfg))

    todo = [c for c in range(n_parts) if not part_path(out, c).exists()]
    print(f"[search] {cfg.strategy} N={cfg.budget}: {len(problems)} problems, {n_parts} parts, "
          f"{n_parts - len(todo)} already done")
    if todo:
        bar = tqdm(total=sum(min(size, len(problems) - c * size) for c in todo), unit="problem",
                   desc=f"search {cfg.strategy}")
        start, done = time.time(), 0

        def write(c: int, result: tuple[list[dict], list[dict]]) -> None:
            nonlocal done
            rows, skipped = result
            write_sidecar(part_path(out, c), skipped)   # before the part's rename, so the pair agrees
            write_part(out, c, rows)
            n = min(size, len(problems) - c * size)
            done += n
            bar.update(n)
            bar.set_postfix(problems_per_s=f"{done / max(time.time() - start, 1e-9):.2f}")

        batches = ((c, problems.select(range(c * size, min((c + 1) * size, len(problems)))).to_list()) for c in todo)
        make_executor(cfg).map_parts(batches, SearchWork(cfg), write)
        bar.close()
    summary = finalize(out, {"policy": cfg.policy, "reviser": cfg.revision_model, "prm": cfg.prm})
    print(json.dumps(summary, indent=1))
    print(f"[search] wrote {out / 'dataset'} and {out / 'summary.json'} ({len(problems)} problems; "
          f"`ttscale evaluate {out}` reads it)", file=sys.stderr)   # stdout stays the summary's JSON
    return 0
