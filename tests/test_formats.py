"""Step-label formats: exact round trips, real-schema rows, loss warnings, errors and `ttscale convert`."""
from __future__ import annotations

import json
import warnings

import pytest

from ttscale.cli import main
from ttscale.data.formats import FORMATS, ConversionWarning, read_rows, write_rows
from ttscale.data.io import read_table

WRITABLE = [name for name, f in FORMATS.items() if f.write]

# A real Math-Shepherd row (peiyi9979/Math-Shepherd, GSM8K part): steps end with the tag "ки",
# `label` is the same text with each tag replaced by +/-.
SHEPHERD_INPUT = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
    "egg. How much in dollars does she make every day at the farmers' market? "
    "Step 1: Janet's ducks lay 16 eggs per day. ки\n"
    "Step 2: She eats 3 for breakfast every morning, so she has 16 - 3 = <<16-3=13>>13 eggs left. ки\n"
    "Step 3: She bakes 4 into muffins for her friends every day, so she has 13 - 4 = <<13-4=9>>9 eggs left. ки\n"
    "Step 4: She sells the remainder at the farmers' market for $2 per egg, so she makes 9 * $2 = $<<9*2=18>>18 "
    "per day. ки\n"
    "Step 5: The answer is: 18 ки")
SHEPHERD_ROW = {"input": SHEPHERD_INPUT, "task": "GSM8K",
                "label": SHEPHERD_INPUT.replace("ки", "+", 4).replace("ки", "-")}

# A PRM800K phase-2 line in the real schema (github.com/openai/prm800k README): neutral first steps,
# labeling stopped at step 3 with nothing chosen; the pre-generated completion 0 is the -1 step.
PRM800K_ROW = {
    "labeler": "340d89bc-f5b7-45e9-b272-909ba68ee363", "timestamp": "2023-01-22T04:34:27.052924",
    "generation": 9, "is_quality_control_question": False, "is_initial_screening_question": False,
    "question": {
        "problem": "What is the greatest common factor of $20 !$ and $200,\\!000$?",
        "ground_truth_solution": "... $2^6 \\cdot 5^4=\\boxed{40,\\!000}$.",
        "ground_truth_answer": "40,\\!000",
        "pre_generated_steps": ["I want to find the largest positive integer that divides both.",
                                "One way to do this is to factor both numbers into primes.",
                                "I know that $200,\\!000 = 2^5\\cdot 10^4 = 2^9\\cdot 5^4$.",
                                "So the answer is 320,000.\n\n# Answer\n\n320,000"],
        "pre_generated_answer": "320,000", "pre_generated_verifier_score": 0.0108},
    "label": {
        "steps": [
            {"completions": [{"text": "I want to find the largest positive integer that divides both.",
                              "rating": 0, "flagged": None}], "human_completion": None, "chosen_completion": 0},
            {"completions": [{"text": "One way to do this is to factor both numbers into primes.",
                              "rating": 1, "flagged": None}], "human_completion": None, "chosen_completion": 0},
            {"completions": [{"text": "I know that $200,\\!000 = 2^5\\cdot 10^4 = 2^9\\cdot 5^4$.",
                              "rating": -1, "flagged": None},
                             {"text": "I can use a factor tree to find the prime factors of $200,\\!000$.",
                              "rating": 0, "flagged": False},
                             {"text": "To factor $20 !$, use that it is the product of 1 through 20.",
                              "rating": 1, "flagged": False}],
             "human_completion": None, "chosen_completion": None},
        ],
        "total_time": 278270, "finish_reason": "found_error"}}


def _native(stem: str) -> list[dict]:
    """Hard-labelled rows every format can carry; ids follow the readers' `<file stem>-<row>` default."""
    return [
        {"id": f"{stem}-0", "problem": "Tom has 3 apples and buys 4 more. How many?",
         "steps": ["He has 3 + 4 = 7 apples.", "The answer is \\boxed{7}."], "labels": [1.0, 1.0]},
        {"id": f"{stem}-1", "problem": "What is 6 * 7 - 2?",
         "steps": ["6 * 7 = 48.", "48 - 2 = 46.", "The answer is \\boxed{46}."], "labels": [1.0, 0.0, 0.0]},
        {"id": f"{stem}-2", "problem": "Compute 10 / 4.", "steps": ["10 / 4 = 3.", "So 3."], "labels": [0.0, 0.0]},
    ]


def _records(path) -> list[dict]:
    return read_table(path).to_list()


@pytest.mark.parametrize("ext", [".jsonl", ".parquet", ""])
@pytest.mark.parametrize("fmt", WRITABLE)
def test_round_trips_are_exact(fmt, ext, tmp_path):
    rows = _native("a")
    if fmt == "processbench":  # it carries labels up to the first error: steps after it stay unlabelled
        rows[1]["labels"], rows[2]["labels"] = [1.0, 0.0], [0.0]
    if fmt == "prm800k":  # a trajectory stops at its first -1 step; rows read from PRM800K name their source
        rows[1]["steps"], rows[1]["labels"] = rows[1]["steps"][:2], [1.0, 0.0]
        rows[2]["steps"], rows[2]["labels"] = rows[2]["steps"][:1], [0.0]
        rows = [{**r, "source": "prm800k"} for r in rows]
        rows[0]["answer"] = "7"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)  # a lossless round trip must not warn
        # native -> X -> native
        assert write_rows(fmt, rows, tmp_path / f"a{ext}") == len(rows)
        back = read_rows(fmt, tmp_path / f"a{ext}")
        assert back == rows
        # X -> native -> X
        original = _records(tmp_path / f"a{ext}")
        write_rows(fmt, back, tmp_path / f"b{ext}")
        assert _records(tmp_path / f"b{ext}") == original


def test_native_keeps_monte_carlo_evidence(tmp_path):
    rows = [{"id": "q1", "problem": "2+2?", "steps": ["2+2=4", "\\boxed{4}", "extra"], "labels": [1.0, 0.75],
             "answer": "4", "mc_correct": [8, 6], "mc_total": [8, 8], "method": "math-shepherd", "rollouts": 16,
             "source": "toy"},
            {"id": "q2", "problem": "3+3?", "steps": ["6"], "labels": [0.0]}]  # optional fields absent
    for path in (tmp_path / "n.parquet", tmp_path / "n"):
        write_rows("ttscale", rows, path)
        assert read_rows("ttscale", path) == rows  # nulls Arrow adds for absent fields are dropped again


def test_real_math_shepherd_row(tmp_path):
    src = tmp_path / "shepherd.jsonl"
    src.write_text(json.dumps(SHEPHERD_ROW, ensure_ascii=False) + "\n", encoding="utf-8")
    (row,) = read_rows("math-shepherd", src)
    assert row["problem"].startswith("Janet’s ducks") and row["problem"].endswith("farmers' market?")
    assert row["steps"][0] == "Janet's ducks lay 16 eggs per day."
    assert row["steps"][4] == "The answer is: 18"
    assert row["labels"] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert row["source"] == "GSM8K" and row["id"] == "shepherd-0"
    write_rows("math-shepherd", [row], tmp_path / "out.jsonl")
    assert _records(tmp_path / "out.jsonl") == [SHEPHERD_ROW]  # "Step i:" prefixes written back exactly


def test_math_shepherd_question_mentioning_step_1(tmp_path):
    text = "Follow Step 1: add. What is 1+1? Step 1: 1+1=2 ки\nStep 2: The answer is 2 ки"
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"input": text, "label": text.replace("ки", "+"), "task": "MATH"}) + "\n")
    (row,) = read_rows("math-shepherd", src)
    assert row["problem"] == "Follow Step 1: add. What is 1+1?" and row["steps"] == ["1+1=2", "The answer is 2"]


def test_real_prm800k_row(tmp_path):
    src = tmp_path / "phase2_train.jsonl"
    src.write_text(json.dumps(PRM800K_ROW) + "\n" + json.dumps(
        {**PRM800K_ROW, "label": {**PRM800K_ROW["label"], "finish_reason": "bad_problem"}}) + "\n")
    with pytest.warns(ConversionWarning) as record:
        rows = read_rows("prm800k", src)
    assert len(rows) == 1
    row = rows[0]
    assert row["steps"] == PRM800K_ROW["question"]["pre_generated_steps"][:3]
    assert row["labels"] == [1.0, 1.0, 0.0]  # neutral counts as correct by default; the -1 step ends it
    assert row["answer"] == "40,\\!000" and row["source"] == "prm800k" and row["id"] == "phase2_train-0"
    messages = [str(w.message) for w in record]
    assert any("1 of 2 rows: rating 0 (neutral) read as correct" in m for m in messages)
    assert any("1 of 2 rows: skipped: finish_reason 'bad_problem'" in m for m in messages)

    with pytest.warns(ConversionWarning):
        strict = read_rows("prm800k", src, neutral="incorrect", alternatives=True)
    assert strict[0]["labels"] == [0.0, 1.0, 0.0]
    alts = {r["id"]: r["labels"] for r in strict[1:]}
    assert alts == {"phase2_train-0-s2c1": [0.0, 1.0, 0.0], "phase2_train-0-s2c2": [0.0, 1.0, 1.0]}
    assert strict[2]["steps"][-1].startswith("To factor $20 !$")


def test_prm800k_human_completion_and_errors(tmp_path):
    steps = [{"completions": [{"text": "bad", "rating": -1}], "human_completion": "Let x = 2.",
              "chosen_completion": None},
             {"completions": [{"text": "So 2x = 4.", "rating": 1}], "human_completion": None, "chosen_completion": 0}]
    good = {"question": {"problem": "x?", "ground_truth_answer": "2"},
            "label": {"steps": steps, "finish_reason": "solution"}}
    bad = {"question": {"problem": "y?"}, "label": {"steps": [{**steps[1], "chosen_completion": 3}]}}
    src = tmp_path / "p1.jsonl"
    src.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"p1\.jsonl: row 2 \(prm800k\): field 'label.steps\[0\].chosen_completion'"):
        read_rows("prm800k", src)
    with pytest.warns(ConversionWarning, match="1 of 2 rows: invalid rows skipped"):
        (row,) = read_rows("prm800k", src, skip_invalid=True)
    assert row["steps"] == ["Let x = 2.", "So 2x = 4."] and row["labels"] == [1.0, 1.0]
    with pytest.warns(ConversionWarning, match="steps after the first error dropped"):
        write_rows("prm800k", [{**row, "steps": ["a", "b", "c"], "labels": [1.0, 0.0, 1.0]}], tmp_path / "x.jsonl")
    (line,) = _records(tmp_path / "x.jsonl")
    assert [s["completions"][0]["rating"] for s in line["label"]["steps"]] == [1, -1]
    assert line["label"]["finish_reason"] == "found_error" and line["label"]["steps"][1]["chosen_completion"] is None


def test_processbench_real_row_and_first_error_loss(tmp_path):
    real = {"id": "gsm8k-17", "generator": "Qwen2-7B-Instruct", "problem": "A train ...?",
            "steps": ["Speed is 60 km/h.", "Time is 3 h, so 200 km.", "The answer is 200."],
            "final_answer_correct": False, "label": 1}
    src = tmp_path / "gsm8k.jsonl"
    src.write_text(json.dumps(real) + "\n")
    (row,) = read_rows("processbench", src)
    assert row == {"id": "gsm8k-17", "problem": "A train ...?", "steps": real["steps"], "labels": [1.0, 0.0]}
    rows = [row, {**row, "id": "x", "labels": [1.0, 0.0, 1.0]}, {**row, "id": "y", "labels": [0.9, 0.6]}]
    with pytest.warns(ConversionWarning) as record:
        write_rows("processbench", rows, tmp_path / "pb.jsonl", hard_threshold=0.5)
    messages = [str(w.message) for w in record]
    assert any("1 of 3 rows: labels after the first error dropped" in m for m in messages)
    assert any("1 of 3 rows: soft labels made hard: label > 0.5" in m for m in messages)
    assert any("1 of 3 rows: unlabelled steps dropped" in m for m in messages)  # row y: 2 labels, 3 steps
    assert [r["label"] for r in _records(tmp_path / "pb.jsonl")] == [1, 1, -1]
    assert _records(tmp_path / "pb.jsonl")[2]["steps"] == real["steps"][:2]


def test_rlhflow_real_row_and_prompt_column(tmp_path):
    conv = [{"role": "user", "content": "What is 6*7? Step 1: 6*7 = 42."}, {"role": "assistant", "content": "+"},
            {"role": "user", "content": "Step 2: The answer is: 42"}, {"role": "assistant", "content": "+"}]
    no_prefix = [{"role": "user", "content": "What is 1+2? 1+2 = 4."}, {"role": "assistant", "content": "-"},
                 {"role": "user", "content": "So 4."}]
    src = tmp_path / "rl.jsonl"
    src.write_text(json.dumps({"conversations": conv}) + "\n"
                   + json.dumps({"prompt": "What is 1+2?", "conversations": no_prefix}) + "\n")
    a, b = read_rows("rlhflow", src)
    assert (a["problem"], a["steps"], a["labels"]) == ("What is 6*7?", ["6*7 = 42.", "The answer is: 42"], [1.0, 1.0])
    assert (b["problem"], b["steps"], b["labels"]) == ("What is 1+2?", ["1+2 = 4.", "So 4."], [0.0])  # tail unlabelled
    src.write_text(json.dumps({"conversations": conv}) + "\n" + json.dumps({"conversations": no_prefix}) + "\n")
    with pytest.raises(ValueError, match=r"row 2 \(rlhflow\): field 'conversations\[0\].content'.*Step 1:"):
        read_rows("rlhflow", src)
    swapped = [conv[1], conv[0]]
    src.write_text(json.dumps({"conversations": swapped}) + "\n")
    with pytest.raises(ValueError, match=r"row 1 \(rlhflow\): field 'conversations\[0\].role'"):
        read_rows("rlhflow", src)


@pytest.mark.parametrize("fmt, record, field", [
    ("math-shepherd", {"input": SHEPHERD_INPUT, "label": SHEPHERD_INPUT.replace("ки", "?")}, "label"),
    ("math-shepherd", {"input": "no tags here", "label": "no tags here"}, "input"),
    ("math-shepherd", {"input": "Q? 1+1 ки", "label": "Q? 1+1 +"}, "input"),  # no "Step 1:"
    ("trl-stepwise", {"prompt": "p", "completions": ["a", "b"], "labels": [True]}, "labels"),
    ("trl-stepwise", {"prompt": 3, "completions": ["a"], "labels": [True]}, "prompt"),
    ("processbench", {"id": "x", "problem": "p", "steps": ["a"], "label": 4}, "label"),
    ("ttscale", {"id": "x", "problem": "p", "steps": ["a"], "labels": [2.0]}, "labels"),
])
def test_bad_rows_name_file_row_and_field(fmt, record, field, tmp_path):
    src = tmp_path / "in.jsonl"
    good = {"ttscale": _native("in")[0]}.get(fmt)
    lines = ([json.dumps(good)] if good else []) + [json.dumps(record, ensure_ascii=False)]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read_rows(fmt, src)
    msg = str(err.value)
    assert str(src) in msg and f"row {len(lines)}" in msg and f"field '{field}'" in msg


def test_cli_convert_end_to_end(tmp_path, capsys):
    src = tmp_path / "shepherd.jsonl"
    src.write_text(json.dumps(SHEPHERD_ROW, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["convert", "--from", "math-shepherd", "--to", "trl-stepwise", str(src),
                 str(tmp_path / "trl.parquet")]) == 0
    assert "wrote 1 rows" in capsys.readouterr().out
    (rec,) = _records(tmp_path / "trl.parquet")
    assert rec["labels"] == [True, True, True, True, False] and rec["completions"][4] == "The answer is: 18"

    native = [{"id": "q", "problem": "p", "steps": ["a", "b", "c"], "labels": [0.5, 0.25],
               "mc_correct": [2, 1], "mc_total": [4, 4]}]
    write_rows("ttscale", native, tmp_path / "n.jsonl")
    assert main(["convert", "--to", "rlhflow", "--relabel", "hard", "--hard-threshold", "0.3",
                 str(tmp_path / "n.jsonl"), str(tmp_path / "rl")]) == 0
    err = capsys.readouterr().err
    assert "warning: writing rlhflow" in err and "1 of 1 rows: unlabelled steps dropped" in err
    assert "soft labels" not in err  # --relabel hard made them hard before writing
    (rec,) = _records(tmp_path / "rl")
    assert [t["content"] for t in rec["conversations"][1::2]] == ["+", "-"]

    assert main(["convert", "--from", "processbench", str(src), str(tmp_path / "x.jsonl")]) == 2
    assert "row 1 (processbench): field 'problem'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--from", "--to", "--neutral", "--hard-threshold", "--skip-invalid", "--relabel", "INPUT"):
        assert option in help_text
