"""`--strategy auto`: compute-optimal search (Snell et al. Eq. 1) from the allocation file written by `evaluate`.

1. Predict each problem's difficulty without its gold answer: a probe of `probe_samples` samples per problem,
   scored by the PRM; difficulty = mean final-step score (the same quantity `evaluate` binned on).
2. Look up the configuration the allocation file chose for that difficulty bin and budget (strategy, beam width,
   lookahead k, revision length, aggregation, voting).
3. Run each group of problems that share a configuration with that strategy, all in the same batched calls.
The probe is part of the spent compute: it is added to every problem's Spent.
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from typing import Any, Sequence

from ttscale.search.types import ProblemResult, SearchContext, Spent, Strategy

# Allocation-file keys that map onto search settings (the rest — bin, method, accuracy — are reported only).
_SETTINGS_KEYS = ("aggregation", "voting", "beam_width", "lookahead", "revision_length")


def _add(a: Spent, b: Spent) -> Spent:
    return Spent(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in dataclasses.fields(Spent)})


class AutoStrategy(Strategy):
    name = "auto"
    needs_scorer = True     # difficulty is predicted from PRM scores

    def validate(self, budget: int, ctx: SearchContext) -> None:
        super().validate(budget, ctx)
        if not ctx.settings.allocation:
            raise ValueError("--strategy auto needs --allocation FILE (allocation.yaml from `ttscale evaluate`)")
        if ctx.settings.probe_samples < 1:
            raise ValueError("--probe-samples must be >= 1 for --strategy auto")

    def run(self, problems: Sequence[dict], ctx: SearchContext, budget: int) -> list[ProblemResult]:
        from ttscale.search.allocation_file import choose_config, load_allocation, predicted_difficulty_of
        from ttscale.search.registry import get_strategy

        self.validate(budget, ctx)
        allocation = load_allocation(ctx.settings.allocation)
        probe_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, voting="majority"))
        probe = get_strategy("majority").run(problems, probe_ctx, ctx.settings.probe_samples)
        groups: dict[str, list[int]] = defaultdict(list)
        choices: list[dict[str, Any]] = []
        for i, res in enumerate(probe):
            choice = choose_config(allocation, predicted_difficulty_of(res.candidates), budget)
            choice["predicted_difficulty"] = predicted_difficulty_of(res.candidates)
            choices.append(choice)
            key = json.dumps({k: choice.get(k) for k in ("strategy", "budget", *_SETTINGS_KEYS)}, sort_keys=True)
            groups[key].append(i)
        results: list[ProblemResult | None] = [None] * len(problems)
        for key, members in groups.items():
            conf = json.loads(key)
            overrides = {k: conf[k] for k in _SETTINGS_KEYS if conf.get(k) is not None}
            sub_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, **overrides))
            strategy = get_strategy(conf["strategy"])
            strategy.validate(int(conf["budget"]), sub_ctx)
            for i, res in zip(members, strategy.run([problems[i] for i in members], sub_ctx, int(conf["budget"]))):
                res.spent = _add(res.spent, probe[i].spent)
                res.choice = choices[i]
                results[i] = res
        return [r for r in results if r is not None]
