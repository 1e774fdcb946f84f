"""`ttscale train-revision DATA OUTPUT_DIR --model POLICY`: fine-tune a revision model (Snell et al. 2024, §6.1).

DATA are the rows of `ttscale build-revisions` ({problem, prompt_attempts, target, ...}). Each becomes a
prompt = revision_prompt(problem, attempts, tokenizer) (THE format search uses at test time) and a
completion = the correct answer + EOS; TRL's SFTTrainer trains on the completion tokens only. The folder
written is a normal save_pretrained checkpoint plus `revision_format.json` (format version, max_attempts),
which search checks before using the model for revisions.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ttscale.config import field, to_yaml
from ttscale.data.revision_format import DEFAULT_MAX_ATTEMPTS, revision_prompt, write_revision_info
from ttscale.train.options import quiet_libraries
from ttscale.train.saving import check_full_save
from ttscale.train.sft import SFTArgs, save_trained, sft_trainer

REQUIRED_COLUMNS = ("problem", "prompt_attempts", "target")


@dataclass(kw_only=True)  # kw_only: required fields may follow SFTArgs' defaulted ones
class Config(SFTArgs):
    """Train a revision model on build-revisions rows with TRL's SFTTrainer (loss on the corrected answer only)."""
    data: str = field(help="revision rows from `ttscale build-revisions` (.jsonl, .parquet or a datasets folder)",
                      positional=True)
    output_dir: str = field(help="where the trained model, tokenizer and revision_format.json are saved",
                            positional=True)
    model: str = field(help="base model to fine-tune: a save_pretrained folder or hub name (usually the "
                       "policy checkpoint)")
    max_attempts: int = field(DEFAULT_MAX_ATTEMPTS, ge=0, help="previous attempts kept in the prompt (the last ones); "
                              "search reads it from revision_format.json")

    def __post_init__(self):
        if self.max_attempts < 0:
            raise ValueError(f"--max-attempts must be >= 0, got {self.max_attempts}")


def revision_pairs(rows: Iterable[Mapping[str, Any]], tokenizer: Any, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                   source: str = "revision data"):
    """prompt/completion pairs (a datasets.Dataset) for SFT; errors name the row and column at fault."""
    import datasets

    eos = tokenizer.eos_token or ""
    prompts, completions = [], []
    for i, row in enumerate(rows):
        for col in REQUIRED_COLUMNS:
            if col not in row or row[col] is None:
                raise ValueError(f"{source}: row {i} has no {col!r} column; revision rows need "
                                 f"{', '.join(REQUIRED_COLUMNS)} (write them with `ttscale build-revisions`)")
        if not isinstance(row["prompt_attempts"], (list, tuple)):
            raise ValueError(f"{source}: row {i}: 'prompt_attempts' must be a list of strings, "
                             f"got {type(row['prompt_attempts']).__name__}")
        target = str(row["target"]).strip()
        if not target:
            raise ValueError(f"{source}: row {i}: empty 'target'")
        prompts.append(revision_prompt(row["problem"], row["prompt_attempts"], tokenizer, max_attempts))
        completions.append(target + eos)
    return datasets.Dataset.from_dict({"prompt": prompts, "completion": completions})


def run(cfg: Config) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.data.io import read_table

    quiet_libraries()
    rows = read_table(cfg.data).to_list()
    if not rows:
        from ttscale.errors import UserError
        raise UserError(f"{cfg.data}: no revision rows to train on; `ttscale build-revisions` writes none when no "
                        f"sampled answer is correct (see its summary)")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    pairs = revision_pairs(rows, tokenizer, cfg.max_attempts, source=cfg.data)

    def load_base():  # called after the SFTConfig exists (ZeRO-3 partitioned init), and again to merge LoRA
        return AutoModelForCausalLM.from_pretrained(cfg.model)

    trainer = sft_trainer(load_base, tokenizer, pairs, cfg, Path(cfg.output_dir) / "checkpoints")
    check_full_save(trainer)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=cfg.resume())
    seconds = time.perf_counter() - start
    out = save_trained(trainer, cfg.output_dir, merge_lora=cfg.merge_lora, load_base=load_base)
    if out is None:  # not the main process
        return 0
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    counts = Counter(len(r["prompt_attempts"]) for r in rows)
    write_revision_info(out, cfg.max_attempts, base_model=cfg.model, num_examples=len(rows),
                        lora_adapter_only=bool(cfg.lora and not cfg.merge_lora))
    (out / "train_revision.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    summary = {"examples": len(rows), "attempts_in_context": dict(sorted(counts.items())),
               "steps": trainer.state.global_step, "train_loss": result.training_loss,
               "first_logged_loss": losses[0] if losses else None, "last_logged_loss": losses[-1] if losses else None,
               "seconds": round(seconds, 1), "tokens": trainer.token_count.summary()}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    trend = f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} logs" if losses else "no loss logged"
    print(f"trained revision model on {len(rows)} examples (attempts in context: {summary['attempts_in_context']}) "
          f"for {summary['steps']} steps in {seconds:.1f}s; {trend}; saved to {out}")
    return 0
