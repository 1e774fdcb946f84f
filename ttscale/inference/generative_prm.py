"""Generative PRM: a causal LM that writes a check of each step, then a verdict (GenPRM, ThinkPRM).

For step k of a candidate the verifier continues data.critique_format's prompt (the problem, the steps before
k, the step to check) with a sampled rationale, up to the verdict marker; the step's score is then
P(positive) / (P(positive) + P(negative)) at the verdict token, averaged over `samples` rationales (GenPRM's
test-time vote). It is a Scorer like any other, so every strategy and `serve` use it; its compute is metered
as it is spent: each rationale's prompt prefill and generated tokens, and the verdict pass over prompt and
rationale, all count as the verifier's tokens (`last_item_tokens`), at 2 FLOPs per parameter each.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Sequence

import torch

from ttscale.data.critique_format import VERDICT, critique_prompt, rationale_text
from ttscale.inference.base import SamplingParams
from ttscale.inference.prm_inputs import PRMSpec, SequenceTooLongError
from ttscale.inference.scorers import CausalLMPRM


def rationale(text: str) -> str:
    """A generated check without the verdict marker it stopped at (the backend keeps stop strings)."""
    return (text[:-len(VERDICT)] if text.endswith(VERDICT) else text).strip()


class GenerativePRM(CausalLMPRM):
    """Steps scored by the verdict a sampled rationale ends with (module doc)."""

    style = "ttscale"
    formulation = "generative"

    def __init__(self, model: Any, tokenizer: Any, spec: PRMSpec | None = None, *, samples: int | None = None,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, spec, **kwargs)
        from ttscale.inference.transformers_backend import TransformersGenerator

        self._incremental = False
        if samples:
            self.spec = dataclasses.replace(self.spec, samples=samples)
        self.seed = seed
        # rationales decode many rows at once (the engine's throughput is flat from 128 to 1024 rows)
        self.generator = TransformersGenerator(model, tokenizer, device=str(self.device),
                                               batch_size=max(256, self.batch_size), progress=False)
        self.last_rationales: list[list[list[str]]] | None = None   # per item, per step, per sample

    def _check_model(self) -> None:   # CausalLMPRM's, without a step tag: a verifier reads none
        if self.model.get_output_embeddings() is None:
            self._fail(f"{type(self.model).__name__} has no language-model head to write a check with")
        self.candidate_ids = torch.tensor(self._candidate_ids())
        self._keep_arg = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def prompts(self, problem: str, steps: Sequence[str]) -> list[str]:
        return [critique_prompt(problem, steps[:k], steps[k], self.tokenizer, self.spec.step_delimiter)
                for k in range(len(steps))]

    def encode(self, problem: str, steps: Sequence[str], label: str = "candidate") -> tuple:
        """The longest check's prompt (the last step's) with room for its rationale: what must fit max_length."""
        if not steps:
            return [], []
        ids = self.tokenizer(self.prompts(problem, steps)[-1])["input_ids"]
        need = len(ids) + self.spec.rationale_tokens + len(self.tokenizer(VERDICT, add_special_tokens=False)["input_ids"])
        if need > self.spec.max_length:
            raise SequenceTooLongError(f"{label}: truncated: checking its last step needs {need} tokens > max_length "
                                       f"{self.spec.max_length}")
        return ids, list(range(len(steps)))

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        for i, (problem, steps) in enumerate(items):
            self.encode(problem, steps, label=f"{self.name}: candidate {i}")
        checks = [(i, p) for i, (problem, steps) in enumerate(items) for p in self.prompts(problem, steps)]
        n = self.spec.samples
        outs = self.generator.generate([p for _, p in checks], SamplingParams(
            n=n, temperature=self.spec.temperature, max_new_tokens=self.spec.rationale_tokens, stop=(VERDICT,),
            seed=self.seed)) if checks else []
        prefill = self.generator.last_prompt_tokens or [0] * len(checks)
        texts = [p + rationale_text(rationale(c.text)) for (_, p), cs in zip(checks, outs) for c in cs]
        encoded = [(ids, [len(ids) - 1]) for ids in (self.tokenizer(t)["input_ids"] for t in texts)]
        verdicts = self._batched(encoded)
        tokens, results = [0] * len(items), [[] for _ in items]
        rationales: list[list[list[str]]] = [[] for _ in items]
        for j, ((i, _), cs) in enumerate(zip(checks, outs)):
            probs = [verdicts[j * n + s][0] for s in range(n)]
            results[i].append(sum(probs) / n)
            rationales[i].append([rationale(c.text) for c in cs])
            tokens[i] += prefill[j] + sum(c.num_tokens for c in cs) + sum(len(encoded[j * n + s][0]) for s in range(n))
        generated = sum(tokens) - sum(len(e[0]) for e in encoded)
        self.usage.tokens += generated        # _run counted the verdict passes; the rationales are work too
        self.last_item_tokens, self.last_rationales = tokens, rationales
        return results
