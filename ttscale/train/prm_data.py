"""Step-labelled rows -> PRM training examples and batches.

Tokenisation goes through ttscale.inference.prm_inputs.encode_steps, the same function the scorers use,
so a trained PRM is always read at the positions it was trained on. An example is
{id, input_ids, positions, labels}: one position (and one float label in [0, 1]) per labelled step.
Steps past the last label are left out: a causal model's earlier positions never see them anyway.
Labels stay floats all the way into the batch, so soft Monte Carlo labels are never rounded.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from ttscale.data.labels import derive_labels, harden
from ttscale.inference.prm_inputs import PRMSpec, StepAlignmentError, encode_implicit, encode_steps
from ttscale.train.prm_metrics import IGNORE

LABEL_MODES = ("hard", "soft")
OVERLONG = ("error", "drop")


def load_rows(path: str, data_format: str = "ttscale") -> list[dict]:
    """Native step-labelled rows from `path` in any format ttscale.data.formats reads (validated)."""
    from ttscale.data.formats import read_rows

    rows = read_rows(data_format, path)
    if not rows:
        raise ValueError(f"{path}: no rows to train on (format {data_format!r})")
    return rows


def step_targets(row: dict, label_mode: str = "hard", threshold: float = 0.0,
                 last_step_only: bool = False) -> list[float]:
    """The training label of each labelled step (IGNORE for steps that are not trained on).

    With Monte Carlo evidence (mc_correct/mc_total) the labels are re-derived from it: hard = fraction
    > threshold, soft = the fraction. Without it, hard mode hardens the stored labels with the same rule.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    if row.get("mc_correct") is not None and row.get("mc_total") is not None:
        labels = derive_labels(row["mc_correct"], row["mc_total"], label_mode, threshold)
    else:
        labels = [float(v) for v in row["labels"]]
        if label_mode == "hard":
            labels = harden(labels, threshold)
    if last_step_only and labels:
        labels = [float(IGNORE)] * (len(labels) - 1) + labels[-1:]
    return labels


def outcome_targets(row: dict, threshold: float = 0.0) -> tuple[list[str], list[float]]:
    """An implicit PRM's one label per row: the whole solution and whether its final answer is right
    (`solution_correct`, graded against the gold answer, as `label` writes it: no rollout needed); rows
    without it fall back to their last stored label, on the steps the labels cover."""
    if row.get("solution_correct") is not None:
        steps = list(row["steps"])
        return steps, [float(IGNORE)] * (len(steps) - 1) + [float(bool(row["solution_correct"]))]
    labels = step_targets(row, "hard", threshold, last_step_only=True)
    return list(row["steps"][:len(labels)]), labels


@dataclass
class EncodeStats:
    rows: int = 0
    examples: int = 0
    dropped_overlong: int = 0
    skipped_unlabelled: int = 0
    labelled_steps: int = 0

    def summary(self) -> str:
        return (f"{self.examples} examples from {self.rows} rows, {self.labelled_steps} labelled steps; "
                f"dropped {self.dropped_overlong} over max_length, skipped {self.skipped_unlabelled} without labels")


def encode_rows(rows: Sequence[dict], tokenizer: Any, spec: PRMSpec, *, label_mode: str = "hard",
                threshold: float = 0.0, last_step_only: bool = False, on_overlong: str = "error",
                where: str = "data") -> tuple[list[dict], EncodeStats]:
    """Tokenise rows into training examples; `where` names the data in errors.

    An implicit PRM's rows keep one label, the outcome (`outcome_targets`).
    A row whose steps no longer fit max_length (the prompt is left-truncated first) raises a
    StepAlignmentError naming the row, or is dropped and counted when on_overlong="drop". Other alignment
    problems (a step tag inside the text) always raise: they mean the data or the tag must change.
    """
    if on_overlong not in OVERLONG:
        raise ValueError(f"on_overlong must be one of {OVERLONG}, got {on_overlong!r}")
    stats, out = EncodeStats(rows=len(rows)), []
    implicit = spec.formulation == "implicit"   # it learns from the outcome alone: outcome_targets
    for i, row in enumerate(tqdm(rows, desc=f"tokenising {where}", unit="row", disable=None, leave=False)):
        name = f"{where}: row {i + 1} (id {row.get('id')!r})"
        steps, labels = (outcome_targets(row, threshold) if implicit else
                         (row["steps"], step_targets(row, label_mode, threshold, last_step_only)))
        if not labels:
            stats.skipped_unlabelled += 1
            continue
        extra = {}
        try:
            if implicit:   # the response's start too: its reward sums from there
                ids, positions, extra["start"] = encode_implicit(tokenizer, row["problem"], steps[:len(labels)], spec,
                                                                 label=name)
            else:
                ids, positions = encode_steps(tokenizer, row["problem"], steps[:len(labels)], spec, label=name)
        except StepAlignmentError as e:
            # encode_steps words every length failure "<label>: truncated: ..."; only those may be dropped.
            if on_overlong == "drop" and ": truncated:" in str(e):
                stats.dropped_overlong += 1
                continue
            raise
        out.append({"id": str(row.get("id", i)), "input_ids": ids, "positions": positions, "labels": labels, **extra})
        stats.examples += 1
        stats.labelled_steps += sum(1 for v in labels if v != IGNORE)
    if not out:
        raise ValueError(f"{where}: no usable examples ({stats.summary()}); raise max_length or check the labels")
    return out, stats


def split_by_problem(rows: Sequence[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Hold out about `fraction` of the rows for evaluation, whole problems at a time (no leakage
    between solutions of one problem); same seed, same split."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"eval fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(rows), []
    problems = sorted({r["problem"] for r in rows})
    random.Random(seed).shuffle(problems)
    n_eval = max(1, round(fraction * len(problems)))
    if n_eval >= len(problems):
        raise ValueError(f"cannot hold out {fraction:.0%} of {len(problems)} problems and still train; "
                         "lower the eval fraction or give eval data separately")
    held = set(problems[:n_eval])
    return [r for r in rows if r["problem"] not in held], [r for r in rows if r["problem"] in held]


@dataclass
class PRMCollator:
    """Right-pads a batch; `positions` = the sorted union of the rows' label positions, and `labels` is
    [batch, len(positions)] (IGNORE where a row has no step), so the model's outputs are only needed at
    those sequence indices (a causal LM then computes vocabulary logits at K positions, not T)."""

    pad_token_id: int

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        keep = sorted({p for e in examples for p in e["positions"]})
        column = {p: k for k, p in enumerate(keep)}
        labels = torch.full((len(examples), len(keep)), float(IGNORE), dtype=torch.float32)
        for b, e in enumerate(examples):
            n = len(e["input_ids"])
            input_ids[b, :n] = torch.tensor(e["input_ids"], dtype=torch.long)
            mask[b, :n] = 1
            for p, y in zip(e["positions"], e["labels"]):
                labels[b, column[p]] = float(y)
        out = {"input_ids": input_ids, "attention_mask": mask,
               "positions": torch.tensor(keep, dtype=torch.long), "labels": labels}
        if "start" in examples[0]:   # implicit PRMs: where each row's response begins
            out["starts"] = torch.tensor([e["start"] for e in examples], dtype=torch.long)
        return out


def toy_labelled_rows(n_problems: int, seed: int = 0, levels: Sequence[int] = (1, 2, 3),
                      rollouts: int = 0) -> list[dict]:
    """Native rows with TRUE step labels from the toy world (no policy needed): per problem its reference
    solution and one with an injected mistake, labelled by the exact step checker. With rollouts > 0 the
    rows also carry synthetic MC evidence consistent with the truth (a correct step: 1..rollouts of
    `rollouts` reach the answer; a wrong one: none), so soft labels are fractional."""
    from ttscale.data.steps import split_steps
    from ttscale.data.toy_world import check_steps, generate_problems, inject_mistake

    rng = random.Random(seed)
    rows = []
    for problem in generate_problems(n_problems, seed=seed, levels=levels):
        wrong, _ = inject_mistake(problem, rng)
        for kind, text in (("ref", problem["solution"]), ("err", wrong)):
            truth = check_steps(problem, text)
            row = {"id": f"{problem['id']}-{kind}", "problem": problem["problem"], "steps": split_steps(text),
                   "labels": [float(t) for t in truth], "answer": problem["answer"], "method": "toy-truth"}
            if rollouts > 0:
                row["mc_total"] = [rollouts] * len(truth)
                row["mc_correct"] = [rng.randint(1, rollouts) if t else 0 for t in truth]
                row["labels"] = [c / rollouts for c in row["mc_correct"]]
            rows.append(row)
    return rows
