"""The budget contract of every strategy, pinned with a scripted generator and scorer (outcomes known)."""
from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from search_fakes import ScriptedGenerator, ScriptedScorer, hand_spent, problems, spent_fields
from ttscale.search.meter import _split
from ttscale.search.registry import get_strategy
from ttscale.search.types import SearchContext, SearchSettings
from ttscale.search.voting import aggregate


_SHARED = {f.name for f in dataclasses.fields(SearchSettings)}


def ctx(depth=3, reviser=False, scorer=True, cached_words=0, **kw):
    """Shared settings go to the context; the rest are the strategy's own options (see `strat`)."""
    gen = ScriptedGenerator(depth, cached_words)
    c = SearchContext(generator=gen, scorer=ScriptedScorer() if scorer else None,
                      reviser=ScriptedGenerator(depth, cached_words) if reviser else None,
                      settings=SearchSettings(**{k: v for k, v in kw.items() if k in _SHARED}))
    c.options = {k: v for k, v in kw.items() if k not in _SHARED}
    return c


def strat(name, c):
    return get_strategy(name, c.options)


def search(name, probs, c, budget):
    return strat(name, c).run(probs, c, budget)


def total_spent(results, field):
    return sum(getattr(r.spent, field) for r in results)


@pytest.mark.parametrize("name", ["majority", "best-of-n", "weighted-best-of-n"])
def test_sampling_makes_exactly_n_samples_in_one_call(name):
    c = ctx()
    res = search(name, problems(3), c, 8)
    assert len(c.generator.calls) == 1 and set(c.generator.calls[0]["n"]) == {8}
    assert len(c.generator.calls[0]["prompts"]) == 3
    for r in res:
        assert len(r.candidates) == 8
        assert r.spent.generated_tokens == sum(x.tokens for x in r.candidates)
        assert r.spent.policy_calls == 1 and r.spent.prm_calls == 1
        # finished ones scored once (one score per step), unfinished ones never
        for x in r.candidates:
            assert (len(x.step_scores) == len(x.steps)) == x.finished
        assert r.chosen == -1 or r.candidates[r.chosen].finished
    assert total_spent(res, "generated_tokens") == c.generator.calls[0]["tokens"]
    assert c.scorer.usage.calls == 1
    assert total_spent(res, "prm_tokens") == c.scorer.usage.tokens
    # the 8 samples share one prefill: the prompt's tokens are charged once, and in the FLOPs
    prompt = c.generator.calls[0]["prompts"][0]
    assert res[0].spent.policy_prompt_tokens == len(prompt.split())
    assert res[0].spent.policy_flops == 2 * 1000 * (len(prompt.split()) + res[0].spent.generated_tokens)
    assert res[0].spent.prm_flops == 2 * 100 * res[0].spent.prm_tokens


def test_cached_prompt_tokens_are_recorded_and_not_charged():
    c = ctx(cached_words=2)
    r = search("majority", problems(1), c, 3)[0]
    words = len(c.generator.calls[0]["prompts"][0].split())
    assert (r.spent.policy_prompt_tokens, r.spent.policy_cached_tokens) == (words - 2, 2)
    assert r.spent.policy_flops == 2 * 1000 * (words - 2 + r.spent.generated_tokens)
    assert r.spent.tokens == words - 2 + r.spent.generated_tokens + r.spent.prm_tokens


@pytest.mark.parametrize("name", ["majority", "weighted-best-of-n", "beam", "dvts", "lookahead", "revisions",
                                  "parallel-revisions"])
def test_every_strategy_is_charged_all_its_models_ran(name):
    """Each problem's Spent equals what the fakes' call logs say its prompts and items ran, per model."""
    c = ctx(depth=4, beam_width=2, lookahead=1, reviser=True, revision_length=2, cached_words=1)
    probs = problems(3)
    res = search(name, probs, c, 4)
    hand = hand_spent(probs, c.generator, c.reviser, c.scorer)
    for r in res:
        assert spent_fields(r.spent) == pytest.approx(hand[r.problem["id"]])
        assert r.spent.unknown_flops() == []
    role = "reviser" if "revisions" in name else "policy"
    assert total_spent(res, f"{role}_prompt_tokens") > 0 and total_spent(res, f"{role}_flops") > 0


def test_sampling_selections_differ_only_in_default_voting():
    a = search("majority", problems(2), ctx(), 8)
    b = search("weighted-best-of-n", problems(2), ctx(), 8)
    assert [[x.steps for x in r.candidates] for r in a] == [[x.steps for x in r.candidates] for r in b]
    for r in a:  # majority = most frequent finished answer
        counts = Counter(x.answer_key for x in r.candidates if x.finished)
        assert counts[r.candidates[r.chosen].answer_key] == max(counts.values())


def test_beam_keeps_n_over_m_expands_m_and_returns_at_most_n():
    n, m = 8, 2
    c = ctx(depth=4, beam_width=m, aggregation="last", filter_duplicates=False)
    res = search("beam", problems(2), c, n)
    calls = c.generator.calls
    assert calls[0]["n"] == [n, n] and len(calls[0]["prompts"]) == 2
    for call in calls[1:]:
        assert set(call["n"]) == {m} and len(call["prompts"]) <= 2 * n // m
    for r in res:
        finished = [x for x in r.candidates if x.finished]
        assert 1 <= len(finished) <= n and len(r.candidates) <= n
        nodes = r.tree
        for d in range(1, max(nd.depth for nd in nodes) + 1):
            prev = [i for i, nd in enumerate(nodes) if nd.depth == d - 1]
            parents = {nd.parent for nd in nodes if nd.depth == d}
            assert len(parents) <= n // m
            # the kept parents are the best-scoring unfinished children of the previous step
            open_prev = [i for i in prev if "boxed" not in nodes[i].text]
            best = sorted(open_prev, key=lambda i: (-nodes[i].score, i))[:len(parents)]
            assert parents == set(best)
            assert all(Counter(nd.parent for nd in nodes if nd.depth == d)[p] == m for p in parents)
        for x in r.candidates:
            assert len(x.step_scores) == len(x.steps)
            texts, i = [], x.node          # the leaf node and its parents spell the candidate's steps
            while i >= 0:
                texts.append(nodes[i].text)
                i = nodes[i].parent
            assert "\n\n".join(reversed(texts)) == "\n\n".join(x.steps)
    assert total_spent(res, "generated_tokens") == sum(call["tokens"] for call in calls)


def test_dvts_subtrees_are_independent_and_vote_only_finished():
    n, m = 8, 2
    c = ctx(depth=4, beam_width=m)
    res = search("dvts", problems(2), c, n)
    for r in res:
        nodes = r.tree
        groups = {x.subtree for x in r.candidates}
        assert groups <= set(range(n // m)) and {x.chain for x in r.candidates} == {0}
        group_of = {}
        for x in r.candidates:  # walk each candidate's path: all its nodes belong to its own subtree
            i = x.node
            while i >= 0:
                assert group_of.setdefault(i, x.subtree) == x.subtree
                i = nodes[i].parent
        for d in range(1, max(nd.depth for nd in nodes) + 1):
            per_parent = Counter(nd.parent for nd in nodes if nd.depth == d)
            assert set(per_parent.values()) == {m}     # each live subtree keeps 1 path and expands it m times
            assert len(per_parent) <= n // m
        assert sum(x.finished for x in r.candidates) <= n
        if r.chosen >= 0:
            assert r.candidates[r.chosen].finished


def test_lookahead_spent_includes_rollouts():
    k = 2
    c = ctx(depth=5, beam_width=2, lookahead=k)
    res = search("lookahead", problems(2), c, 4)
    calls = c.generator.calls
    greedy = [call for call in calls if call["params"].temperature == 0.0]
    assert greedy and all(set(call["n"]) == {1} for call in greedy)
    assert total_spent(res, "generated_tokens") == sum(call["tokens"] for call in calls)
    step_tokens = sum(call["tokens"] for call in calls if call["params"].temperature > 0)
    assert total_spent(res, "generated_tokens") > step_tokens   # rollouts are paid for
    # ... and so are the rollouts' prompts: every greedy call's prompt tokens are in the problems' spend
    rollout_prompts = sum(run for call in greedy for _, run, _, _ in call["per_prompt"])
    step_prompts = sum(run for call in calls if call["params"].temperature > 0 for _, run, _, _ in call["per_prompt"])
    assert rollout_prompts > 0 and total_spent(res, "policy_prompt_tokens") == rollout_prompts + step_prompts
    hand = hand_spent(problems(2), c.generator, scorer=c.scorer)
    assert [spent_fields(r.spent) for r in res] == [pytest.approx(hand[r.problem["id"]]) for r in res]
    # one score call per step, on paths extended by up to k rollout steps
    plain = search("beam", problems(2), ctx(depth=5, beam_width=2), 4)
    assert total_spent(res, "prm_tokens") > total_spent(plain, "prm_tokens")


def test_a_chain_can_start_from_the_policys_sample():
    """--first-attempt policy: each chain's first attempt is the policy's sample (the same one a best-of-N run
    with that seed draws), charged to the policy; the reviser then revises it, charged to the reviser."""
    c = ctx(reviser=True, revision_length=2, first_attempt="policy")
    res = search("parallel-revisions", problems(2), c, 4)
    bon = search("majority", problems(2), ctx(), 2)
    assert strat("parallel-revisions", c).method(4) == "parallel-revisions(L=2,C=2,first=policy)"
    assert len(c.generator.calls) == 1 and len(c.reviser.calls) == 1
    for r, b in zip(res, bon):
        firsts = [x for x in r.candidates if x.previous == -1]
        assert [x.steps for x in firsts] == [x.steps for x in b.candidates]
        assert r.spent.policy_calls == 1 and r.spent.generated_tokens == sum(x.tokens for x in firsts)
        assert r.spent.reviser_generated_tokens == sum(x.tokens for x in r.candidates if x.previous >= 0) > 0
    assert all(any(x in prompt for x in ("step 0",)) for prompt in c.reviser.calls[0]["prompts"])
    with pytest.raises(ValueError, match="needs a policy model"):
        no_policy = ctx(reviser=True, revision_length=2, first_attempt="policy")
        no_policy.generator = None
        search("parallel-revisions", problems(1), no_policy, 4)


def test_revision_chains_have_the_configured_length():
    c = ctx(reviser=True, revision_length=3)
    res = search("parallel-revisions", problems(2), c, 6)
    assert len(c.reviser.calls) == 3 and not c.generator.calls
    first = c.reviser.calls[0]
    assert len(first["prompts"]) == 2 and first["n"] == [2, 2]   # 2 chains share the first prompt
    for r in res:
        assert len(r.candidates) == 6
        assert Counter(x.chain for x in r.candidates) == {0: 3, 1: 3}
        assert all(x.node == -1 and x.subtree == 0 for x in r.candidates)   # no tree bookkeeping on chains
        for chain in (0, 1):
            attempts = [i for i, x in enumerate(r.candidates) if x.chain == chain]
            assert [r.candidates[i].previous for i in attempts] == [-1] + attempts[:-1]
    # later prompts carry the chain's previous attempts
    assert all("Previous attempt 2:" in p for p in c.reviser.calls[2]["prompts"])
    seq = search("revisions", problems(1), ctx(reviser=True), 5)[0]
    assert [x.previous for x in seq.candidates] == [-1, 0, 1, 2, 3]


def test_ratio_gives_chain_length():
    c = ctx(reviser=True, sequential_ratio=4.0)
    res = search("parallel-revisions", problems(1), c, 16)   # L = sqrt(16 * 4) = 8, 2 chains
    assert Counter(x.chain for x in res[0].candidates) == {0: 8, 1: 8}


@pytest.mark.parametrize("name", ["beam", "dvts", "best-of-n", "majority", "parallel-revisions"])
def test_batching_three_problems_costs_the_same_calls_as_one(name):
    counts = []
    for n_problems in (1, 3):
        c = ctx(depth=4, beam_width=2, reviser=True, revision_length=2)
        search(name, problems(n_problems), c, 4)
        counts.append((len(c.generator.calls), len(c.reviser.calls), c.scorer.usage.calls))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("name,kw,budget,needle", [
    ("beam", {"beam_width": 3}, 8, "not a multiple of --beam-width 3"),
    ("dvts", {"beam_width": 3}, 8, "not a multiple"),
    ("best-of-n", {"scorer": False}, 4, "--prm"),
    ("majority", {"scorer": False, "voting": "prm-vote"}, 4, "--voting majority"),
    ("revisions", {}, 4, "--revision-model"),
    ("parallel-revisions", {"reviser": True}, 8, "--revision-length"),
    ("parallel-revisions", {"reviser": True, "revision_length": 3}, 8, "does not divide"),
    ("parallel-revisions", {"reviser": True, "sequential_ratio": 3.0}, 8, "not a whole number"),
    ("lookahead", {"lookahead": 0}, 4, "--lookahead K"),
    ("beam", {"max_depth": 0}, 4, "--max-depth must be >= 1"),       # the flags' bounds, for params built in code
    ("rebase", {"rebase_temperature": 0.0}, 4, "--rebase-temperature must be > 0"),
    ("mcts", {"mcts_rule": "ucb9"}, 4, "--mcts-rule"),
])
def test_invalid_parameters_fail_before_generation(name, kw, budget, needle):
    c = ctx(**kw)
    with pytest.raises(ValueError, match=needle.replace("-", r"\-")):
        strat(name, c).validate(budget, c)
    with pytest.raises(ValueError):
        search(name, problems(1), c, budget)
    assert not c.generator.calls


def test_same_seed_same_output_and_seed_matters():
    a = search("beam", problems(2), ctx(beam_width=2, seed=1), 4)
    b = search("beam", problems(2), ctx(beam_width=2, seed=1), 4)
    d = search("beam", problems(2), ctx(beam_width=2, seed=2), 4)
    key = lambda rs: [[(x.steps, x.step_scores) for x in r.candidates] for r in rs]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(d)


def test_meter_split_is_exact_and_proportional():
    assert _split(10, [1, 1, 2]) == [3, 2, 5]
    assert sum(_split(7, [3, 3, 3])) == 7 and _split(0, [1, 2]) == [0, 0]
    assert aggregate([0.5, 0.2, 0.9], "prod") == pytest.approx(0.09)


def _c(answer, scores, finished=True, group=0):
    from ttscale.search.types import Candidate

    return Candidate(steps=["s"] * len(scores), step_scores=scores, answer=answer,
                     answer_key=None if answer is None else answer, finished=finished, chain=group)


def test_voting_hand_computed():
    from ttscale.search.voting import select

    cands = [_c("1", [0.9, 0.55]), _c("2", [0.5, 0.6]), _c("2", [0.4, 0.3]), _c("3", [0.99, 0.99], finished=False),
             _c("1", [0.1, 0.25], group=1), _c(None, [0.9], group=1)]
    # majority: "1" x2 vs "2" x2 -> tie, "1" appears first; the unfinished "3" (best scores) never counts
    assert select(cands, "majority") == ("1", 0)
    assert select(cands, "prm-max", "last") == ("2", 1)           # last: 0.55, 0.6, 0.3, -, 0.25
    assert select(cands, "prm-max", "min") == ("1", 0)            # min: 0.55, 0.5, 0.3, -, 0.1
    assert select(cands, "prm-vote", "last") == ("2", 1)          # "1": 0.8, "2": 0.9
    assert select(cands, "prm-vote", "min") == ("2", 1)           # "1": 0.65, "2": 0.8
    assert select(cands, "prm-vote", "prod") == ("1", 0)          # "1": 0.495 + 0.025, "2": 0.30 + 0.12
    # hierarchical, last: group 0 best = idx1 ("2", 0.6); group 1 best = idx4 ("1", 0.25) -> "2"
    assert select(cands, "hierarchical", "last") == ("2", 1)
    assert select([_c("4", [0.5], finished=False)], "majority") == (None, -1)



def test_rank_answers_lists_each_answer_once_best_first():
    from ttscale.search.voting import rank_answers, select

    cands = [_c("1", [0.9, 0.55]), _c("2", [0.5, 0.6]), _c("2", [0.4, 0.3]), _c("3", [0.99, 0.99], finished=False),
             _c("1", [0.1, 0.25], group=1), _c("5", [0.2]), _c(None, [0.9], group=1)]
    assert rank_answers(cands, "majority") == [0, 1, 5]              # "1" x2 (first), "2" x2, "5" x1
    assert rank_answers(cands, "prm-vote", "last") == [1, 0, 5]      # "2": 0.9, "1": 0.8, "5": 0.2
    assert rank_answers(cands, "prm-max", "min") == [0, 1, 5]        # best min: 0.55, 0.5, 0.2
    assert rank_answers(cands, "hierarchical", "last") == [1, 4]     # group winners: idx1 ("2"), idx4 ("1")
    for voting in ("majority", "prm-max", "prm-vote", "hierarchical"):
        for how in ("min", "last", "avg", "prod"):
            assert rank_answers(cands, voting, how)[0] == select(cands, voting, how)[1]
    assert rank_answers([_c("4", [0.5], finished=False)], "majority") == []

def test_rows_without_gold_are_searchable():
    from ttscale.search.output import FEATURES, result_rows
    import datasets

    res = get_strategy("best-of-n").run([{"id": "a", "problem": "Problem a"}], ctx(), 4)
    rows = result_rows(res, "best-of-n", 4, dataclasses.asdict(SearchSettings()))
    assert rows[0]["answer"] is None and rows[0]["correct"] is None
    assert all(c["correct"] is None for c in rows[0]["candidates"])
    assert datasets.Dataset.from_list(rows, features=FEATURES)[0]["prediction"] == res[0].prediction
