"""`ttscale build-critiques OUT_DIR --labels LABELS --policy MODEL`: training data for a generative PRM.

For every labelled step of the step-labelled rows (a `ttscale label` dataset), the model named by --policy
(any backend: the policy itself, or a stronger model behind vLLM or an OpenAI-compatible server) is given the
problem and the steps before it and writes that step again (data.critique_format); the verdict is whether
its step reaches the same result. A row is kept only where that verdict agrees with the step's Monte Carlo
label (ThinkPRM's filter): the rationale then argues for the label the rollouts found. The rows
{id, problem, prefix, step, rationale, verdict, label} go to OUT_DIR/critiques.jsonl; `ttscale train-prm
--formulation generative --data OUT_DIR/critiques.jsonl` trains on them.

Resumable like `label`: rows are processed in chunks written as OUT_DIR/parts/part-*.jsonl, a rerun skips the
chunks already written, and a rerun over other labels or another model stops with one line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.config import field, overrides, run_identity, tweak
from ttscale.data.critique_format import agrees
from ttscale.data.rundir import RunDirArgs, claim_run_dir, collect_parts, fingerprint_model, fingerprint_rows, part_path
from ttscale.inference.loading import GeneratorArgs
from ttscale.inference.sampling_args import SamplingArgs


@dataclass(kw_only=True)
@overrides(max_new_tokens=tweak(48, help="token limit of one re-derived step"))
class Config(RunDirArgs, SamplingArgs, GeneratorArgs):
    """Generative-PRM data: a re-derivation of each labelled step, kept where its verdict agrees with the label."""
    output: str = field(help="output folder (critiques.jsonl, summary.json, parts/)", positional=True, run_key=False)
    labels: str = field(help="step-labelled rows: a `ttscale label` dataset (or .jsonl/.parquet in format ttscale)")
    threshold: float = field(0.0, ge=0, lt=1, help="a step is right when its Monte Carlo fraction is > this (as "
                             "train-prm's --threshold)")
    max_rows: int = field(0, ge=0, help="use only the first this-many label rows (0 = all)")
    chunk_rows: int = field(256, ge=1, run_key=False, help="label rows per written part (a killed run loses at "
                            "most one chunk)")
    balance: bool = field(False, run_key=False, help="write as many right-step rows as wrong-step ones (a seeded "
                          "sample of the right ones): 9 in 10 labelled steps are right, and a verifier trained on "
                          "that mix learns to say right whatever its check found; applied when the parts are "
                          "joined, so a finished run can be re-joined with it")


def checks(row: dict, threshold: float) -> list[tuple[int, bool]]:
    """(step index, label) of every labelled step of a row, hard labels as train-prm derives them."""
    from ttscale.train.prm_data import step_targets

    return [(k, y > 0.5) for k, y in enumerate(step_targets(row, "hard", threshold))]


def critique_rows(rows: list[dict], generator: Any, cfg: Config) -> list[dict]:
    """Re-derive every labelled step of `rows` (one generate call) and keep the agreeing ones."""
    from ttscale.data.steps import build_prompt, continuation_prompt, split_steps

    todo = [(r, k, y) for r in rows for k, y in checks(r, cfg.threshold)]
    tok = getattr(generator, "tokenizer", None)
    prompts = [continuation_prompt(build_prompt(r["problem"], tok), list(r["steps"][:k]), cfg.step_delimiter)
               for r, k, _ in todo]
    outs = generator.generate(prompts, cfg.params(1, stop=[cfg.step_delimiter]))
    kept = []
    for (r, k, y), (c,) in zip(todo, outs):
        rederived = (split_steps(c.text, cfg.step_delimiter) or [""])[0].strip()
        ok = agrees(rederived, r["steps"][k])
        if rederived and ok == y:
            kept.append({"id": f"{r['id']}-s{k}", "problem": r["problem"], "prefix": list(r["steps"][:k]),
                         "step": r["steps"][k], "rationale": rederived, "verdict": "+" if ok else "-",
                         "label": float(y)})
    return kept


def balanced(rows: list[dict], seed: int) -> list[dict]:
    """All wrong-step rows and as many right-step ones, drawn with `seed`, in their original order."""
    import random

    right = [i for i, r in enumerate(rows) if r["label"] == 1.0]
    wrong = [i for i, r in enumerate(rows) if r["label"] != 1.0]
    keep = set(wrong) | set(random.Random(seed).sample(right, min(len(right), len(wrong))))
    return [r for i, r in enumerate(rows) if i in keep]


def run(cfg: Config) -> int:
    from tqdm.auto import tqdm

    from ttscale.data.io import write_table, write_text
    from ttscale.train.prm_data import load_rows

    rows = load_rows(cfg.labels)
    rows = rows[:cfg.max_rows] if cfg.max_rows else rows
    out = Path(cfg.output)
    n_chunks = -(-len(rows) // cfg.chunk_rows)
    claim_run_dir(out, {**run_identity(cfg), "n_chunks": n_chunks}, "build-critiques",
                  {"labels": fingerprint_rows(rows), "policy": fingerprint_model(cfg.policy)}, cfg.allow_changed_inputs)
    todo = [c for c in range(n_chunks) if not part_path(out, c).exists()]
    generator = cfg.build() if todo else None
    for c in tqdm(todo, desc="re-deriving steps", unit="chunk"):
        write_table(critique_rows(rows[c * cfg.chunk_rows:(c + 1) * cfg.chunk_rows], generator, cfg),
                    part_path(out, c))
    kept = [json.loads(line) for p in collect_parts([out]) for line in p.read_text().splitlines() if line.strip()]
    if cfg.balance:
        kept = balanced(kept, cfg.seed)
    labels = [y for r in rows for _, y in checks(r, cfg.threshold)]
    labelled, wrong = len(labels), labels.count(False)
    summary = {"rows": len(rows), "labelled_steps": labelled, "wrong_steps": wrong, "kept": len(kept),
               "kept_right": sum(r["label"] == 1.0 for r in kept), "kept_wrong": sum(r["label"] == 0.0 for r in kept),
               "kept_share": round(len(kept) / labelled, 4) if labelled else None}
    write_table(kept, out / "critiques.jsonl")
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(f"build-critiques: kept {len(kept)} of {labelled} checks ({summary['kept_right']} right steps, "
          f"{summary['kept_wrong']} of {wrong} wrong ones) -> {out / 'critiques.jsonl'}")
    if not kept:
        print("no check agreed with its label: nothing to train on; try another --policy (a stronger verifier)")
        return 1
    return 0
