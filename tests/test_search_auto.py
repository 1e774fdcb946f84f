"""`--strategy auto`: each problem's predicted difficulty bin selects the configuration from the allocation file."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from search_fakes import ScriptedGenerator, ScriptedScorer, hand_spent, problems, spent_fields
from ttscale.search.allocation_file import predicted_difficulty_of
from ttscale.search.registry import get_strategy
from ttscale.search.types import SearchContext, SearchSettings


def _policy(tmp_path, edge: float):
    policy = {
        "difficulty": {"kind": "quantile", "edges": [edge], "labels": ["hard", "easy"]},
        "bins": {
            "easy": {"4": {"strategy": "majority", "budget": 4, "aggregation": "last", "voting": "majority"}},
            "hard": {"4": {"strategy": "beam", "budget": 4, "beam_width": 2, "aggregation": "min",
                           "voting": "prm-vote"}},
        },
        "fallback": {"4": {"strategy": "weighted-best-of-n", "budget": 4, "aggregation": "last",
                           "voting": "prm-vote"}},
    }
    path = tmp_path / "allocation.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def _ctx():
    return SearchContext(generator=ScriptedGenerator(depth=3), scorer=ScriptedScorer(), settings=SearchSettings(seed=1))


def _auto(path, probe=3, **options):
    return get_strategy("auto", {"allocation": str(path), "probe_samples": probe, **options})


def test_auto_routes_problems_by_predicted_difficulty_and_counts_the_probe(tmp_path):
    probs = problems(8)
    # the probe's predicted difficulties, computed the same way auto does
    probe = get_strategy("majority").run(probs, _ctx(), 3)
    diffs = [predicted_difficulty_of(r.candidates) for r in probe]
    edge = sorted(d for d in diffs if d is not None)[len(diffs) // 2]
    path = _policy(tmp_path, edge)
    ctx = _ctx()
    results = _auto(path).run(probs, ctx, 4)
    # every problem is charged the probe and its chosen strategy: all prompts, tokens and PRM items it ran
    hand = hand_spent(probs, ctx.generator, scorer=ctx.scorer)
    assert [spent_fields(r.spent) for r in results] == [pytest.approx(hand[r.problem["id"]]) for r in results]
    assert [r.problem["id"] for r in results] == [p["id"] for p in probs]
    for r, d in zip(results, diffs):
        want = "easy" if d is not None and d >= edge else "hard"
        if d is None:
            assert r.choice["bin"] == "all" and r.choice["strategy"] == "weighted-best-of-n"
            continue
        assert r.choice["bin"] == want and r.choice["predicted_difficulty"] == pytest.approx(d)
        assert r.choice["strategy"] == ("majority" if want == "easy" else "beam")
        if want == "easy":  # 3 probe samples + 4 chosen samples, all generated
            assert len(r.candidates) == 4
        else:
            assert r.tree and all(n.depth >= 0 for n in r.tree)
        alone = probe[results.index(r)].spent
        assert r.spent.generated_tokens > alone.generated_tokens
        assert r.spent.policy_prompt_tokens > alone.policy_prompt_tokens > 0
    assert {r.choice["bin"] for r in results} >= {"easy", "hard"}
    json.dumps([r.choice for r in results])  # stored as JSON in the run
    # the chosen strategy takes the run's other options (here the depth limit) beside the entry's own
    shallow = _auto(path, max_depth=1).run(probs, _ctx(), 4)
    assert all(n.depth == 0 for r in shallow for n in r.tree) and any(r.tree for r in shallow)


def test_auto_probes_as_many_samples_as_the_allocation_file_was_binned_on(tmp_path):
    """Bin edges fitted on means over k samples hold only for means over k: the file's count wins."""
    probs = problems(6)
    path = _policy(tmp_path, 0.5)
    data = yaml.safe_load(path.read_text())
    data["difficulty"]["samples"] = 2
    path.write_text(yaml.safe_dump(data))
    results = _auto(path, probe=3).run(probs, _ctx(), 4)
    two = get_strategy("majority").run(probs, _ctx(), 2)
    assert [r.choice["predicted_difficulty"] for r in results] == pytest.approx(
        [predicted_difficulty_of(r.candidates) for r in two])
    three = get_strategy("majority").run(probs, _ctx(), 3)
    assert [r.choice["predicted_difficulty"] for r in results] != pytest.approx(
        [predicted_difficulty_of(r.candidates) for r in three])


def test_auto_without_allocation_file_fails_before_generation(tmp_path):
    gen = ScriptedGenerator()
    ctx = SearchContext(generator=gen, scorer=ScriptedScorer(), settings=SearchSettings())
    with pytest.raises(ValueError, match="--allocation"):
        get_strategy("auto").validate(4, ctx)
    with pytest.raises(ValueError, match="--allocation"):
        get_strategy("auto").run(problems(2), ctx, 4)
    assert gen.calls == []


def test_auto_rows_keep_the_choice_as_a_struct_and_the_summary_counts_bins_and_methods(tmp_path):
    from ttscale.search.output import finalize, result_rows, write_part

    probs = problems(6)
    path = _policy(tmp_path, 0.5)
    results = _auto(path).run(probs, _ctx(), 4)
    write_part(tmp_path / "run", 0, result_rows(results, "auto", 4, {"allocation": str(path)}))
    summary = finalize(tmp_path / "run")
    import datasets

    ds = datasets.load_from_disk(str(tmp_path / "run" / "dataset"))
    for row, r in zip(ds, results):
        assert row["choice"]["bin"] == r.choice["bin"] and row["choice"]["strategy"] == r.choice["strategy"]
        assert row["choice"]["beam_width"] == r.choice.get("beam_width")    # a column, not JSON text
    auto = summary["auto"]
    assert sum(auto["by_bin"].values()) == 6 and set(auto["per_problem"]) == {p["id"] for p in probs}
    assert auto["by_bin"] == dict(sorted(Counter(r.choice["bin"] for r in results).items()))
    assert set(auto["by_method"]) <= {"majority", "beam", "weighted-best-of-n"}


def test_a_parallel_choice_takes_the_probe_samples_first_and_draws_only_the_rest(tmp_path):
    """Weighted best-of-N at N=4 after a 3-sample probe: the probe's 3 candidates (PRM scores included) come
    first, one new sample per problem is drawn (sample j = 3 of the same seed), and the problem pays 4 samples,
    not 7: the candidates are those of a plain 4-sample run."""
    probs = problems(5)
    path = _policy(tmp_path, 2.0)      # every difficulty is below the edge: all "hard", made weighted BoN here
    data = yaml.safe_load(path.read_text())
    data["bins"]["hard"] = data["fallback"]
    path.write_text(yaml.safe_dump(data))
    ctx = _ctx()
    results = _auto(path, probe=3).run(probs, ctx, 4)
    probe = get_strategy("majority").run(probs, _ctx(), 3)
    assert [set(c["n"]) for c in ctx.generator.calls] == [{3}, {1}]
    assert ctx.generator.calls[1]["start"] == [3] * 5
    plain = get_strategy("weighted-best-of-n").run(probs, _ctx(), 4)
    for r, p in zip(results, probe):
        assert r.choice["strategy"] == "weighted-best-of-n" and len(r.candidates) == 4
        assert [c.steps for c in r.candidates[:3]] == [c.steps for c in p.candidates]
        assert [c.step_scores for c in r.candidates[:3]] == [c.step_scores for c in p.candidates]
    for r, q in zip(results, plain):
        assert [c.steps for c in r.candidates] == [c.steps for c in q.candidates]
        assert r.spent.policy_calls == 2 and r.spent.generated_tokens == sum(c.tokens for c in r.candidates)
    # the selection is weighted best-of-N's over all 4, as a plain run would make it on these candidates
    from ttscale.search.voting import select
    assert [r.prediction for r in results] == [select(r.candidates, "prm-vote", "last")[0] for r in results]


def test_extend_keeps_the_first_n_drawn_and_generates_nothing_when_they_suffice():
    probs = problems(3)
    drawn = [r.candidates for r in get_strategy("majority").run(probs, _ctx(), 4)]
    ctx = _ctx()
    two = get_strategy("best-of-n").extend(probs, ctx, 2, drawn)
    assert ctx.generator.calls == [] and all(r.spent.generated_tokens == 0 for r in two)
    assert [[c.steps for c in r.candidates] for r in two] == [[c.steps for c in d[:2]] for d in drawn]
    with pytest.raises(ValueError, match="same number of drawn samples"):
        get_strategy("best-of-n").extend(probs, ctx, 4, [drawn[0], drawn[1][:2], drawn[2]])
    # nothing drawn: the plain run, sample for sample
    plain, ext = get_strategy("majority").run(probs, _ctx(), 4), get_strategy("majority").extend(probs, _ctx(), 4, [[]] * 3)
    assert [[c.steps for c in r.candidates] for r in plain] == [[c.steps for c in r.candidates] for r in ext]


def test_adaptive_stopping_extends_the_probe_and_charges_only_what_it_drew_beyond_it():
    """Adaptive majority (rounds of 2, at most 8) after a 3-sample probe: each problem stops where the plain run
    stops, with the plain run's candidates; the probe's samples are not drawn again, so the new draws start at 3
    and a problem that stopped after round 1 drew nothing new."""
    probs = problems(8)
    opts = {"round_size": 2, "stop_threshold": 0.7}
    drawn = [r.candidates for r in get_strategy("majority").run(probs, _ctx(), 3)]
    plain = get_strategy("adaptive-majority", opts).run(probs, _ctx(), 8)
    ctx = _ctx()
    ext = get_strategy("adaptive-majority", opts).extend(probs, ctx, 8, drawn)
    assert [[c.steps for c in r.candidates] for r in ext] == [[c.steps for c in r.candidates] for r in plain]
    assert [r.prediction for r in ext] == [r.prediction for r in plain]
    assert ctx.generator.calls and min(min(c["start"]) for c in ctx.generator.calls) == 3
    for r, d in zip(ext, drawn):
        beyond = r.candidates[len(d):]
        assert r.spent.generated_tokens == sum(c.tokens for c in beyond)
        assert [c.step_scores for c in r.candidates[:len(d)]] == [c.step_scores for c in d[:len(r.candidates)]]
    assert any(len(r.candidates) == 2 for r in ext) and any(len(r.candidates) > 3 for r in ext)


def test_an_older_allocation_file_without_costs_loads_and_runs_and_a_new_one_reports_what_was_given(tmp_path):
    probs = problems(4)
    old = _policy(tmp_path, 0.5)     # no version, no cost section, entries without cost: as files before it
    assert all("cost" not in r.choice for r in _auto(old).run(probs, _ctx(), 4))
    data = yaml.safe_load(old.read_text())
    data["cost"] = {"axis": "flops", "rule": "mean"}
    for per in [*data["bins"].values(), data["fallback"]]:
        per["4"]["cost"] = 123.0
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(data))
    results = _auto(new).run(probs, _ctx(), 4)
    for r in results:
        assert r.choice["cost"] == 123.0 and r.choice["cost_axis"] == "flops"
    from ttscale.search.output import finalize, result_rows, write_part

    write_part(tmp_path / "run", 0, result_rows(results, "auto", 4, {"allocation": str(new)}))
    given = finalize(tmp_path / "run")["auto"]["given_vs_spent"]
    for label, g in given.items():
        mine = [r.spent.flops for r in results if r.choice["bin"] == label]
        assert g == {"axis": "flops", "given": 123.0, "spent": pytest.approx(sum(mine) / len(mine))}
