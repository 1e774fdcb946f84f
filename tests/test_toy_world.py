"""Toy world: determinism, the exact step checker, mistake injection, and the toy-world stage."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from ttscale.data.steps import join_steps, split_steps
from ttscale.data.toy_world import check_steps, final_answer, first_mistake, generate_problems, inject_mistake


@pytest.fixture(scope="module")
def rows():
    return generate_problems(500, seed=3)


def test_deterministic_from_seed():
    a, b = generate_problems(40, seed=7), generate_problems(40, seed=7)
    assert a == b
    assert json.loads(json.dumps(a)) == a  # plain JSON-able values
    assert generate_problems(40, seed=8) != a
    assert [r["level"] for r in a[:10]] == [1, 2, 3, 4, 5] * 2
    assert len({r["id"] for r in a}) == 40


def test_steps_are_short_and_item_free(rows):
    for r in rows:
        for step in split_steps(r["solution"]):
            assert r["program"]["item"] not in step and r["program"]["name"] not in step
            assert len(step) <= 100, step


def test_difficulty_grows_with_level(rows):
    steps = {lv: {len(split_steps(r["solution"])) for r in rows if r["level"] == lv} for lv in range(1, 6)}
    assert steps == {1: {2}, 2: {3}, 3: {4}, 4: {5}, 5: {6}}
    biggest = {lv: max(int(r["answer"]) for r in rows if r["level"] == lv) for lv in range(1, 6)}
    assert biggest[1] < 40 < biggest[5] < 100  # two-digit arithmetic at most


def test_rows_follow_the_step_format(rows):
    for r in rows:
        steps = split_steps(r["solution"])
        assert steps[-1].endswith(f"The answer is \\boxed{{{r['answer']}}}.")
        assert final_answer(r["solution"]) == r["answer"]
        assert all("=" in s for s in steps)
        assert str(r["program"]["start"]) in r["problem"]


def test_checker_accepts_every_reference_solution(rows):
    assert all(all(check_steps(r, r["solution"])) for r in rows)


def test_levels_validated():
    assert {r["level"] for r in generate_problems(6, levels=[2, 4])} == {2, 4}
    with pytest.raises(ValueError, match="levels must be among"):
        generate_problems(3, levels=[0, 6])


def test_injected_mistake_is_caught_at_its_index(rows):
    rng = random.Random(0)
    firsts = Counter()
    for r in rows:
        text, i = inject_mistake(r, rng)
        labels = check_steps(r, text)
        assert labels[:i] == [True] * i
        assert not any(labels[i:]), (r["id"], i, text)  # later steps continue from the wrong value
        assert final_answer(text) not in (None, r["answer"])
        firsts[i] += 1
    assert set(firsts) == set(range(6))  # mistakes land at every position


def test_mistakes_differ_between_samples(rows):
    row = next(r for r in rows if r["level"] == 5)
    rng = random.Random(1)
    answers = {final_answer(inject_mistake(row, rng)[0]) for _ in range(20)}
    assert len(answers) >= 8


def test_checker_on_hand_made_steps():
    row = generate_problems(1, seed=0)[0]  # Zoe has 8 books; loses 1; sells 4 -> 3
    steps = split_steps(row["solution"])
    assert check_steps(row, row["solution"]) == [True, True]
    # slip in step 0, step 1 consistent with it: both wrong
    wrong = join_steps(["She loses 1: 8 - 1 = 6.", "She sells 4: 6 - 4 = 2. The answer is \\boxed{2}."])
    assert check_steps(row, wrong) == [False, False]
    # right equation but wrong boxed answer on the last step
    assert check_steps(row, join_steps([steps[0], "She sells 4: 7 - 4 = 3. The answer is \\boxed{4}."])) \
        == [True, False]
    # malformed: no equation, two equations, extra step after the end, early boxed answer
    assert check_steps(row, join_steps(["She loses one book.", steps[1]])) == [False, True]
    assert check_steps(row, join_steps(["8 - 1 = 7 and 7 - 0 = 7", steps[1]])) == [False, True]
    assert check_steps(row, join_steps(steps + ["Nothing else happens, 3 + 0 = 3."])) == [True, False, False]
    assert check_steps(row, join_steps([steps[0] + " The answer is \\boxed{7}.", steps[1]])) == [False, True]
    assert check_steps(row, join_steps([steps[0]])) == [False]  # stopped early: no answer


def test_checker_reads_other_operator_glyphs(rows):
    row = next(r for r in rows if "*" in r["program"]["ops"] and "/" in r["program"]["ops"])
    text = row["solution"].replace(" * ", " × ").replace(" / ", " ÷ ")
    assert text != row["solution"] and all(check_steps(row, text))


def test_checker_needs_a_program():
    with pytest.raises(ValueError, match="program"):
        check_steps({"id": "x", "answer": "3"}, "1 + 2 = 3. The answer is \\boxed{3}.")


def test_toy_world_cli_writes_readable_file(tmp_path):
    from ttscale.cli import main
    from ttscale.data.io import read_table

    out = tmp_path / "toy.jsonl"
    assert main(["toy-world", str(out), "--n", "12", "--seed", "5", "--levels", "1", "3"]) == 0
    table = read_table(out)
    assert table.num_rows == 12
    assert sorted(set(table["level"])) == [1, 3]
    assert table.to_list() == generate_problems(12, seed=5, levels=[1, 3])
    assert all(all(check_steps(r, r["solution"])) for r in table.to_list())


def test_reasoning_gym_rows():
    pytest.importorskip("reasoning_gym")
    from ttscale.data.reasoning_gym_adapter import load_reasoning_gym

    rows = load_reasoning_gym("basic_arithmetic", 5, seed=1)
    assert rows == load_reasoning_gym("basic_arithmetic", 5, seed=1)
    assert [r["id"] for r in rows] == [f"rg-basic_arithmetic-1-{i:05d}" for i in range(5)]
    for r in rows:
        expr = json.loads(r["metadata"])["expression"]
        assert expr in r["problem"] and r["answer"].lstrip("-").isdigit()
    with pytest.raises(ValueError, match="no_such_task"):
        load_reasoning_gym("no_such_task", 2)


def test_reasoning_gym_missing_names_the_extra(monkeypatch):
    import sys

    from ttscale.data.reasoning_gym_adapter import load_reasoning_gym

    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # makes `import reasoning_gym` fail
    with pytest.raises(ImportError, match=r"ttscale\[reasoning-gym\]"):
        load_reasoning_gym("basic_arithmetic", 2)


def test_arithmetic_never_carries_or_borrows(rows):
    for r in rows:
        p = r["program"]
        value = p["start"]
        for op, k in zip(p["ops"], p["operands"]):
            if op in "+-":
                for da, dk in zip(reversed(str(value)), reversed(str(k))):   # digits from the units up
                    assert (int(da) + int(dk) <= 9) if op == "+" else (int(dk) <= int(da)), (value, op, k)
            if op == "/":
                assert all(int(d) % k == 0 for d in str(value)), (value, k)
            value = {"+": value + k, "-": value - k, "*": value * k, "/": value // k}[op]


def test_mistake_kinds_restrict_what_is_injected(rows):
    rng = random.Random(2)
    for r in rows[:100]:
        text, i = inject_mistake(r, rng, kinds=["operation"])
        step = split_steps(text)[i]
        assert r["program"]["ops"][i] not in step.split(":")[1].split("=")[0], step   # the sign is the wrong one
    with pytest.raises(ValueError, match="mistake kinds must be among"):
        inject_mistake(rows[0], rng, kinds=["typo"])


def test_first_mistake_names_kind_and_index():
    row = {"problem": "", "answer": "18", "program": {"start": 10, "ops": ["+", "*", "-"], "operands": [4, 2, 10],
           "name": "Mia", "pronoun": "she", "item": "pens",
           "clauses": ["{p} finds {k} more", "{p} ends up with {k} times as many", "{p} sells {k}"]}}
    good = ["She finds 4 more: 10 + 4 = 14.", "She ends up with 2 times as many: 14 * 2 = 28.",
            "She sells 10: 28 - 10 = 18. The answer is \\boxed{18}."]
    assert first_mistake(row, good) is None
    cases = {
        "slip": ["She finds 4 more: 10 + 4 = 15."],
        "operand": ["She finds 4 more: 10 + 5 = 15."],
        "operation": [good[0], "She ends up with 2 times as many: 14 + 2 = 16."],
        "drop": [good[0], "She sells 10: 14 - 10 = 4. The answer is \\boxed{4}."],
        "copy": [good[0], "She ends up with 2 times as many: 15 * 2 = 30."],
        "answer": [good[0], good[1] + " The answer is \\boxed{28}."],
        "extra": good[:2] + ["She sells 10: 28 - 10 = 18.", "She sells 10: 18 - 10 = 8. The answer is \\boxed{8}."],
        "other": ["She finds 4 more, so 14."],
    }
    for kind, steps in cases.items():
        assert first_mistake(row, steps) == (len(steps) - 1 if kind != "extra" else 3, kind), kind


def test_first_mistake_recovers_injected_kinds(rows):
    rng = random.Random(4)
    for kind in ("slip", "operand", "operation", "drop"):
        found = []
        for r in rows[:200]:
            try:
                text, i = inject_mistake(r, rng, kinds=[kind])
            except RuntimeError:   # e.g. no step of this row can be dropped detectably
                continue
            found.append(first_mistake(r, split_steps(text)))
            assert found[-1][0] == i
        assert len(found) >= 150, kind
        # a wrong sign can equal the next operation (- 3 then + 3), which reads as a skipped step
        assert sum(f[1] == kind for f in found) >= 0.95 * len(found), (kind, Counter(f[1] for f in found))


def test_traps_grow_with_level_and_their_misreading_is_one_wrong_answer(rows):
    from ttscale.data.toy_world import TRAP_CLAUSES, misread_solution

    share = {lv: sum(r["program"]["trap"] >= 0 for r in rows if r["level"] == lv) / 100 for lv in range(1, 6)}
    assert share[1] == 0 and 0 < share[2] < share[3] < share[4] and share[5] > 0.3
    for r in rows:
        trap = r["program"]["trap"]
        if trap < 0:
            assert misread_solution(r) is None
            continue
        clause = r["program"]["clauses"][trap]
        assert clause == TRAP_CLAUSES[r["program"]["ops"][trap]] and clause.format(
            p=r["program"]["pronoun"], k=r["program"]["operands"][trap]) in r["problem"].lower().replace(
            r["program"]["pronoun"].capitalize() + " ", r["program"]["pronoun"] + " ")
        text = misread_solution(r)
        assert text == misread_solution(r)            # systematic: the same wrong text every time
        assert all(check_steps(r, r["solution"]))
        # "drop" when the flipped operation happens to be the next one (the same step text either way)
        assert first_mistake(r, split_steps(text)) in ((trap, "operation"), (trap, "drop"))
        assert final_answer(text) not in (None, r["answer"])


def test_processbench_rows_carry_the_policys_misreading_on_trap_problems(rows):
    from ttscale.data.toy_world import misread_solution
    from ttscale.data.toy_world_cmd import processbench_rows

    out = processbench_rows(rows, mistake_fraction=1.0, seed=0, misread_fraction=1.0)
    for r, pb in zip(rows, out):
        labels = check_steps(r, "\n\n".join(pb["steps"]))
        assert pb["label"] == labels.index(False)                    # exact first error either way
        if r["program"]["trap"] >= 0:
            assert pb["steps"] == split_steps(misread_solution(r)) and pb["label"] == r["program"]["trap"]
            assert pb["mistake"] == "misread"
        else:
            assert pb["mistake"] in ("operand", "operation", "drop", "slip")
    none = processbench_rows(rows, mistake_fraction=1.0, seed=0, misread_fraction=0.0)
    traps = [(r, pb) for r, pb in zip(rows, none) if r["program"]["trap"] >= 0]
    # an injected wrong operation at the trap can coincide with the misreading, but rarely
    assert sum(pb["steps"] == split_steps(misread_solution(r)) for r, pb in traps) < len(traps) / 4
