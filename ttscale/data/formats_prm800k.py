"""Read and write raw PRM800K rows (github.com/openai/prm800k, data/phase{1,2}_{train,test}.jsonl) as native rows.

One PRM800K line is one labelled solution: `question.problem`, `question.ground_truth_answer`, and
`label.steps[*]` with candidate `completions[*]` (`text`, `rating` in -1/0/+1), the index of the
`chosen_completion` that continues the trajectory (null when the labeler wrote `human_completion`
instead, or when labeling stopped at this step), and `label.finish_reason`.

The native row follows the chosen trajectory and stops at its first -1 step (steps after an error
carry no label, like ProcessBench). Where labeling stopped with nothing chosen (phase 2
"found_error"), the pre-generated step `completions[0]` is kept if it was rated -1. Rating 0
("neutral": fine but no progress) becomes correct or incorrect per `neutral`.

Writing gives one line per native row in the same schema: each labelled step is a single pre-generated
completion rated +1 or -1, chosen (chosen_completion 0) while correct; the first -1 step ends the
trajectory with nothing chosen, as in phase-2 "found_error" lines. The row id goes to a top-level `id`
(raw PRM800K lines have none), the answer to question.ground_truth_answer. Labeler metadata (labeler,
timestamps, flags) is not in a native row and is not written.
"""
from __future__ import annotations

from typing import Any

from ttscale.data.labels import first_error_index, harden, is_hard

RATING_FIELD = "label.steps[{s}].completions[{c}].rating"


def _text(value: Any) -> Any:
    # human_completion is the step text in the README; some dumps store a completion object instead
    return value.get("text") if isinstance(value, dict) else value


def _label(rating: int, neutral: str) -> float:
    return 1.0 if rating == 1 or (rating == 0 and neutral == "correct") else 0.0


def _chosen_step(step: dict, s: int, ctx) -> tuple[str, int | None, int | None] | None:
    """(text, rating, index of the completion used or None) for trajectory step s; None = trajectory ends."""
    completions = step.get("completions") or []
    chosen = step.get("chosen_completion")
    if chosen is not None:
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(completions):
            raise ctx.fail(f"label.steps[{s}].chosen_completion",
                           f"{chosen!r} is not an index into its {len(completions)} completions")
        c = completions[chosen]
        return ctx.need(c, "text", str, f"label.steps[{s}].completions[{chosen}]."), c.get("rating"), chosen
    if step.get("human_completion") is not None:
        text = _text(step["human_completion"])
        if not isinstance(text, str):
            raise ctx.fail(f"label.steps[{s}].human_completion", "expected the step text (a string)")
        return text, 1, None  # labelers only wrote +1 steps
    if completions and completions[0].get("rating") == -1:
        return ctx.need(completions[0], "text", str, f"label.steps[{s}].completions[0]."), -1, 0
    return None


def read_prm800k(rec: dict, ctx) -> list[dict]:
    problem = ctx.need(rec, "question.problem", str)
    label = ctx.need(rec, "label", dict)
    if label.get("finish_reason") == "bad_problem":
        ctx.lose("skipped: finish_reason 'bad_problem' (the labeler reported the problem as broken)")
        return []
    steps_in = label.get("steps") or []
    if not isinstance(steps_in, list):
        raise ctx.fail("label.steps", f"expected a list, got {type(steps_in).__name__}")
    base: dict[str, Any] = {"id": str(rec.get("id") or ctx.default_id()), "problem": problem, "source": "prm800k"}
    answer = (rec.get("question") or {}).get("ground_truth_answer")
    if isinstance(answer, str):
        base["answer"] = answer
    steps: list[str] = []
    labels: list[float] = []
    alternatives: list[dict] = []
    for s, step in enumerate(steps_in):
        if not isinstance(step, dict):
            raise ctx.fail(f"label.steps[{s}]", f"expected an object, got {type(step).__name__}")
        chosen = _chosen_step(step, s, ctx)
        if ctx.alternatives:
            used = chosen[2] if chosen else None
            for c, comp in enumerate(step.get("completions") or []):
                rating = comp.get("rating")
                if c == used or rating not in (-1, 0, 1):
                    continue
                if rating == 0:
                    ctx.lose(f"rating 0 (neutral) read as {ctx.neutral} (--neutral)")
                text = ctx.need(comp, "text", str, f"label.steps[{s}].completions[{c}].")
                alternatives.append({**base, "id": f"{base['id']}-s{s}c{c}", "steps": steps + [text],
                                     "labels": labels + [_label(rating, ctx.neutral)]})
        if chosen is None:
            break
        text, rating, used = chosen
        if rating is None:
            break  # an unrated step ends the labelled part
        if rating not in (-1, 0, 1):
            raise ctx.fail(RATING_FIELD.format(s=s, c=used), f"{rating!r} is not -1, 0 or 1")
        if rating == 0:
            ctx.lose(f"rating 0 (neutral) read as {ctx.neutral} (--neutral)")
        steps.append(text)
        labels.append(_label(rating, ctx.neutral))
        if rating == -1:
            if s + 1 < len(steps_in):
                ctx.lose("steps after the first -1 rating dropped")
            break
    if not steps:
        ctx.lose("skipped: no rated step on the trajectory")
        return alternatives
    return [{**base, "steps": steps, "labels": labels}] + alternatives


def write_prm800k(row: dict, ctx) -> dict | None:
    labels = row["labels"]
    if not is_hard(labels):
        ctx.lose(f"soft labels made hard: label > {ctx.hard_threshold} counts as correct (--hard-threshold)")
    labels = harden(labels, ctx.hard_threshold)
    k = first_error_index(labels)
    if k >= 0 and len(row["steps"]) > k + 1:
        ctx.lose("steps after the first error dropped (PRM800K trajectories stop at the first -1)")
    if k < 0 and len(labels) < len(row["steps"]):
        ctx.lose("unlabelled steps dropped (every PRM800K step carries a rating)")
    n = k + 1 if k >= 0 else len(labels)
    if n == 0:
        ctx.lose("skipped: no labelled step")
        return None
    steps = [{"completions": [{"text": text, "rating": 1 if ok else -1}], "human_completion": None,
              "chosen_completion": 0 if ok else None}
             for text, ok in zip(row["steps"][:n], labels[:n])]
    finish = "found_error" if k >= 0 else "solution" if n == len(row["steps"]) else "give_up"
    return {"id": row["id"], "question": {"problem": row["problem"], "ground_truth_answer": row.get("answer")},
            "label": {"steps": steps, "finish_reason": finish}}
