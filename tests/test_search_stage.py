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


def test_runs_sharing_a_sample_store_read_back_what_another_drew(tmp_path, toy_problems, tiny_lm_dir, prm_dir):
    """Adaptive majority after best-of-N over one --sample-store: the same candidates and the same charged cost
    as without the store, with no sample drawn twice (the store holds the 4 per problem best-of-N drew)."""
    import sqlite3

    store = str(tmp_path / "samples.sqlite")
    rows = {}
    for name, strategy, extra in (("bon", "best-of-n", ["--sample-store", store]),
                                  ("adaptive", "adaptive-majority", ["--sample-store", store, "--round-size", "2"]),
                                  ("adaptive-alone", "adaptive-majority", ["--round-size", "2"])):
        assert main(_args(tmp_path / name, toy_problems, tiny_lm_dir, prm_dir, "--strategy", strategy, *extra)) == 0
        rows[name] = datasets.load_from_disk(str(tmp_path / name / "dataset")).to_list()
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 3 * 4
    for a, b in zip(rows["adaptive"], rows["adaptive-alone"]):
        assert a["candidates"] == b["candidates"] and a["spent"] == b["spent"]
    for a, b in zip(rows["adaptive"], rows["bon"]):   # its rounds are best-of-N's first samples
        assert [c["steps"] for c in a["candidates"]] == [c["steps"] for c in b["candidates"][:len(a["candidates"])]]


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


def test_a_resume_over_changed_problems_is_refused_in_one_line(tmp_path, toy_problems, tiny_lm_dir, prm_dir, capsys):
    """Rewriting the problems file between a kill and the resume used to mix old and new rows silently."""
    problems = tmp_path / "problems.jsonl"
    problems.write_text(toy_problems.read_text())
    out = tmp_path / "run"
    assert main(_args(out, problems, tiny_lm_dir, prm_dir, "--strategy", "majority")) == 0
    (out / "parts" / "part-00001.jsonl").unlink()          # as a kill would leave it
    rows = [json.loads(line) for line in problems.read_text().splitlines()]
    rows[2]["problem"] = rows[2]["problem"].replace("has", "had")
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(_args(out, problems, tiny_lm_dir, prm_dir, "--strategy", "majority")) == 2
    err = capsys.readouterr().err.strip()
    assert "problems changed since it started" in err and "--allow-changed-inputs" in err
    assert len(err.splitlines()) == 1 and not (out / "parts" / "part-00001.jsonl").exists()
    # a user who means it may mix them
    assert main(_args(out, problems, tiny_lm_dir, prm_dir, "--strategy", "majority", "--allow-changed-inputs")) == 0
    # the same content written again is the same input (the fingerprint is of the rows, not the file's date)
    (out / "parts" / "part-00001.jsonl").unlink()
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(_args(out, problems, tiny_lm_dir, prm_dir, "--strategy", "majority")) == 0
    assert datasets.load_from_disk(str(out / "dataset"))[2]["problem"] == rows[2]["problem"]


@pytest.mark.parametrize("link", ["summary.json", "parts", "dataset", "file"])
def test_the_output_folder_is_never_written_through_a_link(tmp_path, toy_problems, tiny_lm_dir, prm_dir, capsys, link):
    """A link inside OUT (or OUT itself a file) is refused before any work, in one line, exit 2; whatever the
    link points to outside is left as it was."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    out = tmp_path / "run"
    if link == "file":
        out.write_text("not a folder")
    else:
        out.mkdir()
        (out / link).symlink_to(outside / "keep.txt" if link == "summary.json" else outside)
    capsys.readouterr()
    assert main(_args(out, toy_problems, tiny_lm_dir, prm_dir, "--strategy", "majority")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("is a file, not a folder" if link == "file" else "is a symbolic link") in err
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and (outside / "keep.txt").read_text() == "mine"


def test_replacing_a_linked_dataset_removes_the_link_not_its_target(tmp_path):
    from ttscale.data.io import replace_path, write_text

    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "data.txt").write_text("keep")
    (tmp_path / "dataset").symlink_to(target)
    (tmp_path / "new").mkdir()
    replace_path(tmp_path / "new", tmp_path / "dataset")
    assert (tmp_path / "dataset").is_dir() and not (tmp_path / "dataset").is_symlink()
    assert (target / "data.txt").read_text() == "keep"
    (tmp_path / "summary.json").symlink_to(target / "data.txt")
    write_text(tmp_path / "summary.json", "{}")
    assert (tmp_path / "summary.json").read_text() == "{}" and (target / "data.txt").read_text() == "keep"
