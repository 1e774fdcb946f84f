"""pass@k, subsampled accuracy vs budget, loading runs, and difficulty bins on hand-computed cases."""
from __future__ import annotations

import dataclasses

import math

import numpy as np
import pytest

from eval_runs import cand, row, save_run, synthetic_rows
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


def test_a_subsampled_budget_pays_the_prompt_as_a_real_run_would(tmp_path):
    """N' = 2 of a 4-sample run: half the generated tokens and PRM tokens, but the whole prompt (a real
    2-sample run prefills it once, as the 4-sample run did), with FLOPs at 2 · params per token."""
    cands = [cand("7", True, [0.5]) for _ in range(4)]            # 10 tokens each
    r = row("A", "7", "majority", 4, cands)
    r["spent"].update(policy_prompt_tokens=30, policy_flops=2.0e3 * (40 + 30), prm_tokens=80, prm_flops=800.0)
    points = evaluate_run(load_run(save_run([r], tmp_path / "run")), subsamples=8)
    two, four = _point(points, "majority", 2), _point(points, "majority", 4)
    assert (four.tokens, four.run_tokens, four.flops) == (40, 40 + 30 + 80, 2.0e3 * 70 + 800)
    assert two.tokens == pytest.approx(20) and two.run_tokens == pytest.approx(20 + 30 + 40)
    assert two.flops == pytest.approx(2.0e3 * (20 + 30) + 400)


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
    # over the first k samples only, as auto's probe of k samples sees a new problem
    assert predicted_difficulty(majority_run, samples=2)["B"] == pytest.approx(0.6)
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


def _run_with(tmp_path, name, strategy, budget, data_seed, run_seed, **params):
    rows = synthetic_rows(strategy, budget, n_problems=10, seed=data_seed, **params)
    for r in rows:
        r["params"]["seed"] = run_seed
    return load_run(save_run(rows, tmp_path / name))


def test_two_seeds_are_pooled_into_one_point_with_both_counted(tmp_path):
    a = _run_with(tmp_path, "s0", "beam", 4, data_seed=1, run_seed=0, beam_width=2)
    b = _run_with(tmp_path, "s1", "beam", 4, data_seed=2, run_seed=1, beam_width=2)
    notes: list[str] = []
    pooled = {p.key: p for p in evaluate_runs([a, b], notes=notes)}
    single = {p.key: p for p in evaluate_runs([a])}
    other = {p.key: p for p in evaluate_runs([b])}
    assert pooled.keys() == single.keys() and not notes
    for key, pt in pooled.items():
        assert pt.seeds == 2 and pt.hits.shape == (2, 10)          # one row per seed, nothing dropped
        assert pt.accuracy()[0] == pytest.approx((single[key].accuracy()[0] + other[key].accuracy()[0]) / 2)


def test_runs_that_differ_in_more_than_the_seed_never_collide(tmp_path):
    a = _run_with(tmp_path, "d8", "beam", 4, data_seed=1, run_seed=0, beam_width=2, max_depth=8)
    b = _run_with(tmp_path, "d20", "beam", 4, data_seed=2, run_seed=0, beam_width=2, max_depth=20)
    methods = {p.method for p in evaluate_runs([a, b])}
    assert methods == {"beam(M=2)[max_depth=8]", "beam(M=2)[max_depth=20]"}


def test_a_subsampled_budget_comes_from_the_larger_run_and_says_so(tmp_path):
    small = _run_with(tmp_path, "b4", "best-of-n", 4, data_seed=1, run_seed=0)
    big = _run_with(tmp_path, "b8", "best-of-n", 8, data_seed=2, run_seed=0)
    notes: list[str] = []
    points = evaluate_runs([small, big], notes=notes)
    at4 = [p for p in points if p.budget == 4]
    assert at4 and all(p.source_budget == 8 for p in at4)
    # one line for the pair of runs, naming both, the larger one read
    assert len(notes) == 1 and f"are in both {big.path} and {small.path}: read from {big.path}" in notes[0]


def test_one_sample_set_in_two_runs_is_read_from_each_methods_own_run_and_said_once(tmp_path):
    """A majority run and a weighted best-of-N run of the same size both give all three parallel methods: each
    method comes from its own strategy's run, and the notes say so in one line per pair, not one per point."""
    maj = _run_with(tmp_path, "maj", "majority", 4, data_seed=1, run_seed=0)
    wbon = _run_with(tmp_path, "wbon", "weighted-best-of-n", 4, data_seed=2, run_seed=0)
    notes: list[str] = []
    points = evaluate_runs([maj, wbon], notes=notes)
    for p in points:
        own = {"majority": maj.path, "weighted-best-of-n": wbon.path}.get(p.config["strategy"])
        if own:
            assert p.source == own
    assert len(notes) == 2 and all("are in both" in n for n in notes)
    assert not any("not the N=4 run" in n for n in notes)


def test_paired_difference_hand_computed():
    from ttscale.eval.metrics import Point, paired_difference

    def pt(ids, hits):
        return Point(method="m", config={"strategy": "beam", "aggregation": "last", "voting": "prm-vote"}, budget=4,
                     ids=ids, hits=np.array([hits], dtype=bool), tokens=0.0, flops=0.0, default=True)
    a = pt(["p1", "p2", "p3", "p4"], [1, 1, 0, 1])
    b = pt(["p4", "p3", "p2", "p9"], [1, 0, 0, 1])       # other order, p1/p9 not shared
    mean, lo, hi = paired_difference(a, b)
    assert mean == pytest.approx(1 / 3)                   # p2: 1-0, p3: 0-0, p4: 1-1
    assert 0.0 <= lo <= mean <= hi <= 1.0
    same = paired_difference(a, a)
    assert same == (0.0, 0.0, 0.0)


def test_search_summary_says_when_flops_are_unknown(tmp_path):
    from ttscale.search.output import finalize, result_rows, write_part
    from ttscale.search.types import Candidate, ProblemResult, SearchSettings, Spent

    cand = Candidate(steps=["\\boxed{2}"], answer="2", answer_key="2", finished=True, tokens=5)
    results = [ProblemResult(problem={"id": 1, "problem": "1+1", "answer": "2"}, candidates=[cand],
                             spent=Spent(generated_tokens=5, policy_prompt_tokens=7, policy_calls=1), chosen=0)]
    write_part(tmp_path, 0, result_rows(results, "majority", 1, dataclasses.asdict(SearchSettings())))
    summary = finalize(tmp_path, {"policy": "served-7b"})
    assert summary["flops_known"] is False and summary["spent_total"]["policy_prompt_tokens"] == 7
    assert "served-7b" in summary["notes"][0] and "--policy-params" in summary["notes"][0]
    # a run written before prompt tokens were recorded reads them as 0
    old = Spent.from_dict({"generated_tokens": 3, "policy_flops": 6.0, "prm_tokens": None})
    assert (old.policy_prompt_tokens, old.tokens, old.flops, old.unknown_flops()) == (0, 3, 6.0, [])
