"""Scale-out overhead: rollouts/s in-process vs the Ray executor with 1 and 2 replicas, and the cost per part.

Every configuration runs the same parts (each: --prompts-per-part prompts x --rollouts samples from a tiny
policy) through the executor interface the stages use (`make_executor(...).map_parts`). Ray figures are
given twice: over the whole run (cluster join, actor start and model load included) and from the first
finished part on (steady state). The per-part overhead is a no-op Work sent through 1 replica: the round
trip of one part (submit, ray.wait, result back) in ms, which is what Ray adds to every part of a run.
On a 2-core machine 2 replicas cannot gain much; the point is that the overhead stays small.

    .venv/bin/python benchmarks/scale_out.py --parts 12
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ttscale.data.steps import build_prompt  # noqa: E402
from ttscale.distributed.executor import ExecutorArgs, Work, make_executor  # noqa: E402
from ttscale.inference.base import SamplingParams  # noqa: E402
from ttscale.inference.loading import GeneratorArgs  # noqa: E402

PROBLEMS = [f"Tom has {a} apples and buys {(a * 7) % 13} more. How many apples does he have?" for a in range(64)]


@dataclass
class Rollouts(Work):
    """A part = a few prompts, `n` sampled rollouts each (labelling's unit of work, without grading)."""
    policy: str
    n: int
    max_new_tokens: int

    def setup(self, replica):
        return GeneratorArgs(policy=self.policy, device="cpu", threads=1).build()

    def run(self, gen, prompts):
        outs = gen.generate(prompts, SamplingParams(n=self.n, temperature=0.8, max_new_tokens=self.max_new_tokens,
                                                    seed=0))
        return sum(len(o) for o in outs)


@dataclass
class Noop(Work):
    def setup(self, replica):
        return None

    def run(self, state, payload):
        return payload


def tiny_policy(folder: Path) -> str:
    from ttscale.train.tiny import tiny_causal_lm, train_tokenizer

    tok = train_tokenizer(PROBLEMS + [build_prompt(p) for p in PROBLEMS[:4]], vocab_size=400)
    tiny_causal_lm(tok, hidden_size=64, num_layers=2).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def timed(args: ExecutorArgs, work: Work, parts: list) -> dict:
    times: list[float] = []
    total = 0

    def write(part, result):
        nonlocal total
        total += result if isinstance(result, int) else 0
        times.append(time.perf_counter())

    t0 = time.perf_counter()
    make_executor(args).map_parts(enumerate(parts), work, write)
    end = time.perf_counter()
    steady = (total - total / len(parts)) / (times[-1] - times[0]) if len(times) > 1 else None
    return {"seconds": round(end - t0, 2), "rollouts_per_s": round(total / (end - t0), 1),
            "steady_rollouts_per_s": round(steady, 1) if steady else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default=None, help="policy folder (default: a tiny random LM built here)")
    ap.add_argument("--parts", type=int, default=12)
    ap.add_argument("--prompts-per-part", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--noop-parts", type=int, default=200)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    a = ap.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        policy = a.policy or tiny_policy(Path(tmp) / "policy")
        prompts = [build_prompt(p) for p in PROBLEMS]
        parts = [[prompts[(i * a.prompts_per_part + j) % len(prompts)] for j in range(a.prompts_per_part)]
                 for i in range(a.parts)]
        work = Rollouts(policy, a.rollouts, a.max_new_tokens)
        out = {"parts": a.parts, "rollouts_per_part": a.prompts_per_part * a.rollouts,
               "in_process": timed(ExecutorArgs(), work, parts)}
        ray.init(num_cpus=a.cpus, include_dashboard=False, logging_level="WARNING")
        try:
            for n in (1, 2):
                out[f"ray_{n}_replica"] = timed(ExecutorArgs(executor="ray", replicas=n), work, parts)
            noop_parts = list(range(a.noop_parts))
            local = timed(ExecutorArgs(), Noop(), noop_parts)["seconds"]
            t: list[float] = []
            make_executor(ExecutorArgs(executor="ray", replicas=1)).map_parts(
                enumerate(noop_parts), Noop(), lambda p, r: t.append(time.perf_counter()))
            out["overhead_ms_per_part"] = round(1000 * (t[-1] - t[0]) / (len(t) - 1), 2)
            out["in_process_noop_ms_per_part"] = round(1000 * local / len(noop_parts), 4)
        finally:
            ray.shutdown()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
