"""Supervised fine-tuning on prompt/completion pairs with TRL's SFTTrainer, loss on the completion only.

One helper for every stage that does SFT (the revision model, the toy policy): `SFTArgs` is a config base
with the training options (ttscale.train.options, plus max_length and merge_lora), `sft_trainer` builds the
trainer, `save_trained` writes a normal `save_pretrained` folder (LoRA merged by default so any backend
loads it without peft).
Works on one CPU, one GPU, or many via `accelerate launch` (the Trainer reads the launch environment).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ttscale.config import field
from ttscale.train.options import TrainingOptions, default_for
from ttscale.train.batching import LengthMicroBatches, TokenCount, grouped_sampler


@dataclass(kw_only=True)
class SFTArgs(TrainingOptions):
    """Training options of SFT stages: the shared ones plus what SFT adds (inherit them in a stage Config)."""
    learning_rate: float = default_for("learning_rate", 1e-4)
    max_length: int = field(1024, ge=1, help="tokens kept per example (prompt + completion); longer ones are cut at the end")
    merge_lora: bool = field(True, help="with --lora, merge the adapter into the weights before saving (a plain "
                             "checkpoint any backend loads); false saves the adapter folder only")


def sft_config(args: SFTArgs, output_dir: str | Path, num_examples: int | None = None, **overrides: Any):
    """The TRL SFTConfig for `args`: completion-only loss, checkpoints in output_dir (only with --save-steps)."""
    from trl import SFTConfig

    return args.to_training_arguments(str(output_dir), args_class=SFTConfig, num_examples=num_examples,
                                      max_length=args.max_length, completion_only_loss=True, **overrides)


def lora_config(args: SFTArgs):
    from peft import LoraConfig

    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules=args.lora_targets(), task_type="CAUSAL_LM")


def sft_trainer(model: Any | Callable[[], Any], tokenizer: Any, pairs: Any, args: SFTArgs, output_dir: str | Path,
                **overrides: Any):
    """An SFTTrainer over `pairs` (a datasets.Dataset with string columns `prompt`, `completion`).

    `model` is a model, or a function that loads it: called once the SFTConfig exists, so under DeepSpeed
    ZeRO-3 the model is built partitioned across ranks (zero3_init_flag) instead of whole on every rank.

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
    if tokenizer.pad_token is None:  # padding needs a token; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    config = sft_config(args, output_dir, len(pairs), **overrides)
    set_seed(args.seed)
    if callable(model) and not isinstance(model, torch.nn.Module):
        model = model()
    trainer = _plain_loss_trainer_class()(model=model, args=config, train_dataset=pairs, processing_class=tokenizer,
                                          peft_config=lora_config(args) if args.lora else None)
    trainer.token_count = TokenCount.attach(trainer)   # the stage reports real / padded tokens
    trainer.length_micro_batches = args.length_micro_batches
    return trainer


def _takes_logits_to_keep(model: Any) -> bool:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model   # a peft wrapper
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _plain_loss_trainer_class():
    import torch
    from trl import SFTTrainer

    class PlainLossSFTTrainer(LengthMicroBatches, SFTTrainer):
        """SFTTrainer with a plain causal-LM cross-entropy, computed only where a label is read.

        TRL computes the loss through a chunked log-prob head built for huge vocabularies; for the small
        models trained here it was ~45% of CPU training time. Labels are the collator's (-100 on prompt
        tokens, which are most of a revision row): the LM head runs only from the batch's first labelled
        position on (`logits_to_keep` as indices), and the loss is the same completion-only mean as the
        model's own; num_items_in_batch keeps it exact under gradient accumulation.
        """

        def _get_train_sampler(self, train_dataset=None):   # batches of similar length, shuffled
            ds = train_dataset if train_dataset is not None else self.train_dataset
            return grouped_sampler(self, ds) or super()._get_train_sampler(train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            keep = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
            labels = inputs["labels"][:, 1:]                    # position t predicts token t + 1
            read = (labels != -100).any(0).nonzero()
            first = int(read[0]) if len(read) else labels.shape[1] - 1
            if _takes_logits_to_keep(self.accelerator.unwrap_model(model)):
                keep["logits_to_keep"] = torch.arange(first, labels.shape[1], device=labels.device)
            else:
                first = 0
            outputs = model(**keep, use_cache=False)
            logits = outputs.logits[:, -(labels.shape[1] - first):] if first else outputs.logits[:, :-1]
            target = labels[:, first:]
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                     target.reshape(-1), ignore_index=-100, reduction="sum")
            count = num_items_in_batch if num_items_in_batch is not None else (target != -100).sum()
            loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return PlainLossSFTTrainer


def save_trained(trainer: Any, output_dir: str | Path, merge_lora: bool = True,
                 load_base: Callable[[], Any] | None = None) -> Path | None:
    """Save full weights + tokenizer (every rank calls this: gathering ZeRO-3/FSDP shards is collective);
    returns the folder on the main process, None elsewhere. A LoRA model is merged when `merge_lora`
    (`load_base` loads the base model; the adapter stays in output_dir/adapter), else saved as the adapter."""
    from ttscale.train.saving import save_full_weights

    out = Path(output_dir)
    if not save_full_weights(trainer, out, load_base=load_base, merge_lora=merge_lora):
        return None
    trainer.processing_class.save_pretrained(out)
    return out
