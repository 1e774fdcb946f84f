"""How a trainer batches its examples, and a count of the real vs padded tokens it ran (every stage's report
carries it as `tokens`).

By default each batch is drawn at random, as before, and then run as micro-batches of similar length
(`LengthMicroBatches`): its rows sorted by length and cut where a cut saves enough padding, each piece
trimmed to its own longest row, their gradients accumulated. The loss of every trainer here is a sum over
labelled positions divided by the batch's count of them (`num_items_in_batch`), so the pieces' losses add up
to the batch's loss and the step is the same step, only with less padding run.

`--group-by-length` instead draws batches of similar length (`GroupedBatches`), which pads even less but
changes which examples share a step.

transformers' own `group_by_length` sorts each group of 50 batches longest first and keeps that order, so
consecutive steps sweep from long to short examples; on the demo's data (where long rows are also a different
kind: a revision row with an attempt in context, a PRM row with more steps) that correlated order cost both
trainers loss early in training. Here the batches are formed the same way, then shuffled.
"""
from __future__ import annotations

import contextlib
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


def length_cuts(lengths: Sequence[int], min_gain: float = 0.02) -> list[list[int]]:
    """Row indices of a batch cut into micro-batches of similar length (sorted by length): the cuts minimise
    the padded tokens run plus, per extra micro-batch, `min_gain` x the batch's padded size (a piece has a
    fixed cost per forward pass, so a cut must save at least that share)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ls = [lengths[i] for i in order]
    n, penalty = len(ls), min_gain * len(ls) * (max(ls) if ls else 0)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):              # best[j]: cheapest way to run the j shortest rows
        for i in range(j):
            cost = best[i] + (j - i) * ls[j - 1] + (penalty if i else 0)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    pieces, j = [], n
    while j:
        pieces.append(order[cut[j]:j])
        j = cut[j]
    return pieces[::-1]


def token_rows(inputs: dict, rows: list[int]) -> tuple[dict, int]:
    """Those rows of a padded batch whose tensors are per token ([rows, sequence], e.g. input_ids,
    attention_mask, labels, position_ids), trimmed to the columns any of the rows uses (either padding
    side), and the first column kept."""
    idx = torch.as_tensor(rows)
    mask = inputs["attention_mask"]
    used = mask[idx].any(0).nonzero().flatten()
    lo, hi = int(used[0]), int(used[-1]) + 1
    out = {k: v[idx][:, lo:hi] for k, v in inputs.items() if torch.is_tensor(v) and v.shape[:2] == mask.shape}
    return out, lo


class LengthMicroBatches:
    """Trainer mixin: run each batch as length-sorted micro-batches (module doc) and count its tokens.

    Set `length_micro_batches = False` on the trainer to run whole batches. A batch without an attention mask,
    without `num_items_in_batch` (the losses would be means per piece), or under DeepSpeed or FSDP (their
    engines expect one backward per micro-step) runs whole."""

    length_micro_batches = True
    token_count: "TokenCount | None" = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        pieces = [list(range(len(mask)))] if mask is not None else None
        if mask is not None and self.length_micro_batches and num_items_in_batch is not None and \
                str(self.accelerator.distributed_type).split(".")[-1] not in ("DEEPSPEED", "FSDP"):
            pieces = length_cuts(mask.sum(1).tolist())
        if pieces is None or len(pieces) == 1:
            if self.token_count is not None:
                self.token_count.add(inputs)
            return super().training_step(model, inputs, num_items_in_batch)
        return self._pieces(model, inputs, pieces, num_items_in_batch)

    def micro_batch(self, inputs: dict, rows: list[int]) -> dict:
        """A batch of those rows; a trainer whose batch holds more than per-token tensors overrides this."""
        part, _ = token_rows(inputs, rows)
        if set(part) != {k for k, v in inputs.items() if v is not None}:
            raise ValueError(f"micro_batch: batch keys {sorted(inputs)} are not all per-token tensors; "
                             f"{type(self).__name__} must say how to cut them")
        return part

    def _pieces(self, model, inputs: dict, pieces: list[list[int]], num_items_in_batch):
        total = None
        for k, rows in enumerate(pieces):
            part = self.micro_batch(inputs, rows)
            if self.token_count is not None:
                self.token_count.add(part, step=k == 0)
            last = k == len(pieces) - 1   # DDP reduces gradients once, after the last piece's backward
            with contextlib.nullcontext() if last or self.accelerator.num_processes == 1 else \
                    self.accelerator.no_sync(model):
                loss = super().training_step(model, part, num_items_in_batch)
            total = loss if total is None else total + loss
        return total


class TokenCount:
    """Real vs padded tokens of the training batches a trainer ran (LengthMicroBatches adds each piece)."""

    def __init__(self):
        self.real, self.padded, self.batches = 0, 0, 0

    @classmethod
    def attach(cls, trainer: Any) -> "TokenCount":
        trainer.token_count = cls()
        return trainer.token_count

    def add(self, batch: dict, step: bool = True) -> None:
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        self.padded += ids.numel()
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.batches += int(step)

    def summary(self) -> dict:
        return {"real": self.real, "padded": self.padded, "batches": self.batches,
                "real_per_padded": round(self.real / self.padded, 4) if self.padded else None}
