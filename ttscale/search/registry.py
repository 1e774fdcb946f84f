"""Strategy names -> classes (what --strategy accepts). Adding a strategy: its file, and one line here."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from ttscale.search.adaptive import AdaptiveMajority
from ttscale.search.auto import AutoStrategy
from ttscale.search.mcts import MCTS
from ttscale.search.particle_filtering import ParticleFiltering
from ttscale.search.rebase import Rebase
from ttscale.search.revisions import ParallelRevisions, RevisionChains
from ttscale.search.sampling import BestOfN, Majority, WeightedBestOfN
from ttscale.search.stepwise import DVTS, BeamSearch, LookaheadSearch
from ttscale.search.strategy import Strategy

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    Majority, BestOfN, WeightedBestOfN, BeamSearch, LookaheadSearch, DVTS, RevisionChains, ParallelRevisions,
    ParticleFiltering, Rebase, MCTS, AdaptiveMajority,
    AutoStrategy,
)}


def get_strategy(name: str, options: Mapping[str, Any] | None = None, **overrides: Any) -> Strategy:
    """The strategy `name` with its hyperparameters taken from `options` (+ overrides); other keys are ignored."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    strategy = STRATEGIES[name].from_options(options, **overrides)
    if isinstance(strategy, AutoStrategy):
        strategy.bind(get_strategy, {**(options or {}), **overrides})
    return strategy


def parallel_by_voting() -> dict[str, str]:
    """voting -> the parallel-family strategy whose own selection it is (majority -> majority, prm-max ->
    best-of-n, prm-vote -> weighted-best-of-n): one parallel run yields all of them."""
    return {cls.default_voting: name for name, cls in STRATEGIES.items() if cls.family == "parallel"}


def strategy_options() -> list[tuple[str, Any, dataclasses.Field]]:
    """(name, type, field) of every strategy hyperparameter, once each, in registry order: the search stage's
    strategy flags. A knob two strategies share must come from one Params base (same field object)."""
    seen: dict[str, tuple[str, Any, dataclasses.Field]] = {}
    for cls in STRATEGIES.values():
        hints = typing.get_type_hints(cls.Params)
        for f in dataclasses.fields(cls.Params):
            if f.name in seen and seen[f.name][2] is not f and seen[f.name][2].default != f.default:
                raise TypeError(f"strategy option {f.name!r} is declared twice with different defaults "
                                f"({cls.name}); declare it once in a shared Params base")
            seen.setdefault(f.name, (f.name, hints[f.name], f))
    return list(seen.values())
