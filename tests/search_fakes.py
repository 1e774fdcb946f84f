"""A scripted, deterministic Generator and Scorer for search tests (they implement the protocols in base.py).

The policy writes `depth` steps; the last one holds \\boxed{a} with a in {0, 1, 2} (hash of prompt + j + seed)
and ends with EOS. Without a stop string it writes the whole solution; ~1 in 5 full samples is cut by the
token limit (no answer, finish_reason "length"). Every call is logged so tests can count calls and tokens.
"""
from __future__ import annotations

import hashlib

from ttscale.inference.base import Completion, SamplingParams, Usage


def h(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def prefix_steps(prompt: str) -> int:
    body = prompt.split("Solution:\n", 1)[-1]
    return len([s for s in body.split("\n\n") if s.strip()])


class ScriptedGenerator:
    tokenizer = None
    num_params = 1000

    def __init__(self, depth: int = 3):
        self.depth = depth
        self.calls: list[dict] = []

    def _text(self, prompt: str, params: SamplingParams, j: int) -> Completion:
        r = h(prompt, j, params.seed, params.temperature)
        k = prefix_steps(prompt)
        if params.stop:
            if k + 1 >= self.depth:
                text, reason = f"so the total is \\boxed{{{r % 3}}}", "eos"
            else:
                text, reason = f"step {k} value {r % 7}" + params.stop[0], "stop"
        elif r % 5 == 0:
            text, reason = "\n\n".join(f"step {i} value {h(r, i) % 7}" for i in range(self.depth - 1)), "length"
        else:
            steps = [f"step {i} value {h(r, i) % 7}" for i in range(self.depth - 1)]
            text, reason = "\n\n".join(steps + [f"so the total is \\boxed{{{r % 3}}}"]), "eos"
        return Completion(text=text, num_tokens=len(text.split()) + 1, finish_reason=reason)

    def generate(self, prompts, params):
        out = [[self._text(p, params, j) for j in range(params.n)] for p in prompts]
        self.calls.append({"prompts": list(prompts), "params": params,
                           "tokens": sum(c.num_tokens for cs in out for c in cs)})
        return out


class ScriptedScorer:
    """Score of a step = hash of (problem, steps so far) in [0, 1); tokens = characters // 4 per item."""
    num_params = 100

    def __init__(self):
        self.usage = Usage()
        self.items_seen: list[int] = []

    def score(self, items):
        self.usage.calls += 1
        self.usage.tokens += sum((len(p) + sum(len(s) for s in steps)) // 4 for p, steps in items)
        self.items_seen.append(len(items))
        return [[(h(p, *steps[:i + 1]) % 1000) / 1000 for i in range(len(steps))] for p, steps in items]


def problems(n: int) -> list[dict]:
    return [{"id": f"p{i}", "problem": f"Problem number {i}: add things.", "answer": str(i % 3)} for i in range(n)]
