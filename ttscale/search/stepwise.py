"""Step-wise PRM search: beam, lookahead and DVTS on one step-expansion engine.

A problem's search runs as one or more TREES, each with a budget B (finished candidates it may return), a
number K of paths kept per step and a width W (children per kept path):
  beam       one tree per problem: B = N, K = N/M, W = M
  lookahead  the same, but a child's score is the PRM score of it plus a k-step greedy rollout
  dvts       N/M subtrees per problem: B = M, K = 1, W = M (independent: each keeps only its own best path)
Step 0 samples the problem's N first steps in one request (n = N) and deals them to its trees in order
(identical root prompts would otherwise give every subtree the same children). Each later step expands every
kept path W times (stop on the step delimiter). A child that is finished (EOS or a final \\boxed answer)
leaves into its tree's finished pool; the best unfinished children by aggregated PRM score are kept.

Budget contract (search-and-learn's beam returned more than N, issue 42): a tree keeps
min(K, (B - finished) // W) paths, so it never generates more than B children per step nor returns more
than B finished candidates. It stops when that reaches 0, nothing unfinished is left, or at max depth; the
unfinished children of its last step are reported as unfinished candidates (never voted on — the bug of
search-and-learn's DVTS, issue 57). Every problem and tree advances in lockstep: ONE generate call and ONE
score call per step for the whole batch (plus k greedy rollout calls per step for lookahead).

The engine (StepEngine) is shared by every strategy that grows trees one step per round: a strategy says how
many trees a problem has (`shapes`) and, after each step, which unfinished children to expand next and how
many children each gets (`next_frontier`). Beam keeps its best N/M with M children each; particle filtering
and REBASE give a node a varying number of children. A node's children come from ONE prompt asking for
exactly that many (per-prompt counts in one generate call; identical prompts would give identical seeded
samples), so every completion generated becomes a node: nothing is drawn to be discarded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field
from typing import Sequence

from ttscale.config import field
from ttscale.data.steps import join_steps, split_steps
from ttscale.inference.base import Completion, SamplingParams
from ttscale.search.candidates import make_candidate, policy_prompt
from ttscale.search.meter import Meter
from ttscale.search.results import build_results
from ttscale.search.strategy import Strategy
from ttscale.search.types import Candidate, Node, ProblemResult, SearchContext
from ttscale.search.voting import aggregate


@dataclass
class _Tree:
    problem: int
    group: int
    budget: int                     # B
    keep: int                       # K
    plan: list[tuple[int, int]] = dc_field(default_factory=list)  # (node id, children) to expand next
    finished: int = 0
    done: bool = False


@dataclass
class TreeState:
    """One problem's search: its node list (parent pointers) and the candidates it has produced."""
    nodes: list[Node] = dc_field(default_factory=list)
    paths: list[list[str]] = dc_field(default_factory=list)     # steps from the root to each node
    tokens: list[int] = dc_field(default_factory=list)          # generated tokens along that path
    candidates: list[Candidate] = dc_field(default_factory=list)

    def path(self, node: int) -> list[str]:
        return [] if node < 0 else self.paths[node]

    def path_tokens(self, node: int) -> int:
        return 0 if node < 0 else self.tokens[node]

    def grow(self, parent: int, completion: Completion, depth: int, delimiter: str, **where: int) -> Candidate:
        """A new node under `parent` holding the completion's steps; the candidate that ends there."""
        new = split_steps(completion.text, delimiter)
        path = self.path(parent) + new
        tokens = self.path_tokens(parent) + completion.num_tokens
        self.nodes.append(Node(parent=parent, depth=depth, text=join_steps(new, delimiter), score=0.0,
                               tokens=completion.num_tokens))
        self.paths.append(path)
        self.tokens.append(tokens)
        return make_candidate(path, completion.finish_reason, tokens, node=len(self.nodes) - 1, **where)


def score_nodes(meter: Meter, ctx: SearchContext, problems: Sequence[dict], states: Sequence[TreeState],
                owned: Sequence[tuple[int, Candidate]], extra: Sequence[list[str]] | None = None) -> list[float]:
    """ONE incremental PRM call for (problem index, candidate) pairs (each path + optional rollout steps): sets
    their step scores and their nodes' scores; returns each one's aggregated score."""
    extra = extra or [[] for _ in owned]
    items = [(problems[p]["problem"], c.steps + e) for (p, c), e in zip(owned, extra)]
    scores = meter.score(ctx.scorer, items, [p for p, _ in owned], incremental=True)
    keys = []
    for (p, cand), s in zip(owned, scores):
        cand.step_scores = [float(x) for x in s[:len(cand.steps)]]
        keys.append(aggregate(s, ctx.settings.aggregation))
        states[p].nodes[cand.node].score = keys[-1]
    return keys


@dataclass
class _Child:
    tree: _Tree
    cand: Candidate
    key: float = 0.0                # selection score


@dataclass(frozen=True)
class StepParams:
    """Hyperparameters every strategy that grows a tree of steps has."""
    max_depth: int = field(20, help="step-wise strategies stop after this many steps", ge=1)
    max_step_tokens: int = field(128, help="token limit per generated step (step-wise strategies)", ge=1)


@dataclass(frozen=True)
class TreeParams(StepParams):
    """Beam-style search: a fixed width."""
    beam_width: int = field(4, help="M: beam/lookahead keep N/M beams and expand each M times; dvts runs N/M "
                            "subtrees of width M", ge=1, short="M")
    filter_duplicates: bool = field(True, help="beam/lookahead: drop beams whose text repeats a kept one")


@dataclass(frozen=True)
class LookaheadParams(TreeParams):
    lookahead: int = field(1, help="k: greedy rollout steps scored per candidate (strategy lookahead; >= 1, "
                           "k = 0 is plain beam search)", ge=0, short="k")


def softmax(scores: Sequence[float], temperature: float) -> list[float]:
    """softmax(score / T), shifted by the max so it never overflows."""
    if temperature <= 0:
        raise ValueError(f"softmax temperature must be > 0, got {temperature}")
    top = max(scores)
    w = [math.exp((s - top) / temperature) for s in scores]
    total = sum(w)
    return [x / total for x in w]


class StepEngine(Strategy):
    """The step-by-step loop; subclasses choose the trees (`shapes`) and the next frontier (`next_frontier`)."""
    family = "tree"
    Params = StepParams
    needs_scorer = True
    default_voting = "prm-vote"

    def shapes(self, budget: int) -> list[tuple[int, int]]:
        """(B, K) of each tree of a problem: B finished candidates it may return, K for `next_frontier`."""
        return [(budget, budget)]

    def rollout_steps(self) -> int:
        return 0

    def next_frontier(self, tree: _Tree, open_: list[_Child], ctx: SearchContext, problem: dict,
                      depth: int) -> list[tuple[int, int]]:
        """(node, number of children) to expand at the next step; [] ends the tree. Never more than
        tree.budget - tree.finished children in all, so the tree never returns more than B finished."""
        raise NotImplementedError

    # ------------------------------------------------------------------ engine

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        self.validate(budget, ctx)
        tp = self.params
        meter = Meter(len(problems))
        states = [TreeState() for _ in problems]
        trees = [_Tree(p, g, b, k) for p in range(len(problems))
                 for g, (b, k) in enumerate(self.shapes(budget))]
        # A scorer with a prefix KV cache (PRMScorer.score_incremental) starts empty and hands memory back after.
        reset = getattr(ctx.scorer, "reset_cache", None) or (lambda: None)
        reset()
        try:
            for depth in range(tp.max_depth):
                live = [t for t in trees if not t.done]
                if not live:
                    break
                children = self._expand(meter, ctx, problems, states, live, depth)
                self._score(meter, ctx, problems, states, children)
                for tree in live:
                    self._select(tree, [c for c in children if c.tree is tree], states[tree.problem], ctx,
                                 problems[tree.problem], depth, last=depth == tp.max_depth - 1)
        finally:
            reset()
        return build_results(self, ctx, problems, [s.candidates for s in states], meter,
                             trees=[s.nodes for s in states])

    def _step_params(self, ctx: SearchContext, n: int, depth: int) -> SamplingParams:
        st = ctx.settings
        return SamplingParams(n=n, temperature=st.temperature, top_p=st.top_p,
                              max_new_tokens=self.params.max_step_tokens, stop=(st.delimiter,), seed=st.seed + depth)

    def _expand(self, meter: Meter, ctx: SearchContext, problems, states: list[TreeState], live: list[_Tree],
                depth: int) -> list[_Child]:
        """One generate call for every kept path of every live tree; children become nodes."""
        st, tok = ctx.settings, ctx.generator.tokenizer
        if depth == 0:  # one root request per problem (n = N), dealt out to its trees in order
            by_problem: dict[int, list[_Tree]] = {}
            for t in live:
                by_problem.setdefault(t.problem, []).append(t)
            requests = [(p, -1, [(t, t.budget) for t in ts]) for p, ts in by_problem.items()]
        else:
            requests = [(t.problem, node, [(t, count)]) for t in live for node, count in t.plan]
        prompts = [policy_prompt(problems[p]["problem"], states[p].path(node), tok, st) for p, node, _ in requests]
        counts = [sum(count for _, count in slices) for _, _, slices in requests]
        outs = meter.generate(ctx.generator, prompts, [p for p, _, _ in requests], self._step_params(ctx, 1, depth),
                              n=counts)
        children = []
        for (p, parent, slices), comps in zip(requests, outs):
            state, it = states[p], iter(comps)
            for tree, count in slices:
                for _ in range(count):
                    children.append(_Child(tree, state.grow(parent, next(it), depth, st.delimiter,
                                                            subtree=tree.group)))
        return children

    def _rollouts(self, meter: Meter, ctx: SearchContext, problems, states: list[TreeState],
                  children: list[_Child]) -> list[list[str]]:
        """k greedy steps after each unfinished child (lookahead); their tokens count in the problem's spend and
        in the child's node (`rollout_tokens`)."""
        st, k = ctx.settings, self.rollout_steps()
        extra: list[list[str]] = [[] for _ in children]
        running = [i for i, c in enumerate(children) if not c.cand.finished]
        params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=self.params.max_step_tokens,
                                stop=(st.delimiter,), seed=st.seed)
        for _ in range(k):
            if not running:
                break
            prompts = [policy_prompt(problems[children[i].tree.problem]["problem"], children[i].cand.steps + extra[i],
                                     ctx.generator.tokenizer, st) for i in running]
            outs = meter.generate(ctx.generator, prompts, [children[i].tree.problem for i in running], params)
            still = []
            for i, (c,) in zip(running, outs):
                extra[i] += split_steps(c.text, st.delimiter)
                states[children[i].tree.problem].nodes[children[i].cand.node].rollout_tokens += c.num_tokens
                if not make_candidate(extra[i], c.finish_reason).finished:
                    still.append(i)
            running = still
        return extra

    def _score(self, meter: Meter, ctx: SearchContext, problems, states: list[TreeState],
               children: list[_Child]) -> None:
        """One PRM call for all children (with their rollouts); step scores and selection keys in place."""
        extra = self._rollouts(meter, ctx, problems, states, children)
        keys = score_nodes(meter, ctx, problems, states, [(c.tree.problem, c.cand) for c in children], extra)
        for child, key in zip(children, keys):
            child.key = key

    def _select(self, tree: _Tree, children: list[_Child], state: TreeState, ctx: SearchContext, problem: dict,
                depth: int, last: bool) -> None:
        for c in children:
            if c.cand.finished:
                state.candidates.append(c.cand)
                tree.finished += 1
        open_ = [c for c in children if not c.cand.finished]
        plan = [] if last or not open_ or tree.finished >= tree.budget else \
            [(node, k) for node, k in self.next_frontier(tree, open_, ctx, problem, depth) if k > 0]
        if not plan:
            tree.done = True
            state.candidates.extend(c.cand for c in open_)   # reported as unfinished, never voted on
            return
        tree.plan = plan


class StepwiseSearch(StepEngine):
    """Beam-style search: K kept paths, each expanded M times."""
    Params = TreeParams

    def shapes(self, budget: int) -> list[tuple[int, int]]:
        return [(budget, budget // self.params.beam_width)]

    def validate(self, budget: int, ctx: SearchContext) -> None:
        super().validate(budget, ctx)
        m = self.params.beam_width
        if budget % m:
            raise ValueError(f"{self.name}: budget {budget} is not a multiple of --beam-width {m}; use a budget "
                             f"like {max(m, budget // m * m)} or a beam width that divides {budget}")

    def next_frontier(self, tree: _Tree, open_: list[_Child], ctx: SearchContext, problem: dict,
                      depth: int) -> list[tuple[int, int]]:
        m = self.params.beam_width
        if self.params.filter_duplicates:
            seen, unique = set(), []
            for c in open_:
                text = join_steps(c.cand.steps, ctx.settings.delimiter)
                if text not in seen:
                    seen.add(text)
                    unique.append(c)
            open_ = unique
        n_keep = min(tree.keep, (tree.budget - tree.finished) // m)
        ranked = sorted(open_, key=lambda c: (-c.key, c.cand.node))
        return [(c.cand.node, m) for c in ranked[:n_keep]]


class BeamSearch(StepwiseSearch):
    name = "beam"
    label = "beam search"
    budget_meaning = "N beams: N first steps, then the best N/M kept and expanded M times per step"


class LookaheadSearch(StepwiseSearch):
    name = "lookahead"
    label = "lookahead search"
    budget_meaning = "N beams as in beam, each child scored after a k-step greedy rollout (costs about N(k+1))"
    Params = LookaheadParams

    def rollout_steps(self) -> int:
        return self.params.lookahead

    def method(self, budget: int) -> str:   # k first: the name reports have always used
        return f"lookahead(k={self.params.lookahead},M={self.params.beam_width})"

    def validate(self, budget: int, ctx: SearchContext) -> None:
        super().validate(budget, ctx)
        if self.params.lookahead < 1:
            raise ValueError("lookahead: set --lookahead K >= 1 (rollout steps per candidate); with K = 0 it is "
                             "plain beam search, use --strategy beam")


class DVTS(StepwiseSearch):
    name = "dvts"
    label = "DVTS"
    budget_meaning = "N/M independent subtrees of width M, each keeping its best path"

    def shapes(self, budget: int) -> list[tuple[int, int]]:
        return [(self.params.beam_width, 1)] * (budget // self.params.beam_width)
