"""PRM scoring throughput: candidates/s and tokens/s, batched vs one candidate per forward pass.

    PYTHONPATH=. .venv/bin/python benchmarks/prm_scoring.py --candidates 64 --batch-size 16 --threads 1

Candidates are toy-world solutions (reference and mistake-injected, 2-6 steps) from many problems, scored by
randomly initialised Llama-shaped PRMs of two sizes, as a token classifier and as a causal "+/-" LM.
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from ttscale.data.steps import split_steps
from ttscale.data.toy_world import generate_problems, inject_mistake
from ttscale.inference.prm_inputs import PRMSpec, add_step_tag
from ttscale.inference.scorers import make_scorer
from ttscale.train.tiny import tiny_model, train_tokenizer

SIZES = {  # name: (hidden, layers, heads)
    "tiny": (64, 2, 4),
    "small": (384, 8, 6),   # ~19M parameters with the 512-token vocabulary
}


def candidates(n: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    items = []
    for row in generate_problems((n + 1) // 2, seed=seed):
        items.append((row["problem"], split_steps(row["solution"])))
        wrong, _ = inject_mistake(row, rng)
        items.append((row["problem"], split_steps(wrong)))
    return items[:n]


def build_model(tokenizer, size: str, formulation: str, seed: int):
    hidden, layers, heads = SIZES[size]
    extra = {"num_labels": 2} if formulation == "token-classification" else {}
    return tiny_model(tokenizer, formulation, seed=seed, hidden_size=hidden, num_layers=layers, num_heads=heads,
                      max_position_embeddings=2048, **extra).eval()


def timed(scorer, items, repeats: int) -> tuple[float, float, float]:
    """Seconds per scoring of `items`, and the model calls and tokens it costs (from the scorer's usage)."""
    scorer.score(items[:2])  # warm-up (allocator, kernels)
    before = scorer.usage.snapshot()
    t0 = time.perf_counter()
    for _ in range(repeats):
        scorer.score(items)
    spent = scorer.usage - before
    return (time.perf_counter() - t0) / repeats, spent.calls / repeats, spent.tokens / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=64, help="candidates scored per measurement")
    ap.add_argument("--batch-size", type=int, default=16, help="candidates per forward pass in batched mode")
    ap.add_argument("--repeats", type=int, default=2, help="measurements averaged")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), help="model sizes to run")
    ap.add_argument("--seed", type=int, default=0, help="seed for problems and weights")
    ap.add_argument("--device", default="cpu", help="where the models run: cpu, cuda, ...")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="model weights' dtype (bfloat16 on a recent GPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    items = candidates(args.candidates, args.seed)
    tokenizer = train_tokenizer([p + "\n\n" + "\n\n".join(s) for p, s in items], vocab_size=512)
    add_step_tag(tokenizer)
    print(f"{len(items)} candidates, {sum(len(s) for _, s in items)} steps, torch threads {args.threads}, "
          f"{args.device} {args.dtype}")
    print(f"{'model':<6} {'formulation':<21} {'params':>7} {'mode':<12} {'cand/s':>8} {'tokens/s':>9} {'calls':>6}")
    for size in args.sizes:
        for formulation in ("token-classification", "causal-lm"):
            model = build_model(tokenizer, size, formulation, args.seed).to(args.device, getattr(torch, args.dtype))
            spec = PRMSpec(formulation=formulation)
            for mode, bs in (("batched", args.batch_size), ("one-by-one", 1)):
                scorer = make_scorer(model, tokenizer, spec, batch_size=bs, progress=False)  # the table is the output
                seconds, calls, tokens = timed(scorer, items, args.repeats)
                print(f"{size:<6} {formulation:<21} {scorer.num_params / 1e6:>6.1f}M {mode:<12} "
                      f"{len(items) / seconds:>8.1f} {tokens / seconds:>9.0f} {calls:>6.0f}")

if __name__ == "__main__":
    main()
