"""A scripted, deterministic Generator and Scorer for search tests (they implement the protocols in base.py).

The policy writes `depth` steps; the last one holds \\boxed{a} with a in {0, 1, 2} (hash of prompt + j + seed)
and ends with EOS. Without a stop string it writes the whole solution; ~1 in 5 full samples is cut by the
token limit (no answer, finish_reason "length"). Every call is logged so tests can count calls and tokens.
Prompt tokens are words: the generator reports len(prompt.split()) per prompt as the prompt tokens it ran
(`last_prompt_tokens`), and `cached_words` of them as served from a cache (`last_cached_tokens`), like a
backend with a prefix cache. The scorer reports its per-item tokens (`last_item_tokens`) as PRMScorer does.
"""
from __future__ import annotations

import hashlib
from collections import Counter

from ttscale.inference.base import Completion, SamplingParams, Usage


def h(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def prefix_steps(prompt: str) -> int:
    body = prompt.split("Solution:\n", 1)[-1]
    return len([s for s in body.split("\n\n") if s.strip()])


class ScriptedGenerator:
    tokenizer = None
    num_params = 1000

    def __init__(self, depth: int = 3, cached_words: int = 0):
        self.depth = depth
        self.cached_words = cached_words
        self.calls: list[dict] = []
        self.last_prompt_tokens: list[int] | None = None
        self.last_cached_tokens: list[int] | None = None

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

    def generate(self, prompts, params, n=None, start=None):
        counts = [params.n] * len(prompts) if n is None else list(n)
        starts = [0] * len(prompts) if start is None else list(start)
        out = [[self._text(p, params, j) for j in range(s, s + k)] for p, k, s in zip(prompts, counts, starts)]
        words = [len(p.split()) for p in prompts]
        self.last_cached_tokens = [min(w, self.cached_words) for w in words]
        self.last_prompt_tokens = [w - c for w, c in zip(words, self.last_cached_tokens)]
        self.calls.append({"prompts": list(prompts), "params": params, "n": counts, "start": starts,
                           "tokens": sum(c.num_tokens for cs in out for c in cs),
                           "per_prompt": [(prompt, run, cached, sum(c.num_tokens for c in cs))
                                          for prompt, run, cached, cs in zip(prompts, self.last_prompt_tokens,
                                                                             self.last_cached_tokens, out)]})
        return out


class ScriptedScorer:
    """Score of a step = hash of (problem, steps so far) in [0, 1); tokens = characters // 4 per item."""
    num_params = 100

    def __init__(self):
        self.usage = Usage()
        self.items_seen: list[int] = []
        self.last_item_tokens: list[int] | None = None
        self.item_calls: list[list[tuple[str, int]]] = []   # per call: (problem text, tokens) of each item

    def score(self, items):
        self.last_item_tokens = [(len(p) + sum(len(s) for s in steps)) // 4 for p, steps in items]
        self.usage.calls += 1
        self.usage.tokens += sum(self.last_item_tokens)
        self.item_calls.append([(p, n) for (p, _), n in zip(items, self.last_item_tokens)])
        self.items_seen.append(len(items))
        return [[(h(p, *steps[:i + 1]) % 1000) / 1000 for i in range(len(steps))] for p, steps in items]


def hand_spent(probs: list[dict], policy: ScriptedGenerator | None = None, reviser: ScriptedGenerator | None = None,
               scorer: ScriptedScorer | None = None) -> dict[str, dict[str, float]]:
    """Per problem id, the Spent fields recomputed from the fakes' call logs alone (not through the Meter):
    every prompt and item is charged to the problem whose text it holds."""
    def owner(text: str) -> str:
        return next(p["id"] for p in probs if p["problem"] in text)

    out = {p["id"]: Counter() for p in probs}
    for gen, role in ((policy, "policy"), (reviser, "reviser")):
        generated = "generated_tokens" if role == "policy" else "reviser_generated_tokens"
        for call in gen.calls if gen else []:
            for pid in {owner(prompt) for prompt, *_ in call["per_prompt"]}:
                out[pid][f"{role}_calls"] += 1
            for prompt, run, cached, tokens in call["per_prompt"]:
                spent = out[owner(prompt)]
                spent[f"{role}_prompt_tokens"] += run
                spent[f"{role}_cached_tokens"] += cached
                spent[generated] += tokens
                spent[f"{role}_flops"] += 2.0 * gen.num_params * (run + tokens)
    for call in scorer.item_calls if scorer else []:
        for pid in {owner(text) for text, _ in call}:
            out[pid]["prm_calls"] += 1
        for text, tokens in call:
            out[owner(text)]["prm_tokens"] += tokens
            out[owner(text)]["prm_flops"] += 2.0 * scorer.num_params * tokens
    return {pid: {k: v for k, v in c.items() if v} for pid, c in out.items()}


def spent_fields(spent) -> dict[str, float]:
    """A Spent as a dict without its zero fields (to compare with hand_spent)."""
    return {k: v for k, v in spent.to_dict().items() if v}


def problems(n: int) -> list[dict]:
    return [{"id": f"p{i}", "problem": f"Problem number {i}: add things.", "answer": str(i % 3)} for i in range(n)]
