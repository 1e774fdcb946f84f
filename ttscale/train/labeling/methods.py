"""Monte Carlo step-labelling methods, written as coroutines so a driver can batch many solutions.

A method decides which step prefixes of one solution to probe. It yields a list of prefix lengths to roll
out (prefix length i+1 = "the solution up to and including step i"), receives the number of correct
rollouts for each, and finally returns the evidence. The driver interleaves all solutions of a shard and
sends their requests to the generator together, so the methods never see a model.

Methods (Math-Shepherd; OmegaPRM's binary search):
  per-step       probe every prefix: O(k·M) rollouts.
  first-error    probe prefixes in order, stop at the first with no correct rollout (≤ τ): steps after it
                 are left unlabelled.
  binary-search  find that same first error assuming monotonicity (once a prefix cannot reach the answer,
                 longer ones cannot either): O(k·log M) rollouts; every probed prefix is recorded.

The full solution (prefix M) is never rolled out: its own final answer is the evidence (1 of 1).
A correct full solution is also a witness that every one of its prefixes can reach the answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator

METHODS = ("per-step", "first-error", "binary-search")

# yield: list of prefix lengths to probe; send: list of correct counts (one per prefix, out of k)
MethodCoroutine = Generator[list[int], list[int], "Evidence"]


@dataclass
class Evidence:
    """Per labelled step: correct rollouts and total rollouts (0/0 = not probed, inferred)."""
    mc_correct: list[int] = field(default_factory=list)
    mc_total: list[int] = field(default_factory=list)
    rollouts: int = 0               # generated rollouts spent on this solution
    first_error: int = -1           # index of the first wrong step found (-1: none)


def _is_positive(correct: int, total: int, threshold: float) -> bool:
    return total > 0 and correct / total > threshold


def label_solution(method: str, num_steps: int, k: int, final_correct: bool,
                   threshold: float = 0.0) -> MethodCoroutine:
    """Coroutine for one solution of `num_steps` steps; `final_correct` grades its own final answer."""
    if method not in METHODS:
        raise ValueError(f"unknown labelling method {method!r}; choose one of {', '.join(METHODS)}")
    if num_steps < 1:
        return Evidence()
    correct = [0] * num_steps
    total = [0] * num_steps
    correct[-1], total[-1] = int(final_correct), 1
    spent = 0

    def probe(lengths: list[int]):
        nonlocal spent
        counts = yield lengths
        for length, c in zip(lengths, counts):
            correct[length - 1], total[length - 1] = int(c), k
        spent += k * len(lengths)

    if method == "per-step":
        if num_steps > 1:
            yield from probe(list(range(1, num_steps)))
        first = next((i for i in range(num_steps) if not _is_positive(correct[i], total[i], threshold)), -1)
        return Evidence(correct, total, spent, first)

    if method == "first-error":
        for length in range(1, num_steps):
            yield from probe([length])
            if not _is_positive(correct[length - 1], k, threshold):
                return Evidence(correct[:length], total[:length], spent, length - 1)
        first = -1 if final_correct else num_steps - 1
        return Evidence(correct, total, spent, first)

    # binary-search: invariant — prefixes shorter than lo are positive, prefix hi is negative
    if final_correct:  # the solution itself witnesses every prefix; nothing to search
        return Evidence(correct, total, spent, -1)
    lo, hi = 1, num_steps
    while lo < hi:
        mid = (lo + hi) // 2
        yield from probe([mid])
        if _is_positive(correct[mid - 1], k, threshold):
            lo = mid + 1
        else:
            hi = mid
    return Evidence(correct[:hi], total[:hi], spent, hi - 1)
