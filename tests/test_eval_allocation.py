"""Compute-optimal allocation on constructed tables, the policy file round trip, and efficiency."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ttscale.eval.allocation import allocate, allocation_dict, write_allocation
from ttscale.eval.efficiency import (budget_to_reach, compute_optimal_efficiency, efficiency, efficiency_refit,
                                     tuned_baseline)
from ttscale.search.allocation_file import choose_config, load_allocation
from ttscale.eval.bins import fixed_binning
from ttscale.eval.metrics import Point

IDS = [f"p{i}" for i in range(8)]
BINS = {pid: ("easy" if i < 4 else "hard") for i, pid in enumerate(IDS)}   # p0-p3 easy, p4-p7 hard


def pt(strategy: str, budget: int, hits: list[int], flops: float | None = None, ids=IDS, **extra) -> Point:
    """A point; measured FLOPs default to the nominal budget, run tokens to 10 per unit of FLOPs."""
    config = {"strategy": strategy, "budget": budget, **extra, "aggregation": "last", "voting": "prm-max"}
    flops = float(budget if flops is None else flops)
    return Point(method=strategy, config=config, budget=budget, ids=ids, hits=np.array([hits], dtype=bool),
                 tokens=10.0 * budget, flops=flops, default=True, run_tokens=10.0 * flops)


def bon(budget: int, hits: list[int], flops: float, ids=IDS) -> Point:
    return pt("weighted-best-of-n", budget, hits, flops, ids)


def test_equally_accurate_configs_the_measured_cheaper_wins():
    """Lookahead at nominal N=2 costs 95 FLOPs (its rollouts); beam at nominal N=4 costs 60. Both solve the same
    problems, and the baseline's N=4 costs 100: beam is chosen on measured FLOPs, lookahead on nominal N."""
    hits = [1, 1, 1, 0, 1, 1, 0, 0]
    points = [bon(1, [1, 0, 0, 0, 1, 0, 0, 0], 25.0), bon(4, [1, 1, 0, 0, 1, 0, 0, 0], 100.0),
              pt("lookahead", 2, hits, 95.0, lookahead=1), pt("beam", 4, hits, 60.0, beam_width=2)]
    alloc = allocate(points, BINS, folds=2)
    assert (alloc.axis, alloc.baseline, alloc.budgets) == ("flops", "weighted-best-of-n", [1, 4])
    assert alloc.budget_cost == {1: 25.0, 4: 100.0}
    assert alloc.fallback[4]["strategy"] == "beam" and alloc.fallback[4]["budget"] == 4
    assert alloc.fallback[1]["strategy"] == "weighted-best-of-n"         # nothing else fits in 25 FLOPs
    assert alloc.curve_cost[4] <= 100.0                                  # what the held-out choices spent
    assert allocate(points, BINS, folds=1).curve_cost == {1: 25.0, 4: 60.0}   # in-sample: beam in both bins
    # the same points on tokens run (10 per FLOP here): the same choice; on nominal N the cheaper-by-N one
    assert allocate(points, BINS, folds=2, axis="tokens").fallback[4]["strategy"] == "beam"
    nominal = allocate(points, BINS, folds=2, axis="n")
    assert nominal.fallback[4]["strategy"] == "lookahead" and nominal.budget_cost == {1: 1.0, 4: 4.0}


def test_accurate_config_over_the_measured_budget_is_refused():
    """Lookahead solves everything at nominal N=4 but spends 150 FLOPs (N(k+1) samples); the baseline's N=4
    spends 100, so at budget 4 lookahead is refused and the best affordable config is chosen."""
    points = [bon(1, [1, 0, 0, 0, 1, 0, 0, 0], 25.0), bon(4, [1, 1, 1, 0, 1, 0, 0, 0], 100.0),
              pt("lookahead", 4, [1] * 8, 150.0, lookahead=2), pt("beam", 4, [1, 1, 0, 0, 1, 1, 0, 0], 80.0,
                                                                   beam_width=2)]
    alloc = allocate(points, BINS, folds=2)
    chosen = [alloc.fallback[4]] + [alloc.choices[lab][4] for lab in ("easy", "hard")]
    assert all(c["strategy"] != "lookahead" for c in chosen)
    assert alloc.choices["easy"][4]["strategy"] == "weighted-best-of-n"   # 3/4 easy beats beam's 2/4
    assert alloc.choices["hard"][4]["strategy"] == "beam"                 # 2/4 hard beats 1/4
    assert max(alloc.curve_cost.values()) <= 100.0
    # on nominal N it would have been taken: the old rule's mistake
    assert allocate(points, BINS, folds=2, axis="n").fallback[4]["strategy"] == "lookahead"


def test_unknown_flops_fall_back_to_tokens_with_a_note():
    points = [bon(1, [1, 0, 0, 0, 1, 0, 0, 0], 25.0), bon(4, [1, 1, 0, 0, 1, 0, 0, 0], 100.0)]
    points[1].flops_known = False
    alloc = allocate(points, BINS, folds=2)
    assert alloc.axis == "tokens" and alloc.budget_cost == {1: 250.0, 4: 1000.0}
    assert any("FLOPs are unknown" in n and "--policy-params" in n for n in alloc.notes)


def test_efficiency_interval_brackets_the_point_estimate():
    """Baseline: 30% at 10 FLOPs, 50% at 40. Beam solves a superset of the baseline's problems (55%) for 20
    FLOPs, so it is chosen at N=4; the compute-optimal curve reaches 50% between 10 and 20 FLOPs at
    10 · 2^0.8 (log-linear), so efficiency = 40 / (10 · 2^0.8)."""
    rng = np.random.default_rng(0)
    ids = [f"q{i:02d}" for i in range(40)]
    bins = {i: ("easy" if n % 2 else "hard") for n, i in enumerate(ids)}
    order = rng.permutation(40)
    good = np.zeros(40, dtype=int)
    good[order[:20]] = 1
    low, best = good.copy(), good.copy()
    low[order[12:20]] = 0                       # 12 of the baseline's 20
    best[order[20:22]] = 1                      # the baseline's 20 and 2 more
    points = [bon(1, low.tolist(), 10.0, ids), bon(4, good.tolist(), 40.0, ids),
              pt("beam", 4, best.tolist(), 20.0, ids, beam_width=2)]
    alloc = allocate(points, bins, folds=1)     # in-sample, so the choice in each bin is known: beam
    assert alloc.fallback[4]["strategy"] == "beam" and alloc.curve_cost == {1: 10.0, 4: 20.0}
    assert alloc.curve == {1: 0.3, 4: 0.55}
    eff = efficiency(alloc, points, "weighted-best-of-n", replicates=300)
    assert eff["axis"] == "flops" and eff["value"] == pytest.approx(40 / (10 * 2 ** 0.8))
    assert eff["low"] < eff["value"] < eff["high"] and eff["replicates_defined"] == 300
    assert efficiency(alloc, points, "majority") is None                  # no such curve


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
        assert policy["cost"]["axis"] == alloc.axis == "n"                # no baseline curve: nominal N
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


def test_pooling_shrinks_a_bins_lucky_winner_toward_its_overall_accuracy():
    """Beam wins the hard bin by one problem (2/4 vs 1/4) but loses everywhere else (2/8 vs 5/8 overall).
    Raw per-bin best takes beam there; with 8 pseudo-problems of pooling, beam's hard-bin score is
    (2 + 8·2/8)/12 = 0.33 < baseline's (1 + 8·5/8)/12 = 0.5, so the baseline stays."""
    points = [bon(1, [1, 0, 0, 0, 0, 0, 0, 0], 25.0), bon(4, [1, 1, 1, 1, 1, 0, 0, 0], 100.0),
              pt("beam", 4, [0, 0, 0, 0, 1, 1, 0, 0], 80.0, beam_width=2)]
    assert allocate(points, BINS, folds=1).choices["hard"][4]["strategy"] == "beam"
    pooled = allocate(points, BINS, folds=1, pooling=8)
    assert pooled.choices["hard"][4]["strategy"] == "weighted-best-of-n"
    assert pooled.choices["hard"][4]["accuracy"] == pytest.approx(0.25)   # reported raw, not shrunk
    # a bin winner that is also good overall survives pooling
    strong = points[:2] + [pt("beam", 4, [1, 1, 1, 1, 1, 1, 0, 0], 80.0, beam_width=2)]
    assert allocate(strong, BINS, folds=1, pooling=8).choices["hard"][4]["strategy"] == "beam"


def test_allocation_file_records_the_samples_difficulty_was_averaged_over():
    points = [bon(1, [1, 0, 0, 0, 1, 0, 0, 0], 25.0), bon(4, [1, 1, 0, 0, 1, 0, 0, 0], 100.0)]
    binning = fixed_binning([0.5], ["hard", "easy"])
    assert allocation_dict(allocate(points, BINS, folds=2), binning, "predicted", 4)["difficulty"]["samples"] == 4
    assert "samples" not in allocation_dict(allocate(points, BINS, folds=2), binning, "oracle", 4)["difficulty"]


def test_the_probe_is_charged_as_auto_spends_it():
    """A 4-sample probe costs 40 FLOPs. Beam at 80 fits the baseline's N=4 budget of 100 alone, not with the
    probe (120): weighted BoN N=4 is chosen instead, which reuses the probe's samples (charged max(100, 40)).
    At N=1 (25 FLOPs) nothing fits once the probe is paid, so the cheapest charged configurations compete."""
    from ttscale.eval.allocation import charged

    points = [bon(1, [1, 0, 0, 0, 1, 0, 0, 0], 25.0), bon(4, [1, 1, 0, 0, 1, 0, 0, 0], 100.0),
              pt("beam", 4, [1, 1, 1, 0, 1, 1, 0, 0], 80.0, beam_width=2)]
    assert list(charged(points, IDS, "flops", 40.0).mean(axis=1)) == [40.0, 100.0, 120.0]
    free = allocate(points, BINS, folds=2)
    paid = allocate(points, BINS, folds=2, probe={"flops": 40.0, "tokens": 400.0, "n": 4.0})
    assert free.fallback[4]["strategy"] == "beam" and paid.fallback[4]["strategy"] == "weighted-best-of-n"
    assert paid.fallback[1]["budget"] == 1 and paid.curve_cost[1] == 40.0 and paid.curve_cost[4] <= 100.0
    assert allocate(points, BINS, folds=2, axis="n", probe={"n": 4.0}).fallback[4]["strategy"] == "weighted-best-of-n"


def _ids(n: int) -> list[str]:
    return [f"r{i:02d}" for i in range(n)]


def test_a_tuned_baseline_takes_the_aggregation_gain_out_of_efficiency():
    """Weighted BoN by product scores solves 30 of 40 problems at N=4 where its default (min) solves 20: an
    allocation that chooses it in every bin is 'more efficient' than the default curve, but exactly as
    efficient as parallel sampling whose aggregation was chosen k-fold the same way (efficiency 1)."""
    ids = _ids(40)
    bins = {i: ("easy" if n % 2 else "hard") for n, i in enumerate(ids)}
    rng = np.random.default_rng(1)
    order = rng.permutation(40)
    low, plain, prod = (np.zeros(40, dtype=int) for _ in range(3))
    low[order[:10]], plain[order[:20]], prod[order[:30]] = 1, 1, 1
    points = [bon(1, low.tolist(), 10.0, ids), bon(4, plain.tolist(), 40.0, ids),
              dataclasses.replace(bon(4, prod.tolist(), 40.0, ids), default=False,
                                  config={"strategy": "weighted-best-of-n", "budget": 4, "aggregation": "prod",
                                          "voting": "prm-vote"})]
    alloc = allocate(points, bins, folds=4)
    assert {c[4]["aggregation"] for c in alloc.choices.values()} == {"prod"}
    assert efficiency(alloc, points, "weighted-best-of-n", replicates=50)["value"] > 1.0   # vs the default curve
    tuned = tuned_baseline(points, alloc)
    assert tuned.curve == alloc.curve and tuned.fallback[4]["aggregation"] == "prod"
    refit = efficiency_refit(alloc, tuned, replicates=50)
    assert refit["value"] == pytest.approx(1.0) and refit["refit"] and refit["low"] <= 1.0 <= refit["high"]


def test_the_refit_interval_refits_both_curves_on_each_resample():
    """Beam beats the baseline in the hard bin only on some problems: every replicate refits the choice on its
    resample, and on the full sample the refit reproduces the reported held-out curves."""
    ids = _ids(40)
    bins = {i: ("easy" if n < 20 else "hard") for n, i in enumerate(ids)}
    rng = np.random.default_rng(2)
    base1, base4 = (rng.random(40) < 0.3).astype(int), (rng.random(40) < 0.6).astype(int)
    beam = base4.copy()
    beam[20:30] = 1
    points = [bon(1, base1.tolist(), 10.0, ids), bon(4, base4.tolist(), 40.0, ids),
              pt("beam", 4, beam.tolist(), 20.0, ids, beam_width=2)]
    alloc = allocate(points, bins, folds=4)
    held, cost = alloc.fit.held_out()
    assert (held == alloc.held).all() and (cost == alloc.held_cost).all()
    copies = np.array([0, 0, 0, 5, 7, 7] + list(range(8, 40)))   # repeated columns stay in one fold
    h, _ = alloc.fit.held_out(copies)
    assert (h[:, 0] == h[:, 1]).all() and (h[:, 0] == h[:, 2]).all() and h.shape == (2, len(copies))
    refit = efficiency_refit(alloc, tuned_baseline(points, alloc), replicates=200)
    assert refit["value"] is not None and refit["low"] <= refit["value"] <= refit["high"]
    assert refit["replicates_defined"] >= 100
    # the per-budget curve comes from the same replicates: one entry per baseline N, the headline at its peak
    tb = tuned_baseline(points, alloc)
    assert [e["budget"] for e in refit["curve"]] == tb.budgets
    peak = max(tb.budgets, key=lambda b: (tb.curve[b], -b))
    assert next(e for e in refit["curve"] if e["budget"] == peak)["value"] == pytest.approx(refit["value"])


def test_the_knob_score_counts_only_budgets_the_allocation_kept_to():
    """A probe that costs more than a budget makes the held-out choices overspend there: that budget scores 0,
    so a large probe cannot win by buying accuracy at low budgets with compute they do not have."""
    from ttscale.eval.knobs import equal_cost_score

    points = [bon(1, [1, 0, 0, 0, 1, 0, 0, 0], 25.0), bon(4, [1, 1, 0, 0, 1, 1, 1, 0], 100.0)]
    free = allocate(points, BINS, folds=2)
    assert equal_cost_score(free) == pytest.approx((free.curve[1] + free.curve[4]) / 2)
    probed = allocate(points, BINS, folds=2, probe={"flops": 100.0})    # N=1 (25 FLOPs) cannot pay the probe
    assert probed.curve_cost[1] > probed.budget_cost[1]
    assert equal_cost_score(probed) == pytest.approx(probed.curve[4] / 2)


def _three_bins():
    """Bins A, B, C of 2 problems each; cheap (cost 1) solves A and half of B, dear (cost 4) solves all; a cost-2
    baseline point that solves nothing sets the budget grid {1: 1, 2: 2, 4: 4}."""
    ids = [f"p{i}" for i in range(6)]
    bins = {pid: "ABC"[i // 2] for i, pid in enumerate(ids)}
    points = [bon(1, [1, 1, 1, 0, 0, 0], 1.0, ids), bon(2, [0] * 6, 2.0, ids), bon(4, [1] * 6, 4.0, ids)]
    return points, bins


def test_mean_budget_rule_is_the_hand_computed_knapsack():
    """At budget 2 every bin alone may spend only 2, so per-bin takes cheap everywhere: 3/6. Under a mean of 2,
    one bin can take dear (4/3 + 1/3 + 1/3 = 2); dear does most in C (+2 hits, B +1, A +0): 5/6 at a mean of 2."""
    points, bins = _three_bins()
    per_bin = allocate(points, bins, folds=1)
    mean = allocate(points, bins, folds=1, rule="mean")
    assert per_bin.curve[2] == pytest.approx(0.5) and per_bin.curve_cost[2] == pytest.approx(1.0)
    assert mean.curve[2] == pytest.approx(5 / 6) and mean.curve_cost[2] == pytest.approx(2.0)
    assert {lab: mean.choices[lab][2]["budget"] for lab in "ABC"} == {"A": 1, "B": 1, "C": 4}
    assert mean.curve[4] == pytest.approx(1.0) and mean.curve[1] == pytest.approx(0.5)   # the rules meet at the ends
    assert allocation_dict(mean, fixed_binning([0.5], ["A", "B"]), "oracle")["cost"]["rule"] == "mean"
    with pytest.raises(ValueError, match="rule"):
        allocate(points, bins, folds=1, rule="median")


def test_mean_budget_is_never_exceeded_on_the_fitted_problems():
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(60)]
    bins = {pid: f"b{i % 5}" for i, pid in enumerate(ids)}
    points = [bon(n, (rng.random(60) < 0.2 + 0.15 * k).astype(int).tolist(), 10.0 * n, ids)
              for k, n in enumerate((1, 2, 4, 8, 16))]
    points += [pt("beam", n, (rng.random(60) < 0.5).astype(int).tolist(), float(rng.uniform(5, 200)), ids,
                  beam_width=2) for n in (4, 8, 16)]
    ada = pt("adaptive-majority", 16, (rng.random(60) < 0.6).astype(int).tolist(), 0.0, ids, round_size=4)
    ada.problem_cost = np.stack([rng.uniform(10, 160, 60), rng.uniform(100, 1600, 60), np.full(60, 16.0)])
    ada.flops, ada.run_tokens = float(ada.problem_cost[0].mean()), float(ada.problem_cost[1].mean())
    points.append(ada)     # its cost differs problem by problem: the constraint holds on what each one spent
    fitted = allocate(points, bins, folds=1, rule="mean")
    assert any(c["strategy"] == "adaptive-majority" for per in fitted.choices.values() for c in per.values())
    per_bin = allocate(points, bins, folds=1)
    for i, b in enumerate(fitted.budgets):
        assert fitted.curve_cost[b] <= fitted.budget_cost[b] * (1 + 1e-9)
        assert fitted.held_cost[i].mean() == pytest.approx(fitted.curve_cost[b])
        assert fitted.curve[b] >= per_bin.curve[b] - 1e-12       # per-bin's choice is one the mean rule may make
    held = allocate(points, bins, folds=4, rule="mean")          # the k-fold path runs the same rule
    assert set(held.curve) == set(fitted.budgets) and all(0 <= v <= 1 for v in held.curve.values())


def test_mean_budget_knapsack_matches_brute_force():
    """The frontier merge returns the exact optimum: every combination of 4 bins x 5 configurations enumerated,
    each configuration's cost measured per problem (its mean differs by bin, as an adaptive run's does)."""
    import itertools

    from ttscale.eval.allocation import _choose_mean

    rng = np.random.default_rng(1)
    mat = (rng.random((5, 40)) < rng.uniform(0.1, 0.9, (5, 1))).astype(float)
    cost = rng.uniform(1, 10, (5, 1)) * rng.uniform(0.5, 1.5, (5, 40))
    labels = np.array([f"b{i % 4}" for i in range(40)])
    cols, bins = np.arange(40), ["b0", "b1", "b2", "b3"]
    share = {b: np.mean(labels == b) for b in bins}
    for limit in (2.0, 4.0, 6.0, 8.0):
        got = _choose_mean(mat, cost, limit, labels, cols, bins)
        value = lambda pick: sum(share[b] * mat[c, labels == b].mean() for b, c in zip(bins, pick))
        spend = lambda pick: sum(share[b] * cost[c, labels == b].mean() for b, c in zip(bins, pick))
        fits = [p for p in itertools.product(range(5), repeat=4) if spend(p) <= limit * (1 + 1e-9)]
        best = max(map(value, fits)) if fits else None
        if best is not None:
            assert value([got[b] for b in bins]) == pytest.approx(best)
            assert spend([got[b] for b in bins]) <= limit * (1 + 1e-9)


def test_per_problem_costs_let_an_adaptive_run_be_cheap_where_it_stops_early():
    """Adaptive majority spends 1 FLOP on each easy problem (it stops after its first round) and 7 on each hard
    one: 4 on average. The mean rule charges each bin what the run spent on it, so at a mean of 2 it gives the
    easy bin adaptive (1) and the hard bin weighted BoN N=2 (3 there): mean (1 + 3) / 2 = 2. With one cost per
    run (the old reading, 4 everywhere) adaptive would never fit a mean budget of 2."""
    ids = [f"p{i}" for i in range(4)]
    bins = {"p0": "easy", "p1": "easy", "p2": "hard", "p3": "hard"}
    b1, b2 = bon(1, [1, 0, 0, 0], 1.0, ids), bon(2, [1, 0, 1, 0], 2.0, ids)
    b2.problem_cost = np.array([[1.0, 1.0, 3.0, 3.0], [10.0, 10.0, 30.0, 30.0], [2.0] * 4])
    ada = pt("adaptive-majority", 8, [1, 1, 0, 0], 4.0, ids, round_size=2)
    ada.problem_cost = np.array([[1.0, 1.0, 7.0, 7.0], [10.0, 10.0, 70.0, 70.0], [8.0] * 4])
    assert list(ada.costs("flops", ["p3", "p0"])) == [7.0, 1.0] and list(b1.costs("flops")) == [1.0] * 4
    mean = allocate([b1, b2, ada], bins, folds=1, rule="mean")
    assert mean.choices["easy"][2]["strategy"] == "adaptive-majority" and mean.choices["easy"][2]["cost"] == 1.0
    assert mean.choices["hard"][2]["budget"] == 2 and mean.choices["hard"][2]["cost"] == 3.0
    assert mean.curve[2] == pytest.approx(0.75) and mean.curve_cost[2] == pytest.approx(2.0)
    # a probe costing 2 on every problem: adaptive takes it as its first samples (max), beam would pay it on top
    from ttscale.eval.allocation import charged

    beam = pt("beam", 2, [1, 1, 1, 1], 1.0, ids, beam_width=2)
    assert charged([ada, beam], ids, "flops", 2.0).tolist() == [[2.0, 2.0, 7.0, 7.0], [3.0] * 4]


def test_max_budget_caps_what_any_bin_is_given():
    """Under a mean of 2 the hard bin C is given dear (4 per problem); capped at the baseline's N=2 cost (2),
    no bin may take it, and the mean rule falls back to cheap everywhere."""
    points, bins = _three_bins()
    assert allocate(points, bins, folds=1, rule="mean").choices["C"][2]["cost"] == 4.0
    capped = allocate(points, bins, folds=1, rule="mean", max_budget=2)
    assert all(capped.choices[lab][b]["cost"] <= 2.0 for lab in "ABC" for b in capped.budgets)
    assert capped.curve[4] == pytest.approx(0.5) and capped.max_budget == 2
    assert allocation_dict(capped, fixed_binning([0.5], ["A", "B"]), "oracle")["cost"]["max_budget"] == 2
    assert allocate(points, bins, folds=1, rule="mean", max_budget=3).fit.cap == 2.0   # the largest N <= 3
    with pytest.raises(ValueError, match="max-budget"):
        allocate(points, bins, folds=1, max_budget=0.5)


def test_the_efficiency_curve_reads_each_baseline_budget():
    """Baseline: 0.5 at cost 2, 0.6 at 4, 0.55 at 8 (running max 0.6); optimal: 0.5 at 1, 0.6 at 2. At cost 2
    the optimal needs 1 (2x), at 4 it needs 2 (2x), at 8 the running max 0.6 still needs 2 (4x)."""
    from ttscale.eval.efficiency import efficiency_curve

    assert efficiency_curve([2.0, 4.0, 8.0], [0.5, 0.6, 0.55], {1.0: 0.5, 2.0: 0.6}) == [2.0, 2.0, 4.0]
    assert efficiency_curve([2.0], [0.9], {1.0: 0.5}) == [None]
