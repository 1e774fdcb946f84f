"""MC labelling methods and the chunk driver, pinned with a scripted generator.

The scripted generator implements the Generator protocol with known outcomes: a rollout from a prefix
that contains a step marked BAD never reaches the gold answer; otherwise rollout j reaches it iff
j < n * rate. So the true first error of every solution is known exactly.
"""
from __future__ import annotations

import random

import pytest

from ttscale.train.labeling.labeler import LabelArgs, label_chunk
from ttscale.data.labels import derive_labels
from ttscale.train.labeling.methods import label_solution
from ttscale.inference.sample_store import SampleStore
from ttscale.train.labeling.rollouts import RolloutEngine
from ttscale.data.steps import join_steps
from ttscale.inference.base import Completion, SamplingParams


class ScriptedGenerator:
    num_params = 1
    tokenizer = None

    def __init__(self, rate: float = 0.5, solutions: dict[str, list[str]] | None = None):
        self.rate, self.solutions, self.calls, self.prompts = rate, solutions or {}, 0, 0

    def generate(self, prompts, params: SamplingParams):
        self.calls += 1
        self.prompts += len(prompts)
        out = []
        for p in prompts:
            body = p.split("Solution:\n", 1)[1]
            if not body:  # bare problem: sample whole solutions
                key = p.split("Problem: ", 1)[1].split("\n", 1)[0]
                texts = self.solutions[key]
                out.append([Completion(texts[j % len(texts)], 10, "eos") for j in range(params.n)])
                continue
            ok = "BAD" not in body
            out.append([Completion(f"so \\boxed{{{42 if ok and j < params.n * self.rate else 7}}}", 5, "eos")
                        for j in range(params.n)])
        return out


def drive(method: str, steps: list[str], k: int = 4, rate: float = 0.5, threshold: float = 0.0):
    gen = ScriptedGenerator(rate)
    engine = RolloutEngine(gen, model_id="scripted")
    final_ok = "BAD" not in " ".join(steps)
    coro = label_solution(method, len(steps), k, final_ok, threshold)
    try:
        lengths = next(coro)
        while True:
            prompts = ["Problem: x\n\nSolution:\n" + join_steps(steps[:n]) + "\n\n" for n in lengths]
            lengths = coro.send(engine.count_correct(prompts, ["42"] * len(prompts), SamplingParams(n=k)))
    except StopIteration as stop:
        return stop.value


def make_steps(m: int, bad_at: int | None) -> list[str]:
    return [f"step {i}" + (" BAD" if i == bad_at else "") for i in range(m - 1)] + [
        "The answer is \\boxed{7}." if bad_at is not None else "The answer is \\boxed{42}."]


@pytest.mark.parametrize("m,bad_at", [(1, None), (2, 0), (5, None), (5, 0), (5, 2), (5, 3), (8, 6), (12, 5)])
def test_binary_search_finds_the_same_first_error_as_per_step(m, bad_at):
    steps = make_steps(m, bad_at)
    per = drive("per-step", steps)
    first = drive("first-error", steps)
    bs = drive("binary-search", steps)
    truth = bad_at if bad_at is not None else -1
    assert per.first_error == first.first_error == bs.first_error == truth
    # per-step probes every prefix but the last (graded from the answer itself): (M-1)·k rollouts
    assert per.rollouts == (m - 1) * 4
    # binary search probes O(log M) prefixes, and nothing at all for a correct solution
    assert bs.rollouts <= 4 * max(1, (m - 1).bit_length())
    if bad_at is None:
        assert bs.rollouts == 0
    # first-error evidence stops at the error; labels are 1..1,0
    assert derive_labels(first.mc_correct, first.mc_total) == (
        [1.0] * m if truth < 0 else [1.0] * truth + [0.0])
    assert derive_labels(bs.mc_correct, bs.mc_total) == derive_labels(first.mc_correct, first.mc_total)


def test_evidence_keeps_counts_and_soft_labels_are_fractions():
    ev = drive("per-step", make_steps(4, 2), k=4, rate=0.5)
    assert ev.mc_correct == [2, 2, 0, 0] and ev.mc_total == [4, 4, 4, 1]
    assert derive_labels(ev.mc_correct, ev.mc_total, "soft") == [0.5, 0.5, 0.0, 0.0]
    assert derive_labels(ev.mc_correct, ev.mc_total, "hard", threshold=0.0) == [1.0, 1.0, 0.0, 0.0]
    # τ = 0.5: a 50% success rate is no longer "correct"
    assert derive_labels(ev.mc_correct, ev.mc_total, "hard", threshold=0.5) == [0.0, 0.0, 0.0, 0.0]
    assert derive_labels([3, 0], [4, 0], "soft") == [0.75, 1.0]  # unprobed step: known reachable


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="per-step"):
        next(label_solution("exhaustive", 3, 4, True))


def test_chunk_batches_all_solutions_and_prefilter(tmp_path):
    rng = random.Random(0)
    problems, sols = [], {}
    for i in range(6):
        key = f"p{i}"
        problems.append({"id": key, "problem": key, "answer": "42"})
        good = join_steps(make_steps(5, None))
        bad = join_steps(make_steps(5, rng.randrange(4)))
        # p0 all correct, p1 all wrong (dropped by the pre-filter), others mixed
        sols[key] = [good, good] if i == 0 else [bad, bad] if i == 1 else [good, bad]
    gen = ScriptedGenerator(rate=0.5, solutions=sols)
    cache = SampleStore(tmp_path / "cache.sqlite")
    engine = RolloutEngine(gen, model_id="scripted", cache=cache)
    st = LabelArgs(method="per-step", num_solutions=2, rollouts=4)
    rows, dropped = label_chunk(problems, engine, None, st)
    assert dropped == 2 and len(rows) == 8
    # one sampling call, then ONE batched call for every probed prefix of every solution
    assert gen.calls == 2
    for r in rows:
        bad = [i for i, s in enumerate(r["steps"]) if "BAD" in s]
        want = [1.0] * len(r["steps"]) if not bad else [1.0] * bad[0] + [0.0] * (len(r["steps"]) - bad[0])
        assert r["labels"] == want, r
        assert r["rollouts"] == 4 * 4 and r["solution_correct"] == (not bad)
    # a second method over the same data reuses the cached rollouts: nothing new generated
    before = engine.stats.generated
    rows2, _ = label_chunk(problems, engine, None, LabelArgs(method="binary-search", num_solutions=2, rollouts=4))
    assert engine.stats.generated == before
    assert [r["first_error"] for r in rows2] == [r["first_error"] for r in rows]
