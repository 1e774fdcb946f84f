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
    fitted = {"compute_optimal": {"cost_axis": "flops", "curve": {"4": 0.61, "16": 0.8},
                                  "curve_cost": {"4": 0.9e9, "16": 2.1e9}}}
    fresh = {"accuracy": {"auto": {"16": 0.75}, "weighted-best-of-n": {"4": 0.6, "16": 0.7}},
             "accuracy_ci": {"auto": {"16": [0.7, 0.8]}},
             "cost": {"auto": {"16": {"flops": 2e9}}, "weighted-best-of-n": {"4": {"flops": 1e9}, "16": {"flops": 4e9}}},
             "sweep": [{"method": "auto", "problems": 200}]}
    d = deployment(fitted, fresh)
    row = d["budgets"]["16"]
    assert (row["achieved"], row["predicted"], row["cost"], row["predicted_cost"]) == (0.75, 0.8, 2e9, 2.1e9)
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


def test_evaluate_deployment_of_pairs_auto_with_the_tuned_baselines_selection(tmp_path):
    """`evaluate --deployment-of FITTED` on the confirm runs: the tuned baseline's choice at N=4 (here majority
    at N=4, what the fitted evaluation's k-fold procedure chose) is scored on the confirm baseline run and
    paired with auto on the same problems."""
    import json

    from eval_runs import cand, row, save_run
    from ttscale.cli import main

    bon, auto = [], []
    for i in range(6):
        right = i < 4
        cands = [cand("7" if right or j == 0 else "8", right or j == 0, [0.5, 0.9 if j else 0.1]) for j in range(4)]
        bon.append(row(f"p{i}", "7", "best-of-n", 4, cands))
        auto.append({**row(f"p{i}", "7", "auto", 4, cands, allocation="a.yaml"), "chosen": 0, "correct": True})
    runs = [save_run(bon, tmp_path / "bon"), save_run(auto, tmp_path / "auto")]
    fitted = {"compute_optimal": {"cost_axis": "flops", "curve": {"4": 0.9},
                                  "tuned_baseline": {"chosen": {"4": {"method": "majority", "strategy": "majority",
                                                                      "budget": 4, "aggregation": "last",
                                                                      "voting": "majority"}}}}}
    (tmp_path / "fitted.json").write_text(json.dumps(fitted))
    assert main(["evaluate", *map(str, runs), "--out", str(tmp_path / "confirm"), "--bins", "none",
                 "--deployment-of", str(tmp_path / "fitted.json")]) == 0
    row16 = json.loads((tmp_path / "confirm" / "summary.json").read_text())["deployment"]["budgets"]["4"]
    assert row16["achieved"] == 1.0 and row16["predicted"] == 0.9
    tuned = row16["tuned_baseline"]
    assert (tuned["method"], tuned["voting"], tuned["budget"]) == ("majority", "majority", 4)
    assert tuned["accuracy"] == pytest.approx(4 / 6)            # majority says 8 on the last two problems
    diff, lo, hi = tuned["paired"]
    assert diff == pytest.approx(2 / 6) and lo <= diff <= hi
    assert main(["evaluate", *map(str, runs), "--out", str(tmp_path / "bad"), "--bins", "none",
                 "--deployment-of", str(runs[0])]) == 2       # a folder, not a summary: one line, exit 2
