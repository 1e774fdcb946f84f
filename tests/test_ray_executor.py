"""`--executor ray` on a local Ray cluster (2 CPUs, tiny models): same datasets as in-process, a killed
replica changes nothing, a killed driver resumes. Skips only where ray cannot be imported."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ttscale[ray]')")

from label_runs import dataset_rows, label_argv  # noqa: E402
from ttscale.cli import main  # noqa: E402
from ttscale.data.io import write_table  # noqa: E402
from ttscale.distributed.ray_pool import CHAOS_ENV  # noqa: E402
from ttscale.train.labeling import label_cmd  # noqa: E402

pytestmark = pytest.mark.timeout(300)
RAY = ["--executor", "ray", "--replicas", "2"]


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (starting one costs seconds); its address lets a child join it."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")   # its own, never another
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def part_writes(monkeypatch) -> Counter:
    """How often the driver wrote each part (label_cmd's atomic write_table)."""
    counts: Counter = Counter()

    def counting(rows, path, *a, **k):
        counts[Path(path).name] += 1
        return write_table(rows, path, *a, **k)

    monkeypatch.setattr(label_cmd, "write_table", counting)
    return counts


def test_label_on_two_replicas_equals_in_process(cluster, label_reference, label_problems, tiny_lm_dir, tmp_path,
                                                 part_writes):
    out = tmp_path / "run"
    assert main(label_argv(label_problems, tiny_lm_dir, out, *RAY)) == 0
    assert dataset_rows(out) == dataset_rows(label_reference)
    assert sorted(part_writes.values()) == [1] * 4
    # the replicas' rollouts reached the run's sample store through the driver: a rerun generates nothing
    out2 = tmp_path / "again"
    (out2).mkdir()
    with sqlite3.connect(out / "samples.sqlite") as src, sqlite3.connect(out2 / "samples.sqlite") as dst:
        src.backup(dst)   # through SQLite, WAL included: a byte copy of the file alone can miss recent writes
    assert main(label_argv(label_problems, tiny_lm_dir, out2)) == 0
    summary = json.loads((out2 / "summary.json").read_text())
    assert summary["completions_generated"] == 0 and summary["completions_from_cache"] > 0


def test_killed_replica_is_restarted_and_nothing_changes(cluster, label_reference, label_problems, tiny_lm_dir, tmp_path,
                                                        part_writes, monkeypatch, capsys):
    marker = tmp_path / "killed"
    monkeypatch.setenv(CHAOS_ENV, str(marker))   # the first replica to take a part SIGKILLs itself
    out = tmp_path / "run"
    assert main(label_argv(label_problems, tiny_lm_dir, out, *RAY)) == 0
    assert marker.exists()
    assert "restarted replicas: 1" in capsys.readouterr().out
    assert dataset_rows(out) == dataset_rows(label_reference)
    assert sorted(part_writes.values()) == [1] * 4   # every part written exactly once


# The child joins the test's cluster and SIGKILLs itself right after its first part is on disk (replicas
# finish parts in any order, so not a fixed part number: that one may come last).
_KILL_DRIVER_AFTER_FIRST_PART = """
import os, signal, sys
from ttscale.train.labeling import label_cmd
from ttscale.cli import main
_write = label_cmd.write_table
def write_then_die(rows, path, *a, **k):
    _write(rows, path, *a, **k)
    if os.path.basename(str(path)).startswith("part-"):
        os.kill(os.getpid(), signal.SIGKILL)
label_cmd.write_table = write_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_resume_after_the_driver_is_killed(cluster, label_reference, label_problems, tiny_lm_dir, tmp_path, part_writes):
    out = tmp_path / "run"
    args = label_argv(label_problems, tiny_lm_dir, out, *RAY)
    child = [sys.executable, "-c", _KILL_DRIVER_AFTER_FIRST_PART, *args[:-1], "--ray-address", cluster, str(out)]
    proc = subprocess.run(child, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=240)
    assert proc.returncode == -signal.SIGKILL
    before = {p.name for p in (out / "parts").glob("part-*.jsonl")}
    assert len(before) == 1 and not (out / "dataset").exists()
    assert main(args) == 0
    assert not before & set(part_writes), "a part written before the kill was redone"
    assert dataset_rows(out) == dataset_rows(label_reference)


def test_search_on_two_replicas_equals_in_process(cluster, label_problems, tiny_lm_dir, prm_dir, tmp_path):
    def search(out: Path, *extra: str) -> list[dict]:
        assert main(["search", str(out), "--problems", str(label_problems), "--policy", str(tiny_lm_dir), "--prm",
                     str(prm_dir), "--threads", "1", "--prm-device", "cpu", "--strategy", "beam", "--budget", "4",
                     "--beam-width", "2", "--max-depth", "2", "--max-step-tokens", "6", "--max-new-tokens", "12",
                     "--problems-per-batch", "2", *extra]) == 0
        return dataset_rows(out)

    assert search(tmp_path / "ray", *RAY) == search(tmp_path / "local")


def test_generate_on_two_replicas_equals_in_process(cluster, label_problems, tiny_lm_dir, tmp_path):
    def generate(out: Path, *extra: str) -> list[dict]:
        assert main(["generate", str(out), "--problems", str(label_problems), "--policy", str(tiny_lm_dir),
                     "--threads", "1", "--n", "2", "--max-new-tokens", "8", "--problems-per-call", "3",
                     *extra]) == 0
        return datasets.load_dataset("json", data_files=str(out), split="train").to_list()

    assert generate(tmp_path / "ray.jsonl", *RAY) == generate(tmp_path / "local.jsonl")
