"""Supervised fine-tuning on prompt/completion pairs with TRL's SFTTrainer, loss on the completion only.

One helper for every stage that does SFT (the revision model; the toy policy can use the same): `SFTArgs`
is a config mixin with the training options, `sft_trainer` builds the trainer, `save_trained` writes a
normal `save_pretrained` folder (LoRA merged by default so any backend loads it without peft).
Works on one CPU, one GPU, or many via `accelerate launch` (the Trainer reads the launch environment).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.config import field


@dataclass
class SFTArgs:
    """Training options shared by SFT stages (inherit them in a stage Config)."""
    learning_rate: float = field(1e-4, help="peak learning rate (linear decay after warmup)")
    epochs: float = field(1.0, help="passes over the data (ignored when --max-steps > 0)")
    max_steps: int = field(-1, help="optimizer steps to run; -1 = use --epochs")
    batch_size: int = field(8, help="examples per device per step")
    grad_accum: int = field(1, help="gradient accumulation steps (effective batch = batch-size x grad-accum x devices)")
    warmup: float = field(0.0, help="learning-rate warmup: a fraction of the steps if < 1, else a step count")
    max_length: int = field(1024, help="tokens kept per example (prompt + completion); longer ones are cut at the end")
    lora: bool = field(False, help="train a LoRA adapter instead of all weights")
    lora_r: int = field(16, help="LoRA rank")
    lora_alpha: int = field(32, help="LoRA scaling alpha")
    lora_dropout: float = field(0.05, help="LoRA dropout")
    lora_targets: str = field("all-linear", help="modules LoRA adapts: 'all-linear' or comma-separated names "
                              "(e.g. q_proj,v_proj)")
    merge_lora: bool = field(True, help="with --lora, merge the adapter into the weights before saving (a plain "
                             "checkpoint any backend loads); false saves the adapter folder only")
    precision: str = field("auto", help="auto = bf16 on a GPU that supports it, else fp32",
                           choices=["auto", "fp32", "bf16", "fp16"])
    gradient_checkpointing: bool = field(False, help="trade compute for memory (large models)")
    threads: int = field(0, help="CPU threads for torch (0 = leave torch's default)")
    logging_steps: int = field(10, help="log the loss every this many steps")
    seed: int = field(0, help="seed for initialisation, data order and dropout")


def _precision_flags(precision: str) -> dict[str, bool]:
    import torch

    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def sft_config(args: SFTArgs, output_dir: str | Path, **overrides: Any):
    """The TRL SFTConfig for `args`: completion-only loss, no intermediate checkpoints, no external loggers."""
    import torch
    from trl import SFTConfig

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), learning_rate=args.learning_rate, num_train_epochs=args.epochs,
        max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, warmup_steps=args.warmup if args.warmup < 1 else int(args.warmup), max_length=args.max_length,
        logging_steps=args.logging_steps, seed=args.seed,
        data_seed=args.seed, completion_only_loss=True, save_strategy="no", report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
        **_precision_flags(args.precision))
    # transformers 5 renamed gradient_checkpointing (TRL defaults the old name to True); set whichever exists.
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    kwargs["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = \
        args.gradient_checkpointing
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


def lora_config(args: SFTArgs):
    from peft import LoraConfig

    targets: str | list[str] = args.lora_targets
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def sft_trainer(model: Any, tokenizer: Any, pairs: Any, args: SFTArgs, output_dir: str | Path, **overrides: Any):
    """An SFTTrainer over `pairs` (a datasets.Dataset with string columns `prompt`, `completion`).

    Prompts are final strings (chat template already applied), so TRL tokenizes prompt and prompt+completion
    and masks the prompt tokens: labels are -100 there. Completions should end with the EOS token (TRL adds
    it when missing). `overrides` go to SFTConfig.
    """
    import torch
    from transformers import set_seed

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    missing = {"prompt", "completion"} - set(pairs.column_names)
    if missing:
        raise ValueError(f"SFT data needs string columns 'prompt' and 'completion'; missing {sorted(missing)}")
    if len(pairs) == 0:
        raise ValueError("SFT data is empty: nothing to train on")
    set_seed(args.seed)
    if tokenizer.pad_token is None:  # padding needs a token; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    return _plain_loss_trainer_class()(model=model, args=sft_config(args, output_dir, **overrides), train_dataset=pairs,
                                       processing_class=tokenizer,
                                       peft_config=lora_config(args) if args.lora else None)


def _plain_loss_trainer_class():
    from trl import SFTTrainer

    class PlainLossSFTTrainer(SFTTrainer):
        """SFTTrainer with the model's own causal-LM cross-entropy.

        TRL computes the loss through a chunked log-prob head built for huge vocabularies; for the small
        models trained here it was ~45% of CPU training time. Labels are the collator's (-100 on prompt
        tokens), so the loss is the same completion-only mean; num_items_in_batch keeps it exact under
        gradient accumulation.
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            keep = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids", "labels") if k in inputs}
            outputs = model(**keep, use_cache=False, num_items_in_batch=num_items_in_batch)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

    return PlainLossSFTTrainer


def save_trained(trainer: Any, output_dir: str | Path, merge_lora: bool = True) -> Path | None:
    """Save model + tokenizer with save_pretrained (main process only); returns the folder, None elsewhere."""
    out = Path(output_dir)
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    trainer.processing_class.save_pretrained(out)
    return out
