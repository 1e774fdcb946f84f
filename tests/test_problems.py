"""Problem loading: formats, field mapping, generated ids, error messages, skip_invalid, ProblemArgs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pytest

from ttscale.config import parse_config
from ttscale.data.io import write_table
from ttscale.data.problems import ProblemArgs, load_problems, load_problems_with_skips

ROWS = [
    {"id": "p1", "problem": "What is 2+3?", "answer": "5", "level": "Level 1", "solution": "2+3=5"},
    {"id": "p2", "problem": "Half of 1?", "answer": "\\frac{1}{2}", "level": "Level 3", "solution": "1/2"},
    {"id": "p3", "problem": "6*7?", "answer": 42, "level": "Level 2", "solution": None},
]


def _jsonl(path: Path, rows: list[dict], blank_after: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")  # blank lines are skipped but still count for line numbers
    path.write_text("\n".join(lines) + "\n")
    return path


def _write(tmp_path: Path, kind: str, rows: list[dict], name: str = "probs") -> Path:
    if kind == "jsonl":
        return _jsonl(tmp_path / f"{name}.jsonl", rows)
    # Arrow needs one type per column; string answers there (numbers are covered by the jsonl case).
    rows = [{**r, "answer": None if r.get("answer") is None else str(r["answer"])} for r in rows]
    return write_table(rows, tmp_path / (f"{name}.parquet" if kind == "parquet" else name))


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "dir"])
def test_loads_every_format_into_normalised_columns(tmp_path, kind):
    ds = load_problems(_write(tmp_path, kind, ROWS))
    assert isinstance(ds, datasets.Dataset)
    assert ds["id"] == ["p1", "p2", "p3"]
    assert ds["answer"] == ["5", "\\frac{1}{2}", "42"]  # numbers become strings
    assert ds["level"] == [1, 3, 2]                     # "Level 3" -> 3
    assert ds["solution"] == ["2+3=5", "1/2", None]
    assert set(ds.column_names) == {"id", "problem", "answer", "level", "solution"}


def test_field_mapping_generated_ids_and_extra_columns(tmp_path):
    rows = [{"question": "1+1?", "final": 2, "subject": "arith"}, {"question": "2+2?", "final": 4.0, "subject": "arith"}]
    path = _jsonl(tmp_path / "gsm.jsonl", rows)
    ds = load_problems(path, problem_field="question", answer_field="final")
    assert ds.to_list() == [
        {"id": "row-0", "problem": "1+1?", "answer": "2", "subject": "arith"},
        {"id": "row-1", "problem": "2+2?", "answer": "4", "subject": "arith"},
    ]


def test_json_list_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"problem": "a", "answer": "1"}, {"problem": "b", "answer": ""}]))
    with pytest.raises(ValueError, match=r"p\.json row 1: missing or empty field 'answer'"):
        load_problems(path)


def test_jsonl_error_names_file_line_and_field(tmp_path):
    rows = [ROWS[0], ROWS[1], {"id": "p3", "problem": "6*7?", "answer": ""}]
    path = _jsonl(tmp_path / "bad.jsonl", rows, blank_after=1)  # the bad row is on line 4
    with pytest.raises(ValueError) as e:
        load_problems(path)
    msg = str(e.value)
    assert f"{path}:4: missing or empty field 'answer'" in msg
    assert "--answer-field" in msg and "--skip-invalid" in msg


@pytest.mark.parametrize("kind", ["parquet", "dir"])
def test_table_error_names_row_and_field(tmp_path, kind):
    rows = [ROWS[0], {**ROWS[1], "problem": "  "}, ROWS[2]]
    path = _write(tmp_path, kind, rows)
    with pytest.raises(ValueError, match=rf"{path} row 1: missing or empty field 'problem'.*--problem-field"):
        load_problems(path)


def test_missing_column_names_the_columns_and_the_flag(tmp_path):
    path = _jsonl(tmp_path / "q.jsonl", [{"question": "1+1?", "solution": "2"}])
    with pytest.raises(ValueError, match=r"no column 'problem' \(columns: question, solution\).*--problem-field"):
        load_problems(path)


def test_skip_invalid_counts_and_logs(tmp_path, caplog):
    rows = [ROWS[0], {"id": "x", "problem": "no answer"}, {"id": "y", "answer": "3"},
            {"id": "z", "problem": "list answer", "answer": [1, 2]}, ROWS[1]]
    path = _jsonl(tmp_path / "mixed.jsonl", rows)
    ds, skipped = load_problems_with_skips(path, skip_invalid=True)
    assert ds["id"] == ["p1", "p2"]
    assert [s.split(": ")[0] for s in skipped] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "'answer'" in skipped[0] and "'problem'" in skipped[1] and "'answer'" in skipped[2]
    with caplog.at_level(logging.WARNING, logger="ttscale.data.problems"):
        assert len(load_problems(path, skip_invalid=True)) == 2
    assert "skipped 3 invalid row(s), kept 2" in caplog.text


def test_all_rows_invalid_is_an_error_even_when_skipping(tmp_path):
    path = _jsonl(tmp_path / "none.jsonl", [{"problem": "a"}, {"problem": "b"}])
    with pytest.raises(ValueError, match="all 2 rows are invalid"):
        load_problems(path, skip_invalid=True)


def test_duplicate_ids_name_both_rows(tmp_path):
    path = _jsonl(tmp_path / "dup.jsonl", [ROWS[0], ROWS[1], {**ROWS[2], "id": "p1"}])
    with pytest.raises(ValueError, match=rf"duplicate id 'p1' at {path}:1 and {path}:3"):
        load_problems(path)


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_problems(tmp_path / "nope.jsonl")


def test_hub_name_failure_names_source_and_split():
    # Tests run offline (HF_HUB_OFFLINE=1): the hub path is taken and fails with a clear message.
    with pytest.raises(ValueError, match=r"no-such-org/no-such-set: not a local file.*split 'test'"):
        load_problems("no-such-org/no-such-set", split="test")


def test_mixed_levels_become_strings(tmp_path):
    path = _jsonl(tmp_path / "lv.jsonl", [{**ROWS[0], "level": 2}, {**ROWS[1], "level": "hard"}])
    assert load_problems(path)["level"] == ["2", "hard"]


def test_problem_args_from_cli_and_yaml(tmp_path):
    rows = [{"q": f"{i}+1?", "a": i + 1, "uid": f"u{i}"} for i in range(5)] + [{"q": "bad", "uid": "u9"}]
    path = _jsonl(tmp_path / "p.jsonl", rows)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"problems: {path}\nproblem_field: q\nanswer_field: a\nlimit: 10\n")
    args = parse_config(ProblemArgs, ["--config", str(cfg_file), "--id-field", "uid", "--skip-invalid",
                                      "--limit", "3"])
    assert (args.problem_field, args.id_field, args.skip_invalid, args.limit) == ("q", "uid", True, 3)
    ds = args.load()
    assert ds["id"] == ["u0", "u1", "u2"] and ds["answer"] == ["1", "2", "3"]


def test_problem_args_without_problems_explains():
    with pytest.raises(ValueError, match="pass --problems"):
        ProblemArgs().load()


# ------------------------------------------------------------------ broken JSON lines and user errors at the CLI

def _broken(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "a", "problem": "What is 1 + 1?", "answer": "2"}\n'
                    '{"id": "b", "problem": "What is 2 + 2?", "answer": \n'   # cut off mid-row
                    '\n'
                    '{"id": "a", "problem": "What is 3 + 3?", "answer": "6"}\n')
    return path


def test_broken_json_line_names_file_and_line_or_is_skipped(tmp_path):
    from ttscale.data.problems import load_problems_with_skips
    from ttscale.errors import UserError

    path = _broken(tmp_path)
    with pytest.raises(UserError, match=r"broken\.jsonl:2: invalid JSON .*--skip-invalid"):
        load_problems_with_skips(path)
    # skipped; the rows after it keep their own line numbers (the duplicate id is on line 4, not 3)
    with pytest.raises(UserError, match=r"duplicate id 'a' at .*broken\.jsonl:1 and .*broken\.jsonl:4"):
        load_problems_with_skips(path, skip_invalid=True)
    path.write_text(path.read_text().replace('"id": "a", "problem": "What is 3', '"id": "c", "problem": "What is 3'))
    ds, skipped = load_problems_with_skips(path, skip_invalid=True)
    assert list(ds["id"]) == ["a", "c"] and len(skipped) == 1 and "broken.jsonl:2: invalid JSON" in skipped[0]


def test_cli_user_error_is_one_line_exit_2_and_debug_shows_the_traceback(tmp_path, tiny_lm_dir, capsys):
    from ttscale.cli import main

    path = _broken(tmp_path)
    path.write_text(path.read_text().replace('"id": "a", "problem": "What is 3', '"id": "c", "problem": "What is 3'))
    argv = ["search", str(tmp_path / "out"), "--problems", str(path), "--policy", str(tiny_lm_dir),
            "--strategy", "majority", "--budget", "1", "--max-new-tokens", "4", "--device", "cpu", "--threads", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("ttscale search: error: ") and "broken.jsonl:2: invalid JSON" in line
    with pytest.raises(ValueError, match="invalid JSON"):
        main(["--debug"] + argv)
    # a missing file is a user error too
    assert main(argv[:3] + [str(tmp_path / "nope.jsonl")] + argv[4:]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    # --skip-invalid skips the broken line and the search runs on the two good problems
    assert main(argv + ["--skip-invalid"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["problems"] == 2, summary
