"""`ttscale search` end to end on the toy world: tiny policy + tiny PRM from configs, parts, resume, dataset."""
from __future__ import annotations

import json

import datasets
import pytest

from ttscale.cli import main
from ttscale.config import parse_config


@pytest.fixture(scope="module")
def toy_problems(tmp_path_factory):
    from ttscale.data.io import write_table
    from ttscale.data.toy_world import generate_problems

    path = tmp_path_factory.mktemp("search_toy") / "problems.jsonl"
    rows = generate_problems(3, seed=0, levels=[1])
    write_table([{k: r[k] for k in ("id", "problem", "answer", "level")} for r in rows], path)
    return path


def _args(out, toy_problems, tiny_lm_dir, prm_dir, *extra):
    return ["search", str(out), "--problems", str(toy_problems), "--policy", str(tiny_lm_dir), "--prm", str(prm_dir),
            "--device", "cpu", "--threads", "1", "--prm-device", "cpu", "--budget", "4", "--beam-width", "2",
            "--max-depth", "2", "--max-step-tokens", "6", "--max-new-tokens", "12", "--problems-per-batch", "2",
            *extra]


def test_beam_search_stage_writes_resumable_dataset(tmp_path, toy_problems, tiny_lm_dir, prm_dir, capsys):
    out = tmp_path / "beam"
    assert main(_args(out, toy_problems, tiny_lm_dir, prm_dir, "--strategy", "beam")) == 0
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert len(ds) == 3 and sorted((out / "parts").glob("part-*.jsonl"))[-1].name == "part-00001.jsonl"
    first = ds.to_list()
    for row in first:
        assert row["strategy"] == "beam" and row["budget"] == 4 and row["params"]["beam_width"] == 2
        assert 0 < len(row["candidates"]) <= 4 and row["tree"]
        assert row["spent"]["generated_tokens"] > 0 and row["spent"]["prm_tokens"] > 0
        assert row["spent"]["policy_calls"] == max(n["depth"] for n in row["tree"]) + 1
        assert row["spent"]["prm_flops"] > 0
        for c in row["candidates"]:
            assert len(c["step_scores"]) == len(c["steps"])
            assert all(0.0 <= s <= 1.0 for s in c["step_scores"])
        finished = [c for c in row["candidates"] if c["finished"] and c["answer_key"] is not None]
        assert (row["prediction"] is None) == (not finished)
    assert all(isinstance(row["correct"], bool) for row in first)
    assert "strategy: beam" in (out / "config.yaml").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3
    # every node asked for exactly its children: what was generated is what the tree holds
    assert summary["tokens_generated"] == summary["tokens_kept"] == sum(
        n["tokens"] for row in first for n in row["tree"]) > 0 and summary["generated_per_kept"] == 1.0

    # resume: a lost part is redone, identically; finished parts are not
    (out / "parts" / "part-00001.jsonl").unlink()
    kept = (out / "parts" / "part-00000.jsonl").stat().st_mtime_ns
    assert main(_args(out, toy_problems, tiny_lm_dir, prm_dir, "--strategy", "beam")) == 0
    assert (out / "parts" / "part-00000.jsonl").stat().st_mtime_ns == kept
    assert datasets.load_from_disk(str(out / "dataset")).to_list() == first
    capsys.readouterr()
    assert main(_args(out, toy_problems, tiny_lm_dir, prm_dir, "--strategy", "beam", "--seed", "3")) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "'seed': (0, 3)" in err and "Traceback" not in err


def test_best_of_n_stage_counts_n_samples(tmp_path, toy_problems, tiny_lm_dir, prm_dir):
    out = tmp_path / "bon"
    assert main(_args(out, toy_problems, tiny_lm_dir, prm_dir, "--strategy", "weighted-best-of-n")) == 0
    for row in datasets.load_from_disk(str(out / "dataset")):
        assert len(row["candidates"]) == 4 and row["tree"] == []
        assert row["spent"]["generated_tokens"] == sum(c["tokens"] for c in row["candidates"])
        assert row["spent"]["policy_calls"] == 1


def test_invalid_options_fail_before_loading_models(tmp_path, toy_problems):
    from ttscale.search.search_cmd import Config

    base = [str(tmp_path / "x"), "--problems", str(toy_problems), "--policy", "/nonexistent"]
    for extra, msg in [(["--strategy", "beam", "--budget", "6", "--beam-width", "4", "--prm", "p"], "multiple"),
                       (["--strategy", "best-of-n"], "--prm"),
                       (["--strategy", "revisions", "--voting", "majority"], "revision"),
                       (["--problems-per-batch", "0", "--strategy", "majority"], "problems-per-batch")]:
        with pytest.raises(SystemExit):
            parse_config(Config, base + extra)
    assert not (tmp_path / "x").exists()
