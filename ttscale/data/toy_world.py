"""The toy world: multi-step arithmetic word problems with exactly checkable steps.

It is the embedded default the whole pipeline runs on without a hub. A problem is a start quantity and a
chain of operations (add, subtract, multiply by a small k, divide exactly); difficulty (level 1-5) grows
the number of steps and the operand size. Every reference step states one equation on the current
quantity, so the true correctness of each step of ANY solution text can be computed (`check_steps`),
which is what MC labels and PRMs are measured against. `inject_mistake` makes plausible wrong solutions
(slip, wrong operand, wrong operation, dropped step) that continue consistently to a wrong answer.

Hard problems may carry a *trap*: one +/- operation is worded so that it reads like the opposite one
(TRAP_CLAUSES). The policy's bootstrap SFT misreads a trap on most samples (`misread_solution`), so its
mistakes on such a problem are correlated — the same wrong step and the same wrong answer on most samples —
as a real policy's are on a hard problem; majority voting then fails where a verifier can still help.

Rows are plain JSON-able values: {id, problem, answer, level, solution, program}, where program =
{start, ops, operands, name, item, pronoun, clauses, trap} is the operation chain the checker follows
(trap = index of the trap operation, or -1).
"""
from __future__ import annotations

import random
import re
from typing import Any, Sequence

from ttscale.data.steps import join_steps, split_steps

LEVELS = (1, 2, 3, 4, 5)
NAMES = [("Mia", "she"), ("Tom", "he"), ("Ava", "she"), ("Leo", "he"), ("Zoe", "she"), ("Sam", "he"),
         ("Ivy", "she"), ("Max", "he")]
ITEMS = ["apples", "marbles", "stickers", "coins", "cards", "shells", "pens", "books"]
# Clause templates per operation; {p} = pronoun, {k} = operand. Used both in the problem and in the step.
CLAUSES = {
    "+": ["{p} buys {k} more", "{p} finds {k} more", "{p} is given {k} more"],
    "-": ["{p} gives away {k}", "{p} loses {k}", "{p} sells {k}"],
    "*": ["{p} ends up with {k} times as many"],
    "/": ["{p} splits them into {k} equal piles and keeps one pile"],
}
# Misleading wordings: each states the operation through a word of the opposite one ("lost", "more"), the
# kind of misreading a real policy repeats on most samples of a problem (a systematic, not a random, error).
TRAP_CLAUSES = {
    "+": "{p} wins back {k} that {p} had lost",
    "-": "{p} packs {k} more into a gift box for a friend",
}
# Per level: number of operations, start range, max add/sub operand, multipliers/divisors, allowed
# operations, and the largest quantity a chain may reach. Difficulty = more steps + bigger numbers.
# Additions never carry and subtractions never borrow (digit by digit): a verifier of a few hundred
# thousand parameters cannot learn to check carries (measured: pairwise accuracy 0.54 on carry slips after
# 3,000 PRM steps), so the mistakes that decide the toy world are the ones a small PRM can see
# (wrong operand, wrong operation, a skipped step), as a verifier's checks are in real math.
# `trap`: the probability that a problem words one +/- operation with a trap clause (harder problems more).
LEVEL_SPEC = {
    1: dict(n_ops=2, start=(2, 9), max_k=9, mul=(2,), ops="+-", max_value=30, trap=0.0),
    2: dict(n_ops=3, start=(2, 20), max_k=9, mul=(2,), ops="+-", max_value=50, trap=0.15),
    3: dict(n_ops=4, start=(5, 30), max_k=9, mul=(2,), ops="+-*", max_value=60, trap=0.35),
    4: dict(n_ops=5, start=(5, 40), max_k=9, mul=(2,), ops="+-*/", max_value=80, trap=0.5),
    5: dict(n_ops=6, start=(10, 50), max_k=9, mul=(2,), ops="+-*/", max_value=99, trap=0.5),
}


def _no_carry(a: int, k: int, op: str) -> bool:
    """a + k without a carry / a - k without a borrow, in every digit."""
    while k:
        da, dk = a % 10, k % 10
        if (op == "+" and da + dk > 9) or (op == "-" and dk > da):
            return False
        a, k = a // 10, k // 10
    return True


SYMBOLS = {"+": "+", "-": "-", "*": "*", "x": "*", "×": "*", "/": "/", "÷": "/"}
EQUATION_RE = re.compile(r"(-?\d+)\s*([+\-*x×/÷])\s*(-?\d+)\s*=\s*(-?\d+)")
BOXED_RE = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")
ANSWER_SUFFIX = "The answer is \\boxed{{{}}}."


def apply_op(value: int, op: str, k: int) -> int:
    """The exact result; division that does not divide rounds down (only wrong solutions do that)."""
    if op == "+":
        return value + k
    if op == "-":
        return value - k
    if op == "*":
        return value * k
    if op == "/":
        return value // k
    raise ValueError(f"unknown operation {op!r} (expected one of + - * /)")


def _values(program: dict[str, Any]) -> list[int]:
    """Quantities before the first and after every operation (len = n_ops + 1)."""
    vals = [int(program["start"])]
    for op, k in zip(program["ops"], program["operands"]):
        vals.append(apply_op(vals[-1], op, int(k)))
    return vals


def _misread_values(program: dict[str, Any]) -> list[int] | None:
    """Quantities along the trap's misreading (its operation flipped, the rest followed), None without a trap."""
    i = program.get("trap", -1)
    if i < 0:
        return None
    vals = _values(program)[:i + 1]
    for j, (op, k) in enumerate(zip(program["ops"][i:], program["operands"][i:]), start=i):
        vals.append(apply_op(vals[-1], _WRONG_OP[op] if j == i else op, int(k)))
    return vals


def _clause(program: dict[str, Any], i: int, k: int | None = None) -> str:
    return program["clauses"][i].format(p=program["pronoun"], k=program["operands"][i] if k is None else k)


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def problem_text(program: dict[str, Any]) -> str:
    """The start quantity, then one sentence per operation in order (each states its operand)."""
    sentences = [f"{program['name']} has {program['start']} {program['item']}."]
    sentences += [f"{_capital(_clause(program, i))}." for i in range(len(program["ops"]))]
    sentences.append(f"How many {program['item']} does {program['pronoun']} have now?")
    return " ".join(sentences)


def format_step(program: dict[str, Any], i: int, a: int, op: str, k: int, c: int, last: bool,
                clause_k: int | None = None) -> str:
    """One short step: the clause of operation i (as the problem says it), then the equation `a op k = c`
    (and the answer if last). Restating the clause lets a tiny model find its place in the problem."""
    step = f"{_capital(_clause(program, i, clause_k))}: {a} {op} {k} = {c}."
    return step + (" " + ANSWER_SUFFIX.format(c) if last else "")


def reference_solution(program: dict[str, Any]) -> str:
    vals = _values(program)
    n = len(program["ops"])
    return join_steps([format_step(program, i, vals[i], program["ops"][i], int(program["operands"][i]),
                                   vals[i + 1], last=i == n - 1) for i in range(n)])


def generate_problems(n: int, seed: int = 0, levels: Sequence[int] = LEVELS) -> list[dict[str, Any]]:
    """`n` problems, levels in round-robin order; same seed, same rows."""
    levels = list(levels)
    bad = [lv for lv in levels if lv not in LEVEL_SPEC]
    if not levels or bad:
        raise ValueError(f"toy world levels must be among {list(LEVELS)}; got {list(levels)}")
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        level = levels[i % len(levels)]
        while True:
            start = rng.randint(*LEVEL_SPEC[level]["start"])
            program = _sample_chain(level, start, rng)
            if program is None:
                continue
            vals = _values(program)
            # A prefix that stops early must never hit the gold answer by accident (keeps labels exact).
            if vals[-1] not in vals[:-1]:
                break
        rows.append({"id": f"toy-{seed}-{i:05d}", "problem": problem_text(program), "answer": str(vals[-1]),
                     "level": level, "solution": reference_solution(program), "program": program})
    return rows


def _sample_chain(level: int, start: int, rng: random.Random) -> dict[str, Any] | None:
    spec = LEVEL_SPEC[level]
    value, ops, operands = start, [], []
    for _ in range(spec["n_ops"]):
        choices = []
        for op, hi in (("+", min(spec["max_k"], spec["max_value"] - value)), ("-", min(spec["max_k"], value - 1))):
            ks = [k for k in range(1, hi + 1) if _no_carry(value, k, op)] if op in spec["ops"] else []
            if ks:
                choices.append((op, rng.choice(ks)))
        if "*" in spec["ops"]:
            ks = [k for k in spec["mul"] if value * k <= spec["max_value"]]
            if ks:
                choices.append(("*", rng.choice(ks)))
        if "/" in spec["ops"]:
            # digit by digit, like the carry-free +/-: 86 / 2 = 43, never 58 / 2 = 29
            ks = [k for k in spec["mul"] if value // k > 1 and all(int(d) % k == 0 for d in str(value))]
            if ks:
                choices.append(("/", rng.choice(ks)))
        if not choices:  # a dead end (e.g. 30 at its level's maximum): the caller draws a new chain
            return None
        op, k = rng.choice(choices)
        ops.append(op)
        operands.append(k)
        value = apply_op(value, op, k)
    name, pronoun = rng.choice(NAMES)
    program = {"start": start, "ops": ops, "operands": operands, "name": name, "pronoun": pronoun,
               "item": rng.choice(ITEMS), "clauses": [rng.choice(CLAUSES[op]) for op in ops], "trap": -1}
    addsub = [i for i, op in enumerate(ops) if op in TRAP_CLAUSES]
    if addsub and rng.random() < spec["trap"]:
        i = rng.choice(addsub)
        trapped = {**program, "trap": i, "clauses": [*program["clauses"][:i], TRAP_CLAUSES[ops[i]],
                                                       *program["clauses"][i + 1:]]}
        wrong = _misread_values(trapped)
        # Only a misreading that stays a count and ends on a wrong answer is a trap.
        if min(wrong) >= 0 and wrong[-1] != _values(program)[-1]:
            program = trapped
    return program


def _program(row: dict[str, Any]) -> dict[str, Any]:
    program = row.get("program")
    if not isinstance(program, dict) or not {"start", "ops", "operands"} <= set(program):
        raise ValueError(f"row {row.get('id', '?')!r}: needs a toy-world `program` column "
                         "({start, ops, operands, ...}); make rows with ttscale.data.toy_world.generate_problems")
    return program


def final_answer(solution_text: str) -> str | None:
    """The last \\boxed{integer} in a solution, or None."""
    found = BOXED_RE.findall(solution_text)
    return str(int(found[-1])) if found else None


def check_steps(problem_row: dict[str, Any], solution_text: str) -> list[bool]:
    """True correctness of each step of any solution (steps from split_steps).

    Step j is correct iff it states exactly one equation, and that equation is operation j of the program
    applied to the TRUE current quantity with the right result (so steps continuing from a wrong value
    are wrong). Only the last step of the solution may give a \\boxed answer, and it is correct only if
    it is the last operation and the answer equals the gold answer. Unparseable steps are wrong.
    """
    program = _program(problem_row)
    vals = _values(program)
    n = len(program["ops"])
    gold = str(problem_row["answer"]).strip()
    steps = split_steps(solution_text)
    labels = []
    for j, step in enumerate(steps):
        eqs = EQUATION_RE.findall(step)
        boxed = BOXED_RE.findall(step)
        ok = j < n and len(eqs) == 1
        if ok:
            a, sym, k, c = eqs[0]
            ok = (int(a), SYMBOLS[sym], int(k), int(c)) == (vals[j], program["ops"][j],
                                                            int(program["operands"][j]), vals[j + 1])
        if j == len(steps) - 1:
            ok = ok and j == n - 1 and len(boxed) == 1 and str(int(boxed[0])) == gold
        else:
            ok = ok and not boxed
        labels.append(ok)
    return labels


def first_mistake(problem_row: dict[str, Any], steps: Sequence[str]) -> tuple[int, str] | None:
    """(index, kind) of a solution's first wrong step, None if every step is right. Kind: operation, operand,
    slip (right equation, wrong result), drop (the step does the next operation: one was skipped), copy (the
    step starts from a wrong quantity), answer (right equation, but the answer comes too early or is
    missing), extra (a step after the last operation), or other (not one equation)."""
    labels = check_steps(problem_row, join_steps(steps))
    if all(labels):
        return None
    j = labels.index(False)
    program = _program(problem_row)
    vals, ops, ks = _values(program), program["ops"], [int(k) for k in program["operands"]]
    if j >= len(ops):
        return j, "extra"
    eqs = EQUATION_RE.findall(steps[j])
    if len(eqs) != 1:
        return j, "other"
    a, sym, k, c = int(eqs[0][0]), SYMBOLS[eqs[0][1]], int(eqs[0][2]), int(eqs[0][3])
    if a != vals[j]:
        return j, "copy"
    if j + 1 < len(ops) and (sym, k) == (ops[j + 1], ks[j + 1]) != (ops[j], ks[j]):
        return j, "drop"
    if sym != ops[j]:
        return j, "operation"
    if k != ks[j]:
        return j, "operand"
    return j, "slip" if c != apply_op(a, sym, k) else "answer"


_WRONG_OP = {"+": "-", "-": "+", "*": "+", "/": "*"}
MISTAKE_KINDS = ("slip", "operand", "operation", "drop")


def _wrong_step(program: dict[str, Any], i: int, a: int, kind: str, rng: random.Random):
    """(op, k, c, clause_k) for a wrong version of step i on the true value a, or None if `kind` can't apply."""
    op, k = program["ops"][i], int(program["operands"][i])
    if kind == "slip":  # off by a little, or a dropped carry
        return op, k, apply_op(a, op, k) + rng.choice([-3, -2, -1, 1, 2, 3, -10, 10]), k
    if kind == "operand":  # misread operand; the clause still states the true one
        if op in "+-":
            alts = [k + d for d in (-2, -1, 1, 2) if k + d > 0]
        elif op == "*":
            alts = [m for m in (2, 3, 4, 5) if m != k]
        else:
            alts = [m for m in (2, 3, 4, 5) if m != k and a % m == 0]
        if not alts:
            return None
        k2 = rng.choice(alts)
        return op, k2, apply_op(a, op, k2), k
    if kind == "operation":
        op2 = _WRONG_OP[op]
        return op2, k, apply_op(a, op2, k), k
    raise ValueError(f"unknown mistake kind {kind!r}")


def check_mistake_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in MISTAKE_KINDS]
    if not kinds or bad:
        raise ValueError(f"mistake kinds must be among {list(MISTAKE_KINDS)}; got {list(kinds)}")
    return kinds


def _continued(program: dict[str, Any], i: int, value: int, wrong_step: str | None) -> tuple[list[str], int]:
    """Reference steps before i, then `wrong_step` (None = step i skipped), then the remaining operations
    applied consistently to the wrong `value`. Returns (steps, final value)."""
    vals, n = _values(program), len(program["ops"])
    steps = [format_step(program, j, vals[j], program["ops"][j], int(program["operands"][j]),
                         vals[j + 1], last=j == n - 1) for j in range(i)]
    if wrong_step is not None:
        steps.append(wrong_step)
    for j in range(i + 1, n):
        op, k = program["ops"][j], int(program["operands"][j])
        new = apply_op(value, op, k)
        steps.append(format_step(program, j, value, op, k, new, last=j == n - 1))
        value = new
    return steps, value


def misread_solution(problem_row: dict[str, Any]) -> str | None:
    """The policy's systematic mistake on a trap problem: the trap operation read as its opposite, the rest
    followed consistently (always the same text, so every misreading sample reaches the same wrong answer);
    None when the problem has no trap."""
    program = _program(problem_row)
    wrong = _misread_values(program)
    if wrong is None:
        return None
    i, n = program["trap"], len(program["ops"])
    step = format_step(program, i, wrong[i], _WRONG_OP[program["ops"][i]], int(program["operands"][i]),
                       wrong[i + 1], last=i == n - 1)
    return join_steps(_continued(program, i, wrong[i + 1], step)[0])


def inject_mistake(problem_row: dict[str, Any], rng: random.Random,
                   kinds: Sequence[str] = MISTAKE_KINDS) -> tuple[str, int]:
    """A plausible wrong solution: steps before index i are right, step i is wrong (one of `kinds`: slip,
    wrong operand, wrong operation, or a dropped step), and later steps continue consistently from the
    wrong value to a wrong boxed answer. Returns (solution_text, i)."""
    kinds = check_mistake_kinds(kinds)
    program = _program(problem_row)
    vals = _values(program)
    n = len(program["ops"])
    for _ in range(50):
        i = rng.randrange(n)
        kind = rng.choice(kinds)
        if kind == "drop":
            same_next = i + 1 < n and (program["ops"][i], program["operands"][i]) == \
                (program["ops"][i + 1], program["operands"][i + 1])
            if i == n - 1 or same_next:  # dropping the last step or a repeated one is not detectable at i
                continue
            steps, value = _continued(program, i, vals[i], None)
        else:
            wrong = _wrong_step(program, i, vals[i], kind, rng)
            if wrong is None:
                continue
            op, k, value, clause_k = wrong
            steps, value = _continued(program, i, value, format_step(program, i, vals[i], op, k, value,
                                                                     last=i == n - 1, clause_k=clause_k))
        text = join_steps(steps)
        labels = check_steps(problem_row, text)
        # Rounded-down division can re-converge on the true path; such a "mistake" would not be one.
        if value >= 0 and all(labels[:i]) and not any(labels[i:]) and final_answer(text) != problem_row["answer"]:
            return text, i
    raise RuntimeError(f"row {problem_row.get('id', '?')!r}: could not inject a mistake in 50 tries")
