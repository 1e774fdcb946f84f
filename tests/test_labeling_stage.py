"""`ttscale label` end to end on the toy world with a real (tiny) policy: resume after SIGKILL, shards + merge.

Identity tests use the tiny random LM (any policy works for them: the pre-filter is off); quality checks
use the trained toy policy fixture.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from label_runs import dataset_rows, label_argv
from ttscale.cli import main
from ttscale.data.io import write_table
from ttscale.data.toy_world import generate_problems


def test_uninterrupted_run_writes_dataset_and_summary(label_reference, label_problems):
    rows = dataset_rows(label_reference)
    assert len(rows) == 8 * 2
    assert [r["id"] for r in rows] == [f"{p['id']}-s{j}" for p in map(json.loads, open(label_problems)) for j in range(2)]
    for r in rows:
        assert len(r["mc_total"]) == len(r["labels"]) <= len(r["steps"])
        assert all(t in (0, 1, 2) for t in r["mc_total"]) and r["method"] == "per-step"
        assert r["rollouts"] == 2 * (len(r["steps"]) - 1)
    summary = json.loads((label_reference / "summary.json").read_text())
    assert summary["solutions"] == 16 and summary["label_rollouts"] == sum(r["rollouts"] for r in rows)
    # the bar's count: 2 sampled solutions per problem + the rollouts (a repeated prompt is generated once)
    assert 16 <= summary["completions"] == summary["completions_generated"] + summary["completions_from_cache"]
    assert summary["completions_generated"] <= 16 + summary["label_rollouts"]
    assert 0.0 <= summary["label_agreement"] <= 1.0  # toy world: true step labels are known
    assert sorted(p.name for p in (label_reference / "parts").glob("part-*.jsonl")) == [
        f"part-{c:05d}.jsonl" for c in range(4)]


# The child SIGKILLs itself right after part 1 is on disk: a real kill mid-run, at a chosen point (polling
# for the part raced the run, which sometimes wrote every part before the kill landed).
_KILL_AFTER_PART_1 = """
import os, signal, sys
from ttscale.train.labeling import label_cmd
from ttscale.cli import main
_write = label_cmd.write_table
def write_then_die(rows, path, *a, **k):
    _write(rows, path, *a, **k)
    if str(path).endswith("part-00001.jsonl"):
        os.kill(os.getpid(), signal.SIGKILL)
label_cmd.write_table = write_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_then_resume_gives_the_identical_dataset(label_reference, label_problems, tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", _KILL_AFTER_PART_1, *label_argv(label_problems, tiny_lm_dir, out)]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=240)
    assert proc.returncode == -signal.SIGKILL
    done = len(list((out / "parts").glob("part-*.jsonl")))
    assert 1 <= done < 4 and not (out / "dataset").exists()
    assert main(label_argv(label_problems, tiny_lm_dir, out)) == 0
    assert dataset_rows(out) == dataset_rows(label_reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["solutions"] == 16


@pytest.fixture(scope="module")
def problems20(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("label20") / "problems.jsonl"
    write_table(generate_problems(20, seed=4, levels=(1, 2)), path)
    return path


def _cheap(problems: Path, policy: Path, out: Path, *extra: str) -> list[str]:
    # later flags win: 1 rollout of 8 tokens keeps 3 runs of 20 problems cheap
    return label_argv(problems, policy, out, "--rollouts", "1", "--max-new-tokens", "8", "--chunk-size", "3",
                 "--export", "trl-stepwise", *extra)


@pytest.fixture(scope="module")
def unsharded20(problems20, tiny_lm_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("label20_ref") / "run"
    assert main(_cheap(problems20, tiny_lm_dir, out)) == 0
    assert not (out / ".hf_cache").exists() and [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    return out


def _arrow_bytes(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((out / "dataset").glob("*.arrow"))]


@pytest.mark.parametrize("num_shards", [2, 4])
def test_shards_balanced_by_problem_and_merge_equals_one_run(num_shards, unsharded20, problems20, tiny_lm_dir,
                                                             tmp_path, capsys):
    shard_dirs = []
    for i in range(num_shards):
        d = tmp_path / f"shard{i}"
        assert main(_cheap(problems20, tiny_lm_dir, d, "--num-shards", str(num_shards), "--shard-index", str(i))) == 0
        assert not (d / "dataset").exists()
        stats = [json.loads(p.read_text()) for p in (d / "parts").glob("*.stats.json")]
        assert sum(s["problems"] for s in stats) == 20 // num_shards  # every shard gets its share
        export = (d / "export.jsonl").read_text().splitlines()  # a shard writes its own rows' export
        assert len(export) == 2 * 20 // num_shards
        shard_dirs.append(str(d))
    merged = tmp_path / "merged"
    assert main(["merge", "--export", "trl-stepwise", str(merged), *shard_dirs]) == 0
    assert dataset_rows(merged) == dataset_rows(unsharded20)  # same rows, same (problem) order
    assert _arrow_bytes(merged) == _arrow_bytes(unsharded20)
    assert (merged / "export.jsonl").read_bytes() == (unsharded20 / "export.jsonl").read_bytes()
    assert not (merged / ".hf_cache").exists()
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "half"), *shard_dirs[1:]]) == 2  # a user error: one line, exit 2
    err = capsys.readouterr().err
    assert "missing" in err and "shard(s) 0 " in err


def test_resume_with_other_settings_is_refused(label_reference, label_problems, tiny_lm_dir, capsys):
    assert main(label_argv(label_problems, tiny_lm_dir, label_reference, "--rollouts", "3")) == 2
    assert "other settings" in capsys.readouterr().err


def test_a_resume_over_a_rewritten_problems_file_is_refused(tiny_lm_dir, tmp_path, capsys):
    """Same path, other problems: resuming used to label 2 old + 6 new rows into one dataset."""
    problems = tmp_path / "problems.jsonl"
    write_table(generate_problems(2, seed=3, levels=(1,)), problems)
    out = tmp_path / "run"
    assert main(label_argv(problems, tiny_lm_dir, out, "--chunk-size", "1")) == 0
    (out / "parts" / "part-00001.jsonl").unlink()
    write_table(generate_problems(2, seed=4, levels=(1,)), problems)
    capsys.readouterr()
    assert main(label_argv(problems, tiny_lm_dir, out, "--chunk-size", "1")) == 2
    err = capsys.readouterr().err.strip()
    assert "problems changed since it started" in err and len(err.splitlines()) == 1
    assert not (out / "parts" / "part-00001.jsonl").exists()
