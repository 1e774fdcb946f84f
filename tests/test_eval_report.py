"""`ttscale evaluate` end to end on run folders built as search-output rows: report, plots, summary, allocation file."""
from __future__ import annotations

import json

import matplotlib.image
import pytest

from eval_runs import save_run, synthetic_rows
from ttscale.cli import main
from ttscale.search.allocation_file import choose_config, load_allocation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    runs = [save_run(synthetic_rows("best-of-n", 8, seed=1), root / "bon8"),
            save_run(synthetic_rows("beam", 4, seed=2, skill=0.2, beam_width=2), root / "beam4"),
            save_run(synthetic_rows("parallel-revisions", 4, seed=3, revision_length=2), root / "rev-l2"),
            save_run(synthetic_rows("parallel-revisions", 4, seed=4, revision_length=4), root / "rev-l4"),
            save_run(synthetic_rows("parallel-revisions", 4, seed=5, revision_length=1), root / "rev-l1")]
    (root / "prm.json").write_text(json.dumps({"prm": {"step_auc": 0.81, "first_error_f1": 0.6},
                                               "seconds": {"search": 12.5}}))
    out = root / "report"
    rc = main(["evaluate", *map(str, runs), "--out", str(out), "--subsamples", "8", "--n-bins", "3",
               "--folds", "3", "--extra", str(root / "prm.json")])
    assert rc == 0
    return out, json.loads((out / "summary.json").read_text())


def test_report_files_are_written_and_plots_are_real_images(evaluated):
    out, _ = evaluated
    for name in ("accuracy_vs_budget", "accuracy_by_bin", "revision_ratio", "compute_optimal"):
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC
        img = matplotlib.image.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 0.01
        assert f"({name}.png)" in (out / "report.md").read_text()


def test_summary_keys_and_values(evaluated):
    _, s = evaluated
    for key in ("accuracy", "accuracy_by_bin", "compute_optimal_efficiency", "prm", "label_agreement", "seconds",
                "sweep", "cost", "revision_ratio", "compute_optimal"):
        assert key in s
    assert set(s["accuracy"]) == {"majority", "best-of-n", "weighted-best-of-n", "beam(M=2)",
                                  "parallel-revisions(L=2,C=2)", "parallel-revisions(L=4,C=1)",
                                  "parallel-revisions(L=1,C=4)"}
    assert list(s["accuracy"]["best-of-n"]) == ["1", "2", "4", "8"] and list(s["accuracy"]["beam(M=2)"]) == ["4"]
    assert all(0 <= a <= 1 for per in s["accuracy"].values() for a in per.values())
    assert set(s["accuracy_by_bin"]) == {"1", "2", "3"}
    easy, hard = s["accuracy_by_bin"]["1"]["majority"]["8"], s["accuracy_by_bin"]["3"]["majority"]["8"]
    assert easy > hard                                     # bins come from pass@1 of the same samples
    assert s["prm"] == {"step_auc": 0.81, "first_error_f1": 0.6} and s["seconds"] == {"search": 12.5}
    assert s["label_agreement"] is None
    assert list(s["pass_at_k"].values())[0]["8"] >= list(s["pass_at_k"].values())[0]["1"] > 0
    # the ratio sweep spans L = 1 (the revision model's parallel baseline) to N, each paired with L = 1
    ratios = s["revision_ratio"]
    assert [r["ratio"] for r in ratios] == [0.25, 1.0, 4.0] and {r["first_attempt"] for r in ratios} == {"reviser"}
    assert ratios[0]["vs_chains_of_1"] is None
    for r in ratios[1:]:
        diff, lo, hi = r["vs_chains_of_1"]
        assert lo <= diff <= hi and diff == pytest.approx(r["accuracy"] - ratios[0]["accuracy"], abs=1e-3)
    co = s["compute_optimal"]
    assert co["baseline"] == "weighted-best-of-n" and co["measure"] == "predicted" and co["folds"] == 3
    tuned = "best-of-N (selection tuned)"    # the headline baseline: selection chosen k-fold like the allocation
    assert set(co["efficiency_by_baseline"]) == {"weighted-best-of-n", "best-of-n", "majority", tuned}
    assert co["efficiency_against"] == tuned and co["efficiency_by_baseline"][tuned] == s["compute_optimal_efficiency"]
    assert co["efficiency_detail"][tuned]["refit"] and set(co["tuned_baseline"]["curve"]) == {"1", "2", "4", "8"}
    assert all(c["strategy"] in ("majority", "best-of-n", "weighted-best-of-n")
               for c in co["tuned_baseline"]["chosen"].values())
    assert s["compute_optimal_efficiency"] is None or s["compute_optimal_efficiency"] > 0
    # compared on measured FLOPs (the default axis); no chosen configuration spends more than the budget
    assert co["cost_axis"] == "flops" and s["flops_known"] is True
    budget_cost = {int(b): c for b, c in co["budget_cost"].items()}
    assert budget_cost == {b: s["cost"]["weighted-best-of-n"][str(b)]["flops"] for b in (1, 2, 4, 8)}
    # ... once auto's 4-sample probe is paid: below its cost, the probe's own samples are all there is
    probe = s["cost"]["weighted-best-of-n"]["4"]["flops"]
    assert co["probe_cost"] == pytest.approx(probe, rel=0.05)
    assert all(co["curve_cost"][b] <= max(budget_cost[int(b)], co["probe_cost"]) * (1 + 1e-9) for b in co["curve_cost"])
    assert co["curve_cost"]["1"] == pytest.approx(co["probe_cost"])
    low, high = s["compute_optimal_efficiency_interval"]
    if s["compute_optimal_efficiency"] is not None and low is not None:
        assert low <= s["compute_optimal_efficiency"] <= high


def test_allocation_file_drives_choose_config(evaluated):
    out, s = evaluated
    policy = load_allocation(out / "allocation.yaml")
    assert policy["budgets"] == [1, 2, 4, 8] and policy["difficulty"]["measure"] == "predicted"
    assert policy["cost"]["axis"] == "flops" and policy["cost"]["baseline"] == "weighted-best-of-n"
    cfg = choose_config(policy, 0.7, 8)
    assert cfg["budget"] <= 8 and cfg["strategy"] in ("majority", "best-of-n", "weighted-best-of-n", "beam",
                                                      "parallel-revisions")
    assert cfg["accuracy"] == s["compute_optimal"]["choices"][cfg["bin"]]["8"]["accuracy"]


def test_runs_over_other_problems_are_restricted_to_the_common_ones_and_said_so(tmp_path, capsys):
    full = save_run(synthetic_rows("best-of-n", 4, n_problems=12, seed=1), tmp_path / "bon")
    small = save_run(synthetic_rows("beam", 4, n_problems=3, seed=2, beam_width=2), tmp_path / "small")
    assert main(["evaluate", str(full), str(small), "--out", str(tmp_path / "ev"), "--bins", "none"]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert {row["problems"] for row in summary["sweep"]} == {3}          # every comparison on the shared 3
    assert any("9 of its 12 graded problems are not in every run" in n for n in summary["notes"])
    assert "not in every run" in (tmp_path / "ev" / "report.md").read_text()

    other = synthetic_rows("beam", 4, n_problems=3, seed=2, beam_width=2)
    for r in other:
        r["id"] = "other-" + r["id"]
    odd = save_run(other, tmp_path / "odd")
    capsys.readouterr()
    assert main(["evaluate", str(full), str(odd), "--out", str(tmp_path / "ev2"), "--bins", "none"]) == 2
    err = capsys.readouterr().err
    assert "no problem is graded in every run" in err and str(odd) in err and "Traceback" not in err


def test_unknown_flops_are_reported_as_unknown_not_zero(tmp_path):
    """A served policy of unknown size ran tokens at 0 FLOPs: the summary says FLOPs are unknown, names the
    model, prints no FLOPs, and the allocation compares tokens run instead."""
    rows = synthetic_rows("best-of-n", 4, seed=1)
    for r in rows:
        r["spent"] = {**r["spent"], "policy_flops": 0.0, "policy_prompt_tokens": 12}
    run = save_run(rows, tmp_path / "served")
    (run / "config.yaml").write_text("policy: my-served-model\nprm: ./prm\n")
    out = tmp_path / "report"
    assert main(["evaluate", str(run), "--out", str(out), "--n-bins", "2", "--folds", "2", "--subsamples", "2"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["flops_known"] is False
    assert any("my-served-model" in n and "--policy-params" in n for n in s["notes"])
    assert s["cost"]["weighted-best-of-n"]["4"]["flops"] is None
    assert all(r["flops"] is None for r in s["sweep"])
    assert s["compute_optimal"]["cost_axis"] == "tokens"
    # tokens run = prompts + generated + PRM: the 12 prompt tokens are counted
    tokens = s["cost"]["weighted-best-of-n"]["4"]
    assert tokens["run_tokens"] == pytest.approx(tokens["tokens"] + 12)
    assert "unknown" in (out / "report.md").read_text()


def test_knobs_are_chosen_on_one_split_and_applied_on_another(tmp_path, capsys):
    """--tune on dev runs writes tuned.yaml (the best mean held-out accuracy, first listed on ties); --tuned on
    test runs takes those values and the summary says where they came from."""
    import yaml

    dev = [save_run(synthetic_rows("best-of-n", 8, n_problems=20, seed=s), tmp_path / f"dev{s}") for s in (1,)]
    dev.append(save_run(synthetic_rows("beam", 4, n_problems=20, seed=2, skill=0.2, beam_width=2), tmp_path / "devb"))
    test = [save_run(synthetic_rows("best-of-n", 8, n_problems=20, seed=7), tmp_path / "test")]
    assert main(["evaluate", *map(str, dev), "--out", str(tmp_path / "rd"), "--subsamples", "4", "--folds", "2",
                 "--refit-replicates", "20", "--tune", "pooling=0,10", "n_bins=2,3"]) == 0
    tuned = yaml.safe_load((tmp_path / "rd" / "tuned.yaml").read_text())
    rows = tuned["table"]
    assert len(rows) == 4 and {(r["pooling"], r["n_bins"]) for r in rows} == {(0, 2), (0, 3), (10, 2), (10, 3)}
    best = max(rows, key=lambda r: r["score"])      # max() keeps the first of equals, as the choice does
    assert tuned["knobs"] == {"pooling": best["pooling"], "n_bins": best["n_bins"]}
    assert tuned["chosen_on"]["runs"] == list(map(str, dev))
    dev_summary = json.loads((tmp_path / "rd" / "summary.json").read_text())
    assert dev_summary["knobs"]["tuned_here"]["knobs"] == tuned["knobs"]
    assert main(["evaluate", *map(str, test), "--out", str(tmp_path / "rt"), "--subsamples", "4", "--folds", "2",
                 "--refit-replicates", "20", "--pooling", "3", "--tuned", str(tmp_path / "rd" / "tuned.yaml")]) == 0
    s = json.loads((tmp_path / "rt" / "summary.json").read_text())
    assert s["knobs"]["pooling"] == best["pooling"] and s["knobs"]["n_bins"] == best["n_bins"]
    assert s["knobs"]["from"]["chosen_on"]["runs"] == list(map(str, dev))
    assert len(s["accuracy_by_predicted_bin"]) == best["n_bins"]
    # both budget rules are reported, each with its per-budget efficiency curve and what every bin was given
    co = s["compute_optimal"]
    assert set(co["rules"]) == {"per-bin", "mean"} and co["rules"][co["rule"]]["efficiency"] == co["efficiency"]
    for r in co["rules"].values():
        assert [e["budget"] for e in r["efficiency_curve"]] == sorted(map(int, co["tuned_baseline"]["curve"]))
        assert set(r["given"]) == set(co["choices"])
    assert (tmp_path / "rt" / "allocation_rules.png").stat().st_size > 0
    # scored by the headline instead: the table holds each combination's efficiency against the tuned baseline
    from ttscale.eval.efficiency import compute_optimal_efficiency

    assert main(["evaluate", *map(str, dev), "--out", str(tmp_path / "re"), "--subsamples", "4", "--folds", "2",
                 "--refit-replicates", "20", "--tune", "pooling=0,10", "--tune-by", "efficiency"]) == 0
    by_eff = yaml.safe_load((tmp_path / "re" / "tuned.yaml").read_text())
    assert by_eff["criterion"].startswith("efficiency")
    here = json.loads((tmp_path / "re" / "summary.json").read_text())["compute_optimal"]
    tb = here["tuned_baseline"]
    chosen = {r["pooling"]: r["score"] for r in by_eff["table"]}[by_eff["knobs"]["pooling"]]
    want = compute_optimal_efficiency(dict(zip(tb["curve_cost"].values(), tb["curve"].values())),
                                      dict(zip(here["curve_cost"].values(), here["curve"].values())))
    assert chosen == pytest.approx(want or 0.0, abs=1e-6)
    capsys.readouterr()
    assert main(["evaluate", *map(str, test), "--out", str(tmp_path / "x"), "--tune", "temperature=1,2"]) == 2
    err = capsys.readouterr().err
    assert "--tune 'temperature=1,2': expected KNOB=V1,V2" in err and "Traceback" not in err
