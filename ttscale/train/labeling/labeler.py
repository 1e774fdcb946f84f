"""Label one chunk of problems: sample solutions, pre-filter, then run a method on every solution.

All solutions of the chunk advance together: each round collects the prefixes every method asked for and
sends them to the generator in one batched call (see methods.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ttscale.config import field, overrides
from ttscale.data.answers import is_correct
from ttscale.data.labels import derive_labels
from ttscale.train.labeling.methods import METHODS, Evidence, label_solution
from ttscale.train.labeling.rollouts import RolloutEngine
from ttscale.data.steps import build_prompt, continuation_prompt, join_steps, split_steps
from ttscale.inference.sampling_args import SamplingArgs


@dataclass(kw_only=True)
@overrides(max_new_tokens=256)
class LabelArgs(SamplingArgs):
    """What labelling does (`ttscale label` inherits these; `label_chunk` takes them as they are)."""
    method: str = field("per-step", choices=list(METHODS),
                        help="per-step: roll out after every step (Math-Shepherd); first-error: scan steps in "
                             "order, stop at the first prefix with no correct rollout; binary-search: find that "
                             "first error in O(k log M) rollouts (OmegaPRM)")
    num_solutions: int = field(4, ge=1, help="S: solutions sampled per problem (ignored with --solutions-field)")
    rollouts: int = field(8, ge=1, help="k: rollouts per probed step prefix")
    threshold: float = field(0.0, ge=0, lt=1, help="τ: a step is correct when its rollout success rate > τ "
                                                     "(0 = any rollout correct)")
    label_mode: str = field("hard", choices=["hard", "soft"],
                            help="what the `labels` column holds: hard (0/1 by τ) or soft (the success rate); "
                                 "mc_correct/mc_total are always stored so either can be re-derived")
    prefilter: bool = field(True, help="drop problems whose sampled solutions' pass rate is <= --min-pass or "
                            ">= --max-pass (no step signal there)")
    min_pass: float = field(0.0, ge=0, le=1, help="pre-filter lower bound (exclusive)")
    max_pass: float = field(1.0, ge=0, le=1, help="pre-filter upper bound (exclusive)")
    solutions_field: str = field("", help="label the solutions in this problem column (str or list of str) "
                                 "instead of sampling them")


def _solutions(problems: Sequence[dict], engine: RolloutEngine, tokenizer: Any, st: LabelArgs,
               on_batch) -> list[tuple[list[str], str]]:
    """(solution texts, source) per problem: the user's own column, or S samples from the policy."""
    solutions_field = st.solutions_field
    if solutions_field:
        out = []
        for p in problems:
            sols = p.get(solutions_field)
            if sols is None or sols == [] or sols == "":
                raise ValueError(f"problem {p['id']!r}: field {solutions_field!r} is empty; "
                                 f"give solutions there or drop --solutions-field to sample them")
            out.append(([sols] if isinstance(sols, str) else list(sols), "given"))
        return out
    prompts = [build_prompt(p["problem"], tokenizer) for p in problems]
    comps = engine.complete(prompts, st.params(st.num_solutions), on_batch=on_batch)
    return [([c.text for c in cs], "policy") for cs in comps]


def label_chunk(problems: Sequence[dict], engine: RolloutEngine, tokenizer: Any, st: LabelArgs,
                on_batch: Callable[[int], None] | None = None) -> tuple[list[dict], int]:
    """Returns (labelled rows, number of problems dropped by the pre-filter)."""
    sols = _solutions(problems, engine, tokenizer, st, on_batch)
    jobs: list[dict] = []
    dropped = 0
    for p, (texts, source) in zip(problems, sols):
        verdicts = [is_correct(t, p["answer"]) for t in texts]
        rate = sum(verdicts) / len(verdicts)
        if st.prefilter and not (st.min_pass < rate < st.max_pass):
            dropped += 1
            continue
        prompt = build_prompt(p["problem"], tokenizer)
        for j, (text, ok) in enumerate(zip(texts, verdicts)):
            steps = split_steps(text, st.step_delimiter)
            if not steps:
                continue
            coro = label_solution(st.method, len(steps), st.rollouts, ok, st.threshold)
            jobs.append({"problem": p, "j": j, "steps": steps, "ok": ok, "source": source, "prompt": prompt,
                         "coro": coro, "pending": None, "evidence": None, "pass_rate": rate})

    def advance(job: dict, counts: list[int] | None) -> None:
        try:
            job["pending"] = job["coro"].send(counts)
        except StopIteration as stop:
            job["pending"], job["evidence"] = None, stop.value

    for job in jobs:
        advance(job, None)
    params = st.params(st.rollouts)
    while True:
        active = [j for j in jobs if j["pending"]]
        if not active:
            break
        reqs = [(job, length) for job in active for length in job["pending"]]
        prompts = [continuation_prompt(job["prompt"], job["steps"][:length], st.step_delimiter) for job, length in reqs]
        golds = [job["problem"]["answer"] for job, _ in reqs]
        counts = engine.count_correct(prompts, golds, params, on_batch=on_batch)
        by_job: dict[int, list[int]] = {}
        for (job, _), c in zip(reqs, counts):
            by_job.setdefault(id(job), []).append(c)
        for job in active:
            advance(job, by_job[id(job)])
    return [_row(job, st) for job in jobs], dropped


def _true_labels(problem: dict, steps: list[str]) -> list[bool] | None:
    """Toy-world problems carry their program, so the true step labels are known (to measure MC labels)."""
    if not problem.get("program"):
        return None
    from ttscale.data.toy_world import check_steps

    return check_steps(problem, join_steps(steps))


def _row(job: dict, st: LabelArgs) -> dict:
    ev: Evidence = job["evidence"]
    p = job["problem"]
    return {
        "id": f"{p['id']}-s{job['j']}", "problem_id": str(p["id"]), "problem": p["problem"],
        "answer": p["answer"], "steps": job["steps"],
        "labels": derive_labels(ev.mc_correct, ev.mc_total, st.label_mode, st.threshold),
        "mc_correct": ev.mc_correct, "mc_total": ev.mc_total, "first_error": ev.first_error,
        "method": st.method, "rollouts": ev.rollouts, "solution_correct": bool(job["ok"]),
        "source": job["source"], "pass_rate": job["pass_rate"],
        "true_labels": _true_labels(p, job["steps"]),
    }
