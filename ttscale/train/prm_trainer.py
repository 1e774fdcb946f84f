"""The PRM trainer: `transformers.Trainer` with a step-level loss, for both PRM formulations.

- token-classification: AutoModelForTokenClassification; 2 labels -> 2-way cross-entropy, 1 label -> BCE.
- causal-lm: AutoModelForCausalLM; the step's 2-way logits are [logit("+"), logit("-")] at the step tag
  (Math-Shepherd / RLHFlow style), so the checkpoint also works as a plain "+"/"-" PRM.

Both reduce to one quantity per step, the margin m = logit(correct) - logit(wrong) (for 1 label, the
logit itself), and one loss: binary cross-entropy of sigmoid(m) against the label. For two classes this
IS the cross-entropy (log-softmax of [a, b] at a = log sigmoid(a - b)), with a hard or a soft target, so
soft labels are trained on as they are. Scores at inference (ttscale.inference.scorers) are exactly
sigmoid(m): softmax[..., 1], sigmoid, or softmax over ("+", "-")[0].

Only the label positions are computed: the collator sends the union of step positions, and a causal LM
gets `logits_to_keep` so it never builds [batch, seq, vocab] logits. The loss is the mean over every
labelled step of the global batch (all gradient-accumulation micro-batches and all processes), so it does
not depend on how a batch is split. Distribution (DDP, DeepSpeed, FSDP) is left entirely to Trainer.
"""
from __future__ import annotations

import inspect
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import transformers

from ttscale.inference.prm_inputs import PRMSpec, add_step_tag, single_token_id
from ttscale.train.batching import LengthMicroBatches, grouped_sampler, token_rows
from ttscale.train.prm_metrics import IGNORE, compute_metrics


@dataclass
class PRMHead:
    """Where a model's step score comes from: the formulation and, for causal-lm, the "+"/"-" token ids."""

    formulation: str
    num_labels: int = 2
    positive_id: int | None = None
    negative_id: int | None = None
    logits_to_keep: bool = False  # the causal LM accepts logits_to_keep=<index tensor>
    reference: Any = None         # implicit: the frozen reference model (inference.implicit_prm)
    beta: float = 0.05

    @classmethod
    def for_model(cls, model: Any, tokenizer: Any, spec: PRMSpec, reference: Any = None) -> "PRMHead":
        if spec.formulation == "implicit":
            if reference is None:
                raise ValueError("an implicit PRM trains against a reference model; pass reference=")
            for p in reference.parameters():
                p.requires_grad_(False)
            return cls("implicit", 1, reference=reference.eval(), beta=spec.beta)
        if spec.formulation == "causal-lm":
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            return cls("causal-lm", 2, single_token_id(tokenizer, spec.positive_token, "positive token"),
                       single_token_id(tokenizer, spec.negative_token, "negative token"),
                       "logits_to_keep" in inspect.signature(base.forward).parameters)
        return cls("token-classification", spec.num_labels)

    def margins(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[batch, K] margins at the batch's `positions` (sigmoid of a margin = P(step correct))."""
        positions = batch["positions"]
        if self.formulation == "implicit":
            from ttscale.inference.implicit_prm import implicit_margins

            if self.reference.device != batch["input_ids"].device:
                self.reference.to(batch["input_ids"].device)
            return implicit_margins(model, self.reference, batch["input_ids"], batch["attention_mask"],
                                    batch["starts"], positions, self.beta)
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.formulation == "causal-lm" and self.logits_to_keep:
            logits = model(**kwargs, logits_to_keep=positions).logits
        else:
            logits = model(**kwargs).logits[:, positions]
        if self.formulation == "causal-lm":
            return logits[..., self.positive_id].float() - logits[..., self.negative_id].float()
        if logits.shape[-1] == 2:
            return logits[..., 1].float() - logits[..., 0].float()
        return logits[..., 0].float()


def step_loss_sum(margins: torch.Tensor, labels: torch.Tensor,
                  negative_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of per-step BCE over labelled positions, number of labelled positions). `negative_weight` scales
    the loss's wrong-step part, -(y log sigmoid(m) + w (1 - y) log sigmoid(-m)), soft targets included: most
    Monte Carlo labels are positive, and the rare wrong steps decide which candidate a search ranks first."""
    mask = labels != IGNORE
    m, y = margins[mask], labels[mask].to(margins.dtype)
    if negative_weight == 1.0:
        return F.binary_cross_entropy_with_logits(m, y, reduction="sum"), mask.sum()
    loss = -(y * F.logsigmoid(m) + negative_weight * (1 - y) * F.logsigmoid(-m)).sum()
    return loss, mask.sum()


class PRMTrainer(LengthMicroBatches, transformers.Trainer):
    """Trainer for step-level PRM losses; batches come from ttscale.train.prm_data.PRMCollator."""

    loss_is_scaled_for_ga = True  # compute_loss divides by the labelled steps of the whole global batch

    def __init__(self, *args: Any, prm_head: PRMHead, negative_weight: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("compute_metrics", compute_metrics)
        super().__init__(*args, **kwargs)
        self.prm_head, self.negative_weight = prm_head, negative_weight
        self.label_names = ["labels"]

    def _get_train_sampler(self, train_dataset=None):   # batches of similar length, shuffled
        ds = train_dataset if train_dataset is not None else self.train_dataset
        return grouped_sampler(self, ds) or super()._get_train_sampler(train_dataset)

    def micro_batch(self, inputs, rows):
        """Those rows, trimmed; only the step positions they label are kept (shifted with the trim)."""
        part, lo = token_rows({k: inputs[k] for k in ("input_ids", "attention_mask")}, rows)
        labels = inputs["labels"][torch.as_tensor(rows)]
        read = (labels != IGNORE).any(0)
        out = {**part, "positions": inputs["positions"][read] - lo, "labels": labels[:, read]}
        if "starts" in inputs:
            out["starts"] = (inputs["starts"][torch.as_tensor(rows)] - lo).clamp(min=0)
        return out

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # Count labelled steps ourselves: Trainer's count assumes token labels (and shifts them for causal LMs).
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches:
            return batches, None
        n = sum((b["labels"] != IGNORE).sum() for b in batches).to(device)
        if self.args.world_size > 1:
            n = self.accelerator.gather(n).sum()
        return batches, n

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        margins = self.prm_head.margins(model, inputs)
        loss_sum, count = step_loss_sum(margins, inputs["labels"], self.negative_weight)
        if num_items_in_batch is None:  # evaluation, or a caller outside the training loop
            loss = loss_sum / count.clamp(min=1)
        else:
            # Gradients are averaged over processes by DDP/DeepSpeed/FSDP, hence the world-size factor.
            loss = loss_sum * self.accelerator.num_processes / torch.as_tensor(num_items_in_batch).clamp(min=1)
        return (loss, {"margins": margins}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, out = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        # Scores where a step is labelled; IGNORE elsewhere so Trainer's cross-batch padding stays consistent.
        labels = inputs["labels"]
        scores = torch.where(labels != IGNORE, torch.sigmoid(out["margins"]), torch.full_like(labels, IGNORE))
        return loss.detach(), scores.detach(), labels.detach()


# ------------------------------------------------------------------------------------------- models

_HEAD_MODULES = ("score", "classifier")  # what transformers names a token-classification head


def load_tokenizer(path: str, step_tag: str) -> Any:
    """The tokenizer with the step tag registered (added as a special token if it is new)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:  # many causal LMs ship without one; padding is masked anyway
        tok.pad_token = tok.eos_token
    if step_tag:   # an implicit PRM reads no tag: its vocabulary must stay its reference's
        add_step_tag(tok, None, step_tag)
    return tok


def load_prm_model(path: str, tokenizer: Any, spec: PRMSpec, dtype: Any = None, tag_init: str | None = None) -> Any:
    """The model to train, with embeddings grown for an added step tag and readable label names; a new
    tag's embedding starts as the mean embedding of `tag_init`'s tokens (None: the vocabulary mean).

    transformers' load report and resize note are silenced: a token-classification head loaded from a causal
    LM is always new, and so is the step tag's row. Any other weight missing from the checkpoint is named."""
    import transformers as tf

    from ttscale.train.options import transformers_verbosity

    kw: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    with transformers_verbosity(logging.ERROR):
        if spec.formulation in ("causal-lm", "implicit"):
            model, info = tf.AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kw)
        else:
            names = {0: "wrong", 1: "correct"} if spec.num_labels == 2 else {0: "correct"}
            model, info = tf.AutoModelForTokenClassification.from_pretrained(
                path, num_labels=spec.num_labels, id2label=names, label2id={v: k for k, v in names.items()},
                output_loading_info=True, **kw)
        if spec.formulation != "implicit":
            add_step_tag(tokenizer, model, spec.step_tag, init_from=tag_init)
    head = tuple(f"{m}." for m in _HEAD_MODULES) if spec.formulation == "token-classification" else ()
    unexpected = sorted(k for k in info.get("missing_keys", ()) if not (head and k.startswith(head)))
    if unexpected:
        warnings.warn(f"{path}: weights not in the checkpoint, initialised at random: {', '.join(unexpected)}")
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def lora_model(model: Any, spec: PRMSpec, tag_id: int, r: int, alpha: int, dropout: float,
               target_modules: list[str] | None) -> Any:
    """Wrap with LoRA (peft). The task type matches the formulation, so a token-classification head is
    trained in full; the step tag's embedding row is trained too (it may be brand new)."""
    from peft import LoraConfig, TaskType, get_peft_model

    causal = spec.formulation in ("causal-lm", "implicit")
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM if causal else TaskType.TOKEN_CLS,
        r=r, lora_alpha=alpha, lora_dropout=dropout,
        target_modules=target_modules or "all-linear",
        trainable_token_indices=[tag_id] if tag_id is not None else None,   # implicit PRMs add no tag
        # The classifier head is trained in full (peft's modules_to_save for TOKEN_CLS), never LoRA-adapted.
        exclude_modules=None if causal else list(_HEAD_MODULES),
    )
    return get_peft_model(model, config)
