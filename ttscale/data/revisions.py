"""Revision training data (Snell et al. 2024, §6.1): wrong attempts in context, then a correct answer.

From many sampled answers per problem: for each CORRECT answer, pick how many INCORRECT answers of the same
problem go in context before it (uniform in 0..min(max_incorrect, #incorrect)); the last one in context is
the incorrect answer closest to the correct one by character edit distance (so the model learns to fix a
near miss), the others are random incorrect ones, in random order. The correct answer is the target.

Incorrect answers with identical text are counted once, so the context never repeats an attempt. Policies
often repeat a correct answer word for word; each repeat gets a trajectory (attempts, target) its problem
has not produced yet, drawn again when the draw repeats one, and none once the answers cannot give another
(`trajectory_count`): the data never holds two identical rows.

With `keep_rate` > 0, that share of rows ends its context with a CORRECT answer of the problem (after 0 to
max_incorrect - 1 random incorrect ones) and still targets a correct answer: at test time a revision chain
shows the model its own earlier attempts, right ones included, and a model trained only on wrong contexts
learns to change whatever it is shown (measured on the toy world: attempt accuracy fell along the chain).
Correctness comes from the gold final answer only, as for every other row.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterable, Mapping, Sequence


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (insert, delete, substitute: cost 1 each).

    Bit-parallel (Myers 1999 / Hyyrö 2003): one column of the DP table is a bit vector (a Python int of
    len(b) bits), so the cost is O(min length) big-int operations instead of O(len(a)·len(b)) Python steps —
    fast enough for thousands of solution pairs without a C extension.
    """
    if len(a) > len(b):  # iterate over the shorter string: Python steps cost more than wider ints
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full   # row 0 grows by 1 per column: global (not substring) distance
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def closest_index(target: str, candidates: Sequence[str]) -> int:
    """Index of the candidate with the smallest edit distance to `target` (ties: the earliest)."""
    if not candidates:
        raise ValueError("closest_index needs at least one candidate")
    distances = [levenshtein(target, c) for c in candidates]
    return min(range(len(candidates)), key=lambda i: (distances[i], i))


def revision_trajectory(correct: str, incorrect: Sequence[str], rng: random.Random,
                        max_incorrect: int = 4, closest: int | None = None) -> list[str]:
    """The incorrect attempts put in context before `correct` (possibly none); see the module docstring.

    `closest` = closest_index(correct, incorrect) when the caller already knows it.
    """
    k = rng.randint(0, min(max_incorrect, len(incorrect)))
    if k == 0:
        return []
    last = closest_index(correct, incorrect) if closest is None else closest
    others = [a for i, a in enumerate(incorrect) if i != last]
    return rng.sample(others, k - 1) + [incorrect[last]]


def trajectory_count(n_incorrect: int, max_incorrect: int, n_correct: int = 0) -> int:
    """How many distinct trajectories can be drawn: none in context, or k attempts ending with the closest
    one, the k-1 before it an ordered pick from the n-1 others; plus, with `n_correct` correct answers to keep
    (keep_trajectory), one of them after an ordered pick of 0..max_incorrect-1 incorrect ones."""
    wrong = 1 + sum(math.perm(n_incorrect - 1, k - 1) for k in range(1, min(max_incorrect, n_incorrect) + 1))
    kept = n_correct * sum(math.perm(n_incorrect, k) for k in range(min(max_incorrect - 1, n_incorrect) + 1))
    return wrong + (kept if max_incorrect > 0 else 0)


def keep_trajectory(correct: Sequence[str], incorrect: Sequence[str], rng: random.Random,
                    max_incorrect: int = 4) -> list[str]:
    """0..max_incorrect-1 random incorrect attempts, then one of the problem's correct answers."""
    k = rng.randint(0, min(max_incorrect - 1, len(incorrect)))
    return rng.sample(list(incorrect), k) + [rng.choice(list(correct))]


_REDRAWS = 64  # draws per row before giving up on a new trajectory (only when nearly all are taken)


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def grade_samples(problem_rows: Sequence[Mapping[str, Any]], samples: Mapping[str, Sequence[str]],
                  grader: Callable[[str, str], bool] | None = None) -> dict[str, list[bool]]:
    """Per problem id, whether each sampled answer is correct (default: ttscale.data.answers.grade_many)."""
    pairs = [(str(p["id"]), text, str(p["answer"])) for p in problem_rows for text in samples.get(str(p["id"]), ())]
    if grader is None:
        from ttscale.data.answers import grade_many
        flags = grade_many([(text, gold) for _, text, gold in pairs])
    else:
        flags = [bool(grader(text, gold)) for _, text, gold in pairs]
    verdicts: dict[str, list[bool]] = {}
    for (pid, _, _), ok in zip(pairs, flags):
        verdicts.setdefault(pid, []).append(ok)
    return verdicts


def build_revision_examples(problem_rows: Iterable[Mapping[str, Any]], samples: Mapping[str, Sequence[str]], *,
                            max_incorrect: int = 4, seed: int = 0, keep_rate: float = 0.0,
                            grader: Callable[[str, str], bool] | None = None,
                            verdicts: Mapping[str, Sequence[bool]] | None = None) -> list[dict[str, Any]]:
    """Revision rows {id, problem_id, problem, prompt_attempts, target, num_incorrect, kept} from sampled answers.

    `problem_rows` need `id`, `problem`, `answer`; `samples` maps a problem id to its sampled answers.
    Answers are graded with `grader(text, gold)` (default: ttscale.data.answers, batched), unless
    `verdicts` (from `grade_samples`) already say which are correct. Problems with
    no sample, or no correct sample, give no rows; a correct answer whose every trajectory is already a row
    gives none (no duplicate rows). Same inputs and seed, same rows: each problem draws from its own RNG
    seeded by (seed, problem id), so adding or dropping other problems changes nothing here.
    """
    if max_incorrect < 0:
        raise ValueError(f"max_incorrect must be >= 0, got {max_incorrect}")
    if not 0.0 <= keep_rate <= 1.0:
        raise ValueError(f"keep_rate must be in [0, 1], got {keep_rate}")
    keep_rate = keep_rate if max_incorrect > 0 else 0.0   # no room in context for a kept answer
    problem_rows = list(problem_rows)
    if verdicts is None:
        verdicts = grade_samples(problem_rows, samples, grader)
    rows: list[dict[str, Any]] = []
    for problem in problem_rows:
        pid = str(problem["id"])
        answers = list(samples.get(pid, ()))
        flags = list(verdicts.get(pid, ()))
        if len(flags) != len(answers):
            raise ValueError(f"problem {pid!r}: {len(flags)} verdicts for {len(answers)} answers; grade the same "
                             f"samples that are passed in (grade_samples)")
        incorrect = _unique(t for t, ok in zip(answers, flags) if not ok)
        correct = _unique(t for t, ok in zip(answers, flags) if ok)
        rng = random.Random(f"{seed}:{pid}")
        closest: dict[str, int] = {}
        taken: dict[str, set[tuple[str, ...]]] = {}  # trajectories already written, per target text
        possible = trajectory_count(len(incorrect), max_incorrect, len(correct) if keep_rate else 0)
        for j, (text, ok) in enumerate(zip(answers, flags)):
            if not ok or len(taken.setdefault(text, set())) >= possible:
                continue
            if incorrect and text not in closest:
                closest[text] = closest_index(text, incorrect)
            for _ in range(_REDRAWS):
                # rng.random() only when asked for, so keep_rate 0 draws the same rows as before it existed
                kept = bool(keep_rate) and rng.random() < keep_rate
                attempts = (keep_trajectory(correct, incorrect, rng, max_incorrect) if kept else
                            revision_trajectory(text, incorrect, rng, max_incorrect, closest.get(text)))
                if tuple(attempts) not in taken[text]:
                    break
            else:
                continue
            taken[text].add(tuple(attempts))
            rows.append({"id": f"{pid}-rev{j}", "problem_id": pid, "problem": problem["problem"],
                         "prompt_attempts": attempts, "target": text, "num_incorrect": len(attempts) - kept,
                         "kept": kept})
    return rows
