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
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Sequence

from ttscale.config import field
from ttscale.data.steps import join_steps, split_steps
from ttscale.inference.base import SamplingParams
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
    active: list[int] = dc_field(default_factory=lambda: [-1])   # node ids of the kept paths (-1 = root)
    finished: int = 0
    done: bool = False


@dataclass
class _State:
    """One problem's search: its node list (parent pointers) and the candidates it has produced."""
    nodes: list[Node] = dc_field(default_factory=list)
    paths: list[list[str]] = dc_field(default_factory=list)     # steps from the root to each node
    tokens: list[int] = dc_field(default_factory=list)          # generated tokens along that path
    candidates: list[Candidate] = dc_field(default_factory=list)

    def path(self, node: int) -> list[str]:
        return [] if node < 0 else self.paths[node]

    def path_tokens(self, node: int) -> int:
        return 0 if node < 0 else self.tokens[node]


@dataclass
class _Child:
    tree: _Tree
    cand: Candidate
    key: float = 0.0                # selection score


@dataclass(frozen=True)
class TreeParams:
    """Hyperparameters every step-wise strategy has."""
    beam_width: int = field(4, help="M: beam/lookahead keep N/M beams and expand each M times; dvts runs N/M "
                            "subtrees of width M", ge=1)
    max_depth: int = field(20, help="step-wise strategies stop after this many steps", ge=1)
    max_step_tokens: int = field(128, help="token limit per generated step (step-wise strategies)", ge=1)
    filter_duplicates: bool = field(True, help="beam/lookahead: drop beams whose text repeats a kept one")


@dataclass(frozen=True)
class LookaheadParams(TreeParams):
    lookahead: int = field(1, help="k: greedy rollout steps scored per candidate (strategy lookahead; >= 1, "
                           "k = 0 is plain beam search)", ge=0)


class StepwiseSearch(Strategy):
    family = "tree"
    Params = TreeParams
    needs_scorer = True
    default_voting = "prm-vote"

    def shapes(self, budget: int) -> list[tuple[int, int]]:
        """(B, K) of each tree of a problem."""
        return [(budget, budget // self.params.beam_width)]

    def rollout_steps(self) -> int:
        return 0

    def method(self, budget: int) -> str:
        return f"{self.name}(M={self.params.beam_width})"

    def config(self, budget: int) -> dict:
        return {"beam_width": self.params.beam_width}

    def validate(self, budget: int, ctx: SearchContext) -> None:
        super().validate(budget, ctx)
        m = self.params.beam_width
        if budget % m:
            raise ValueError(f"{self.name}: budget {budget} is not a multiple of --beam-width {m}; use a budget "
                             f"like {max(m, budget // m * m)} or a beam width that divides {budget}")

    # ------------------------------------------------------------------ engine

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        self.validate(budget, ctx)
        tp = self.params
        meter = Meter(len(problems))
        states = [_State() for _ in problems]
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
                children = self._expand(meter, ctx, problems, states, live, depth, budget)
                self._score(meter, ctx, problems, states, children)
                for tree in live:
                    self._select(tree, [c for c in children if c.tree is tree], states[tree.problem],
                                 ctx.settings.delimiter, last=depth == tp.max_depth - 1)
        finally:
            reset()
        return build_results(self, ctx, problems, [s.candidates for s in states], meter,
                             trees=[s.nodes for s in states])

    def _step_params(self, ctx: SearchContext, n: int, depth: int) -> SamplingParams:
        st = ctx.settings
        return SamplingParams(n=n, temperature=st.temperature, top_p=st.top_p,
                              max_new_tokens=self.params.max_step_tokens, stop=(st.delimiter,), seed=st.seed + depth)

    def _expand(self, meter: Meter, ctx: SearchContext, problems, states: list[_State], live: list[_Tree],
                depth: int, budget: int) -> list[_Child]:
        """One generate call for every kept path of every live tree; children become nodes."""
        st, tok = ctx.settings, ctx.generator.tokenizer
        if depth == 0:  # one root request per problem (n = N), dealt out to its trees in order
            by_problem: dict[int, list[_Tree]] = {}
            for t in live:
                by_problem.setdefault(t.problem, []).append(t)
            requests = [(p, -1, [(t, t.budget) for t in ts]) for p, ts in by_problem.items()]
            n = budget
        else:
            requests = [(t.problem, node, [(t, self.params.beam_width)]) for t in live for node in t.active]
            n = self.params.beam_width
        prompts = [policy_prompt(problems[p]["problem"], states[p].path(node), tok, st) for p, node, _ in requests]
        outs = meter.generate(ctx.generator, prompts, [p for p, _, _ in requests], self._step_params(ctx, n, depth))
        children = []
        for (p, parent, slices), comps in zip(requests, outs):
            state, it = states[p], iter(comps)
            for tree, count in slices:
                for _ in range(count):
                    c = next(it)
                    new = split_steps(c.text, st.delimiter)
                    path = state.path(parent) + new
                    tokens = state.path_tokens(parent) + c.num_tokens
                    state.nodes.append(Node(parent=parent, depth=depth, text=join_steps(new, st.delimiter), score=0.0))
                    state.paths.append(path)
                    state.tokens.append(tokens)
                    cand = make_candidate(path, c.finish_reason, tokens, node=len(state.nodes) - 1,
                                          subtree=tree.group)
                    children.append(_Child(tree, cand))
        return children

    def _rollouts(self, meter: Meter, ctx: SearchContext, problems, children: list[_Child]) -> list[list[str]]:
        """k greedy steps after each unfinished child (lookahead); their tokens count in the problem's spend."""
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
                if not make_candidate(extra[i], c.finish_reason).finished:
                    still.append(i)
            running = still
        return extra

    def _score(self, meter: Meter, ctx: SearchContext, problems, states: list[_State],
               children: list[_Child]) -> None:
        """One PRM call for all children (with their rollouts); step scores and selection keys in place."""
        extra = self._rollouts(meter, ctx, problems, children)
        items = [(problems[c.tree.problem]["problem"], c.cand.steps + e) for c, e in zip(children, extra)]
        scores = meter.score(ctx.scorer, items, [c.tree.problem for c in children], incremental=True)
        for child, s in zip(children, scores):
            child.cand.step_scores = [float(x) for x in s[:len(child.cand.steps)]]
            child.key = aggregate(s, ctx.settings.aggregation)
            states[child.tree.problem].nodes[child.cand.node].score = child.key

    def _select(self, tree: _Tree, children: list[_Child], state: _State, delimiter: str, last: bool) -> None:
        for c in children:
            if c.cand.finished:
                state.candidates.append(c.cand)
                tree.finished += 1
        open_ = [c for c in children if not c.cand.finished]
        if self.params.filter_duplicates:
            seen, unique = set(), []
            for c in open_:
                text = join_steps(c.cand.steps, delimiter)
                if text not in seen:
                    seen.add(text)
                    unique.append(c)
            open_ = unique
        n_keep = 0 if last else min(tree.keep, (tree.budget - tree.finished) // self.params.beam_width)
        if n_keep == 0 or not open_:
            tree.done = True
            state.candidates.extend(c.cand for c in open_)   # reported as unfinished, never voted on
            return
        ranked = sorted(open_, key=lambda c: (-c.key, c.cand.node))
        tree.active = [c.cand.node for c in ranked[:n_keep]]


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

    def method(self, budget: int) -> str:
        return f"lookahead(k={self.params.lookahead},M={self.params.beam_width})"

    def config(self, budget: int) -> dict:
        return {**super().config(budget), "lookahead": self.params.lookahead}

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
