"""`ttscale build-revisions OUTPUT --problems FILE --policy MODEL`: revision training data (Snell et al. §6.1).

Samples --samples-per-problem answers per problem from the policy (or reads answers already generated, e.g. by
`ttscale generate`, with --samples FILE), grades them, and writes one row per correct answer:
{id, problem_id, problem, prompt_attempts, target, num_incorrect, kept} (see ttscale.data.revisions).
`ttscale train-revision OUTPUT ...` trains on these rows.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from ttscale.config import OMIT, field, overrides, tweak
from ttscale.data.problems import ProblemArgs
from ttscale.inference.loading import GeneratorArgs
from ttscale.inference.sampling_args import SamplingArgs


@dataclass(kw_only=True)
@overrides(max_new_tokens=256, step_delimiter=OMIT,   # answers are graded whole: steps play no part
           seed=tweak(help="seed for sampling and for choosing the attempts; same seed, same rows"))
class Config(SamplingArgs, GeneratorArgs, ProblemArgs):
    """Revision training data: 0-4 wrong attempts (the closest by edit distance last), then a correct answer."""
    output: str = field(help="where to write the revision rows: .jsonl, .parquet, or a datasets folder",
                        positional=True, run_key=False)
    policy: str = field("", help="policy model to sample answers from (a save_pretrained dir, hub id, adapter dir, "
                        ".gguf, or the served model name for backend openai); not needed with --samples")
    samples: str = field("", help="use answers already generated instead of sampling: a table with rows "
                         "{id, completion} (e.g. the output of `ttscale generate`), several rows per problem id, "
                         "or a `ttscale label` dataset (rows {problem_id, steps}: the labelled solutions, reused)")
    samples_per_problem: int = field(16, ge=1, help="answers sampled per problem (Snell et al. use 64)")
    max_incorrect: int = field(4, ge=0, help="most incorrect attempts put in context before a correct answer")
    keep_rate: float = field(0.0, ge=0.0, le=1.0, help="share of rows whose context ends with a CORRECT answer "
                             "(after 0 to max-incorrect - 1 incorrect ones), so the model learns to keep a right "
                             "answer it is shown, as a revision chain shows it its own attempts; 0 = Snell et al.'s "
                             "data (only incorrect attempts in context)")
    prompt_batch: int = field(16, ge=1, run_key=False, help="problems per generate call (progress is shown per call)")
    save_samples: str = field("", run_key=False, help="also write the sampled answers {id, completion, "
                              "finish_reason} here, to reuse them with --samples")

    def __post_init__(self):
        if not self.samples and not self.policy:
            raise ValueError("give --policy MODEL to sample answers, or --samples FILE with answers already generated")


def read_samples(path: str, problem_ids: set[str]) -> dict[str, list[str]]:
    """Answers per problem id from a {id, completion} table, or from a label dataset's {problem_id, steps}
    rows (steps joined as the policy wrote them); errors name the file, row and column."""
    from ttscale.data.io import read_table
    from ttscale.data.steps import join_steps

    from pathlib import Path

    if (Path(path) / "samples.jsonl").is_file():   # a `ttscale generate` folder
        path = str(Path(path) / "samples.jsonl")
    table = read_table(path)
    labelled = {"problem_id", "steps"} <= set(table.column_names)
    missing = set() if labelled else {"id", "completion"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; --samples rows need 'id' (the problem id) "
                         f"and 'completion' (one answer), or 'problem_id' and 'steps' (a `ttscale label` dataset)")
    samples: dict[str, list[str]] = {}
    unknown: set[str] = set()
    for i, row in enumerate(table):
        if labelled:
            if not isinstance(row["steps"], (list, tuple)):
                raise ValueError(f"{path}: row {i}: 'steps' must be a list of strings, got {type(row['steps']).__name__}")
            pid, text = str(row["problem_id"]), join_steps(row["steps"])
        else:
            pid, text = str(row["id"]), row["completion"]
        if not isinstance(text, str):
            raise ValueError(f"{path}: row {i}: 'completion' must be a string, got {type(text).__name__}")
        if pid not in problem_ids:
            unknown.add(pid)
            continue
        samples.setdefault(pid, []).append(text)
    if unknown:
        print(f"{path}: ignored answers for {len(unknown)} id(s) not in the problem set (e.g. {sorted(unknown)[0]!r})")
    return samples


def sample_answers(generator: Any, problems: Sequence[dict[str, Any]], cfg: Config) -> dict[str, list[Any]]:
    """Completions per problem id, sampled `samples_per_problem` times from the policy prompt."""
    from tqdm.auto import tqdm

    from ttscale.data.steps import build_prompt

    params = cfg.params(cfg.samples_per_problem)
    tokenizer = getattr(generator, "tokenizer", None)
    out: dict[str, list[Any]] = {}
    with tqdm(total=len(problems), desc="sampling answers", unit="problem") as bar:
        for start in range(0, len(problems), cfg.prompt_batch):
            chunk = problems[start:start + cfg.prompt_batch]
            # A completion depends only on (prompt, params, index), so chunking does not change the samples.
            results = generator.generate([build_prompt(p["problem"], tokenizer) for p in chunk], params)
            for p, completions in zip(chunk, results):
                out[str(p["id"])] = completions
            bar.update(len(chunk))
    return out


def run(cfg: Config) -> int:
    from ttscale.data.io import write_table
    from ttscale.data.revisions import build_revision_examples, grade_samples

    problems = cfg.load().to_list()
    if cfg.samples:
        samples = read_samples(cfg.samples, {str(p["id"]) for p in problems})
    else:
        completions = sample_answers(cfg.build(), problems, cfg)
        samples = {pid: [c.text for c in cs] for pid, cs in completions.items()}
        if cfg.save_samples:
            write_table([{"id": pid, "completion": c.text, "num_tokens": c.num_tokens,
                          "finish_reason": c.finish_reason} for pid, cs in completions.items() for c in cs],
                        cfg.save_samples)
    verdicts = grade_samples(problems, samples)
    rows = build_revision_examples(problems, samples, max_incorrect=cfg.max_incorrect, seed=cfg.seed,
                                   keep_rate=cfg.keep_rate, verdicts=verdicts)
    path = write_table(rows, cfg.output)
    flags = [ok for v in verdicts.values() for ok in v]
    # Every correct answer asks for a row; repeats of a trajectory are not written (see data.revisions).
    repeats = sum(flags) - len(rows)
    summary = {"problems": len(problems), "answers": len(flags),
               "accuracy": round(sum(flags) / len(flags), 4) if flags else None,
               "problems_with_a_correct_answer": sum(any(v) for v in verdicts.values()),
               "problems_with_an_incorrect_answer": sum(not all(v) for v in verdicts.values() if v),
               "correct_answers": sum(flags),
               "rows": len(rows),
               "repeats_not_written": repeats,
               "attempts_in_context": dict(sorted(Counter(r["num_incorrect"] for r in rows).items())),
               "rows_keeping_a_correct_attempt": sum(r["kept"] for r in rows)}
    print(f"wrote {len(rows)} revision rows to {path}\n{json.dumps(summary, indent=2)}")
    if repeats:
        print(f"{sum(flags)} correct answers give only {len(rows)} distinct (problem, attempts, target) rows: "
              f"the other {repeats} would repeat a row (identical correct answers with too few distinct wrong "
              f"ones); sample more answers or more problems for more data")
    if not rows:
        print("no revision rows: no sampled answer was correct; sample more answers or use easier problems")
        return 1
    return 0

