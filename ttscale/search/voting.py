"""Step-score aggregation and final-answer selection over a problem's candidates.

Aggregation (Liu et al. 2025): min | last | avg | prod of a candidate's step scores.
Selection: majority (most frequent answer), prm-max (best aggregated candidate), prm-vote (sum of aggregated
scores per equivalent answer), hierarchical (best candidate per group — chain or subtree — by score, then
prm-vote across the groups' winners).

Only FINISHED candidates with an extracted answer take part; an unfinished one stays in the results (so it
is reported) but never decides anything. Ties break deterministically: the answer (or candidate) that
appears first in candidate order wins.
"""
from __future__ import annotations

import math
from typing import Sequence

from ttscale.search.types import AGGREGATIONS, Candidate


def aggregate(scores: Sequence[float], how: str = "last") -> float:
    """One score for a candidate; a candidate without scores gets 0.0 (ranks last, never wins a PRM vote)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r} is unknown; choose one of {', '.join(AGGREGATIONS)}")
    if not scores:
        return 0.0
    if how == "min":
        return float(min(scores))
    if how == "last":
        return float(scores[-1])
    if how == "avg":
        return float(sum(scores) / len(scores))
    return float(math.prod(scores))


def eligible(candidates: Sequence[Candidate]) -> list[int]:
    """Indices of candidates that may be voted on: finished, with an extracted answer."""
    return [i for i, c in enumerate(candidates) if c.finished and c.answer_key is not None]


def _best(indices: Sequence[int], scores: Sequence[float]) -> int:
    # max by score; among equal scores the lowest index (stable, deterministic)
    return min(indices, key=lambda i: (-scores[i], i))


def _vote(indices: Sequence[int], candidates: Sequence[Candidate], weights: Sequence[float]) -> int:
    """Winner of a weighted vote over answer keys -> index of the best-weighted candidate of that answer."""
    total: dict[str, float] = {}
    members: dict[str, list[int]] = {}
    for i in indices:  # dicts keep first-appearance order, which breaks ties
        key = candidates[i].answer_key
        total[key] = total.get(key, 0.0) + weights[i]
        members.setdefault(key, []).append(i)
    winner = max(total, key=lambda k: total[k])  # max returns the first maximal key
    return _best(members[winner], weights)


def select(candidates: Sequence[Candidate], voting: str, aggregation: str = "last") -> tuple[str | None, int]:
    """(predicted answer, index of the candidate behind it); (None, -1) when no candidate is eligible."""
    pool = eligible(candidates)
    if not pool:
        return None, -1
    scores = [aggregate(c.step_scores, aggregation) for c in candidates]
    if voting == "majority":
        idx = _vote(pool, candidates, [1.0] * len(candidates))  # equal weights: first candidate of the answer
    elif voting == "prm-max":
        idx = _best(pool, scores)
    elif voting == "prm-vote":
        idx = _vote(pool, candidates, scores)
    elif voting == "hierarchical":
        groups: dict[int, list[int]] = {}
        for i in pool:
            groups.setdefault(candidates[i].group, []).append(i)
        winners = [_best(members, scores) for members in groups.values()]
        idx = _vote(winners, candidates, scores)
    else:
        raise ValueError(f"voting {voting!r} is unknown; choose majority, prm-max, prm-vote or hierarchical")
    return candidates[idx].answer, idx


def rank_answers(candidates: Sequence[Candidate], voting: str, aggregation: str = "last") -> list[int]:
    """One candidate per distinct answer, best answer first, ranked as `select` ranks them: by vote weight
    (majority: count; prm-vote: summed scores; prm-max: best score; hierarchical: prm-vote over each group's
    winner). Each answer is represented by its best-scored candidate; the first entry is `select`'s choice."""
    pool = eligible(candidates)
    if not pool:
        return []
    chosen = select(candidates, voting, aggregation)[1]
    scores = [aggregate(c.step_scores, aggregation) for c in candidates]
    if voting == "hierarchical":
        groups: dict[tuple[int, int], list[int]] = {}
        for i in pool:
            groups.setdefault(candidates[i].group, []).append(i)
        pool = [_best(members, scores) for members in groups.values()]
    weights = [1.0] * len(candidates) if voting == "majority" else scores
    total: dict[str, float] = {}
    members: dict[str, list[int]] = {}
    for i in pool:
        key = candidates[i].answer_key
        w = weights[i]
        total[key] = max(total.get(key, w), w) if voting == "prm-max" else total.get(key, 0.0) + w
        members.setdefault(key, []).append(i)
    reps = {key: _best(m, weights) for key, m in members.items()}
    order = sorted(total, key=lambda k: (-total[k], reps[k] if voting == "prm-max" else members[k][0]))
    ranked = [reps[k] for k in order]
    # the selection rule is `select`'s; ties it breaks another way must not reorder the top answer
    return [chosen] + [i for i in ranked if candidates[i].answer_key != candidates[chosen].answer_key]
