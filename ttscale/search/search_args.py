"""The search option group: strategy, budget, aggregation, voting and every strategy's hyperparameters.

Stages that run a search inherit `SearchArgs` (the `search` stage for a problem set, `serve` per request), so
these options mean the same everywhere; the methods turn one config into the SearchSettings and Strategy to run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ttscale.config import field
from ttscale.search.registry import STRATEGIES, get_strategy, strategy_options
from ttscale.search.strategy import Strategy
from ttscale.search.types import AGGREGATIONS, VOTINGS, SearchContext, SearchSettings

PENDING = object()   # stands for a model that will be loaded, so options are checked before loading any


def _default_votings() -> str:
    by_voting: dict[str, list[str]] = {}
    for name, cls in STRATEGIES.items():
        by_voting.setdefault(cls.default_voting, []).append(name)
    return "; ".join(f"{v} for {', '.join(names)}" for v, names in by_voting.items())


# Every strategy's hyperparameters become flags of this stage, once each (see registry.strategy_options).
StrategyOptions = dataclasses.make_dataclass(
    "StrategyOptions", [(name, tp, dataclasses.field(default=f.default, metadata=f.metadata))
                        for name, tp, f in strategy_options()], kw_only=True)


@dataclass(kw_only=True)
class SearchArgs(StrategyOptions):
    """Which search to run and how it selects; mixed into a Config that also has the model options
    (policy / prm / revision_model, read by `check_models`) and SamplingArgs (read by `settings`)."""
    strategy: str = field("weighted-best-of-n", choices=list(STRATEGIES),
                          help="search strategy; the budget N means: " + "; ".join(
                              f"{name}: {cls.budget_meaning}" for name, cls in STRATEGIES.items()))
    budget: int = field(16, ge=1, help="N, the same compute for every strategy (see --strategy)")
    aggregation: str = field("last", choices=list(AGGREGATIONS), help="step scores -> candidate score")
    voting: str = field("default", choices=["default", *VOTINGS],
                        help="final selection; default: the strategy's own, " + _default_votings())

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

    def check_models(self) -> None:
        """Raise (ValueError / UserError) when the strategy cannot run with the models this config names, or a model
        path names nothing (or a model of the wrong kind), before any loads and before anything is written."""
        from ttscale.inference.loading import check_model_path

        check_model_path(self.policy, "--policy", "policy", self.backend)
        check_model_path(self.revision_model, "--revision-model", "revision model",
                         getattr(self, "reviser_backend", None) or self.backend)
        check_model_path(self.prm, "--prm", "PRM" if self.prm_style == "auto" else "model")
        check_model_path(self.allocation, "--allocation", "allocation file")
        dry = SearchContext(generator=PENDING if self.policy else None, scorer=PENDING if self.prm else None,
                            reviser=PENDING if self.revision_model else None, settings=self.settings())
        self.make_strategy().validate(self.budget, dry)
