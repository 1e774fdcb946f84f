"""Real vs padded tokens of the batches a trainer runs: what `--group-by-length` is for.

Every stage's report carries `tokens`: real (attention-mask) tokens, padded tokens (the batch shapes the
model ran) and their ratio, counted on the training batches of this process.
"""
from __future__ import annotations

from typing import Any, Callable


class TokenCount:
    """Wraps a data collator and counts the tokens of every batch it builds."""

    def __init__(self, collate: Callable[[list], dict]):
        self.collate, self.real, self.padded, self.batches = collate, 0, 0, 0

    @classmethod
    def attach(cls, trainer: Any) -> "TokenCount":
        """Count the batches `trainer` builds from now on (its dataloaders read `data_collator` when built)."""
        counter = cls(trainer.data_collator)
        trainer.data_collator = counter
        return counter

    def __call__(self, features: list) -> dict:
        batch = self.collate(features)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        self.padded += ids.numel()
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.batches += 1
        return batch

    def summary(self) -> dict:
        return {"real": self.real, "padded": self.padded, "batches": self.batches,
                "real_per_padded": round(self.real / self.padded, 4) if self.padded else None}
