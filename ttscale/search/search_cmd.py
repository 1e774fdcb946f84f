"""`ttscale search OUTPUT_DIR --strategy S --budget N ...`: spend test-time compute on a problem set.

Problems are cut into batches of --problems-per-batch; each batch is searched with all its problems in the
same model calls and written atomically as parts/part-CCCCC.jsonl, so a killed run resumes at the first
missing batch. When all parts exist they are joined into OUTPUT_DIR/dataset (see search.output) with
summary.json; the resolved options are in config.yaml. Invalid options fail before any model loads.
"""
from __future__ import annotations

import dataclasses
import json
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
from ttscale.data.rundir import claim_run_dir, part_path
from ttscale.distributed.executor import ExecutorArgs, Work, make_executor
from ttscale.search.output import finalize, result_rows, write_part
from ttscale.search.registry import STRATEGIES, get_strategy, strategy_options
from ttscale.search.strategy import Strategy
from ttscale.search.types import AGGREGATIONS, VOTINGS, SearchContext, SearchSettings

_PENDING = object()   # stands for a model that will be loaded, so options are checked before loading any


def _default_votings() -> str:
    by_voting: dict[str, list[str]] = {}
    for name, cls in STRATEGIES.items():
        by_voting.setdefault(cls.default_voting, []).append(name)
    return "; ".join(f"{v} for {', '.join(names)}" for v, names in by_voting.items())


# Every strategy's hyperparameters become flags of this stage, once each (see registry.strategy_options).
StrategyOptions = dataclasses.make_dataclass(
    "StrategyOptions", [(name, tp, dataclasses.field(default=f.default, metadata=f.metadata))
                        for name, tp, f in strategy_options()], kw_only=True)


@overrides(temperature=tweak(help="sampling temperature (rollouts for lookahead are greedy)"),
           max_new_tokens=tweak(help="token limit per full sample or revision attempt"),
           seed=tweak(help="sampling seed: same seed, same search"))
@dataclass(kw_only=True)  # keyword-only: a positional OUTPUT_DIR may follow inherited defaults
class Config(ExecutorArgs, StrategyOptions, SamplingArgs, ReviserArgs, GeneratorArgs, ScorerArgs, ProblemArgs):
    """Test-time search (best-of-N, beam, lookahead, DVTS, particle filtering, REBASE, MCTS, adaptive majority,
    revisions) with a policy, a PRM and a revision model."""
    output_dir: str = field(help="output folder: parts/, dataset/, summary.json, config.yaml", positional=True,
                            run_key=False)
    policy: str | None = field(None, help="policy model: a local save_pretrained dir, a hub id, a PEFT adapter dir, "
                               "a .gguf file, or (backend openai) the served model name; not needed for revisions")
    strategy: str = field("weighted-best-of-n", choices=list(STRATEGIES),
                          help="search strategy; the budget N means: " + "; ".join(
                              f"{name}: {cls.budget_meaning}" for name, cls in STRATEGIES.items()))
    budget: int = field(16, ge=1, help="N, the same compute for every strategy (see --strategy)")
    aggregation: str = field("last", choices=list(AGGREGATIONS), help="step scores -> candidate score")
    voting: str = field("default", choices=["default", *VOTINGS],
                        help="final selection; default: the strategy's own, " + _default_votings())
    problems_per_batch: int = field(16, ge=1, help="problems searched together (and written as one part)")

    def settings(self, revision_max_attempts: int = 4) -> SearchSettings:
        return SearchSettings(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
            aggregation=self.aggregation, voting=self.voting, seed=self.seed, delimiter=self.step_delimiter,
            revision_max_attempts=revision_max_attempts)

    def strategy_options(self) -> dict[str, Any]:
        """Every strategy hyperparameter as set for this run (the row's params keep all of them)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(StrategyOptions)}

    def make_strategy(self) -> Strategy:
        return get_strategy(self.strategy, self.strategy_options())

    def __post_init__(self):
        dry = SearchContext(generator=_PENDING if self.policy else None, scorer=_PENDING if self.prm else None,
                            reviser=_PENDING if self.revision_model else None, settings=self.settings())
        self.make_strategy().validate(self.budget, dry)


def build_context(cfg: Config, need_policy: bool) -> tuple[SearchContext, SearchSettings]:
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
        strategy.validate(self.cfg.budget, ctx)
        return strategy, ctx, {**dataclasses.asdict(settings), **self.cfg.strategy_options()}

    def run(self, state: tuple[Strategy, SearchContext, dict[str, Any]], batch: list[dict]) -> list[dict]:
        strategy, ctx, params = state
        return result_rows(strategy.run(batch, ctx, self.cfg.budget), self.cfg.strategy, self.cfg.budget, params)


def run(cfg: Config) -> int:
    out = Path(cfg.output_dir)
    problems = cfg.load()
    size = cfg.problems_per_batch
    n_parts = (len(problems) + size - 1) // size
    claim_run_dir(out, {**run_identity(cfg), "n_chunks": n_parts}, "search")
    (out / "config.yaml").write_text(to_yaml(cfg))

    todo = [c for c in range(n_parts) if not part_path(out, c).exists()]
    print(f"[search] {cfg.strategy} N={cfg.budget}: {len(problems)} problems, {n_parts} parts, "
          f"{n_parts - len(todo)} already done")
    if todo:
        bar = tqdm(total=sum(min(size, len(problems) - c * size) for c in todo), unit="problem",
                   desc=f"search {cfg.strategy}")
        start, done = time.time(), 0

        def write(c: int, rows: list[dict]) -> None:
            nonlocal done
            write_part(out, c, rows)
            n = min(size, len(problems) - c * size)
            done += n
            bar.update(n)
            bar.set_postfix(problems_per_s=f"{done / max(time.time() - start, 1e-9):.2f}")

        batches = ((c, problems.select(range(c * size, min((c + 1) * size, len(problems)))).to_list()) for c in todo)
        make_executor(cfg).map_parts(batches, SearchWork(cfg), write)
        bar.close()
    summary = finalize(out)
    print(json.dumps(summary, indent=1))
    return 0
