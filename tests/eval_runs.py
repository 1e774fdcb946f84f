"""Search runs for the evaluation tests, built directly as rows of the `ttscale search` output schema."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np

from ttscale.search.types import SearchSettings


def cand(answer: str | None, correct: bool | None, scores: Sequence[float] = (), finished: bool = True,
         group: int = 0, tokens: int = 10) -> dict[str, Any]:
    return {"steps": ["step one", f"so \\boxed{{{answer}}}"], "step_scores": list(scores), "answer": answer,
            "answer_key": answer, "finished": finished, "tokens": tokens, "node": -1, "subtree": 0, "chain": group,
            "previous": -1, "correct": correct}


def row(pid: str, gold: str | None, strategy: str, budget: int, cands: list[dict], **params) -> dict[str, Any]:
    spent = {"generated_tokens": sum(c["tokens"] for c in cands), "prm_tokens": 0, "policy_calls": 1,
             "prm_calls": 1, "policy_flops": 2.0e3 * sum(c["tokens"] for c in cands), "prm_flops": 100.0}
    return {"id": pid, "problem": f"problem {pid}", "answer": gold, "level": None, "strategy": strategy,
            "budget": budget, "params": {**SearchSettings().__dict__, **params}, "candidates": cands,
            "spent": spent, "prediction": None, "chosen": -1, "correct": None, "tree": []}


def save_run(rows: list[dict], folder: Path) -> Path:
    """The layout `ttscale search` writes: FOLDER/dataset (save_to_disk)."""
    datasets.Dataset.from_list(rows).save_to_disk(str(folder / "dataset"))
    return folder


def synthetic_rows(strategy: str, budget: int, n_problems: int = 12, seed: int = 0, skill: float = 0.0,
                   **params) -> list[dict]:
    """Problems of spread difficulty; correct samples get higher PRM scores; `skill` shifts the hit rate."""
    rng = np.random.default_rng(seed)
    chains = budget // params.get("revision_length", budget) if "revision" in strategy else budget
    rows = []
    for i in range(n_problems):
        p = min(1.0, (i + 0.5) / n_problems + skill)
        cands = []
        for j in range(budget):
            ok = bool(rng.random() < p)
            ans = "7" if ok else str(8 + int(rng.integers(0, 3)))
            score = float(np.clip((0.75 if ok else 0.35) + rng.normal(0, 0.1), 0, 1))
            cands.append(cand(ans, ok, [0.5, score], group=j % chains if "revision" in strategy else j))
        rows.append(row(f"p{i:02d}", "7", strategy, budget, cands, **params))
    return rows
