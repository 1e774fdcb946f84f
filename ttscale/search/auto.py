"""`--strategy auto`: compute-optimal search (Snell et al. Eq. 1) from the allocation file written by `evaluate`.

1. Predict each problem's difficulty without its gold answer: a probe of `probe_samples` samples per problem,
   scored by the PRM; difficulty = mean final-step score (the same quantity `evaluate` binned on).
2. Look up the configuration the allocation file chose for that difficulty bin and budget (strategy, its
   hyperparameters, aggregation, voting).
3. Run each group of problems that share a configuration with that strategy, all in the same batched calls.
The probe is part of the spent compute: it is added to every problem's Spent. A choice whose samples are the
seed's plain sequence (Strategy.extends: best-of-N, weighted best-of-N, majority, adaptive-stopping majority)
takes the probe's samples as its first ones and draws only the rest, so there the probe costs nothing extra
unless the choice would have stopped sooner; `evaluate` charges the probe the same way when it chooses.
Each problem's `choice` records its bin, the configuration, and `cost`: what the allocation expects that
configuration to spend per problem of the bin (on the file's cost axis), beside the Spent it really ran.
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ttscale.config import field
from ttscale.search.allocation_file import choose_config, load_allocation, predicted_difficulty_of
from ttscale.search.strategy import Strategy
from ttscale.search.types import ProblemResult, SearchContext

_SETTINGS_KEYS = ("aggregation", "voting")     # allocation-entry keys that are shared settings, not Params
_REPORTED = ("bin", "accuracy", "cost", "cost_axis", "predicted_difficulty")   # entry keys that do not run it


@dataclass(frozen=True)
class AutoParams:
    allocation: str | None = field(None, help="--strategy auto: the compute-optimal allocation file written by "
                                   "`ttscale evaluate` (OUT/allocation.yaml): per predicted-difficulty bin and "
                                   "budget, the strategy and hyperparameters to run")
    probe_samples: int = field(4, help="--strategy auto: samples per problem whose mean final PRM score predicts "
                               "its difficulty bin (their compute is counted in the spent budget); an allocation "
                               "file that records its own count (difficulty.samples) overrides this, since its "
                               "bin edges hold only for means over that many samples", ge=1)


class AutoStrategy(Strategy):
    name = "auto"
    family = "meta"
    label = "compute-optimal (auto)"
    budget_meaning = ("N as the chosen strategy means it, plus the probe's samples (a parallel-sampling "
                      "choice reuses them as its first samples)")
    Params = AutoParams
    needs_scorer = True     # difficulty is predicted from PRM scores

    def bind(self, lookup: Callable[..., Strategy], options: Mapping[str, Any]) -> None:
        """The registry's lookup and this run's strategy options (search.registry calls this: auto runs other
        strategies by name, and importing the registry here would close an import cycle)."""
        self._lookup, self._options = lookup, dict(options)

    def validate(self, budget: int, ctx: SearchContext) -> None:
        super().validate(budget, ctx)
        if not self.params.allocation:
            raise ValueError("--strategy auto needs --allocation FILE (allocation.yaml from `ttscale evaluate`)")
        if self.params.probe_samples < 1:
            raise ValueError("--probe-samples must be >= 1 for --strategy auto")

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        self.validate(budget, ctx)
        allocation = load_allocation(self.params.allocation)
        probe_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, voting="majority"))
        samples = int(allocation["difficulty"].get("samples") or self.params.probe_samples)
        probe = self._lookup("majority").run(problems, probe_ctx, samples)
        groups: dict[str, list[int]] = defaultdict(list)
        choices: list[dict[str, Any]] = []
        for i, res in enumerate(probe):
            choice = choose_config(allocation, predicted_difficulty_of(res.candidates), budget)
            choice["predicted_difficulty"] = predicted_difficulty_of(res.candidates)
            choices.append(choice)
            key = json.dumps({k: v for k, v in choice.items() if k not in _REPORTED}, sort_keys=True)
            groups[key].append(i)
        results: list[ProblemResult | None] = [None] * len(problems)
        for key, members in groups.items():
            conf = json.loads(key)
            settings = {k: conf[k] for k in _SETTINGS_KEYS if conf.get(k) is not None}
            sub_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, **settings))
            # the chosen strategy's hyperparameters from the entry; the rest (depth, step tokens) as this run set them
            strategy = self._lookup(conf["strategy"], {**self._options, **conf})
            strategy.validate(int(conf["budget"]), sub_ctx)
            subset, n = [problems[i] for i in members], int(conf["budget"])
            found = (strategy.extend(subset, sub_ctx, n, [probe[i].candidates for i in members])
                     if strategy.extends else strategy.run(subset, sub_ctx, n))
            for i, res in zip(members, found):
                res.spent = res.spent + probe[i].spent   # every field, prompts included
                res.choice = choices[i]
                results[i] = res
        return [r for r in results if r is not None]
