"""What every search strategy shares: candidates, spent compute, per-problem results, settings, the interface.

Budget contract (the same N for every strategy, so methods compare at equal compute):
  BoN / majority / weighted BoN: N full samples per problem.
  beam: N beams of width M — N samples at the first step, then the best N/M expanded M times each step.
  lookahead-k: beam whose step scores come from a k-step greedy rollout; costs ≈ N(k+1) step generations.
  dvts: N/M independent subtrees, each expanded M times per step, keeping its best 1.
  revisions: chains × length = N attempts of the revision model.
Every strategy counts the same things (generated tokens, PRM tokens, calls, FLOPs) through search.meter.Meter.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

from ttscale.data.steps import DEFAULT_DELIMITER
from ttscale.inference.base import Generator, Scorer

AGGREGATIONS = ("min", "last", "avg", "prod")
VOTINGS = ("majority", "prm-max", "prm-vote", "hierarchical")


@dataclass
class Candidate:
    """One solution a strategy produced; everything needed to re-aggregate and re-vote offline."""
    steps: list[str]
    step_scores: list[float] = field(default_factory=list)  # one PRM score per step; [] when never scored
    answer: str | None = None           # extracted final answer
    answer_key: str | None = None       # equivalent answers share a key (votes group by it)
    finished: bool = False              # EOS or a final \boxed answer; only finished candidates are voted on
    tokens: int = 0                     # tokens generated for this candidate's own text
    parent: int = -1                    # tree strategies: parent of its leaf node in the problem's node list;
                                        # revisions: index of the previous attempt; -1 = root / first
    group: int = 0                      # subtree (DVTS) / chain (revisions) id
    node: int = -1                      # tree strategies: this candidate's own (leaf) node; -1 otherwise

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Spent:
    """Compute one problem used. FLOPs ≈ 2 · params · tokens (forward only; prompt tokens not counted)."""
    generated_tokens: int = 0
    prm_tokens: int = 0
    policy_calls: int = 0
    prm_calls: int = 0
    policy_flops: float = 0.0
    prm_flops: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Node:
    """One step in a search tree (beam / DVTS / lookahead): parent pointer, depth, step text, step score."""
    parent: int
    depth: int
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ProblemResult:
    problem: dict[str, Any]
    candidates: list[Candidate]
    spent: Spent
    prediction: str | None = None       # answer under the strategy's default selection
    chosen: int = -1                    # candidate index behind the prediction (-1: none finished)
    tree: list[Node] = field(default_factory=list)
    choice: dict[str, Any] | None = None  # auto: the configuration chosen for this problem and why


@dataclass(frozen=True)
class SearchSettings:
    """Strategy parameters (the search stage fills these from its options)."""
    beam_width: int = 4                 # M
    lookahead: int = 0                  # k (lookahead strategy only)
    max_depth: int = 20                 # step-wise strategies stop after this many steps
    max_step_tokens: int = 128          # token limit per generated step
    max_new_tokens: int = 512           # token limit per full sample / revision attempt
    temperature: float = 0.8
    top_p: float = 1.0
    aggregation: str = "last"           # step scores -> one candidate score
    voting: str = "default"             # final selection; default = the strategy's own
    filter_duplicates: bool = True      # beam/lookahead: drop beams whose text equals a kept one
    revision_length: int = 0            # parallel-revisions: attempts per chain (0: from sequential_ratio)
    sequential_ratio: float = 0.0       # parallel-revisions: length / chains (used when revision_length = 0)
    revision_max_attempts: int = 4      # previous attempts kept in the revision prompt
    seed: int = 0
    delimiter: str = DEFAULT_DELIMITER
    system: str | None = None           # optional system prompt for the policy
    allocation: str | None = None       # auto: compute-optimal allocation file (from `ttscale evaluate`)
    probe_samples: int = 4              # auto: samples per problem to predict its difficulty

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} is unknown; choose one of {', '.join(AGGREGATIONS)}")
        if self.voting not in ("default",) + VOTINGS:
            raise ValueError(f"voting {self.voting!r} is unknown; choose default or one of {', '.join(VOTINGS)}")
        for name in ("beam_width", "max_depth", "max_step_tokens", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lookahead < 0 or self.revision_length < 0 or self.sequential_ratio < 0:
            raise ValueError("lookahead, revision-length and sequential-ratio must be >= 0")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be >= 0 and top-p in (0, 1]; got {self.temperature}, {self.top_p}")


@dataclass
class SearchContext:
    """The models a strategy may use. `reviser` is the revision model (a Generator) for revision strategies."""
    generator: Generator | None
    scorer: Scorer | None = None
    reviser: Generator | None = None
    settings: SearchSettings = field(default_factory=SearchSettings)


class Strategy:
    """ONE interface: `validate` raises before any generation; `run` searches all problems in a batch at once."""

    name = ""
    default_voting = "majority"
    needs_scorer = False                # for its search itself (voting may add the need)
    needs_policy = True

    def voting(self, ctx: SearchContext) -> str:
        return self.default_voting if ctx.settings.voting == "default" else ctx.settings.voting

    def validate(self, budget: int, ctx: SearchContext) -> None:
        if budget < 1:
            raise ValueError(f"{self.name}: budget must be >= 1, got {budget}")
        if self.needs_policy and ctx.generator is None:
            raise ValueError(f"{self.name} needs a policy model: set --policy")
        voting = self.voting(ctx)
        if ctx.scorer is None and (self.needs_scorer or voting != "majority"):
            why = "to score steps" if self.needs_scorer else f"for --voting {voting}"
            raise ValueError(f"{self.name} needs a PRM {why}: set --prm PATH"
                             + ("" if self.needs_scorer else ", or use --voting majority"))

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        raise NotImplementedError
