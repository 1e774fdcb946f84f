"""Save a trained model as plain full weights, the same way on one process, DDP, DeepSpeed ZeRO-2/3 and FSDP.

Under ZeRO-3 and FSDP each rank holds only a shard of every weight, so the unwrapped model cannot simply be
`save_pretrained` on rank 0. `Trainer.save_model` gathers first (ZeRO-3: the consolidated 16-bit state dict,
`stage3_gather_16bit_weights_on_model_save`; FSDP: the FULL_STATE_DICT) and writes safetensors that plain
`AutoModel*.from_pretrained` loads; it is a collective, so EVERY rank calls the functions here.

LoRA: the adapter is saved the same way (gathered), then rank 0 alone reloads the base model, merges and
saves. While ZeRO-3 is active transformers builds every model under `deepspeed.zero.Init`, itself a
collective the other ranks never join (the merge-on-save hang): `whole_model_init` turns that off for the
one local load.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def whole_model_init() -> Iterator[None]:
    """Models created in this block are whole and local to this process, even while ZeRO-3 is active."""
    try:
        from transformers.integrations import deepspeed as hf_ds
    except ImportError:  # no deepspeed integration: nothing to turn off
        yield
        return
    ref = hf_ds._hf_deepspeed_config_weak_ref  # what is_deepspeed_zero3_enabled() reads
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = ref


def check_full_save(trainer: Any) -> None:
    """Fail before training, not after, when ZeRO-3 would save shards: Trainer then writes a DeepSpeed
    checkpoint instead of weights (it only warns)."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return
    zero = trainer.accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {})
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save", False):
        raise ValueError("DeepSpeed ZeRO-3 without gathering weights on save would leave shards, not a model: "
                         "set `zero3_save_16bit_model: true` in the accelerate config (deepspeed_config), or "
                         "`stage3_gather_16bit_weights_on_model_save: true` in a DeepSpeed JSON")


def save_full_weights(trainer: Any, out: str | Path, load_base: Callable[[], Any] | None = None,
                      merge_lora: bool = True) -> bool:
    """Write `out` as a plain checkpoint (all ranks call this). A LoRA model with `merge_lora` keeps its
    adapter in out/adapter and the merged weights in out (`load_base` builds the untrained base model);
    without `merge_lora`, `out` is the adapter folder (PeftModel.from_pretrained). True on the main process."""
    out = Path(out)
    model = trainer.accelerator.unwrap_model(trainer.model)
    merge = merge_lora and hasattr(model, "peft_config")
    if merge and load_base is None:
        raise ValueError("merging a LoRA adapter needs load_base, the function that loads the base model")
    trainer.save_model(str(out / "adapter" if merge else out))
    trainer.accelerator.wait_for_everyone()
    if merge and trainer.is_world_process_zero():
        from peft import PeftModel

        with whole_model_init():
            merged = PeftModel.from_pretrained(load_base(), str(out / "adapter")).merge_and_unload()
        merged.save_pretrained(str(out))
    trainer.accelerator.wait_for_everyone()
    return trainer.is_world_process_zero()
