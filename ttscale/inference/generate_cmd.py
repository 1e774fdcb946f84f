"""`ttscale generate`: sample solutions (or single steps) for a problem set with any generation backend.

Writes one row per sample: {id, problem, sample, completion, num_tokens, finish_reason, answer,
extracted_answer, correct} (+ the policy's prompt settings in a sibling config.yaml), readable by
`build-revisions --samples` and by any user tool. `answer` is the gold answer (null when the problem has
none), `extracted_answer` the sample's final answer (null when it gives none), `correct` whether they agree
(null without gold).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ttscale.config import field, overrides, to_yaml
from ttscale.data.answers import extract_answer, grade_many
from ttscale.data.io import write_table
from ttscale.data.problems import ProblemArgs
from ttscale.data.steps import build_prompt
from ttscale.distributed.executor import ExecutorArgs, Work, make_executor
from ttscale.inference.base import SamplingParams
from ttscale.inference.loading import GeneratorArgs
from ttscale.inference.sampling_args import SamplingArgs


@dataclass(kw_only=True)
@overrides(temperature=0.7)
class Config(ExecutorArgs, SamplingArgs, GeneratorArgs, ProblemArgs):
    """Sample step-by-step solutions for a problem set."""
    output: str = field(help="output folder: OUT/samples.jsonl (one row per sample: completion, extracted answer, "
                        "correct) and OUT/config.yaml; a path ending in .jsonl or .parquet (the old form) still "
                        "writes that file, for one release, with a notice", positional=True, run_key=False)
    allow_missing_answer: bool = field(True, help="keep problems without a gold answer (sampling needs none)")
    n: int = field(1, ge=1, help="samples per problem (sample j of a problem never depends on the other problems)")
    until: str = field("solution", choices=["solution", "step"],
                       help="solution: sample whole solutions (stop at EOS / --stop); step: stop after the first "
                            "step (at the step delimiter)")
    stop: list[str] = field(default_factory=list, help="extra stop strings (kept in the completion)")
    system: str | None = field(None, help="system message for chat-template prompts")
    problems_per_call: int = field(64, ge=1, run_key=False,
                                   help="problems sent to the backend per call (progress is shown per call; "
                                        "with --executor ray, the unit a replica takes from the queue)")

    def __post_init__(self):
        if not self.problems:
            raise ValueError("give the problem set with --problems FILE")

    def sampling(self) -> SamplingParams:
        stops = tuple(self.stop) + ((self.step_delimiter,) if self.until == "step" else ())
        return self.params(self.n, stop=stops)


@dataclass
class GenerateWork(Work):
    """One generation replica (the executor's Work): the policy loaded once, then one call's problems each."""
    cfg: Config

    def setup(self, replica: int | None):
        return self.cfg.build()

    def run(self, generator, problems: list[tuple[str, str, str | None]]) -> list[dict]:
        """(id, problem, gold answer) per problem -> one row per sample (graded by the driver, in one pool)."""
        prompts = [build_prompt(text, generator.tokenizer, self.cfg.system) for _, text, _ in problems]
        outs = generator.generate(prompts, self.cfg.sampling())
        return [{"id": pid, "problem": text, "sample": j, "completion": c.text, "num_tokens": c.num_tokens,
                 "finish_reason": c.finish_reason, "answer": gold, "extracted_answer": extract_answer(c.text)}
                for (pid, text, gold), samples in zip(problems, outs) for j, c in enumerate(samples)]


def run(cfg: Config) -> int:
    problems = cfg.load()
    pairs = list(zip(problems["id"], problems["problem"], problems["answer"]))
    calls = range(0, len(pairs), cfg.problems_per_call)
    done: dict[int, list[dict]] = {}   # call number -> its rows (a Ray pool finishes them out of order)
    bar = tqdm(total=len(calls), desc="problems", unit="call", disable=len(calls) <= 1)

    def keep(i: int, rows: list[dict]) -> None:
        done[i] = rows
        bar.update(1)

    t0 = time.perf_counter()
    make_executor(cfg).map_parts(((i, pairs[s:s + cfg.problems_per_call]) for i, s in enumerate(calls)),
                                 GenerateWork(cfg), keep)
    bar.close()
    rows = [r for i in sorted(done) for r in done[i]]
    elapsed = time.perf_counter() - t0
    graded = [r for r in rows if r["answer"] is not None]
    verdicts = dict(zip(map(id, graded), grade_many((r["completion"], r["answer"]) for r in graded)))
    for r in rows:
        r["correct"] = verdicts.get(id(r))
    out = Path(cfg.output)
    if out.suffix.lower() in (".jsonl", ".json", ".parquet"):   # the old form: a file, its config beside it
        print(f"ttscale generate: warning: writing a file ({out}) is deprecated and goes in the next release; give "
              f"a folder (OUT/samples.jsonl, OUT/config.yaml), as every other producing stage takes", file=sys.stderr)
        path, config_path = write_table(rows, out), out.with_name(out.stem + ".config.yaml")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path, config_path = write_table(rows, out / "samples.jsonl"), out / "config.yaml"
    config_path.write_text(to_yaml(cfg))
    tokens = sum(r["num_tokens"] for r in rows)
    reasons = {k: sum(r["finish_reason"] == k for r in rows) for k in ("stop", "eos", "length")}
    print(f"wrote {len(rows)} samples for {len(problems)} problems to {path} "
          f"({tokens} tokens in {elapsed:.1f}s, {tokens / max(elapsed, 1e-9):.1f} tok/s; finish {reasons})")
    if graded:
        right = sum(r["correct"] for r in graded)
        print(f"correct: {right} of {len(graded)} samples with a gold answer ({right / len(graded):.1%})")
    return 0
