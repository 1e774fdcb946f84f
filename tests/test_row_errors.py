"""One problem that cannot be processed never ends `search`, `label` or `convert` (--on-error, --skip-invalid).

A poisoned problem makes a model call fail for that problem only (a scripted PRM raising the real
SequenceTooLongError, or the tiny policy's generate raising on its prompts); the job finishes, the other
problems' rows equal a run without it, and it is listed in skipped.jsonl and counted in the summary.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from search_fakes import ScriptedGenerator, ScriptedScorer
from ttscale.cli import main
from ttscale.data.io import read_jsonl, write_table
from ttscale.data.row_errors import RowError, run_per_problem
from ttscale.inference.prm_inputs import SequenceTooLongError

POISON = "POISON"


# ------------------------------------------------------------------------------------------- the helper

def test_only_the_failing_problem_is_lost_and_bugs_propagate():
    problems = [{"id": i} for i in "abc"]

    def run(ps):
        if any(p["id"] == "b" for p in ps):
            raise RuntimeError("bad\ninput")
        return [p["id"] for p in ps]

    done, skipped = run_per_problem(problems, run, stage="x")
    assert [r for _, rs in done for r in rs] == ["a", "c"]
    assert skipped == [{"id": "b", "stage": "x", "reason": "RuntimeError: bad input"}]
    with pytest.raises(RowError, match="problem b: RuntimeError: bad input"):
        run_per_problem(problems, run, stage="x", on_error="fail")

    def all_fail(ps):
        raise RuntimeError("no GPU")

    with pytest.raises(RuntimeError, match="no GPU"):   # every problem alike: setup, not a bad row
        run_per_problem(problems, all_fail, stage="x")

    def bug(ps):
        raise KeyError("oops")

    with pytest.raises(KeyError):                      # not a per-row error type: never swallowed
        run_per_problem(problems, bug, stage="x")


# ------------------------------------------------------------------------------------------------ search

class TooLongForPRM(ScriptedScorer):
    """The scripted PRM, with the poisoned problem's input over max_length (as PRMScorer.encode raises it)."""

    def score(self, items):
        for problem, _ in items:
            if POISON in problem:
                raise SequenceTooLongError("item: truncated: 5000 tokens > max_length 2048; raise max_length")
        return super().score(items)


@pytest.fixture
def fake_models(monkeypatch):
    from ttscale.search import search_cmd
    from ttscale.search.types import SearchContext

    def build_context(cfg, need_policy):
        settings = cfg.settings()
        return SearchContext(generator=ScriptedGenerator(depth=3), scorer=TooLongForPRM(), reviser=None,
                             settings=settings), settings

    monkeypatch.setattr(search_cmd, "build_context", build_context)


def _problems(path: Path, ids: str, poisoned: str = "") -> Path:
    write_table([{"id": i, "problem": f"{POISON} " * 3 * (i == poisoned) + f"what is {i} + {i}?", "answer": "1"}
                 for i in ids], path)
    return path


def _search(out: Path, problems: Path, *extra: str) -> int:
    return main(["search", str(out), "--problems", str(problems), "--policy", "fake", "--prm", "fake",
                 "--strategy", "weighted-best-of-n", "--budget", "4", "--problems-per-batch", "3", *extra])


def test_search_skips_a_problem_the_prm_cannot_score(tmp_path, fake_models, capsys):
    assert _search(tmp_path / "ref", _problems(tmp_path / "ref.jsonl", "ac")) == 0
    out = tmp_path / "run"
    problems = _problems(tmp_path / "p.jsonl", "abc", poisoned="b")
    assert _search(out, problems) == 0
    ref = datasets.load_from_disk(str(tmp_path / "ref" / "dataset")).to_list()
    rows = datasets.load_from_disk(str(out / "dataset")).to_list()
    assert [r["id"] for r in rows] == ["a", "c"] and rows == ref
    (skip,) = read_jsonl(out / "skipped.jsonl")
    assert skip["id"] == "b" and skip["stage"] == "search" and "max_length 2048" in skip["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 1 and summary["problems"] == 2
    assert json.loads((tmp_path / "ref" / "summary.json").read_text())["skipped"] == 0

    # resume: the finished part and its sidecar are kept as a pair
    assert _search(out, problems) == 0 and len(read_jsonl(out / "skipped.jsonl")) == 1

    capsys.readouterr()
    assert _search(tmp_path / "fail", problems, "--on-error", "fail") == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "error" in x]   # one line besides the progress bars
    assert "ttscale search: error: problem b:" in line and "max_length 2048" in line
    assert "Traceback" not in err and not (tmp_path / "fail" / "parts" / "part-00000.jsonl").exists()


# ------------------------------------------------------------------------------------------------- label

@pytest.fixture
def poisoned_policy(monkeypatch):
    """The tiny policy, failing (as a backend does on an input it cannot run) on the poisoned problem's prompts."""
    from ttscale.inference.loading import GeneratorArgs

    build = GeneratorArgs.build

    def poisoned_build(self, *args, **kwargs):
        gen = build(self, *args, **kwargs)
        generate = gen.generate

        def checked(prompts, params):
            if any(POISON in p for p in prompts):
                raise RuntimeError("CUDA error: device-side assert triggered")
            return generate(prompts, params)

        gen.generate = checked
        return gen

    monkeypatch.setattr(GeneratorArgs, "build", poisoned_build)


def _label(problems: Path, policy: Path, out: Path, *extra: str) -> int:
    return main(["label", "--problems", str(problems), "--policy", str(policy), "--threads", "1",
                 "--num-solutions", "2", "--rollouts", "2", "--max-new-tokens", "16", "--prefilter", "false",
                 "--chunk-size", "2", "--rollout-batch", "4", "--seed", "5", *extra, str(out)])


def test_label_skips_a_problem_the_policy_fails_on(tmp_path, tiny_lm_dir, poisoned_policy, capsys):
    from ttscale.data.toy_world import generate_problems

    good = generate_problems(3, seed=3, levels=(1, 2))
    bad = {**good[0], "id": "bad", "problem": f"{POISON} {good[0]['problem']}"}
    write_table(good, tmp_path / "ref.jsonl")
    write_table([good[0], bad, *good[1:]], tmp_path / "p.jsonl")   # chunks [g0, bad], [g1, g2] vs [g0, g1], [g2]
    assert _label(tmp_path / "ref.jsonl", tiny_lm_dir, tmp_path / "ref") == 0
    assert _label(tmp_path / "p.jsonl", tiny_lm_dir, tmp_path / "run") == 0
    ref = datasets.load_from_disk(str(tmp_path / "ref" / "dataset")).to_list()
    rows = datasets.load_from_disk(str(tmp_path / "run" / "dataset")).to_list()
    assert len(rows) == 3 * 2 and rows == ref
    (skip,) = read_jsonl(tmp_path / "run" / "skipped.jsonl")
    assert skip == {"id": "bad", "stage": "label", "reason": "RuntimeError: CUDA error: device-side assert triggered"}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped"] == 1

    capsys.readouterr()
    assert _label(tmp_path / "p.jsonl", tiny_lm_dir, tmp_path / "fail", "--on-error", "fail") == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "error" in x]   # one line besides the progress bars
    assert "ttscale label: error: problem bad:" in line and "device-side assert" in line
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------------------- convert

def test_convert_lists_the_rows_it_skips(tmp_path, capsys):
    ok = {"id": "ok", "problem": "p", "steps": ["a", "b"], "labels": [1, 0]}
    unwritable = {"id": "tagged", "problem": "p", "steps": ["a ки", "b"], "labels": [1, 0]}  # loads, cannot be tagged
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([json.dumps(ok), "{not json", json.dumps({"id": "nosteps", "problem": "p"}),
                              json.dumps(unwritable, ensure_ascii=False)]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["convert", "--to", "math-shepherd", str(src), str(out)]) == 2   # strict by default
    capsys.readouterr()
    assert main(["convert", "--to", "math-shepherd", "--skip-invalid", "true", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 rows" in printed and "skipped 3 rows" in printed
    skipped = read_jsonl(tmp_path / "out.skipped.jsonl")
    assert [s["id"] for s in skipped] == [None, "nosteps", "tagged"]
    assert "in.jsonl:2: invalid JSON" in skipped[0]["reason"] and "step tag" in skipped[2]["reason"]
    assert all(s["stage"] == "convert" for s in skipped)
