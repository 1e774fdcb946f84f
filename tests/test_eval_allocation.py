"""Compute-optimal allocation on constructed tables, the policy file round trip, and efficiency."""
from __future__ import annotations

import numpy as np
import pytest

from ttscale.eval.allocation import (allocate, allocation_dict, budget_to_reach, compute_optimal_efficiency,
                                     write_allocation)
from ttscale.search.allocation_file import choose_config, load_allocation
from ttscale.eval.bins import fixed_binning
from ttscale.eval.metrics import Point

IDS = [f"p{i}" for i in range(8)]
BINS = {pid: ("easy" if i < 4 else "hard") for i, pid in enumerate(IDS)}   # p0-p3 easy, p4-p7 hard


def pt(strategy: str, budget: int, hits: list[int], **extra) -> Point:
    config = {"strategy": strategy, "budget": budget, **extra, "aggregation": "last", "voting": "prm-max"}
    return Point(method=strategy, config=config, budget=budget, ids=IDS, hits=np.array([hits], dtype=bool),
                 tokens=10.0 * budget, flops=1.0 * budget, default=True)


def test_best_config_differs_by_bin_and_cross_validation_scores_it():
    points = [pt("best-of-n", 4, [1, 1, 1, 1, 0, 0, 0, 0]),            # solves the easy problems
              pt("beam", 4, [0, 1, 0, 0, 1, 1, 1, 1], beam_width=4),     # solves the hard ones
              pt("best-of-n", 1, [1, 0, 0, 0, 0, 0, 0, 0])]
    alloc = allocate(points, BINS, folds=4, seed=0)
    assert alloc.budgets == [1, 4]
    assert alloc.choices["easy"][4]["strategy"] == "best-of-n" and alloc.choices["hard"][4]["strategy"] == "beam"
    assert alloc.choices["hard"][4]["beam_width"] == 4 and alloc.choices["hard"][4]["accuracy"] == 1.0
    assert alloc.curve[4] == 1.0                      # held out, every fold still has both bins to learn from
    assert alloc.by_bin == {"easy": {1: 0.25, 4: 1.0}, "hard": {1: 0.0, 4: 1.0}}
    assert alloc.fallback[4]["strategy"] == "beam"    # 5/8 overall beats 4/8
    # one config: the held-out curve equals its accuracy
    solo = allocate([points[0]], BINS, folds=4)
    assert solo.curve == {4: 0.5}


def test_cheaper_config_wins_ties_and_counts_at_larger_budgets():
    points = [pt("beam", 4, [1, 1, 0, 0, 1, 1, 0, 0], beam_width=2), pt("majority", 2, [1, 1, 0, 0, 1, 1, 0, 0])]
    alloc = allocate(points, BINS, folds=2)
    assert alloc.choices["easy"][4]["strategy"] == "majority" and alloc.choices["easy"][4]["budget"] == 2
    assert alloc.curve == {2: 0.5, 4: 0.5}


def test_allocation_file_round_trip_and_choose_config(tmp_path):
    points = [pt("best-of-n", 4, [1, 1, 1, 1, 0, 0, 0, 0]), pt("beam", 4, [0, 1, 0, 0, 1, 1, 1, 1], beam_width=4),
              pt("best-of-n", 16, [1, 1, 1, 1, 0, 0, 0, 1])]
    alloc = allocate(points, BINS, folds=2)
    binning = fixed_binning((0.5,), ("hard", "easy"))
    for suffix in ("yaml", "json"):
        policy = load_allocation(write_allocation(allocation_dict(alloc, binning, "predicted"), tmp_path / f"policy.{suffix}"))
        easy, hard = choose_config(policy, 0.9, 4), choose_config(policy, 0.1, 8)   # 8 -> the policy's N=4
        assert (easy["strategy"], easy["bin"]) == ("best-of-n", "easy")
        assert (hard["strategy"], hard["beam_width"], hard["budget"], hard["bin"]) == ("beam", 4, 4, "hard")
        assert choose_config(policy, 0.1, 64)["budget"] == 4          # beam at N=4 still beats BoN at 16 on hard
        assert choose_config(policy, None, 4)["bin"] == "all"
        with pytest.raises(ValueError, match="below the smallest budget"):
            choose_config(policy, 0.5, 2)
    (tmp_path / "bad.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="bad.yaml: not a ttscale allocation file"):
        load_allocation(tmp_path / "bad.yaml")


def test_efficiency_on_constructed_curves():
    bon = {1: 0.2, 2: 0.3, 4: 0.4, 8: 0.5, 16: 0.6}
    assert compute_optimal_efficiency(bon, {1: 0.3, 2: 0.45, 4: 0.6, 8: 0.6}) == pytest.approx(4.0)
    # 0.6 is reached halfway (in log2) between N=2 (0.5) and N=4 (0.7): 2^1.5
    assert budget_to_reach({1: 0.3, 2: 0.5, 4: 0.7}, 0.6) == pytest.approx(2 ** 1.5)
    assert compute_optimal_efficiency(bon, {1: 0.3, 2: 0.5, 4: 0.7}) == pytest.approx(16 / 2 ** 1.5)
    assert compute_optimal_efficiency(bon, {1: 0.3, 2: 0.5}) is None               # never reaches 0.6
    assert budget_to_reach({1: 0.5, 2: 0.4, 4: 0.45}, 0.5) == 1.0                  # running max: a dip is ignored
    assert compute_optimal_efficiency({}, bon) is None
