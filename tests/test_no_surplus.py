"""Every token a search generates is a token its result keeps: strategies ask each prompt for exactly the
completions they take (per-prompt counts), so nothing is drawn to be discarded, whatever problems share a
batch (the surplus of n = the largest count in a call used to depend on the batch)."""
from __future__ import annotations

import pytest

from search_fakes import ScriptedGenerator, problems
from test_search_strategies import ctx, search
from ttscale.inference.base import SamplingParams
from ttscale.search.meter import Meter
from ttscale.search.output import kept_tokens

CASES = [
    ("particle-filtering", dict(depth=5, max_depth=7), 8),
    ("rebase", dict(depth=5, max_depth=7), 8),
    ("mcts", dict(depth=4, mcts_width=3), 4),
    ("beam", dict(depth=5, beam_width=2), 8),
    ("dvts", dict(depth=5, beam_width=2), 8),
    ("lookahead", dict(depth=5, beam_width=2, lookahead=1), 4),
    ("parallel-revisions", dict(reviser=True, revision_length=2), 6),
    ("revisions", dict(reviser=True), 4),
    ("parallel-revisions", dict(reviser=True, revision_length=2, first_attempt="policy"), 6),
]


@pytest.mark.parametrize("name,options,budget", CASES, ids=[c[0] + ("-policy" if "first_attempt" in c[1] else "")
                                                           for c in CASES])
def test_tokens_generated_equal_the_tokens_of_what_is_kept(name, options, budget):
    c = ctx(**options)
    res = search(name, problems(5), c, budget)
    for r in res:
        generated = r.spent.generated_tokens + r.spent.reviser_generated_tokens
        kept = kept_tokens([x.to_dict() for x in r.candidates], [n.to_dict() for n in r.tree])
        assert generated == kept > 0, r.problem["id"]
    if name in ("particle-filtering", "rebase"):   # calls did mix nodes with different child counts
        assert any(len(set(call["n"])) > 1 for call in c.generator.calls)


def test_revision_chains_that_coincide_ask_only_their_own_copies():
    """Two chains of problem p0 write the same attempt, so their next prompts are one prompt asked for 2;
    every other prompt of that call is asked for 1 (not 2, as n = most copies in the call used to give)."""
    class Stubborn(ScriptedGenerator):
        def _text(self, prompt, params, j):
            if "Problem number 0" in prompt:
                return super()._text("p0 fixed", params, 0)
            return super()._text(prompt, params, j)

    c = ctx(reviser=True, revision_length=2)
    c.reviser = Stubborn(3)
    res = search("parallel-revisions", problems(3), c, 6)
    second = c.reviser.calls[1]
    assert sorted(second["n"]) == [1] * 6 + [3]      # p0's three chains share one prompt; p1, p2: 3 each
    for r in res:
        assert r.spent.reviser_generated_tokens == sum(x.tokens for x in r.candidates)


def test_a_generator_without_per_prompt_counts_gets_one_call_per_count():
    """A third-party generator whose generate() has no n= still gets exactly the counts asked (the contract
    makes completion j the same either way), one call per distinct count, each charged as made."""
    class Plain(ScriptedGenerator):
        def generate(self, prompts, params):
            return super().generate(prompts, params)

    prompts = [f"Problem number {i}: add things.\n\nSolution:\n" for i in range(3)]
    params = SamplingParams(temperature=0.8, max_new_tokens=20, stop=("\n\n",))
    plain, full = Plain(), ScriptedGenerator()
    meter = Meter(3)
    out = meter.generate(plain, prompts, [0, 1, 2], params, n=[2, 0, 2])
    assert [len(o) for o in out] == [2, 0, 2] and len(plain.calls) == 1
    out = meter.generate(plain, prompts, [0, 1, 2], params, n=[1, 3, 2])
    assert out == full.generate(prompts, params, n=[1, 3, 2]) and len(plain.calls) == 4
    assert meter.spent[1].generated_tokens == sum(x.num_tokens for x in out[1])
