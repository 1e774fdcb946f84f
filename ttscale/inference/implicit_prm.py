"""Implicit PRM (Yuan et al. 2024, "Free Process Rewards without Process Labels"; PRIME's verifier).

A causal LM pi_theta fine-tuned from a reference pi_ref on OUTCOME labels only. Its reward for a response y
is r(y) = beta * log(pi_theta(y) / pi_ref(y)), trained with cross-entropy of sigmoid(r) against whether y's
final answer is right. The paper shows that the partial sums q_k = beta * sum over the response's tokens up
to the end of step k of log(pi_theta / pi_ref) then act as a Q-value: step k's process reward is
q_k - q_{k-1}, so the step rewards sum to the sequence reward, and sigmoid(q_k) reads as P(the solution
ends right | its first k steps). That is the score a step gets here (the Scorer protocol's probability), so
every aggregation and strategy works unchanged; the last step's score is sigmoid(r).

One function (`implicit_margins`) gives the q_k for the trainer's loss and for the scorer
(inference.scorers.ImplicitPRM), so a checkpoint is read exactly as it was trained. Both models run on every
token, so the scorer's size (what the meter charges per token) is the two models' parameters together.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def token_log_probs(model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T]: log p(token t | tokens < t) under `model`; 0 at t = 0 (nothing predicts the first token)."""
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
    picked = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return F.pad(picked, (1, 0))


def implicit_margins(model: Any, reference: Any, input_ids: torch.Tensor, mask: torch.Tensor,
                     starts: torch.Tensor, positions: torch.Tensor, beta: float) -> torch.Tensor:
    """[B, K]: q at each sequence index in `positions` = beta * the sum of log(pi_theta / pi_ref) over the
    row's response tokens (index >= its start, padding excluded) up to and including that index."""
    with torch.no_grad():
        ref = token_log_probs(reference, input_ids, mask)
    ratio = token_log_probs(model, input_ids, mask) - ref
    index = torch.arange(input_ids.shape[1], device=input_ids.device)
    response = (index[None, :] >= starts.to(input_ids.device)[:, None]) & mask.bool()
    return beta * torch.cumsum(ratio * response, dim=1)[:, positions]
