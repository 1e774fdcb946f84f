"""`train-prm --formulation generative`: SFT of a verifier on `build-critiques` rows (rationale, then verdict).

Each row becomes prompt = data.critique_format.critique_prompt (the problem, the steps before the checked one,
the step) and completion = rationale + verdict marker + verdict token + EOS; TRL's SFTTrainer trains on the
completion only (train.sft, LoRA / DDP / ZeRO as every SFT stage). The folder written is a causal LM with
`ttscale_prm.json` (formulation generative), so `--prm FOLDER` scores with it in eval-prm, search and serve.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ttscale.data.critique_format import VERDICT, critique_completion, critique_prompt, rationale_text
from ttscale.errors import UserError
from ttscale.inference.prm_inputs import PRMSpec, single_token_id

REQUIRED = ("problem", "prefix", "step", "rationale", "verdict")


def critique_pairs(rows: Iterable[Mapping[str, Any]], tokenizer: Any, spec: PRMSpec, source: str = "critiques"):
    """prompt/completion pairs (datasets.Dataset); errors name the row and column. The verdict must stay one
    token after the marker, or the scorer could not read it where training put it."""
    import datasets

    prompts, completions = [], []
    for i, row in enumerate(rows):
        missing = [c for c in REQUIRED if row.get(c) is None]
        if missing:
            raise UserError(f"{source}: row {i} has no {missing} column(s); generative PRM rows need "
                            f"{', '.join(REQUIRED)} (write them with `ttscale build-critiques`)")
        if row["verdict"] not in ("+", "-"):
            raise UserError(f"{source}: row {i}: verdict must be '+' or '-', got {row['verdict']!r}")
        prompts.append(critique_prompt(row["problem"], list(row["prefix"]), row["step"], tokenizer,
                                       spec.step_delimiter))
        completions.append(critique_completion(row["rationale"], row["verdict"] == "+", spec.positive_token,
                                               spec.negative_token) + (tokenizer.eos_token or ""))
    if not prompts:
        raise UserError(f"{source}: no rows to train on")
    text = prompts[0] + rationale_text(rows[0]["rationale"])   # what the scorer reads the verdict after
    head = tokenizer(text)["input_ids"]
    for token, what in ((spec.positive_token, "positive token"), (spec.negative_token, "negative token")):
        if tokenizer(text + token)["input_ids"] != head + [single_token_id(tokenizer, token, what)]:
            raise UserError(f"the {what} {token!r} merges with {VERDICT!r} in this tokenizer, so its probability "
                            f"cannot be read after the marker; set --{what.replace(' ', '-')} to a token it keeps apart")
    return datasets.Dataset.from_dict({"prompt": prompts, "completion": completions})


def train_generative(cfg: Any, spec: PRMSpec):
    """Train and save; returns (trainer, folder, metrics), as train_prm does for the other formulations."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.data.io import read_table
    from ttscale.train.saving import check_full_save
    from ttscale.train.sft import save_trained, sft_trainer

    rows = read_table(cfg.data).to_list()
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.model)
    pairs = critique_pairs(rows, tokenizer, spec, source=cfg.data)

    def load_base():
        return AutoModelForCausalLM.from_pretrained(cfg.model)

    trainer = sft_trainer(load_base, tokenizer, pairs, cfg, Path(cfg.output_dir) / "checkpoints")
    check_full_save(trainer)
    result = trainer.train(resume_from_checkpoint=cfg.resume())
    out = save_trained(trainer, cfg.output_dir, merge_lora=True, load_base=load_base)
    metrics = {"train_loss": result.training_loss, "global_step": result.global_step, "examples": len(pairs),
               "verdicts": {s: sum(r["verdict"] == s for r in rows) for s in ("+", "-")},
               "tokens": trainer.token_count.summary(), "train_runtime": result.metrics.get("train_runtime")}
    if out is not None:
        spec.save(out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()
    return trainer, Path(cfg.output_dir), metrics
