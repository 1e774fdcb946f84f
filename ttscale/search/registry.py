"""Strategy names -> classes (what --strategy accepts)."""
from __future__ import annotations

from ttscale.search.auto import AutoStrategy
from ttscale.search.revisions import ParallelRevisions, RevisionChains
from ttscale.search.sampling import BestOfN, Majority, WeightedBestOfN
from ttscale.search.stepwise import DVTS, BeamSearch, LookaheadSearch
from ttscale.search.types import Strategy

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    Majority, BestOfN, WeightedBestOfN, BeamSearch, LookaheadSearch, DVTS, RevisionChains, ParallelRevisions, AutoStrategy)}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()
