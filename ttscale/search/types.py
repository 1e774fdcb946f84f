"""The records every search strategy shares: candidates, spent compute, tree nodes, per-problem results, the
settings all strategies have in common, and the models a strategy may use. The strategy interface itself
(and what the budget N means for each strategy) is in search.strategy.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
    # Tree strategies (beam, lookahead, DVTS): where the candidate ends in the problem's `tree` node list.
    node: int = -1                      # its leaf node (the path is read by following Node.parent); -1: no tree
    subtree: int = 0                    # DVTS: which independent subtree it grew in (0 for beam/lookahead)
    # Revision strategies: the chain of attempts it belongs to.
    chain: int = 0                      # which chain (0 when there is one)
    previous: int = -1                  # candidate index of the chain's previous attempt; -1: first attempt

    @property
    def group(self) -> tuple[int, int]:
        """What hierarchical voting groups by: the subtree (DVTS) or the chain (revisions)."""
        return self.subtree, self.chain

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ROLES = ("policy", "reviser", "prm")


@dataclass
class Spent:
    """Compute one problem used, as measured by search.meter: tokens each model actually ran (a prompt prefix
    served from a KV/prefix cache is not run again; where a backend reports such cached tokens they are
    recorded apart), model calls, and FLOPs ≈ 2 · params · tokens run (prompt + generated) per model.

    The first six fields are the original schema (`generated_tokens` is the policy's); runs written before the
    rest existed read them as 0 (`from_dict`)."""
    generated_tokens: int = 0
    prm_tokens: int = 0                 # tokens run through the PRM (its cached prefixes excluded)
    policy_calls: int = 0
    prm_calls: int = 0
    policy_flops: float = 0.0
    prm_flops: float = 0.0
    policy_prompt_tokens: int = 0       # prompt tokens the policy ran (prefill), cached ones excluded
    policy_cached_tokens: int = 0       # prompt tokens the backend served from its prefix cache
    reviser_prompt_tokens: int = 0
    reviser_cached_tokens: int = 0
    reviser_generated_tokens: int = 0
    reviser_calls: int = 0
    reviser_flops: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Spent":
        """From a run's `spent` column: unknown keys ignored, missing or null ones 0 (older runs)."""
        d = d or {}
        cast = {"int": int, "float": float}    # field types are strings (postponed annotations)
        return cls(**{f.name: cast[f.type](d.get(f.name) or 0) for f in dataclasses.fields(cls)})

    def __add__(self, other: "Spent") -> "Spent":
        return Spent(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(Spent)})

    def run_tokens(self, role: str) -> int:
        """Tokens `role` (policy / reviser / prm) ran: prompt tokens not served from cache + generated."""
        if role == "prm":
            return self.prm_tokens
        generated = self.generated_tokens if role == "policy" else self.reviser_generated_tokens
        return getattr(self, f"{role}_prompt_tokens") + generated

    @property
    def tokens(self) -> int:
        """Every token any model ran (the `--cost tokens` axis)."""
        return sum(self.run_tokens(r) for r in ROLES)

    @property
    def flops(self) -> float:
        return self.policy_flops + self.reviser_flops + self.prm_flops

    def unknown_flops(self) -> list[str]:
        """Models that ran tokens but count 0 FLOPs: their size is unknown (a served model with no config)."""
        return [r for r in ROLES if self.run_tokens(r) > 0 and getattr(self, f"{r}_flops") == 0]


@dataclass
class Node:
    """One step in a search tree (beam / DVTS / lookahead / particle filtering / REBASE / MCTS): parent
    pointer, depth, step text, step score, the tokens generated for its text and, with lookahead, for the
    greedy rollout that scored it (runs written before these two existed read 0)."""
    parent: int
    depth: int
    text: str
    score: float
    tokens: int = 0
    rollout_tokens: int = 0

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
    """What every strategy shares (a strategy's own hyperparameters live in its Params, see search.strategy)."""
    max_new_tokens: int = 512           # token limit per full sample / revision attempt
    temperature: float = 0.8
    top_p: float = 1.0
    aggregation: str = "last"           # step scores -> one candidate score
    voting: str = "default"             # final selection; default = the strategy's own
    seed: int = 0
    delimiter: str = DEFAULT_DELIMITER
    system: str | None = None           # optional system prompt for the policy
    revision_max_attempts: int = 4      # previous attempts the revision model sees (from its training format)

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} is unknown; choose one of {', '.join(AGGREGATIONS)}")
        if self.voting not in ("default",) + VOTINGS:
            raise ValueError(f"voting {self.voting!r} is unknown; choose default or one of {', '.join(VOTINGS)}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be >= 0 and top-p in (0, 1]; got {self.temperature}, {self.top_p}")


@dataclass
class SearchContext:
    """The models a strategy may use. `reviser` is the revision model (a Generator) for revision strategies."""
    generator: Generator | None
    scorer: Scorer | None = None
    reviser: Generator | None = None
    settings: SearchSettings = field(default_factory=SearchSettings)
