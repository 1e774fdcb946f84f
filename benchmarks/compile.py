"""Does `torch.compile` pay here? Eager vs compiled, measured in one run on the demo's own models.

    python benchmarks/compile.py --demo demo_out [--problems 20] [--steps 30]

decode: the transformers backend's forward (the decode engine's only model call) compiled with dynamic shapes
(the KV buffer grows, rows join and leave), N = 16 full solutions per problem; prints CPU seconds after a
warm-up call (which pays the compilation, printed apart) and whether the completions are identical.
train: forward + backward + AdamW steps of the PRM on fixed batches of the demo's labels, eager vs compiled
from the same initial weights; prints seconds per step and the largest loss difference.
One thread; run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
import warnings

import torch


def decode(args) -> dict:
    from ttscale.data.steps import build_prompt
    from ttscale.inference.base import SamplingParams
    from ttscale.inference.transformers_backend import TransformersGenerator

    problems = [json.loads(line) for line in open(f"{args.demo}/problems_test.jsonl")][:args.problems]
    sp = SamplingParams(n=16, temperature=0.8, max_new_tokens=160, seed=0)
    out = {}
    for mode in ("eager", "compiled"):
        gen = TransformersGenerator(f"{args.demo}/policy", batch_size=256, progress=False)
        if mode == "compiled":
            gen.model.forward = torch.compile(gen.model.forward, dynamic=True)
        prompts = [build_prompt(p["problem"], gen.tokenizer) for p in problems]
        t = time.process_time()
        try:
            gen.generate(prompts[:2], SamplingParams(n=2, temperature=0.8, max_new_tokens=20, seed=1))
        except Exception as e:    # a compiler failure is a result here: it says compile does not apply
            out.get("eager", {}).pop("texts", None)
            return {**out, mode: f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"}
        warm = time.process_time() - t
        t = time.process_time()
        res = gen.generate(prompts, sp)
        out[mode] = {"warmup_cpu_s": round(warm, 2), "cpu_s": round(time.process_time() - t, 2),
                     "tokens": sum(c.num_tokens for r in res for c in r), "texts": [c.text for r in res for c in r]}
    same = out["eager"].pop("texts") == out["compiled"].pop("texts")
    return {**out, "identical_completions": same,
            "speedup": round(out["eager"]["cpu_s"] / out["compiled"]["cpu_s"], 3)}


def train(args) -> dict:
    import datasets
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(f"{args.demo}/prm")
    base = AutoModelForTokenClassification.from_pretrained(f"{args.demo}/prm").train()
    rows = datasets.load_from_disk(f"{args.demo}/labels/dataset").select(range(16 * args.steps))
    texts = ["\n\n".join([r["problem"], *r["steps"]]) for r in rows]
    batches = []
    for i in range(0, len(texts), 16):
        enc = tok(texts[i:i + 16], padding="max_length", truncation=True, max_length=256, return_tensors="pt")
        labels = torch.where(enc["attention_mask"].bool(), torch.randint(0, 2, enc["input_ids"].shape), -100)
        batches.append({**enc, "labels": labels})
    out = {}
    for mode in ("eager", "compiled"):
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        step = (lambda **b: model(**b).loss) if mode == "eager" else torch.compile(lambda **b: model(**b).loss)
        losses, t0 = [], None
        for k, b in enumerate(batches):
            if k == 1:
                t0 = time.process_time()     # the first step pays the compilation
            try:
                loss = step(**b)
            except Exception as e:
                return {**out, mode: f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"}
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        out[mode] = {"cpu_s_per_step": round((time.process_time() - t0) / (len(batches) - 1), 4), "losses": losses}
    diff = max(abs(a - b) for a, b in zip(out["eager"].pop("losses"), out["compiled"].pop("losses")))
    return {**out, "max_loss_diff": diff,
            "speedup": round(out["eager"]["cpu_s_per_step"] / out["compiled"]["cpu_s_per_step"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", required=True, help="a finished demo's output folder (policy/, prm/, labels/)")
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--only", choices=["decode", "train"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for name, fn in (("decode", decode), ("train", train)):
        if args.only in (None, name):
            print(json.dumps({name: fn(args)}), flush=True)


if __name__ == "__main__":
    main()
