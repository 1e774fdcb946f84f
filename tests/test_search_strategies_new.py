"""Particle filtering, REBASE, MCTS and adaptive-stopping majority: each one's defining behaviour, pinned on the
scripted fakes (outcomes known), plus the contract every strategy keeps (budget, cost, seeds, batching)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from search_fakes import ScriptedGenerator, h, hand_spent, problems, spent_fields
from test_search_strategies import ctx, search, strat
from ttscale.inference.base import Completion
from ttscale.search.adaptive import leader_probability
from ttscale.search.mcts import child_scores
from ttscale.search.particle_filtering import resample
from ttscale.search.rebase import allocate
from ttscale.search.stepwise import softmax

NEW = ["particle-filtering", "rebase", "mcts", "adaptive-majority"]


# ---------------------------------------------------------------- particle filtering

@pytest.mark.parametrize("scheme", ["systematic", "multinomial"])
def test_resampling_frequencies_match_the_weights(scheme):
    weights = softmax([0.9, 0.5, 0.2, 0.7], 0.25)
    rng = np.random.default_rng(0)
    k, draws = 8, 4000
    counts = np.zeros(4)
    for _ in range(draws):
        idx = resample(weights, k, scheme, rng)
        assert len(idx) == k and idx == sorted(idx)
        counts += np.bincount(idx, minlength=4)
    assert np.allclose(counts / (k * draws), weights, atol=0.01)


def test_systematic_resampling_gives_each_particle_floor_or_ceil_of_its_share():
    weights = [0.55, 0.3, 0.15]
    rng = np.random.default_rng(1)
    for _ in range(200):
        counts = np.bincount(resample(weights, 4, "systematic", rng), minlength=3)
        assert all(math.floor(4 * w) <= c <= math.ceil(4 * w) for w, c in zip(weights, counts))


def test_particle_filtering_resamples_open_particles_and_keeps_finished_ones():
    n = 8
    c = ctx(depth=4, max_depth=6)
    res = search("particle-filtering", problems(2), c, n)
    for call in c.generator.calls[1:]:       # later steps: one prompt per distinct particle, n = its copies
        assert len(call["prompts"]) <= 2 * n and all(1 <= k <= n for k in call["n"])
    for r in res:
        finished = [x for x in r.candidates if x.finished]
        assert 1 <= len(finished) <= n and len(r.candidates) <= n
        by_depth: dict[int, int] = {}
        for nd in r.tree:
            by_depth[nd.depth] = by_depth.get(nd.depth, 0) + 1
        # live particles never exceed N - finished so far; the pool only shrinks
        assert by_depth[0] == n and all(by_depth[d] <= by_depth[d - 1] for d in by_depth if d > 0)
        assert all(len(x.step_scores) == len(x.steps) for x in r.candidates)
        assert r.chosen == -1 or r.candidates[r.chosen].finished


# ---------------------------------------------------------------- REBASE

def test_rebase_allocation_is_the_softmax_split_hand_computed():
    # softmax([0.9, 0.5, 0.1] / 0.2) = e^4.5, e^2.5, e^0.5 over their sum = 0.8668, 0.1173, 0.0159
    # 7 children: 6.067, 0.821, 0.111 -> floors 6, 0, 0; the remaining 1 goes to the largest remainder (0.821)
    assert allocate([0.9, 0.5, 0.1], 7, 0.2) == [6, 1, 0]
    assert allocate([0.5, 0.5, 0.5, 0.5], 6, 0.1) == [2, 2, 1, 1]     # ties: lower index first
    for budget in range(1, 20):
        assert sum(allocate([0.3, 0.8, 0.55, 0.1, 0.6], budget, 0.3)) == budget
    w = softmax([0.9, 0.5, 0.1], 0.2)
    assert w == pytest.approx([math.exp(4.5), math.exp(2.5), math.exp(0.5)] / np.sum(np.exp([4.5, 2.5, 0.5])))


def test_rebase_gives_each_node_its_share_of_the_still_needed_children():
    n, t = 8, 0.2
    c = ctx(depth=4, rebase_temperature=t)
    res = search("rebase", problems(1), c, n)
    nodes = res[0].tree
    for d in range(1, max(nd.depth for nd in nodes) + 1):
        prev = [i for i, nd in enumerate(nodes) if nd.depth == d - 1 and "boxed" not in nd.text]
        finished_so_far = sum(1 for nd in nodes if nd.depth < d and "boxed" in nd.text)
        expected = allocate([nodes[i].score for i in prev], n - finished_so_far, t)
        got = [sum(1 for nd in nodes if nd.depth == d and nd.parent == i) for i in prev]
        assert got == expected


# ---------------------------------------------------------------- MCTS

def test_uct_and_puct_pick_the_child_the_formula_says():
    q, visits, priors, parent = [0.6, 0.5, 0.2], [5, 2, 1], [0.5, 0.3, 0.2], 8
    # UCT, c = 1: 0.6 + sqrt(ln 8 / 5) = 1.2449, 0.5 + sqrt(ln 8 / 2) = 1.5196, 0.2 + sqrt(ln 8 / 1) = 1.6420
    uct = child_scores(q, visits, priors, parent, 1.0, "uct")
    assert uct == pytest.approx([1.2449, 1.5196, 1.6420], abs=1e-4) and int(np.argmax(uct)) == 2
    # UCT, c = 0.1: exploitation wins -> child 0 (0.6645 vs 0.5644 vs 0.3442)
    assert int(np.argmax(child_scores(q, visits, priors, parent, 0.1, "uct"))) == 0
    # PUCT, c = 1: 0.6 + 0.5 * sqrt(8) / 6 = 0.8357, 0.5 + 0.3 * sqrt(8) / 3 = 0.7828, 0.2 + 0.2 * sqrt(8) / 2 = 0.4828
    puct = child_scores(q, visits, priors, parent, 1.0, "puct")
    assert puct == pytest.approx([0.8357, 0.7828, 0.4828], abs=1e-4) and int(np.argmax(puct)) == 0


def test_mcts_selects_by_uct_and_backs_up_the_mean():
    c = ctx(depth=3, mcts_width=3, mcts_c=0.3)
    s = strat("mcts", c)
    from ttscale.search.mcts import ROOT, _Search
    from ttscale.search.types import Node

    tree = _Search()
    for i, score in enumerate([0.9, 0.4, 0.7]):   # three root children (own PRM scores), hand-set statistics
        tree.nodes.append(Node(parent=ROOT, depth=0, text=f"s{i}", score=score))
        tree.paths.append([f"s{i}"])
        tree.tokens.append(1)
        tree.children[ROOT].append(i)
        tree.children[i] = []
    tree.visits.update({ROOT: 9, 0: 2, 1: 6, 2: 1})
    tree.value.update({0: 2 * 0.3, 1: 6 * 0.8, 2: 0.5})     # backed-up means 0.3, 0.8, 0.5
    # UCT, c = 0.3, on the backed-up mean (not the node's own score, which would pick child 0):
    # 0.3 + 0.3 sqrt(ln 9 / 2) = 0.6144, 0.8 + 0.3 sqrt(ln 9 / 6) = 0.9815, 0.5 + 0.3 sqrt(ln 9) = 0.9447
    assert s.select(tree) == 1
    tree.closed.add(1)                             # a closed subtree is never entered
    assert s.select(tree) == 2


def test_mcts_keeps_its_tree_and_stops_at_n_finished_solutions():
    n = 4
    c = ctx(depth=3, mcts_width=3)
    res = search("mcts", problems(2), c, n)
    for call in c.generator.calls:
        assert all(1 <= k <= 3 for k in call["n"]) and len(call["prompts"]) <= 2   # one leaf per live problem
    for r in res:
        assert sum(x.finished for x in r.candidates) == n            # the depth-3 world finishes easily
        nodes = r.tree
        assert len(nodes) >= n and all(nd.parent < i for i, nd in enumerate(nodes))
        for x in r.candidates:          # each candidate's node path spells its steps
            texts, i = [], x.node
            while i >= 0:
                texts.append(nodes[i].text)
                i = nodes[i].parent
            assert "\n\n".join(reversed(texts)) == "\n\n".join(x.steps)
            assert len(x.step_scores) == len(x.steps)


# ---------------------------------------------------------------- adaptive-majority

class AgreeingGenerator(ScriptedGenerator):
    """Problems whose text says "agree" always get the answer 1; the others are the scripted random answers."""

    def _text(self, prompt, params, j):
        if "agree" not in prompt:
            return super()._text(prompt, params, j)
        text = f"step 0 value {h(prompt, j, params.seed) % 7}\n\nso the total is \\boxed{{1}}"
        return Completion(text=text, num_tokens=len(text.split()) + 1, finish_reason="eos")


def test_beta_rule_hand_computed():
    assert leader_probability(4, 0) == pytest.approx(31 / 32)      # P(Bin(5, 1/2) <= 4)
    assert leader_probability(2, 2) == pytest.approx(0.5)
    assert leader_probability(3, 1) == pytest.approx(26 / 32)      # (1 + 5 + 10 + 10) / 32


def test_adaptive_stops_after_one_round_when_samples_agree_and_keeps_sampling_when_they_split():
    c = ctx(round_size=4, stop_threshold=0.95)
    c.generator = AgreeingGenerator(3)
    probs = [{"id": "a", "problem": "Problem agree", "answer": "1"}, *problems(1)]
    res = search("adaptive-majority", probs, c, 16)
    assert len(res[0].candidates) == 4 and res[0].prediction == "1"    # 4/4 agree: P = 31/32 > 0.95
    assert len(res[1].candidates) > 4                                  # the scripted answers split
    assert [len(call["prompts"]) for call in c.generator.calls][0] == 2
    assert all(set(call["n"]) == {4} for call in c.generator.calls)
    assert res[0].spent.policy_calls == 1 and res[0].spent.generated_tokens == sum(x.tokens for x in res[0].candidates)
    assert res[1].spent.generated_tokens > res[0].spent.generated_tokens   # the saving shows in measured cost


def test_adaptive_never_exceeds_the_cap():
    res = search("adaptive-majority", problems(2), ctx(round_size=3, stop_threshold=0.999), 8)
    assert all(len(r.candidates) == 8 for r in res)                     # 3 + 3 + 2: the last round is cut to N


def test_adaptive_runs_are_scored_at_their_own_budget(tmp_path):
    from eval_runs import save_run, synthetic_rows
    from ttscale.eval.metrics import evaluate_run
    from ttscale.eval.runs import load_run

    run = load_run(save_run(synthetic_rows("adaptive-majority", 8, n_problems=4), tmp_path / "a"))
    assert not run.parallel
    points = evaluate_run(run)
    assert {pt.budget for pt in points} == {8} and all(pt.hits.shape[0] == 1 for pt in points)
    assert {pt.method for pt in points} == {"adaptive-majority(r=4,t=0.95)"}


# ---------------------------------------------------------------- the contract, for all four

@pytest.mark.parametrize("name", NEW)
def test_within_budget_and_charges_all_it_ran(name):
    n = 8
    c = ctx(depth=4, mcts_width=3)
    probs = problems(3)
    res = search(name, probs, c, n)
    assert sum(r.spent.generated_tokens for r in res) == sum(call["tokens"] for call in c.generator.calls)
    assert sum(r.spent.prm_tokens for r in res) == c.scorer.usage.tokens
    # every field, prompts included, equals what the fakes' call logs say was run for that problem
    assert {r.problem["id"]: spent_fields(r.spent) for r in res} == hand_spent(probs, c.generator, scorer=c.scorer)
    for r in res:
        assert sum(x.finished for x in r.candidates) <= n
        assert r.chosen == -1 or r.candidates[r.chosen].finished
        assert r.spent.policy_flops == 2 * 1000 * (r.spent.generated_tokens + r.spent.policy_prompt_tokens)
        assert all(x.step_scores for x in r.candidates if x.finished)     # every finished candidate scored


@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_output_and_seed_matters(name):
    def key(seed):
        res = search(name, problems(2), ctx(depth=4, seed=seed), 8)
        return [[(x.steps, x.step_scores) for x in r.candidates] for r in res]

    assert key(1) == key(1) and key(1) != key(2)


@pytest.mark.parametrize("name", NEW)
def test_batching_three_problems_costs_the_same_calls_as_one(name):
    def calls(batch):
        c = ctx(depth=4, mcts_width=2)
        search(name, batch, c, 4)
        return len(c.generator.calls), c.scorer.usage.calls

    alone = [calls([p]) for p in problems(3)]
    # all problems advance in the same calls: the batch costs what its longest search costs alone
    assert calls(problems(3)) == (max(a[0] for a in alone), max(a[1] for a in alone))


@pytest.mark.parametrize("name", NEW)
def test_results_do_not_depend_on_the_batch(name):
    alone = [search(name, [p], ctx(depth=4), 8)[0] for p in problems(3)]
    together = search(name, problems(3), ctx(depth=4), 8)
    assert [[x.steps for x in r.candidates] for r in alone] == [[x.steps for x in r.candidates] for r in together]


def test_search_help_lists_the_new_options():
    from ttscale.search.search_cmd import Config
    from ttscale.config import build_parser

    text = build_parser(Config).format_help()
    for flag in ("--pf-temperature", "--resampling", "--rebase-temperature", "--mcts-c", "--mcts-width",
                 "--mcts-rule", "--mcts-max-expansions", "--round-size", "--stop-threshold"):
        assert flag in text
    for name in NEW:
        assert name in text
