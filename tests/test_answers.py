"""Answer extraction, vote keys and grading (fast path + math-verify worker pool with timeouts)."""
from __future__ import annotations

import threading
import time

import pytest

from ttscale.data import answers
from ttscale.data.answers import answer_key, extract_answer, grade_many, is_correct


@pytest.fixture(scope="module", autouse=True)
def grader():
    """Boot the math-verify worker once (its start-up is not part of any timed case); stop it after."""
    assert is_correct("\\sqrt{8}", "2\\sqrt{2}")  # symbolic: needs the worker
    yield
    answers.shutdown_grader()


@pytest.mark.parametrize("text, expected", [
    ("So the total is \\boxed{42}.", "42"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{3}, then corrected: \\boxed{5}", "5"),                      # last box wins
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),                 # nested braces
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),                                        # escaped braces of a set
    ("$\\boxed{(1, 2)}$", "(1, 2)"),
    ("\\fbox{7}", "7"),
    ("so $\\boxed 9$ it is", "9"),                                               # \boxed without braces
    ("\\fbox{\\boxed{3}}", "3"),
    ("\\boxed{x = -3.5}", "x = -3.5"),
    ("\\boxed{1,234}", "1234"),                                                 # thousands separator
    ("\\boxed{1{,}000}", "1000"),
    ("\\boxed{\\!50\\,\\%}", "50\\%"),
    ("\\boxed{ 5. }", "5"),
    ("\\boxed{} and then \\boxed{8}", "8"),
    ("\\boxed{2 and never closed", None),
    ("The answer is $\\dfrac{3}{4}$.", "\\dfrac{3}{4}"),
    ("Thus, the final answer is 18 dollars. I hope it is correct.", "18 dollars"),
    ("The answer is: 3.5", "3.5"),
    ("Natalia sold 48+24 = 72 clips.\n#### 72", "72"),
    ("#### 1,080", "1080"),
    ("I am not sure what to do here.", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("\\boxed{42}", "42", True),
    ("\\boxed{41}", "42", False),
    ("0.5", "\\frac{1}{2}", True),
    ("\\dfrac12", "1/2", True),
    ("\\tfrac{1}{2}", "0.5", True),
    ("0.333", "\\frac{1}{3}", False),                      # plain numbers compare exactly
    ("1,000", "1000", True),
    ("-7", "-7", True),
    ("-7", "7", False),
    ("10.0", "10", True),
    ("50\\%", "50", True),                                  # documented: percent sign dropped
    ("0.5", "50\\%", False),
    ("30^\\circ", "30", True),
    ("5\\text{ cm}", "5", True),
    ("\\$18", "18", True),
    ("\\{2,1\\}", "\\{1,2\\}", True),                       # sets: order does not matter
    ("\\{1,3\\}", "\\{1,2\\}", False),
    ("(2,1)", "(1,2)", False),                              # tuples: order matters
    ("(1,2)", "(1, 2)", True),
    ("[1,2)", "[1,2)", True),
    ("\\sqrt{8}", "2\\sqrt{2}", True),                      # symbolic: math-verify
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", True),
    ("2\\pi", "\\pi", False),
    ("\\pi", "3.14", False),
    ("x + 1", "1 + x", True),
    ("x = 5", "5", True),
    ("\\text{Monday}", "monday", True),
    ("Tuesday", "Monday", False),
    ("Monday", "5", False),                                 # text vs number
    ("The answer is $\\frac{3}{4}$.", "0.75", True),
    ("We get 5 and then... #### 72", "72", True),
    ("first \\boxed{3} then \\boxed{4}", "3", False),       # the last box is the answer
    ("I give up.", "5", False),                             # no answer -> wrong
    (None, "5", False),
    ("\\boxed{5}", "The solution ends with \\boxed{5}.", True),  # gold given as a full solution
])
def test_is_correct(pred, gold, expected):
    assert is_correct(pred, gold) is expected


def test_grade_many_matches_is_correct():
    pairs = [("\\boxed{2}", "2"), ("\\sqrt{8}", "2\\sqrt{2}"), ("nothing", "2"), ("\\boxed{x+1}", "1+x"),
             ("\\boxed{3}", "2")]
    assert grade_many(pairs) == [is_correct(p, g) for p, g in pairs] == [True, True, False, True, False]


@pytest.mark.parametrize("group", [
    ["1/2", "\\frac{1}{2}", "0.5", "\\dfrac12", "$\\frac12$", "\\frac{2}{4}", ".5"],
    ["1,000", "1000", "1000.0", "\\$1,000", "1000 dollars"],
    ["50\\%", "50", "50%"],
    ["\\{1,2\\}", "\\{2, 1\\}", "\\{1,2,2\\}"],
    ["\\text{Monday}", "Monday", "monday"],
    ["\\sqrt2", "\\sqrt{2}", "\\sqrt {2}"],
    ["-3", "x = -3", "-3.0", "\\boxed{-3}", "So we get \\boxed{-3}."],
])
def test_answer_key_groups_equivalent_answers(group):
    keys = {answer_key(a) for a in group}
    assert len(keys) == 1, keys
    for a in group[1:]:  # the key and the grader agree
        assert is_correct(a, group[0])


@pytest.mark.parametrize("a, b", [
    ("1/2", "1/3"), ("(1,2)", "(2,1)"), ("(1,2)", "[1,2]"), ("\\{1,2\\}", "\\{1,3\\}"), ("5", "-5"),
    ("x+1", "x+2"), ("0.5", "50%"),
])
def test_answer_key_separates_different_answers(a, b):
    assert answer_key(a) != answer_key(b)


def test_answer_key_of_nothing():
    assert answer_key(None) == answer_key("") == ""


def _hostile() -> list[tuple[str, str]]:
    return [
        ("\\boxed{" + "{" * 200 + "1" + "}" * 200 + "}", "2"),
        ("\\boxed{" * 200 + "1" + "}" * 200, "2"),
        ("\\boxed{10^{10^{10^{10}}}}", "5"),
        ("\\boxed{9^{9^{9}}}", "5"),
        ("\\boxed{2^{100000000}}", "5"),
        ("\\boxed{100000000!}", "5"),
        ("\\boxed{(10^{10})!}", "5"),
        ("\\boxed{" + "1+" * 40000 + "1}", "40001"),
        ("x" * 100_000, "5"),
        ("The answer is " + "(" * 50_000, "5"),
        ("\\boxed{" * 20_000, "5"),
        ("\\boxed{__import__('os').system('echo pwned')}", "0"),
    ]


def _timed(pred: str, gold: str, timeout_s: float = 5.0) -> tuple[bool, float]:
    t0 = time.monotonic()
    verdict = is_correct(pred, gold, timeout_s=timeout_s)
    return verdict, time.monotonic() - t0


@pytest.mark.parametrize("pred, gold", _hostile())
def test_hostile_inputs_are_bounded(pred, gold):
    verdict, elapsed = _timed(pred, gold)
    assert verdict is False and elapsed < 6.5


def test_worker_timeout_kills_and_recovers():
    # Not caught by the shape guards: sympy expands a 999th power for a long time.
    verdict, elapsed = _timed("(x+1)^{999}", "x^{999}+1", timeout_s=1.0)
    assert verdict is False and 0.9 < elapsed < 6.5
    assert is_correct("\\sqrt{12}", "2\\sqrt{3}")  # a fresh worker took over


def test_bounded_off_the_main_thread():
    cases = _hostile()[:4] + [("(x+1)^{999}", "x^{999}+1"), ("\\sqrt{18}", "3\\sqrt{2}")]
    results: list[tuple[bool, float]] = []

    def work():
        for pred, gold in cases:
            if pred.startswith("(x+1)"):
                results.append(_timed(pred, gold, timeout_s=1.0))
            else:
                results.append(_timed(pred, gold))

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    assert [v for v, _ in results] == [False] * 5 + [True]
    # The last case may wait for the replacement worker to boot (not charged to the timeout).
    assert all(dt < 6.5 for _, dt in results[:5])


def test_concurrent_threads_get_their_own_verdicts():
    pairs = [("\\sqrt{8}", "2\\sqrt{2}"), ("\\sqrt{8}", "3\\sqrt{2}"), ("x^2-1", "(x-1)(x+1)"), ("2x", "x+x+1")]
    out: dict[int, bool] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, is_correct(*pairs[i]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert out == {0: True, 1: False, 2: True, 3: False}
