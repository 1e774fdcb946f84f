"""Labels from Monte Carlo evidence, first-error lookup and native-row validation."""
from __future__ import annotations

import pytest

from ttscale.data.labels import derive_labels, first_error_index, harden, is_hard, relabel, validate_row


def test_derive_labels_hard_soft_and_threshold():
    correct, total = [3, 1, 0, 2], [4, 4, 4, 3]
    assert derive_labels(correct, total) == [1.0, 1.0, 0.0, 1.0]  # threshold 0: any rollout correct
    assert derive_labels(correct, total, "hard", threshold=0.25) == [1.0, 0.0, 0.0, 1.0]  # 0.25 is not > 0.25
    assert derive_labels(correct, total, "hard", threshold=0.7) == [1.0, 0.0, 0.0, 0.0]
    soft = derive_labels(correct, total, "soft")
    assert soft == [0.75, 0.25, 0.0, 2 / 3]  # the exact fraction, never rounded
    assert harden(soft, 0.25) == derive_labels(correct, total, "hard", 0.25)
    assert is_hard([1.0, 0.0, 1]) and not is_hard(soft)
    # 0/0 = never probed (binary search skips steps before the error it found): correct in both modes
    assert derive_labels([0, 1, 0], [0, 4, 4], "soft") == [1.0, 0.25, 0.0]
    assert derive_labels([0, 1, 0], [0, 4, 4], "hard", threshold=0.5) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("args, match", [
    (([1, 2], [4]), "one entry per labelled step"),
    (([1], [0]), "step 0 has mc_correct=1, mc_total=0"),
    (([-1], [2]), "need 0 <= mc_correct"),
    (([5], [4]), "step 0 has mc_correct=5"),
])
def test_derive_labels_rejects_bad_evidence(args, match):
    with pytest.raises(ValueError, match=match):
        derive_labels(*args)
    with pytest.raises(ValueError, match="mode"):
        derive_labels([1], [2], mode="average")


def test_first_error_index():
    assert first_error_index([1.0, 1.0, 0.0, 1.0]) == 2
    assert first_error_index([1.0, 1.0]) == -1
    assert first_error_index([]) == -1
    assert first_error_index([0.9, 0.5, 0.1]) == 1  # 0.5 is not above the default threshold 0.5
    assert first_error_index([0.9, 0.5, 0.1], threshold=0.2) == 2


def _row(**over):
    row = {"id": "p7", "problem": "1+1?", "steps": ["1+1=2", "answer 2", "done"], "labels": [1, 0.5],
           "mc_correct": [4, 2], "mc_total": [4, 4], "answer": None}
    row.update(over)
    return row


def test_validate_row_cleans_a_good_row():
    clean = validate_row(_row())
    assert clean["labels"] == [1.0, 0.5] and all(isinstance(v, float) for v in clean["labels"])
    assert "answer" not in clean  # null optional fields are dropped
    assert clean["mc_correct"] == [4, 2]
    assert validate_row(_row(mc_correct=[0, 2], mc_total=[0, 4]))["mc_total"] == [0, 4]  # 0/0 = not probed


@pytest.mark.parametrize("over, field, match", [
    ({"labels": [1, 0, 1, 1]}, "labels", "4 labels for 3 steps"),
    ({"labels": [1, 1.5]}, "labels", "label 1 is 1.5"),
    ({"labels": [True]}, "labels", "label 0 is True"),
    ({"steps": []}, "steps", "non-empty list"),
    ({"steps": ["a", 3, "c"]}, "steps", "step 1 is int"),
    ({"problem": None}, "problem", "missing"),
    ({"mc_total": [4]}, "mc_total", "1 entries for 2 labels"),
    ({"mc_correct": [5, 2]}, "mc_correct", "step 0: 5 correct of 4"),
    ({"mc_total": None}, "mc_total", "come together"),
    ({"rollouts": -3}, "rollouts", "non-negative"),
    ({"id": ""}, "id", "non-empty string"),
])
def test_validate_row_errors_name_row_and_field(over, field, match):
    with pytest.raises(ValueError, match=match) as err:
        validate_row(_row(**over), where="data.jsonl: row 3")
    msg = str(err.value)
    assert msg.startswith("data.jsonl: row 3") and f"field {field!r}" in msg


def test_relabel_from_mc_evidence():
    row = validate_row(_row())
    assert relabel(row, "soft")["labels"] == [1.0, 0.5]
    assert relabel(row, "hard", threshold=0.5)["labels"] == [1.0, 0.0]
    assert row["labels"] == [1.0, 0.5]  # the input row is not modified
    with pytest.raises(ValueError, match="'p7'.*mc_correct"):
        relabel({"id": "p7", "labels": [1.0]}, "hard")
