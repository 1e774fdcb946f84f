"""A newcomer's mistakes get one line and exit 2, and leave nothing behind that blocks the corrected command."""
from __future__ import annotations

import dataclasses
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
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


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
    _one_line_error(capsys, ["train-prm", "--model", "m", "--data", "d", "--output-dir", str(tmp_path / "o"),
                             "--learning-rate", "-1"], "--learning-rate must be > 0")
    _one_line_error(capsys, ["eval-prm", "--data", "d", "--prm", "p", "--threshold", "2"], "--threshold must be in [0, 1]")
    (tmp_path / "bad.yaml").write_text("learning_rate: [1, 2\n")
    _one_line_error(capsys, ["train-prm", "--config", str(tmp_path / "bad.yaml")], "cannot read it as YAML")
    _one_line_error(capsys, ["search", str(tmp_path / "run"), "--strategy", "beem"], "did you mean 'beam'?")
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()
