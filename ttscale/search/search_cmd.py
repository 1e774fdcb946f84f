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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ttscale.config import field, to_yaml
from ttscale.data.problems import ProblemArgs
from ttscale.inference.loading import GeneratorArgs
from ttscale.inference.scorers_load import ScorerArgs
from ttscale.data.rundir import claim_run_dir, part_path
from ttscale.search.output import finalize, result_rows, write_part
from ttscale.search.registry import STRATEGIES, get_strategy, strategy_options
from ttscale.search.strategy import Strategy
from ttscale.search.types import AGGREGATIONS, VOTINGS, SearchContext, SearchSettings

_PENDING = object()   # stands for a model that will be loaded, so options are checked before loading any

# Every strategy's hyperparameters become flags of this stage, once each (see registry.strategy_options).
StrategyOptions = dataclasses.make_dataclass(
    "StrategyOptions", [(name, tp, dataclasses.field(default=f.default, metadata=f.metadata))
                        for name, tp, f in strategy_options()], kw_only=True)


@dataclass(kw_only=True)  # keyword-only: a positional OUTPUT_DIR may follow inherited defaults
class Config(StrategyOptions, GeneratorArgs, ScorerArgs, ProblemArgs):
    """Test-time search (best-of-N, beam, lookahead, DVTS, particle filtering, REBASE, MCTS, adaptive majority,
    revisions) with a policy, a PRM and a revision model."""
    output_dir: str = field(help="output folder: parts/, dataset/, summary.json, config.yaml", positional=True)
    policy: str | None = field(None, help="policy model: a local save_pretrained dir, a hub id, a PEFT adapter dir, "
                               "a .gguf file, or (backend openai) the served model name; not needed for revisions")
    strategy: str = field("weighted-best-of-n", choices=list(STRATEGIES),
                          help="search strategy; the budget N means: " + "; ".join(
                              f"{name}: {cls.budget_meaning}" for name, cls in STRATEGIES.items()))
    budget: int = field(16, help="N, the same compute for every strategy (see --strategy)")
    revision_model: str | None = field(None, help="revision model folder (from `ttscale train-revision`); same "
                                       "backend options as the policy")
    max_new_tokens: int = field(512, help="token limit per full sample or revision attempt")
    temperature: float = field(0.8, help="sampling temperature (rollouts for lookahead are greedy)")
    top_p: float = field(1.0, help="nucleus sampling")
    aggregation: str = field("last", choices=list(AGGREGATIONS), help="step scores -> candidate score")
    voting: str = field("default", choices=["default", *VOTINGS],
                        help="final selection; default: " + ", ".join(
                            f"{cls.default_voting} ({name})" for name, cls in STRATEGIES.items()))
    step_delimiter: str = field("\n\n", help="step separator (the same as labelling and the PRM)")
    seed: int = field(0, help="sampling seed: same seed, same search")
    problems_per_batch: int = field(16, help="problems searched together (and written as one part)")

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
        if self.problems_per_batch < 1:
            raise ValueError(f"--problems-per-batch must be >= 1, got {self.problems_per_batch}")
        dry = SearchContext(generator=_PENDING if self.policy else None, scorer=_PENDING if self.prm else None,
                            reviser=_PENDING if self.revision_model else None, settings=self.settings())
        self.make_strategy().validate(self.budget, dry)


# Options that change results: a resumed run must use the same ones as the parts already written.
_RUN_KEYS = ("strategy", "budget", "policy", "prm", "revision_model", "max_new_tokens", "temperature", "top_p",
             "aggregation", "voting", "step_delimiter", "seed", "problems_per_batch", "problems", "limit",
             *(f.name for f in dataclasses.fields(StrategyOptions)))


def build_context(cfg: Config, need_policy: bool) -> tuple[SearchContext, SearchSettings]:
    reviser, max_attempts = None, 4
    if cfg.revision_model:
        from ttscale.data.revision_format import read_revision_info

        max_attempts = read_revision_info(cfg.revision_model)["max_attempts"]
        reviser = replace(cfg, policy=cfg.revision_model, adapter=None, gguf_file=None).build()
    settings = cfg.settings(max_attempts)
    generator = cfg.build() if cfg.policy and need_policy else None
    scorer = ScorerArgs.build(cfg) if cfg.prm else None
    return SearchContext(generator=generator, scorer=scorer, reviser=reviser, settings=settings), settings


def run(cfg: Config) -> int:
    out = Path(cfg.output_dir)
    problems = cfg.load()
    strategy = cfg.make_strategy()
    size = cfg.problems_per_batch
    n_parts = (len(problems) + size - 1) // size
    claim_run_dir(out, {**{k: getattr(cfg, k) for k in _RUN_KEYS}, "n_chunks": n_parts}, "search")
    (out / "config.yaml").write_text(to_yaml(cfg))

    todo = [c for c in range(n_parts) if not part_path(out, c).exists()]
    print(f"[search] {cfg.strategy} N={cfg.budget}: {len(problems)} problems, {n_parts} parts, "
          f"{n_parts - len(todo)} already done")
    if todo:
        ctx, settings = build_context(cfg, strategy.needs_policy)
        strategy.validate(cfg.budget, ctx)
        bar = tqdm(total=sum(min(size, len(problems) - c * size) for c in todo), unit="problem",
                   desc=f"search {cfg.strategy}")
        start, done = time.time(), 0
        for c in todo:
            batch = problems.select(range(c * size, min((c + 1) * size, len(problems)))).to_list()
            results = strategy.run(batch, ctx, cfg.budget)
            write_part(out, c, result_rows(results, cfg.strategy, cfg.budget,
                                           {**dataclasses.asdict(settings), **cfg.strategy_options()}))
            done += len(batch)
            bar.update(len(batch))
            bar.set_postfix(problems_per_s=f"{done / max(time.time() - start, 1e-9):.2f}")
        bar.close()
    summary = finalize(out)
    print(json.dumps(summary, indent=1))
    return 0
