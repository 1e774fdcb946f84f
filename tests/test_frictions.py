"""A newcomer's mistakes get one line and exit 2, and leave nothing behind that blocks the corrected command."""
from __future__ import annotations

import dataclasses
import json
import importlib
import typing

import pytest

from ttscale.cli import STAGES, main
from ttscale.config import _unwrap_optional

UNBOUNDED = {"seed"}   # any integer is a seed


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:   # argparse's own exit (the process exits with its code)
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    # progress bars may come before it; the error itself is one line, and no traceback
    lines = [ln for ln in err.splitlines() if "error" in ln.lower() or "traceback" in ln.lower()]
    assert len(lines) == 1 and lines[0].startswith("ttscale") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], err
    return lines[0]


def test_every_numeric_option_of_every_stage_has_bounds():
    loose = []
    for stage, (module, _) in STAGES.items():
        cls = importlib.import_module(module).Config
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, _ = _unwrap_optional(hints[f.name])
            if f.init and tp in (int, float) and f.name not in UNBOUNDED and not any(
                    k in f.metadata for k in ("gt", "ge", "lt", "le", "choices")):
                loose.append(f"{stage} --{f.name}")
    assert not loose, f"numeric options without bounds: {loose}"


def test_out_of_range_values_a_broken_config_and_a_mistyped_choice_are_one_line(capsys, tmp_path):
    _one_line_error(capsys, ["train-prm", str(tmp_path / "o"), "--model", "m", "--data", "d",
                             "--learning-rate", "-1"], "--learning-rate must be > 0")
    _one_line_error(capsys, ["eval-prm", "--data", "d", "--prm", "p", "--threshold", "2"], "--threshold must be in [0, 1]")
    (tmp_path / "bad.yaml").write_text("learning_rate: [1, 2\n")
    _one_line_error(capsys, ["train-prm", "--config", str(tmp_path / "bad.yaml")], "cannot read it as YAML")
    _one_line_error(capsys, ["search", str(tmp_path / "run"), "--strategy", "beem"], "did you mean 'beam'?")
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


def test_a_mistyped_or_wrong_kind_of_model_stops_search_before_it_writes(capsys, tmp_path, tiny_lm_dir, prm_dir):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "a", "problem": "1 + 1?", "answer": "2"}\n')
    run = tmp_path / "run"
    base = ["search", str(run), "--problems", str(problems), "--device", "cpu", "--threads", "1"]
    _one_line_error(capsys, [*base, "--policy", str(tmp_path / "polcy")], "--policy", "no such file or folder")
    _one_line_error(capsys, [*base, "--policy", str(tiny_lm_dir), "--prm", str(tmp_path / "pmr"), "--strategy",
                             "beam"], "--prm", "no such file or folder")
    _one_line_error(capsys, [*base, "--policy", str(prm_dir), "--prm", str(prm_dir)], "is a PRM folder", "--prm")
    _one_line_error(capsys, [*base, "--policy", str(tiny_lm_dir), "--prm", str(tiny_lm_dir), "--strategy", "beam"],
                    "a policy, not a PRM")
    assert not run.exists()    # nothing written: the corrected command starts afresh, not refused
    assert main([*base, "--policy", str(tiny_lm_dir), "--strategy", "majority", "--budget", "2",
                 "--max-new-tokens", "8"]) == 0
    assert f"wrote {run / 'dataset'}" in capsys.readouterr().err


def test_evaluate_of_a_mistyped_run_leaves_no_output(capsys, tmp_path):
    _one_line_error(capsys, ["evaluate", str(tmp_path / "runs" / "nope"), "--out", str(tmp_path / "ev")])
    assert not (tmp_path / "ev").exists()


def test_label_says_what_the_prefilter_dropped_and_ends_in_one_line_that_does_not_block_the_fix(
        capsys, tmp_path, tiny_lm_dir):
    from ttscale.data.toy_world import generate_problems

    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": p["id"], "problem": p["problem"], "answer": p["answer"]}) + "\n"
                                for p in generate_problems(2, seed=1, levels=(1,))))
    argv = ["label", str(tmp_path / "lab"), "--problems", str(problems), "--policy", str(tiny_lm_dir), "--threads",
            "1", "--num-solutions", "2", "--rollouts", "1", "--max-new-tokens", "8"]
    err = _one_line_error(capsys, argv, "pre-filter dropped all 2 problems", "--prefilter false")
    assert main(argv + ["--prefilter", "false"]) == 0      # the fix runs: nothing left behind refuses it
    assert (tmp_path / "lab" / "dataset").exists() and err


def test_train_prm_takes_its_folder_positionally_and_the_old_flag_with_a_notice(capsys):
    from ttscale.config import parse_config
    from ttscale.train.train_prm_cmd import Config

    assert parse_config(Config, ["out", "--model", "m", "--data", "d"]).output_dir == "out"
    capsys.readouterr()
    assert parse_config(Config, ["--output-dir", "old", "--model", "m", "--data", "d"]).output_dir == "old"
    notice = capsys.readouterr().err.strip()
    assert len(notice.splitlines()) == 1 and "--output-dir is deprecated" in notice
    # a bare --resume-from-checkpoint means the newest checkpoint, as transformers users expect
    bare = parse_config(Config, ["out", "--model", "m", "--data", "d", "--resume-from-checkpoint"])
    assert bare.resume() is True
    assert parse_config(Config, ["out", "--resume-from-checkpoint", "ck", "--model", "m", "--data", "d"]).resume() == "ck"
