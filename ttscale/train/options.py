"""The training options every training stage shares (train-prm, train-revision, train-policy).

One set of names, spelled like `transformers.TrainingArguments` (--learning-rate, --max-steps,
--per-device-train-batch-size, --gradient-accumulation-steps, --warmup-steps, ...), and one mapping,
`TrainingOptions.to_training_arguments`, that builds TrainingArguments, or TRL's SFTConfig from the same
keywords. A stage Config inherits `TrainingOptions` and adds only its own options; where a stage wants
another default it restates the field with `default_for` (same help, new default).

`quiet_libraries` is the one place that sets what the libraries print during training.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from ttscale.config import field



@dataclass(kw_only=True)  # kw_only: a stage's required options may follow these defaulted ones
class TrainingOptions:
    """Optimizer, schedule, batching, precision, LoRA, logging and checkpoint options of a training stage."""
    learning_rate: float = field(1e-5, gt=0, help="peak learning rate (decayed by --lr-scheduler-type after warmup)")
    lr_scheduler_type: str = field("linear", help="learning-rate schedule after warmup (transformers' names: "
                                   "linear, cosine, constant, ...)")
    warmup_steps: float = field(0.0, ge=0, help="learning-rate warmup: a number of steps, or a fraction of all steps "
                                "when below 1")
    weight_decay: float = field(0.0, ge=0, help="AdamW weight decay")
    num_train_epochs: float = field(1.0, gt=0, help="passes over the training data (ignored when --max-steps > 0)")
    max_steps: int = field(-1, ge=-1, help="optimizer steps to run; <= 0 = train for --num-train-epochs")
    per_device_train_batch_size: int = field(8, ge=1, help="examples per device (process) per micro-step")
    gradient_accumulation_steps: int = field(1, ge=1, help="micro-steps per optimizer step (global batch = per-device "
                                             "batch x accumulation x processes)")
    length_micro_batches: bool = field(True, help="run each (randomly drawn) batch as micro-batches of similar "
                                       "length, each padded only to its own longest row, gradients accumulated: "
                                       "the same step with less padding (ttscale.train.batching); off under "
                                       "DeepSpeed and FSDP")
    group_by_length: bool = field(False, help="draw batches of similar length (random groups of 50 batches sorted "
                                  "by length, then the batches shuffled: ttscale.train.batching): even less padding, "
                                  "but it changes which examples share a step, and it trained a worse toy policy "
                                  "(docs/design.md), so it is opt-in")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(
        "auto", help="auto = bf16 mixed precision on a GPU that supports it, else fp32 (always fp32 on CPU); "
        "fp32, bf16, fp16 force one")
    gradient_checkpointing: bool = field(False, help="recompute activations in the backward pass (less memory, "
                                         "more compute)")
    lora: bool = field(False, help="train a LoRA adapter (peft) instead of all weights")
    lora_r: int = field(16, ge=1, help="LoRA rank")
    lora_alpha: int = field(32, ge=1, help="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = field(0.05, ge=0, lt=1, help="dropout on the LoRA path")
    lora_target_modules: list[str] | None = field(None, help="module names LoRA adapts (e.g. q_proj v_proj; "
                                                  "comma-separated also works); default: all linear layers")
    logging_steps: int = field(10, ge=1, help="log the loss every this many steps; a run of fewer than 5x this many "
                               "--max-steps logs every max-steps/5 steps, so its first and last loss differ")
    save_steps: int = field(0, ge=0, help="write a resumable checkpoint every this many steps (0 = none)")
    save_total_limit: int = field(2, ge=1, help="checkpoints kept on disk")
    resume_from_checkpoint: str | None = field(None, bare="last", help="continue from a checkpoint: the flag "
                                               "alone (or 'last') takes the newest one in the stage's checkpoints/ "
                                               "folder, a path that folder; every process of a launch reads its "
                                               "own part")
    report_to: str = field("none", help="experiment trackers (Trainer's report_to): none, tensorboard, wandb, ...")
    seed: int = field(0, help="seed for initialisation, data order and dropout")
    threads: int = field(0, ge=0, help="CPU threads for torch per process (0 = leave torch's default)")

    def lora_targets(self) -> str | list[str]:
        """peft's target_modules: the named modules, or "all-linear" when none are named."""
        names = [n.strip() for item in self.lora_target_modules or [] for n in item.split(",") if n.strip()]
        return names if names and names != ["all-linear"] else "all-linear"

    def resolved_logging_steps(self, num_examples: int | None = None) -> int:
        """--logging-steps, lowered for a short run (from --max-steps, or the epochs over `num_examples`)."""
        steps = self.max_steps
        if steps <= 0 and num_examples:
            per_step = self.per_device_train_batch_size * int(os.environ.get("WORLD_SIZE", "1"))
            steps = int(self.num_train_epochs * math.ceil(num_examples / per_step) / self.gradient_accumulation_steps)
        return max(1, min(self.logging_steps, steps // 5)) if steps > 0 else self.logging_steps

    def resume(self) -> str | bool | None:
        """Trainer.train's resume_from_checkpoint: a folder, True (the newest checkpoint) or None."""
        if self.resume_from_checkpoint in (None, "", "none"):
            return None
        return True if self.resume_from_checkpoint in ("last", "latest") else self.resume_from_checkpoint

    def to_training_arguments(self, output_dir: str, *, args_class: Any = None, num_examples: int | None = None,
                              **stage: Any):
        """`args_class` (default transformers.TrainingArguments; trl.SFTConfig for SFT) built from these options.

        `num_examples` (the training set size) sets the logging interval of a short epoch-based run; `stage`
        adds or overrides keywords for what only one stage has (evaluation, SFT's max_length, ...).
        """
        import torch

        if args_class is None:
            from transformers import TrainingArguments as args_class
        check_launch()
        cuda = torch.cuda.is_available()
        kwargs: dict[str, Any] = dict(
            output_dir=str(output_dir), learning_rate=self.learning_rate, lr_scheduler_type=self.lr_scheduler_type,
            warmup_steps=self.warmup_steps if self.warmup_steps < 1 else int(self.warmup_steps),
            weight_decay=self.weight_decay, num_train_epochs=self.num_train_epochs,
            max_steps=self.max_steps if self.max_steps > 0 else -1,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            logging_steps=self.resolved_logging_steps(num_examples),
            save_strategy="steps" if self.save_steps > 0 else "no", save_steps=self.save_steps or 500,
            save_total_limit=self.save_total_limit, report_to=self.report_to, seed=self.seed, data_seed=self.seed,
            dataloader_num_workers=0, dataloader_pin_memory=cuda,  # pinning needs a GPU (else a warning per run)
            use_cpu=_cpu_processes(), **precision_flags(self.precision))
        # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns, and TRL
        # defaults it to True): set the name this version has.
        names = {f.name for f in dataclasses.fields(args_class)}
        new = "activation_checkpointing" in names
        kwargs["activation_checkpointing" if new else "gradient_checkpointing"] = self.gradient_checkpointing
        if "train_sampling_strategy" in names:   # transformers >= 5.x; `group_by_length` before
            kwargs["train_sampling_strategy"] = "group_by_length" if self.group_by_length else "random"
        else:
            kwargs["group_by_length"] = self.group_by_length
        if self.gradient_checkpointing:
            kwargs[f"{'activation' if new else 'gradient'}_checkpointing_kwargs"] = {"use_reentrant": False}
        kwargs.update(stage)
        return args_class(**kwargs)


def default_for(name: str, default: Any, base: type = TrainingOptions, help: str | None = None) -> Any:
    """`base`'s field `name` (same flag, same help unless a stage-specific `help` is given) with another
    default, for a stage that needs one."""
    meta = dict(base.__dataclass_fields__[name].metadata)
    if help is not None:
        meta["help"] = help
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), **meta)
    return field(default, **meta)


def precision_flags(precision: str) -> dict[str, bool]:
    import torch

    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _cpu_processes() -> bool:
    """Several launched processes but no CUDA: run them on the CPU (DDP over gloo), see accelerate_configs/cpu2.yaml."""
    import torch

    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


FSDP_NEEDS_GPUS = (
    "FSDP needs GPUs: accelerate runs CPU processes as MULTI_CPU (DDP over gloo) and only turns FSDP on for GPU-type "
    "launches (accelerate/state.py, AcceleratorState: the FSDP switch sits in the MULTI_GPU/XPU/NPU branch), so on "
    "a CPU an FSDP config would silently train plain DDP. On CPU use accelerate_configs/cpu2.yaml (DDP) or "
    "cpu2_zero3.yaml (DeepSpeed ZeRO-3, sharded parameters)")


def check_launch() -> None:
    """Stop at once on a launch that cannot do what its config says (instead of doing something else)."""
    import torch

    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
    accelerator = getattr(torch, "accelerator", None)  # CUDA, XPU, NPU, ... (torch >= 2.6)
    if fsdp and not (accelerator.is_available() if accelerator else torch.cuda.is_available()):
        raise RuntimeError(FSDP_NEEDS_GPUS)


def is_main_process() -> bool:
    """Rank 0 of a launched job (torchrun/accelerate set RANK), or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def _drop_cpu_fallback_note(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Setting accelerator to CPU")


def quiet_libraries() -> None:
    """What the libraries print while a stage trains: warnings a user can act on, from the main process only.

    Dropped: DeepSpeed's note that it found no GPU (it is imported by accelerate even for a CPU run), and
    transformers' deprecation of `is_gradient_checkpointing`, which peft calls, not ttscale. Under DDP
    every process but rank 0 prints errors only, so nothing appears once per process.
    """
    import transformers

    main = is_main_process()
    level = logging.WARNING if main else logging.ERROR
    transformers.logging.set_verbosity(level)
    for name in ("accelerate", "DeepSpeed"):  # DeepSpeed sets its level on import; a filter on the logger stays
        logging.getLogger(name).setLevel(level)
    logging.getLogger("DeepSpeed").addFilter(_drop_cpu_fallback_note)
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # peft notes that a LoRA adapter saves the resized embeddings: a PRM's step tag always resizes them
    warnings.filterwarnings("ignore", message=r"Setting `save_embedding_layers` to `True`", category=UserWarning)
    if not main:
        import datasets

        warnings.simplefilter("ignore")
        datasets.disable_progress_bars()  # TRL tokenizes on rank 0 first; the others only read its cache


@contextlib.contextmanager
def transformers_verbosity(level: int) -> Iterator[None]:
    """transformers' log level for a block (a load whose report ttscale summarises itself)."""
    import transformers

    old = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity(level)
    try:
        yield
    finally:
        transformers.logging.set_verbosity(old)
