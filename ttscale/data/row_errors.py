"""One problem that cannot be processed never ends a batched job (`search`, `label`): `--on-error`.

A stage runs its problems in batches. When a batch raises a per-row error (a PRM input longer than
max_length, a step the tokenizer cannot place, a model call failing on that input), the batch is rerun one
problem at a time, so only the failing problems are lost; each problem's output is independent of its batch
(the generator contract), so the others' results are the same as in a run without the bad rows. The lost
problems are recorded as {id, stage, reason} in a sidecar beside the part (parts/part-CCCCC.skipped.jsonl,
written before the part's atomic rename, so a part and its sidecar always agree) and joined into
OUTPUT_DIR/skipped.jsonl when the run is finalised. `--on-error fail` stops at the first failing problem
with a one-line error naming it.

Only ValueError (which StepAlignmentError and UserError are) and RuntimeError (what torch and the backends
raise on a bad input) count as per-row; anything else is a bug and propagates. When every problem of a
batch fails with the same error type, it is a setup error, not a bad row: the original error is raised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from ttscale.config import field
from ttscale.errors import UserError

ON_ERROR = ("skip", "fail")
ROW_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError)
T = TypeVar("T")


@dataclass(kw_only=True)
class OnErrorArgs:
    """What a batched stage does with a problem it cannot process (inherited by search and label)."""
    # A run key: skipping changes which rows a run holds, so a resume must use the same choice.
    on_error: str = field("skip", choices=list(ON_ERROR),
                          help="a problem that cannot be processed (a PRM input longer than its max length, a "
                          "generation or scoring failure on that problem): skip it (listed in "
                          "OUTPUT_DIR/skipped.jsonl, counted in the summary) or fail (stop the job there)")


class RowError(UserError):
    """A problem that could not be processed, under --on-error fail; names the problem and the reason."""


def reason_of(e: BaseException) -> str:
    """One line: the error's type (unless it is a user error, whose message says it all) and message."""
    text = " ".join(str(e).split())
    return text if isinstance(e, UserError) else f"{type(e).__name__}: {text}"


def run_per_problem(problems: list[dict], run: Callable[[list[dict]], T], *, stage: str,
                    on_error: str = "skip") -> tuple[list[tuple[list[dict], T]], list[dict]]:
    """([(problems, run(problems))] for the sub-batches that ran, [{id, stage, reason}] per problem lost).

    The whole batch runs at once; only when it raises a per-row error is it rerun problem by problem.
    """
    if on_error not in ON_ERROR:
        raise UserError(f"--on-error {on_error!r}: choose one of {', '.join(ON_ERROR)}")
    try:
        return [(problems, run(problems))], []
    except ROW_ERRORS as first:
        if len(problems) == 1:
            failures: list[tuple[dict, BaseException]] = [(problems[0], first)]
            done: list[tuple[list[dict], T]] = []
        else:
            done, failures = _one_by_one(problems, run, on_error, first)
        if on_error == "fail":
            p, e = failures[0]
            raise RowError(f"problem {p['id']}: {reason_of(e)} (--on-error skip skips such problems and "
                           f"lists them in skipped.jsonl)") from e
        return done, [{"id": str(p["id"]), "stage": stage, "reason": reason_of(e)} for p, e in failures]


def _one_by_one(problems: list[dict], run: Callable[[list[dict]], T], on_error: str,
                first: BaseException) -> tuple[list[tuple[list[dict], T]], list[tuple[dict, BaseException]]]:
    done: list[tuple[list[dict], T]] = []
    failures: list[tuple[dict, BaseException]] = []
    for p in problems:
        try:
            done.append(([p], run([p])))
        except ROW_ERRORS as e:
            failures.append((p, e))
            if on_error == "fail" and done:   # known not to be a setup error: stop here
                break
    if not done and all(type(e) is type(first) for _, e in failures):
        raise first   # every problem fails alike: a setup error or a bug, not a bad row
    return done, failures


def sidecar_path(part: Path) -> Path:
    return Path(part).with_suffix(".skipped.jsonl")


def write_sidecar(part: Path, skipped: list[dict]) -> None:
    """Record a part's skipped problems; call before the part's rename. A stale sidecar (from a killed
    attempt) is removed when nothing was skipped, so after the rename the pair is consistent."""
    from ttscale.data.io import write_table

    path = sidecar_path(part)
    if skipped:
        write_table(skipped, path)
    elif path.exists():
        path.unlink()


def join_sidecars(parts: list[Path], out: Path) -> list[dict]:
    """The skipped problems of the finished `parts`, in part order, also written to out/skipped.jsonl."""
    from ttscale.data.io import read_jsonl, write_table

    skipped = [row for p in parts if sidecar_path(p).exists() for row in read_jsonl(sidecar_path(p))]
    write_table(skipped, Path(out) / "skipped.jsonl")
    return skipped


def check_any_processed(n_processed: int, skipped: list[dict]) -> None:
    """A run whose every problem was skipped is a setup problem: say so instead of an empty dataset."""
    if not n_processed and skipped:
        raise UserError(f"no problem could be processed ({len(skipped)} skipped, listed in skipped.jsonl); "
                        f"first: problem {skipped[0]['id']}: {skipped[0]['reason']}")
