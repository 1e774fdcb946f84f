"""MCTS over a tree of steps with the PRM as the value estimate (as in OpenR / rStar, without rollouts).

Each iteration, for every problem still searching: SELECT a leaf from the root by UCT or PUCT over the
children's mean backed-up value Q (--mcts-rule, exploration constant --mcts-c), skipping closed subtrees;
EXPAND it with M child steps (--mcts-width; one generate call with n = M for all problems' leaves); EVALUATE
each child by its path's PRM score aggregated per --aggregation (one incremental score call for all); BACK UP
the children's values to every ancestor (visits += children, value sum += their scores, so Q is the mean).
  UCT   Q + c · sqrt(ln N_parent / N_child)
  PUCT  Q + c · P · sqrt(N_parent) / (1 + N_child), prior P = the child's PRM score / the sum over siblings
A child is closed when it is finished (a candidate) or at --max-depth unfinished (reported, never voted on);
a node whose children are all closed is closed too. The budget N is the number of FINISHED solutions (full
candidates) produced: an expansion asks for at most N - finished children (min(M, N - finished), so no
completion is drawn to be discarded). A problem stops at N finished, when its tree is exhausted, or after
--mcts-max-expansions × N expansions. The whole tree (step text, PRM score per node) is the run's `tree`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field
from typing import Sequence

from ttscale.config import field
from ttscale.inference.base import SamplingParams
from ttscale.search.candidates import policy_prompt
from ttscale.search.meter import Meter
from ttscale.search.results import build_results
from ttscale.search.stepwise import StepParams, TreeState, score_nodes
from ttscale.search.strategy import Strategy
from ttscale.search.types import ProblemResult, SearchContext

RULES = ("uct", "puct")
ROOT = -1


def child_scores(q: Sequence[float], visits: Sequence[int], priors: Sequence[float], parent_visits: int,
                 c: float, rule: str) -> list[float]:
    """The selection score of each child (see the module docstring); the highest is selected."""
    if rule == "uct":
        return [qi + c * math.sqrt(math.log(max(parent_visits, 1)) / ni) for qi, ni in zip(q, visits)]
    if rule == "puct":
        return [qi + c * pi * math.sqrt(parent_visits) / (1 + ni) for qi, ni, pi in zip(q, visits, priors)]
    raise ValueError(f"mcts rule {rule!r} is unknown; choose one of {', '.join(RULES)}")


@dataclass
class _Search(TreeState):
    """One problem's tree with MCTS statistics (keyed by node id; ROOT = -1)."""
    visits: dict[int, int] = dc_field(default_factory=lambda: {ROOT: 0})
    value: dict[int, float] = dc_field(default_factory=lambda: {ROOT: 0.0})
    children: dict[int, list[int]] = dc_field(default_factory=lambda: {ROOT: []})
    closed: set[int] = dc_field(default_factory=set)
    finished: int = 0
    expansions: int = 0
    done: bool = False

    def parent(self, node: int) -> int:
        return ROOT if node == ROOT else self.nodes[node].parent

    def depth(self, node: int) -> int:
        return ROOT if node == ROOT else self.nodes[node].depth


@dataclass(frozen=True)
class MCTSParams(StepParams):
    mcts_rule: str = field("uct", choices=list(RULES), help="mcts: selection rule (PUCT's prior: the PRM score "
                           "normalised over siblings)", short="rule")
    mcts_c: float = field(0.5, help="mcts: exploration constant c of UCT / PUCT (values Q are PRM scores in [0, 1])",
                           ge=0, short="c")
    mcts_width: int = field(4, help="mcts: M, child steps generated per expansion", ge=1, short="M")
    mcts_max_expansions: int = field(4, help="mcts: expansions per problem at most, as a multiple of N", ge=1)


class MCTS(Strategy):
    name = "mcts"
    family = "tree"
    label = "MCTS (PRM value)"
    budget_meaning = "N finished solutions (full candidates) produced by MCTS expansions of M steps"
    Params = MCTSParams
    needs_scorer = True
    default_voting = "prm-vote"

    def select(self, s: _Search) -> int:
        """Descend from the root to an unexpanded, open node; ties go to the oldest child."""
        node = ROOT
        while s.children[node]:
            kids = [k for k in s.children[node] if k not in s.closed]
            raw = [s.nodes[k].score for k in s.children[node]]
            total = sum(raw)
            prior = {k: (s.nodes[k].score / total if total > 0 else 1 / len(raw)) for k in s.children[node]}
            scores = child_scores([s.value[k] / s.visits[k] for k in kids], [s.visits[k] for k in kids],
                                  [prior[k] for k in kids], s.visits[node], self.params.mcts_c, self.params.mcts_rule)
            node = kids[max(range(len(kids)), key=lambda i: (scores[i], -i))]
        return node

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        self.validate(budget, ctx)
        p, st = self.params, ctx.settings
        meter = Meter(len(problems))
        states = [_Search() for _ in problems]
        reset = getattr(ctx.scorer, "reset_cache", None) or (lambda: None)
        reset()
        try:
            for it in range(p.mcts_max_expansions * budget):
                live = [i for i, s in enumerate(states) if not s.done]
                if not live:
                    break
                leaves = [self.select(states[i]) for i in live]
                prompts = [policy_prompt(problems[i]["problem"], states[i].path(leaf), ctx.generator.tokenizer, st)
                           for i, leaf in zip(live, leaves)]
                outs = meter.generate(ctx.generator, prompts, live, SamplingParams(
                    temperature=st.temperature, top_p=st.top_p, max_new_tokens=p.max_step_tokens,
                    stop=(st.delimiter,), seed=st.seed + it),
                    n=[min(p.mcts_width, budget - states[i].finished) for i in live])   # never more than N finished
                owned = []
                for i, leaf, comps in zip(live, leaves, outs):
                    s = states[i]
                    for comp in comps:
                        owned.append((i, s.grow(leaf, comp, s.depth(leaf) + 1, st.delimiter)))
                keys = score_nodes(meter, ctx, problems, states, owned)
                for i, leaf in zip(live, leaves):
                    self._backup(states[i], leaf, [(c, k) for (j, c), k in zip(owned, keys) if j == i], budget)
        finally:
            reset()
        return build_results(self, ctx, problems, [s.candidates for s in states], meter,
                             trees=[s.nodes for s in states])

    def _backup(self, s: _Search, leaf: int, children: list, budget: int) -> None:
        s.expansions += 1
        for cand, key in children:
            k = cand.node
            s.children[leaf].append(k)
            s.children[k], s.visits[k], s.value[k] = [], 1, key
            if cand.finished or s.depth(k) >= self.params.max_depth - 1:
                s.closed.add(k)
                s.candidates.append(cand)     # unfinished at max depth: reported, never voted on
                s.finished += cand.finished
        node = leaf
        while True:   # back up along the path; close nodes whose children are all closed
            s.visits[node] += len(children)
            s.value[node] += sum(key for _, key in children)
            if s.children[node] and all(k in s.closed for k in s.children[node]):
                s.closed.add(node)
            if node == ROOT:
                break
            node = s.parent(node)
        s.done = s.finished >= budget or ROOT in s.closed
