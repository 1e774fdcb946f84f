"""A search run on disk: one row per problem, written as resumable parts, joined into a `datasets` folder.

Row columns: id, problem, answer (gold; None when absent), level (as text; None when absent), strategy,
budget, params (the shared SearchSettings and every strategy's hyperparameters), candidates (list of
structs: steps, step_scores, answer, answer_key, finished, tokens, node, subtree, chain, previous, correct), spent (struct), prediction (default selection),
chosen (its candidate index, -1 = none), correct (prediction vs gold; None without gold), tree (beam/DVTS/
lookahead / particle filtering / REBASE / MCTS node list: parent, depth, text, score, tokens,
rollout_tokens; empty for other strategies), choice (auto: the chosen
configuration as a struct, with the predicted difficulty and bin; None for other strategies).

Everything needed to re-aggregate and re-vote offline is kept: all candidates with all step scores.
Parts use the labelling stage's layout and helpers (parts/part-CCCCC.jsonl, written atomically); problems
skipped under --on-error skip are in each part's sidecar, joined into OUTPUT_DIR/skipped.jsonl.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
import typing
from pathlib import Path
from typing import Any, Sequence

import datasets

from ttscale.data.answers import grade_many
from ttscale.data.row_errors import check_any_processed, join_sidecars
from ttscale.data.rundir import collect_parts, part_path
from ttscale.data.io import write_table, write_text
from ttscale.search.registry import strategy_options
from ttscale.search.types import ROLES, Candidate, Node, ProblemResult, SearchSettings, Spent

_SCALARS = {int: datasets.Value("int64"), float: datasets.Value("float64"), bool: datasets.Value("bool"),
            str: datasets.Value("string")}


def _struct(cls: type, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """datasets features of a dataclass of scalars / lists of scalars (Optional[X] -> X, nullable anyway)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (overrides or {}).get(f.name) or _feature(hints[f.name]) for f in dataclasses.fields(cls)}


def _feature(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is list:
        return datasets.Sequence(_SCALARS[args[0]])
    return _SCALARS[args[0] if args else tp]


# auto: the configuration chosen for a problem (an allocation entry: strategy, budget, its hyperparameters,
# aggregation, voting, method, the accuracy it had where it was chosen) and why (bin, predicted difficulty).
CHOICE = {"strategy": datasets.Value("string"), "budget": datasets.Value("int64"), "method": datasets.Value("string"),
          "aggregation": datasets.Value("string"), "voting": datasets.Value("string"),
          "accuracy": datasets.Value("float64"), "bin": datasets.Value("string"),
          "predicted_difficulty": datasets.Value("float64"),
          # what the allocation expects the configuration to spend per problem of the bin, on cost_axis
          "cost": datasets.Value("float64"), "cost_axis": datasets.Value("string"),
          **{name: _feature(tp) for name, tp, _ in strategy_options()}}

FEATURES = datasets.Features({
    "id": datasets.Value("string"), "problem": datasets.Value("string"), "answer": datasets.Value("string"),
    "level": datasets.Value("string"), "strategy": datasets.Value("string"), "budget": datasets.Value("int64"),
    # the shared settings and every strategy's hyperparameters (one schema for all runs, so runs concatenate)
    "params": {**_struct(SearchSettings), **{name: _feature(tp) for name, tp, _ in strategy_options()}},
    "candidates": [{**_struct(Candidate), "correct": datasets.Value("bool")}],
    "spent": _struct(Spent),
    "prediction": datasets.Value("string"), "chosen": datasets.Value("int64"), "correct": datasets.Value("bool"),
    "tree": [_struct(Node)],
    "choice": CHOICE,
})


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def result_rows(results: Sequence[ProblemResult], strategy: str, budget: int,
                params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for finished problems; candidates and predictions are graded against gold when there is one."""
    pairs, where = [], []
    for r_i, r in enumerate(results):
        gold = _text(r.problem.get("answer"))
        if gold is None:
            continue
        for c_i, c in enumerate(r.candidates):
            if c.answer is not None:
                pairs.append((c.answer, gold))
                where.append((r_i, c_i))
    verdicts = dict(zip(where, grade_many(pairs))) if pairs else {}
    rows = []
    for r_i, r in enumerate(results):
        has_gold = r.problem.get("answer") is not None
        cands = [{**c.to_dict(), "correct": verdicts.get((r_i, c_i), False) if has_gold else None}
                 for c_i, c in enumerate(r.candidates)]
        rows.append({
            "id": str(r.problem["id"]), "problem": r.problem["problem"], "answer": _text(r.problem.get("answer")),
            "level": _text(r.problem.get("level")), "strategy": strategy, "budget": budget,
            "params": params, "candidates": cands, "spent": r.spent.to_dict(),
            "prediction": r.prediction, "chosen": r.chosen,
            "correct": (cands[r.chosen]["correct"] if r.chosen >= 0 else False) if has_gold else None,
            "tree": [n.to_dict() for n in r.tree],
            "choice": {k: r.choice.get(k) for k in CHOICE} if r.choice else None,
        })
    return rows


def write_part(out: Path, index: int, rows: list[dict[str, Any]]) -> Path:
    return write_table(rows, part_path(out, index))   # atomic: the rename marks the part done


_SIZE_FLAG = {"policy": "--policy-params", "reviser": "--reviser-params", "prm": "a local --prm checkpoint"}


def flops_notes(unknown: Sequence[str], models: dict[str, Any] | None = None) -> list[str]:
    """One line per model whose FLOPs read 0 because its size is unknown, naming it and the fix."""
    return [f"FLOPs unknown for the {role} ({(models or {}).get(role) or 'model'}): its parameter count could not "
            f"be found, so its FLOPs are not counted; give it with {_SIZE_FLAG[role]}" for role in unknown]


def kept_tokens(candidates: Sequence[dict[str, Any]], tree: Sequence[dict[str, Any]]) -> int:
    """Generated tokens a problem's result holds: its tree's nodes (their text and lookahead rollouts) for tree
    strategies, else its candidates' own text. Set beside the tokens the Meter charged, it shows what a run drew
    and did not keep (auto's probe when the chosen strategy does not reuse it)."""
    if tree:
        return sum(n["tokens"] + n["rollout_tokens"] for n in tree)
    return sum(c["tokens"] for c in candidates)


def summarize(ds: datasets.Dataset, models: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracy and spent compute of a run; `models` (role -> model name) names a model whose FLOPs are unknown."""
    spent = ds["spent"]
    unknown = [r for r in ROLES if any(r in Spent.from_dict(s).unknown_flops() for s in spent)]
    graded = [c for c in ds["correct"] if c is not None]
    n = len(ds)
    total = {k: sum(s[k] for s in spent) for k in (spent[0] if spent else {})}
    generated = total.get("generated_tokens", 0) + total.get("reviser_generated_tokens", 0)
    kept = sum(kept_tokens(c, t) for c, t in zip(ds["candidates"], ds["tree"]))
    return {
        "problems": n,
        "accuracy": sum(graded) / len(graded) if graded else None,
        "answered": sum(p is not None for p in ds["prediction"]) / n if n else None,
        "finished_candidates_per_problem": sum(sum(c["finished"] for c in cs) for cs in ds["candidates"]) / n
        if n else None,
        "spent_total": total,
        "spent_per_problem": {k: v / n for k, v in total.items()} if n else {},
        # tokens the models generated vs those the results hold: 1.0 unless a strategy drew and discarded
        "tokens_generated": generated, "tokens_kept": kept,
        "generated_per_kept": generated / kept if kept else None,
        "flops_known": not unknown,
        "notes": flops_notes(unknown, models),
        **_auto_summary(ds),
    }


def _auto_summary(ds: datasets.Dataset) -> dict[str, Any]:
    """auto runs: how many problems each difficulty bin and each chosen configuration got, and per problem."""
    chosen = [(i, c) for i, c in zip(ds["id"], ds["choice"]) if c]
    if not chosen:
        return {}
    count = lambda key: dict(sorted(Counter(key(c) for _, c in chosen).items()))  # noqa: E731
    spent = {i: Spent.from_dict(s) for i, s in zip(ds["id"], ds["spent"])}
    measured = {"flops": lambda s: s.flops, "tokens": lambda s: s.tokens}
    given: dict[str, dict[str, Any]] = {}
    for i, c in chosen:   # per bin: what the allocation gave it and what its problems spent, on the file's axis
        if c.get("cost") is not None and c.get("cost_axis") in measured:
            g = given.setdefault(c["bin"], {"axis": c["cost_axis"], "given": c["cost"], "spent": []})
            g["spent"].append(measured[c["cost_axis"]](spent[i]))
    return {"auto": {"by_bin": count(lambda c: c["bin"]), "by_method": count(lambda c: c["method"] or c["strategy"]),
                     "given_vs_spent": {b: {**g, "spent": sum(g["spent"]) / len(g["spent"])} for b, g in given.items()},
                     "per_problem": {i: {"bin": c["bin"], "method": c["method"] or c["strategy"],
                                         "predicted_difficulty": c["predicted_difficulty"]} for i, c in chosen}}}


def finalize(out: Path, models: dict[str, Any] | None = None) -> dict[str, Any]:
    """Join parts/ into out/dataset (save_to_disk, replaced atomically), their skipped problems into
    out/skipped.jsonl, and write out/summary.json."""
    out = Path(out)
    parts = collect_parts([out])
    if not parts:
        raise SystemExit(f"{out}: no finished parts to join")
    skipped = join_sidecars(parts, out)
    ds = datasets.Dataset.from_list([json.loads(line) for p in parts for line in p.read_text().splitlines()
                                     if line.strip()], features=FEATURES)
    check_any_processed(len(ds), skipped)
    write_table(ds, out / "dataset")   # atomic; a link at out/dataset is replaced, never followed
    summary = {**summarize(ds, models), "skipped": len(skipped)}
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary
