"""How a trainer batches its examples: batches of similar length in random order, and a count of the real
vs padded tokens it ran (every stage's report carries it as `tokens`).

transformers' own `group_by_length` sorts each group of 50 batches longest first and keeps that order, so
consecutive steps sweep from long to short examples; on the demo's data (where long rows are also a different
kind: a revision row with an attempt in context, a PRM row with more steps) that correlated order cost both
trainers loss early in training. Here the batches are formed the same way, then shuffled.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler


class GroupedBatches(Sampler[int]):
    """Indices whose consecutive runs of `batch_size` hold examples of similar length, those runs in random
    order: a random permutation cut into groups of `groups * batch_size`, each sorted by length and cut into
    batches; the batches are shuffled (a group's short last batch, if any, goes last)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, groups: int = 50):
        self.lengths, self.batch_size, self.seed, self.groups, self.epoch = list(lengths), batch_size, seed, groups, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        size = self.groups * self.batch_size
        batches = []
        for i in range(0, len(perm), size):
            group = sorted(perm[i:i + size], key=self.lengths.__getitem__)
            batches += [group[j:j + self.batch_size] for j in range(0, len(group), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        for k in torch.randperm(len(full), generator=g).tolist():
            yield from full[k]
        for b in batches:
            if len(b) < self.batch_size:
                yield from b


def grouped_sampler(trainer: Any, dataset: Any) -> GroupedBatches | None:
    """The sampler for `trainer` (a transformers Trainer) when its arguments ask for length grouping."""
    args = trainer.args
    if getattr(args, "train_sampling_strategy", None) != "group_by_length" and not getattr(args, "group_by_length", False):
        return None
    if dataset is None or not hasattr(dataset, "__len__"):
        return None
    column = getattr(dataset, "column_names", None)
    ids = dataset["input_ids"] if column is not None and "input_ids" in column else (x["input_ids"] for x in dataset)
    return GroupedBatches([len(x) for x in ids], args.per_device_train_batch_size, seed=args.seed)


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
