"""The one strategy interface: a class per algorithm that owns what it is.

A strategy class declares
  name            what --strategy accepts
  family          parallel (N independent samples, re-votable at any N' <= N), tree (step-wise search over a
                  tree of steps), revision (chains of attempts by the revision model), adaptive (samples
                  until a stopping rule fires: scored at its own budget, never re-voted on subsets) or meta
                  (picks others)
  label           how reports name it
  Params          a frozen dataclass of its own hyperparameters (fields made with ttscale.config.field, so the
                  search stage turns them into flags and checks their bounds; two strategies that share a knob
                  share the Params base that declares it). A field with metadata `short="M"` defines the
                  method: it appears in the report name ("beam(M=4)") and in allocation entries.
  budget_meaning  what the budget N buys — the same N means the same compute across strategies
  extends         True where its samples are the seed's plain sample sequence, so `extend(problems, ctx, N,
                  drawn)` can start from samples already drawn (auto's probe) and charge only the rest
and implements `run` (all problems of a batch advance together); `method` (its name in reports) and
`config` (what an allocation entry must carry to run it again) come from the `short` fields.
`eval` and `auto` ask the class; nothing matches on strategy names elsewhere.

Adding a strategy: one file with its class, one line in search.registry.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from ttscale.config import check_options
from ttscale.search.types import ProblemResult, SearchContext

FAMILIES = ("parallel", "tree", "revision", "adaptive", "meta")


@dataclass(frozen=True)
class NoParams:
    """A strategy without hyperparameters of its own."""


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Strategy:
    """ONE interface: `validate` raises before any generation; `run` searches all problems in a batch at once."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    label: ClassVar[str] = ""
    budget_meaning: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    default_voting: ClassVar[str] = "majority"
    needs_scorer: ClassVar[bool] = False       # for its search itself (voting may add the need)
    needs_policy: ClassVar[bool] = True
    needs_reviser: ClassVar[bool] = False
    extends: ClassVar[bool] = False

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()
        if not isinstance(self.params, self.Params):
            raise TypeError(f"{self.name}: params must be {self.Params.__name__}, got {type(self.params).__name__}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **overrides: Any) -> "Strategy":
        """The strategy with its Params taken from a mapping of options (a stage config's values, a run row's
        `params`, an allocation entry); keys that are not its own hyperparameters are ignored."""
        values = {**(options or {}), **overrides}
        own = {f.name: values[f.name] for f in dataclasses.fields(cls.Params) if values.get(f.name) is not None}
        return cls(cls.Params(**own))

    # ---------------------------------------------------------------- what it is

    @classmethod
    def _defining(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls.Params) if "short" in f.metadata]

    def method(self, budget: int) -> str:
        """Its name in reports, with the hyperparameters that make two runs different methods."""
        parts = [f"{f.metadata['short']}={_text(getattr(self.params, f.name))}" for f in self._defining()]
        return f"{self.name}({','.join(parts)})" if parts else self.name

    def config(self, budget: int) -> dict[str, Any]:
        """The hyperparameters an allocation entry must carry to run it again (beside strategy and budget)."""
        return {f.name: getattr(self.params, f.name) for f in self._defining()}

    def voting(self, ctx: SearchContext) -> str:
        return self.default_voting if ctx.settings.voting == "default" else ctx.settings.voting

    # ---------------------------------------------------------------- running

    def validate(self, budget: int, ctx: SearchContext) -> None:
        check_options(self.params)     # the bounds and choices its flags have, also for params built in code
        if budget < 1:
            raise ValueError(f"{self.name}: budget must be >= 1, got {budget}")
        if self.needs_policy and ctx.generator is None:
            raise ValueError(f"{self.name} needs a policy model: set --policy")
        if self.needs_reviser and ctx.reviser is None:
            raise ValueError(f"{self.name} needs a revision model: set --revision-model PATH (a model trained with "
                             f"`ttscale train-revision`)")
        voting = self.voting(ctx)
        if ctx.scorer is None and (self.needs_scorer or voting != "majority"):
            why = "to score steps" if self.needs_scorer else f"for --voting {voting}"
            raise ValueError(f"{self.name} needs a PRM {why}: set --prm PATH"
                             + ("" if self.needs_scorer else ", or use --voting majority"))

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        raise NotImplementedError
