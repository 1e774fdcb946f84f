"""Predicted vs achieved accuracy of auto on fresh problems, and the baseline at equal measured cost."""
from __future__ import annotations

import pytest

from ttscale.eval.deployment import accuracy_at_cost, deployment


def test_accuracy_at_cost_interpolates_in_log2_cost_and_refuses_to_extrapolate():
    curve = {100.0: 0.5, 400.0: 0.7}
    assert accuracy_at_cost(curve, 200.0) == pytest.approx(0.6)      # halfway in log2(cost)
    assert accuracy_at_cost(curve, 100.0) == 0.5 and accuracy_at_cost(curve, 400.0) == 0.7
    assert accuracy_at_cost(curve, 50.0) is None and accuracy_at_cost(curve, 800.0) is None
    assert accuracy_at_cost({}, 10.0) is None


def test_deployment_compares_achieved_with_predicted_and_the_baseline_at_auto_cost():
    fitted = {"compute_optimal": {"cost_axis": "flops", "curve": {"4": 0.61, "16": 0.8}}}
    fresh = {"accuracy": {"auto": {"16": 0.75}, "weighted-best-of-n": {"4": 0.6, "16": 0.7}},
             "accuracy_ci": {"auto": {"16": [0.7, 0.8]}},
             "cost": {"auto": {"16": {"flops": 2e9}}, "weighted-best-of-n": {"4": {"flops": 1e9}, "16": {"flops": 4e9}}},
             "sweep": [{"method": "auto", "problems": 200}]}
    d = deployment(fitted, fresh)
    row = d["budgets"]["16"]
    assert (row["achieved"], row["predicted"], row["cost"]) == (0.75, 0.8, 2e9)
    assert row["baseline_at_equal_cost"] == pytest.approx(0.65)       # 2e9 is halfway between 1e9 and 4e9
    assert d["cost_axis"] == "flops" and d["problems"] == 200 and row["achieved_ci"] == [0.7, 0.8]
    assert row["baseline_at_most_cost"] == {"budget": "4", "cost": 1e9, "accuracy": 0.6}   # 4e9 > auto's 2e9
    fresh["cost"]["auto"]["16"]["flops"] = 5e9          # dearer than every baseline point: none to interpolate
    row = deployment(fitted, fresh)["budgets"]["16"]
    assert row["baseline_at_equal_cost"] is None and row["baseline_at_most_cost"]["budget"] == "16"


def test_evaluate_scores_auto_by_the_candidate_the_search_chose(tmp_path):
    """auto picks each problem's voting at search time: evaluate must not re-vote every problem one way."""
    from eval_runs import cand, row, save_run

    from ttscale.eval.metrics import evaluate_run
    from ttscale.eval.runs import load_run

    rows = []
    for i in range(4):
        # a majority of wrong answers; the search (PRM-weighted in its bin) chose the lone right one
        cands = [cand("7", True, [0.9, 0.9])] + [cand("8", False, [0.2, 0.2]) for _ in range(3)]
        rows.append({**row(f"p{i}", "7", "auto", 4, cands, allocation="a.yaml"), "chosen": 0 if i < 3 else 1,
                     "correct": i < 3})
    (point,) = evaluate_run(load_run(save_run(rows, tmp_path / "auto")))
    assert point.method == "auto" and point.default and point.budget == 4
    assert point.config["voting"] == "per-problem" and point.hits.tolist() == [[True, True, True, False]]
    assert point.tokens == 40.0      # every candidate of the problem was paid for
