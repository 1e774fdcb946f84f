"""PRM scorers: one class per checkpoint style behind one base that encodes, batches and runs the model.

Every style implements the Scorer protocol of ttscale.inference.base: `score([(problem, steps), ...])`
returns one probability in [0, 1] per step. Inputs come from ttscale.inference.prm_inputs (the one place
that decides where steps are read); this module only runs the model and turns logits into probabilities.

Batching: candidates from all problems are sorted longest first and cut into batches of `batch_size`, so
each forward pass pads little; each candidate's steps are all read from that single pass. Padding is on
the right whatever the tokenizer says: real tokens then keep their position ids and the step positions
need no shifting, and with the attention mask the result equals an unpadded pass.

Step-wise search calls `score_incremental` instead (same signature and results): on ttscale-native PRMs it
runs only each candidate's new tokens on top of the cached KV of its already scored prefix (prm_cache);
elsewhere it is `score`. After either call `last_item_tokens` holds the tokens each item actually ran.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from ttscale.errors import UserError
from ttscale.inference.base import Usage
from ttscale.inference.implicit_prm import implicit_margins
from ttscale.inference.prm_cache import PrefixCache, score_incremental, supports_incremental
from ttscale.inference.prm_inputs import (SPEC_FILE, PRMSpec, StepAlignmentError, encode_implicit, encode_steps,
                                          single_token_id)

_PROGRESS_MIN_BATCHES = 4  # search calls score() once per step; a bar only when a call is long


class PRMScorer:
    """Base: encoding, length-sorted batching, usage counting. Subclasses turn model outputs into P(correct)."""

    style = "ttscale"
    formulation = "token-classification"

    def __init__(self, model: Any, tokenizer: Any, spec: PRMSpec | None = None, *, batch_size: int = 8,
                 max_length: int | None = None, name: str = "PRM", progress: bool = True,
                 incremental: bool = True, cache_bytes: int = 1 << 30, cache_entries: int = 4096) -> None:
        spec = spec or PRMSpec.for_style(self.style, formulation=self.formulation)
        if max_length:
            spec = dataclasses.replace(spec, max_length=max_length)
        if spec.formulation != self.formulation:
            raise UserError(f"{name}: {type(self).__name__} reads a {self.formulation} PRM but the spec says "
                             f"formulation {spec.formulation!r}; fix formulation in {SPEC_FILE} or the PRM style")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.spec, self.name = model.eval(), tokenizer, spec, name
        self.batch_size, self.progress = batch_size, progress
        self.num_params = sum(p.numel() for p in model.parameters())
        self.usage = Usage()
        self.last_item_tokens: list[int] | None = None
        self.kv_cache = PrefixCache(cache_bytes, cache_entries)
        # incremental=False makes score_incremental plain score (to compare); else decided on first use
        self._incremental: bool | None = None if incremental else False
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)  # masked out, so any id in range works
        self._check_model()

    # ------------------------------------------------------------------ protocol

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        # (ids, positions[, response start]): a style may carry one more per-item input to its _probs
        encoded = [self.encode(problem, steps, label=f"{self.name}: candidate {i}")
                   for i, (problem, steps) in enumerate(items)]
        results = self._batched(encoded)
        self.last_item_tokens = [len(e[0]) if e[1] else 0 for e in encoded]
        return results

    def _batched(self, encoded: Sequence[tuple]) -> list[list[float]]:
        """The scores of encoded inputs, run longest first in batches of batch_size (little padding)."""
        order = sorted((i for i, e in enumerate(encoded) if e[1]), key=lambda i: -len(encoded[i][0]))
        results: list[list[float]] = [[] for _ in encoded]
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc=f"{self.name} scoring", unit="batch", leave=False,
                          disable=not self.progress or len(starts) < _PROGRESS_MIN_BATCHES):
            idx = order[start:start + self.batch_size]
            for i, scores in zip(idx, self._run([encoded[i] for i in idx])):
                results[i] = scores
        return results

    def score_incremental(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """`score`, reusing the KV cache of prefixes scored since the last `reset_cache()` (step-wise search)."""
        if self._incremental is None:
            self._incremental = supports_incremental(self)
        if not self._incremental:
            return self.score(items)
        results, self.last_item_tokens = score_incremental(self, self.kv_cache, items)
        return results

    def reset_cache(self) -> None:
        """Forget cached prefixes (a search calls this when it starts and ends, so memory is returned)."""
        self.kv_cache.clear()

    def encode(self, problem: str, steps: Sequence[str], label: str = "candidate") -> tuple:
        return encode_steps(self.tokenizer, problem, steps, self.spec, label=label)

    # ------------------------------------------------------------------ model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _run(self, batch: list[tuple]) -> list[list[float]]:
        lengths = [len(e[0]) for e in batch]
        input_ids = torch.full((len(batch), max(lengths)), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for b, e in enumerate(batch):
            input_ids[b, :len(e[0])] = torch.tensor(e[0])
            mask[b, :len(e[0])] = 1
        # Only the sequence indices some candidate reads are turned into probabilities.
        keep = sorted({p for e in batch for p in e[1]})
        extra = {"starts": torch.tensor([e[2] for e in batch], device=self.device)} if len(batch[0]) > 2 else {}
        probs = self._probs(input_ids.to(self.device), mask.to(self.device),
                            torch.tensor(keep, device=self.device), **extra).float().cpu()
        self.usage.calls += 1
        self.usage.tokens += sum(lengths)  # real tokens; padding is masked and not counted as work
        column = {p: k for k, p in enumerate(keep)}
        return [[float(probs[b, column[p]]) for p in e[1]] for b, e in enumerate(batch)]

    def _probs(self, input_ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, **model_kw: Any) -> torch.Tensor:
        """[B, K] probabilities that the step read at sequence index keep[k] is correct (`model_kw`: cache inputs)."""
        raise NotImplementedError

    def _check_model(self) -> None:
        pass

    def _check_native_tag(self) -> None:
        """A ttscale PRM needs its step tag as one token the model has an embedding for."""
        if self.spec.style != "ttscale":
            return
        try:
            tag_id = single_token_id(self.tokenizer, self.spec.step_tag, "step tag")
        except StepAlignmentError as e:
            raise UserError(f"{self.name}: {e}; prm_inputs.add_step_tag(tokenizer, model) adds it") from None
        vocab = self.model.get_input_embeddings().num_embeddings
        if tag_id >= vocab:
            self._fail(f"step tag {self.spec.step_tag!r} has id {tag_id} but the model's embeddings hold {vocab} "
                       f"tokens; resize them (prm_inputs.add_step_tag(tokenizer, model) does)")

    def _fail(self, what: str) -> None:
        raise UserError(f"{self.name}: {what}")


def _logits(out: Any, index: int = 0) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    return logits if logits is not None else out[index]


def _is_causal_lm(model: Any) -> bool:
    return type(model).__name__.endswith("ForCausalLM")


# ---------------------------------------------------------------------------------------- token heads

class TokenClassificationPRM(PRMScorer):
    """ttscale token-classification PRM: 2 labels -> softmax[..., 1], 1 label -> sigmoid, at each step tag."""

    style = "ttscale"
    formulation = "token-classification"
    output_index = 0     # where the per-token logits sit in a tuple output

    def _check_model(self) -> None:
        if _is_causal_lm(self.model):
            self._fail(f"{type(self.model).__name__} is a causal LM, not a per-token classifier; use PRM style "
                       f"'causal-lm' (or math-shepherd / rlhflow), or formulation: causal-lm in {SPEC_FILE}")
        labels = getattr(getattr(self.model, "config", None), "num_labels", None)
        if type(self.model).__name__.endswith("ForTokenClassification") and labels != self.spec.num_labels:
            self._fail(f"the model has {labels} label(s) per token but the spec says num_labels="
                       f"{self.spec.num_labels}; set num_labels: {labels} in {SPEC_FILE}")
        self._check_native_tag()

    def _probs(self, input_ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, **model_kw: Any) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=mask, **model_kw)
        logits = _logits(out, self.output_index)[:, keep].float()
        width = 1 if logits.dim() == 2 else logits.shape[-1]
        if width != self.spec.num_labels:
            self._fail(f"the model outputs {width} value(s) per token but the spec says num_labels="
                       f"{self.spec.num_labels}; fix num_labels in {SPEC_FILE} or the PRM style")
        if width == 2:
            return torch.softmax(logits, dim=-1)[..., 1]
        return torch.sigmoid(logits.reshape(logits.shape[0], logits.shape[1]))


class QwenPRM(TokenClassificationPRM):
    """Qwen2.5-Math-PRM: chat-formatted, steps joined by <extra_0>, softmax[..., 1] of 2 classes at each tag."""

    style = "qwen-prm"


class SkyworkPRM(TokenClassificationPRM):
    """Skywork-o1-Open-PRM: value head, one scalar per token ([B,T] or [B,T,1]); sigmoid at each step's end.

    load_scorer builds the model as ttscale.inference.value_head.ValueHeadLM (returns the values [B,T])."""

    style = "skywork"
    output_index = -1    # a model returning Skywork's own tuple (lm_logits, loss, value) works as well


# ---------------------------------------------------------------------------------------- "+/-" heads

class CausalLMPRM(PRMScorer):
    """Causal-LM PRM (ttscale causal-lm, Math-Shepherd): P("+") = softmax over the "+"/"-" logits at each tag."""

    style = "ttscale"
    formulation = "causal-lm"

    def _check_model(self) -> None:
        if self.model.get_output_embeddings() is None or type(self.model).__name__.endswith("ForTokenClassification"):
            self._fail(f"{type(self.model).__name__} has no language-model head to read '+'/'-' from; use PRM "
                       f"style 'token-classification' (or qwen-prm / skywork), or formulation: token-classification "
                       f"in {SPEC_FILE}")
        self.candidate_ids = torch.tensor(self._candidate_ids())
        self._check_native_tag()
        # Asking for logits only where steps are read saves a [B, T, vocab] tensor when the model allows it.
        self._keep_arg = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def _candidate_ids(self) -> list[int]:
        tok, spec = self.tokenizer, self.spec
        return [single_token_id(tok, spec.positive_token, "positive token"),
                single_token_id(tok, spec.negative_token, "negative token")]

    def _probs(self, input_ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, **model_kw: Any) -> torch.Tensor:
        if self._keep_arg:
            logits = _logits(self.model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep, **model_kw))
        else:
            logits = _logits(self.model(input_ids=input_ids, attention_mask=mask, **model_kw))[:, keep]
        pair = logits[..., self.candidate_ids.to(logits.device)].float()
        return torch.softmax(pair, dim=-1)[..., 0]


class MathShepherdPRM(CausalLMPRM):
    """peiyi9979/math-shepherd-mistral-7b-prm: "question Step 1: ... ки\\nStep 2: ... ки"."""

    style = "math-shepherd"

    def _candidate_ids(self) -> list[int]:
        # As the model card does: the ids of "+ -" encoded together (Mistral: "▁+", "▁-"), the tokens that
        # replaced " ки" in training, which differ from a bare "+" in sentencepiece vocabularies.
        ids = self.tokenizer.encode(f"{self.spec.positive_token} {self.spec.negative_token}", add_special_tokens=False)
        if len(ids) != 2:
            self._fail(f"'{self.spec.positive_token} {self.spec.negative_token}' should encode as 2 tokens, got {ids}; "
                       f"set positive_token/negative_token in {SPEC_FILE}")
        return ids


class RLHFlowPRM(CausalLMPRM):
    """RLHFlow Llama3.1-8B-PRM: one user turn per step answered "+"; P("+") where that "+" is predicted."""

    style = "rlhflow"

    def _check_model(self) -> None:
        if not getattr(self.tokenizer, "chat_template", None):
            self._fail("the rlhflow style needs the checkpoint's chat template, and this tokenizer has none")
        super()._check_model()


# ---------------------------------------------------------------------------------------- implicit

class ImplicitPRM(PRMScorer):
    """Implicit PRM: steps scored as sigmoid(q_k) with a fine-tuned causal LM and its reference (the q_k and
    why: inference.implicit_prm)."""

    style = "ttscale"
    formulation = "implicit"

    def __init__(self, model: Any, tokenizer: Any, spec: PRMSpec | None = None, *, reference: Any = None,
                 **kwargs: Any) -> None:
        if reference is None:
            raise ValueError("an implicit PRM needs its reference model (the model it was fine-tuned from)")
        self.reference = reference.eval()
        super().__init__(model, tokenizer, spec, **kwargs)
        self.num_params += sum(p.numel() for p in reference.parameters())   # both run on every token
        self._incremental = False   # two models' caches; the plain pass is what it trained on

    def _check_model(self) -> None:
        for what, m in (("model", self.model), ("reference", self.reference)):
            if m.get_output_embeddings() is None:
                self._fail(f"the implicit PRM's {what} ({type(m).__name__}) has no language-model head")
        if self.model.get_output_embeddings().weight.shape[0] != self.reference.get_output_embeddings().weight.shape[0]:
            self._fail("the implicit PRM and its reference have different vocabularies; use the reference it was "
                       "trained from (reference in ttscale_prm.json, or --prm-reference)")

    def encode(self, problem: str, steps: Any, label: str = "candidate") -> tuple[list[int], list[int], int]:
        return encode_implicit(self.tokenizer, problem, steps, self.spec, label=label)

    def _probs(self, input_ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, **model_kw: Any) -> torch.Tensor:
        if self.reference.device != input_ids.device:
            self.reference.to(input_ids.device)
        margins = implicit_margins(self.model, self.reference, input_ids, mask, model_kw["starts"], keep,
                                   self.spec.beta)
        return torch.sigmoid(margins)


SCORER_CLASSES: dict[str, type[PRMScorer]] = {
    "math-shepherd": MathShepherdPRM, "qwen-prm": QwenPRM, "rlhflow": RLHFlowPRM, "skywork": SkyworkPRM,
}


def scorer_class(spec: PRMSpec) -> type[PRMScorer]:
    if spec.formulation == "implicit":
        return ImplicitPRM
    if spec.style == "ttscale":
        return TokenClassificationPRM if spec.formulation == "token-classification" else CausalLMPRM
    return SCORER_CLASSES[spec.style]


def make_scorer(model: Any, tokenizer: Any, spec: PRMSpec, **kwargs: Any) -> PRMScorer:
    """The scorer for an already loaded model and tokenizer (what load_scorer ends with)."""
    return scorer_class(spec)(model, tokenizer, spec, **kwargs)


__all__ = ["PRMScorer", "TokenClassificationPRM", "QwenPRM", "SkyworkPRM", "CausalLMPRM", "MathShepherdPRM",
           "RLHFlowPRM", "ImplicitPRM", "StepAlignmentError", "make_scorer", "scorer_class"]
