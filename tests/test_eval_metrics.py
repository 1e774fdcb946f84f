"""pass@k, subsampled accuracy vs budget, loading runs, and difficulty bins on hand-computed cases."""
from __future__ import annotations

import dataclasses

import math

import numpy as np
import pytest

from eval_runs import cand, row, save_run
from ttscale.eval.bins import fixed_binning, oracle_difficulty, predicted_difficulty, quantile_binning
from ttscale.search.allocation_file import Binning, predicted_difficulty_of
from ttscale.eval.metrics import evaluate_run, evaluate_runs, parallel_budgets, pass_at_k, pass_at_k_curve
from ttscale.eval.runs import load_run
from ttscale.search.registry import get_strategy


def test_pass_at_k_hand_values_and_exact_binomials():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)          # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 3, 3) == 1.0                                 # n - c < k: every draw holds a hit
    assert pass_at_k(5, 0, 4) == 0.0
    assert pass_at_k(200, 7, 50) == pytest.approx(1 - math.comb(193, 50) / math.comb(200, 50), rel=1e-12)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(3, 4, 1)


@pytest.fixture(scope="module")
def majority_run(tmp_path_factory):
    # A: all 4 samples right. B: answers x(right) y y z -> majority over all 4 says y (wrong); over 2 samples
    # (sorted subsets, ties -> first) x wins in {01, 02, 03}, y in {12, 13, 23}: expected 1/2.
    a = [cand("7", True, [0.9, 0.8]) for _ in range(4)]
    b = [cand("7", True, [0.2, 0.9]), cand("5", False, [0.9, 0.3]), cand("5", False, [0.1, 0.2]),
         cand("6", False, [0.5, 0.1])]
    rows = [row("A", "7", "majority", 4, a), row("B", "7", "majority", 4, b)]
    return load_run(save_run(rows, tmp_path_factory.mktemp("runs") / "maj4"))


def _point(points, method, budget, aggregation=None):
    return next(p for p in points if p.method == method and p.budget == budget
                and (aggregation is None or p.config["aggregation"] == aggregation))


def test_subsampling_mean_and_exact_full_budget(majority_run):
    points = evaluate_run(majority_run, subsamples=400, seed=3)
    assert parallel_budgets(4) == [1, 2, 4] and parallel_budgets(6) == [1, 2, 4, 6]
    full = _point(points, "majority", 4)
    assert full.hits.shape == (1, 2) and full.accuracy()[0] == 0.5     # exact: A right, B wrong
    two = _point(points, "majority", 2)
    assert two.hits.shape == (400, 2) and two.hits[:, 0].all()
    assert two.hits[:, 1].mean() == pytest.approx(0.5, abs=0.07)
    one = _point(points, "majority", 1)
    assert one.hits[:, 1].mean() == pytest.approx(0.25, abs=0.07)      # one sample: right 1 time in 4
    mean, lo, hi = two.accuracy()
    assert lo <= mean <= hi and two.tokens == pytest.approx(20.0)       # half the samples, half the tokens
    # the same samples re-voted by the PRM: last-step prm-max picks B's first sample (0.9), min picks the 3rd
    assert _point(points, "best-of-n", 4, "last").accuracy()[0] == 1.0
    assert _point(points, "best-of-n", 4, "min").hits[0].tolist() == [True, False]
    again = evaluate_run(majority_run, subsamples=400, seed=3)
    assert all((p.hits == q.hits).all() for p, q in zip(points, again))  # seeded


def test_unchecked_rows_are_graded_and_fixed_budget_runs_use_their_budget(tmp_path):
    cands = [cand("0.5", None, [0.3], group=0), cand("1/2", None, [0.9], group=1), cand("3", None, [0.5], group=1)]
    run = load_run(save_run([row("q", "\\frac{1}{2}", "beam", 4, cands, beam_width=2)], tmp_path / "beam"))
    assert run.problems[0].correct == [True, True, False]              # graded by data.answers
    points = evaluate_runs([run])
    assert {p.budget for p in points} == {4} and {p.method for p in points} == {"beam(M=2)"}
    default = [p for p in points if p.default]
    assert len(default) == 1 and default[0].config == {"strategy": "beam", "budget": 4, "beam_width": 2,
                                                       "aggregation": "last",
                                                       "voting": get_strategy("beam").default_voting}


def test_bad_run_folder_is_named(tmp_path):
    import datasets
    datasets.Dataset.from_list([{"id": "1", "problem": "x"}]).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="bad.*missing column"):
        load_run(tmp_path / "bad")


def test_quantile_and_fixed_bins():
    values = {f"p{i}": (i + 1) / 10 for i in range(10)}
    b = quantile_binning(list(values.values()), 5)
    got = b.assign_all(values)
    assert [got[f"p{i}"] for i in range(10)] == ["5", "5", "4", "4", "3", "3", "2", "2", "1", "1"]
    assert b.order() == ["1", "2", "3", "4", "5"]
    liu = fixed_binning()
    assert [liu.assign(v) for v in (0.0, 0.05, 0.1, 0.3, 0.5, 0.9)] == ["hard", "hard", "medium", "medium",
                                                                         "easy", "easy"]
    assert Binning.from_dict(liu.to_dict()) == liu
    with pytest.raises(ValueError, match="one more label"):
        Binning("fixed", (0.5,), ("a",))


def test_oracle_and_predicted_difficulty(majority_run):
    assert oracle_difficulty(majority_run) == {"A": 1.0, "B": 0.25}
    pred = predicted_difficulty(majority_run)
    assert pred["A"] == pytest.approx(0.8) and pred["B"] == pytest.approx(np.mean([0.9, 0.3, 0.2, 0.1]))
    assert predicted_difficulty_of(majority_run.problems[0].candidates[:0]) is None


def test_pass_at_k_curve_of_a_run(majority_run):
    # A: 4/4 right; B: 1/4 right -> pass@1 = (1 + 1/4)/2, pass@2 = (1 + 1/2)/2, pass@4 = 1
    assert pass_at_k_curve(majority_run) == pytest.approx({1: 0.625, 2: 0.75, 4: 1.0})


def test_round_trip_through_the_search_writer(tmp_path):
    from ttscale.search.output import finalize, result_rows, write_part
    from ttscale.search.types import Candidate, ProblemResult, SearchSettings, Spent

    def c(ans, score, group):
        return Candidate(steps=["s", f"\\boxed{{{ans}}}"], step_scores=[0.5, score], answer=ans, answer_key=ans,
                         finished=True, tokens=5, chain=group)
    results = [ProblemResult(problem={"id": 1, "problem": "1+1", "answer": "2"},
                             candidates=[c("2", 0.9, 0), c("3", 0.2, 1), c("3", 0.3, 1), c("2", 0.1, 0)],
                             spent=Spent(generated_tokens=20, policy_flops=400.0), prediction="3", chosen=1)]
    params = {**dataclasses.asdict(SearchSettings()), "revision_length": 2}
    write_part(tmp_path, 0, result_rows(results, "parallel-revisions", 4, params))
    finalize(tmp_path)
    run = load_run(tmp_path)
    assert (run.strategy, run.budget, run.search.shape(run.budget)) == ("parallel-revisions", 4, (2, 2))
    assert run.search.family == "revision" and not run.parallel
    assert run.problems[0].correct == [True, False, False, True]
    points = {(p.config["aggregation"], p.config["voting"]): p for p in evaluate_runs([run])}
    assert points[("last", "majority")].hits.tolist() == [[True]]        # 2 vs 2 votes: "2" appears first
    assert points[("last", "hierarchical")].hits.tolist() == [[True]]    # chain winners 0.9 ("2"), 0.3 ("3")
    assert points[("avg", "prm-vote")].hits.tolist() == [[True]]         # 0.7 + 0.3 vs 0.35 + 0.4
    assert points[("last", "hierarchical")].method == "parallel-revisions(L=2,C=2)"
    assert points[("last", "hierarchical")].config["revision_length"] == 2
