"""eval-prm: threshold never fitted on the reported rows, step AUC/accuracy on implied labels, bad rows skipped."""
from __future__ import annotations

import json

import pytest

from ttscale.cli import main
from ttscale.data.io import read_jsonl, write_table
from ttscale.eval.eval_prm_cmd import evaluate, fit_threshold
from ttscale.eval.prm_rows import implied_step_labels, score_rows, step_metrics
from ttscale.inference.prm_inputs import PRMSpec, SequenceTooLongError
from ttscale.inference.scorers_load import load_scorer
from ttscale.train import prm_metrics as pm
from ttscale.train.tiny import tiny_model

MAX_LENGTH = 96
STEPS = ["He has 3 + 4 = 7 apples.", "So x = 7.", "y = 3", "The answer is \\boxed{7}."]


def _row(i, label, steps=STEPS, split="a"):
    return {"id": f"r{i}", "problem": f"Tom has {i} apples and buys 4 more. How many?", "steps": list(steps),
            "label": label, "split": split}


@pytest.fixture(scope="module")
def prm_dir(prm_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("eval_prm")
    model = tiny_model(prm_tokenizer, "token-classification", seed=0, num_labels=2, hidden_size=32,
                       max_position_embeddings=512, initializer_range=0.3)
    model.save_pretrained(path)
    prm_tokenizer.save_pretrained(path)
    PRMSpec(max_length=MAX_LENGTH).save(path)
    return path


def _scored(label, scores, steps=None):
    steps = steps or [f"s{k}" for k in range(len(scores))]
    return {"id": "x", "label": label, "steps": steps, "scores": scores, "scored_steps": len(scores),
            "truncated": False, "split": "a"}


def test_implied_step_labels():
    assert implied_step_labels(-1, 3) == [1, 1, 1]
    assert implied_step_labels(0, 3) == [0]
    assert implied_step_labels(2, 4) == [1, 1, 0]


def test_step_auc_and_accuracy_by_hand():
    rows = [_scored(-1, [0.9, 0.8]), _scored(1, [0.85, 0.82, 0.1])]  # 0.1 follows the first error: unlabelled
    m = step_metrics(rows, threshold=0.5)
    # positives 0.9 0.8 0.85 vs the one negative 0.82: 2 of 3 pairs ordered right
    assert m["step_auc"] == pytest.approx(2 / 3)
    assert m["step_accuracy"] == pytest.approx(3 / 4) and m["steps"] == 4 and m["steps_wrong"] == 1


def test_threshold_fitted_on_one_file_applies_to_another():
    # Fit rows: F1 is 1 exactly for thresholds in [0.3, 0.6) -> fitted 0.45.
    fit = [_scored(1, [0.9, 0.3]), _scored(-1, [0.7, 0.6]), _scored(0, [0.2, 0.8])]
    threshold, f1_there = fit_threshold(fit)
    assert threshold == pytest.approx(0.45) and f1_there == pytest.approx(1.0)
    # Reported rows: their own best threshold would be 0.65 (F1 1), but 0.45 is applied: the erroneous row's
    # 0.5 is not caught -> acc_error 0, F1 0. A tuned-on-itself evaluation would report 1.
    report = [_scored(1, [0.9, 0.5]), _scored(-1, [0.8, 0.7])]
    assert fit_threshold(report)[1] == pytest.approx(1.0)
    result = evaluate(report, threshold)
    assert result["overall"]["acc_error"] == 0.0 and result["overall"]["acc_correct"] == 1.0
    assert result["f1"] == 0.0


def _write(path, rows):
    write_table(rows, path)
    return str(path)


def test_long_row_skipped_truncated_or_fatal(prm_dir, tmp_path):
    scorer = load_scorer(prm_dir, device="cpu", batch_size=2)
    long_steps = STEPS * 12
    with pytest.raises(SequenceTooLongError):
        scorer.encode("q", long_steps)
    rows = [_row(0, -1), dict(_row(1, 2, long_steps), id="too-long"), _row(2, 1)]
    skipped = score_rows(scorer, [dict(r) for r in rows], "skip", "f.jsonl")
    assert [(s["id"], s["file"]) for s in skipped] == [("too-long", "f.jsonl")]
    assert f"> max_length {MAX_LENGTH}" in skipped[0]["reason"] and "row too-long" in skipped[0]["reason"]

    cut = [dict(r) for r in rows]
    assert score_rows(scorer, cut, "truncate", "f.jsonl") == []
    k = cut[1]["scored_steps"]
    assert 2 < k < len(long_steps) and cut[1]["truncated"] and len(cut[1]["scores"]) == k
    with pytest.raises(SequenceTooLongError):  # k is the longest prefix that fits
        scorer.encode(cut[1]["problem"], long_steps[:k + 1])
    assert scorer.score([(cut[1]["problem"], long_steps[:k])])[0] == pytest.approx(cut[1]["scores"])

    with pytest.raises(ValueError, match="row too-long: truncated"):
        score_rows(scorer, [dict(r) for r in rows], "fail", "f.jsonl")


def test_eval_prm_end_to_end_with_threshold_from_and_a_long_row(prm_dir, tmp_path, capsys):
    long_steps = STEPS * 12
    data = [_row(i, i % 3 - 1, split="ab"[i % 2]) for i in range(8)] + [dict(_row(8, 1, long_steps), id="long-8")]
    fit = [_row(10 + i, (i + 1) % 3 - 1) for i in range(6)]
    data_path, fit_path = _write(tmp_path / "bench.jsonl", data), _write(tmp_path / "fit.jsonl", fit)
    out = tmp_path / "prm_eval"
    argv = ["eval-prm", "--data", data_path, "--prm", str(prm_dir), "--prm-device", "cpu", "--threads", "1",
            "--out", str(out)]
    assert main(argv + ["--threshold-from", fit_path]) == 0
    summary = json.loads((out / "summary.json").read_text())
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{\n"):]) == summary
    assert summary["rows"] == 9 and summary["scored"] == 8 and summary["skipped"] == 1
    assert [r["id"] for r in read_jsonl(out / "skipped.jsonl")] == ["long-8"]
    assert summary["threshold_source"] == "threshold-from" and summary["threshold_fit"]["file"] == fit_path

    # The threshold is the one fitted on fit.jsonl's scores, and F1 / step AUC are recomputed from predictions.
    scorer = load_scorer(prm_dir, device="cpu")
    fit_scores = scorer.score([(r["problem"], r["steps"]) for r in fit])
    assert summary["threshold"] == pytest.approx(pm.best_threshold(fit_scores, [r["label"] for r in fit])[0])
    preds = read_jsonl(out / "predictions.jsonl")
    assert len(preds) == 8
    for name, split in summary["splits"].items():
        part = [r for r in preds if r["split"] == name]
        assert split["f1"] == pytest.approx(pm.first_error_scores(
            [pm.first_error(r["scores"], summary["threshold"]) for r in part], [r["label"] for r in part])["f1"])
    assert summary["step_auc"] == pytest.approx(step_metrics(preds, summary["threshold"])["step_auc"])
    assert 0.0 <= summary["step_accuracy"] <= 1.0 and "f1" in summary

    # fixed threshold (the default), and the demo's --predictions/--summary flags still work
    s2 = tmp_path / "demo" / "summary.json"
    assert main(argv[:-2] + ["--predictions", str(tmp_path / "demo" / "p.jsonl"), "--summary", str(s2)]) == 0
    fixed = json.loads(s2.read_text())
    assert fixed["threshold"] == 0.5 and fixed["threshold_source"] == "fixed"
    assert (tmp_path / "demo" / "skipped.jsonl").exists() and (tmp_path / "demo" / "p.jsonl").exists()

    # --on-error fail: one line naming the row, exit 2, no traceback
    capsys.readouterr()
    assert main(argv + ["--on-error", "fail"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error" in line]  # the rest is progress bars
    assert line.startswith("ttscale eval-prm: error: ") and f"{data_path}: row long-8" in line
    assert "Traceback" not in err
