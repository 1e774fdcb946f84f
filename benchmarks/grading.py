"""Grading throughput (answers/s): correct and wrong answers on the fast path and through math-verify,
and a few hostile inputs. Run: `.venv/bin/python benchmarks/grading.py [--n 2000] [--seed 0]`."""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ttscale.data.answers import grade_many, is_correct, shutdown_grader  # noqa: E402


def _solution(answer: str) -> str:
    return f"First we add the parts.\n\nThen we simplify the result.\n\nThe answer is $\\boxed{{{answer}}}$."


def make_sets(n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    nums = [rng.randint(-999, 99_999) for _ in range(n)]
    # Terminating decimals only: plain numbers compare exactly, so 0.333 != 1/3 by design.
    fracs = [(rng.randint(1, 50), rng.choice([2, 4, 5, 8, 16, 20, 25, 40])) for _ in range(n)]
    sym = [rng.randint(2, 30) for _ in range(max(1, n // 20))]
    return {
        "fast: correct numbers": [(_solution(f"{x:,}"), str(x)) for x in nums],
        "fast: wrong numbers": [(_solution(str(x + 1)), str(x)) for x in nums],
        "fast: fractions vs decimals": [(_solution(str(a / b)), f"\\frac{{{a}}}{{{b}}}") for a, b in fracs],
        "math-verify: correct symbolic": [(_solution(f"\\sqrt{{{k * k * 2}}}"), f"{k}\\sqrt{{2}}") for k in sym],
        "math-verify: wrong symbolic": [(_solution(f"\\sqrt{{{k * k * 3}}}"), f"{k}\\sqrt{{2}}") for k in sym],
        "hostile (guarded)": [(_solution("10^{10^{10^{10}}}"), "5"), ("x" * 100_000, "5"),
                              (_solution("{" * 200 + "1" + "}" * 200), "2"), (_solution("(10^{10})!"), "5")],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="pairs per fast-path set (math-verify sets get n/20)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the generated answers")
    args = ap.parse_args()
    is_correct("\\sqrt{8}", "2\\sqrt{2}")  # boot the worker outside the timings
    print(f"{'set':34s} {'pairs':>6s} {'correct':>8s} {'seconds':>8s} {'answers/s':>10s}")
    for name, pairs in make_sets(args.n, args.seed).items():
        t0 = time.perf_counter()
        verdicts = grade_many(pairs)
        dt = time.perf_counter() - t0
        print(f"{name:34s} {len(pairs):6d} {sum(verdicts):8d} {dt:8.3f} {len(pairs) / dt:10.1f}")
    # One unguarded overrun: the worker is killed after timeout_s and replaced.
    t0 = time.perf_counter()
    verdict = is_correct("(x+1)^{999}", "x^{999}+1", timeout_s=2.0)
    print(f"{'hostile (worker timeout 2 s)':34s} {1:6d} {int(verdict):8d} {time.perf_counter() - t0:8.3f}")
    shutdown_grader()
    return 0


if __name__ == "__main__":
    sys.exit(main())
