"""Beam search on the toy world: batching speed-up and PRM re-scoring overhead.

    PYTHONPATH=. .venv/bin/python benchmarks/search.py --problems 16 --budget 8 --beam-width 2 --max-depth 4

Tiny Llama policy and tiny token-classification PRM built from configs (random weights: the numbers measure
the search machinery, not accuracy). Reports problems/s with all problems batched into the same generate/score
calls vs one problem at a time (goal >= 3x), and PRM tokens processed / unique tokens, where unique tokens =
each problem's PRM-encoded prompt once + every tree node's step text (+1 step tag) once — what a scorer that
reuses the prefix KV cache would process (goal <= 1.1x; the PRM scorer's `score_incremental` does that;
--full-rescoring turns it off to measure the ~steps/2 x of rescoring whole candidates).
"""
from __future__ import annotations

import argparse
import json
import time



def build_models(seed: int, threads: int, incremental: bool = True):

    from ttscale.data.steps import INSTRUCTION
    from ttscale.data.toy_world import generate_problems, reference_solution
    from ttscale.inference.prm_inputs import PRMSpec, add_step_tag
    from ttscale.inference.scorers import TokenClassificationPRM
    from ttscale.inference.transformers_backend import TransformersGenerator
    from ttscale.train.tiny import tiny_causal_lm, tiny_model, train_tokenizer

    corpus = [INSTRUCTION.format(problem=r["problem"]) + "\n" + reference_solution(r["program"])
              for r in generate_problems(200, seed=seed)]
    tok = train_tokenizer(corpus, vocab_size=400)
    policy = tiny_causal_lm(tok, seed=seed).eval()
    generator = TransformersGenerator(policy, tok, device="cpu", threads=threads, batch_size=64, progress=False)
    prm_tok = train_tokenizer(corpus, vocab_size=400)
    add_step_tag(prm_tok)
    prm = tiny_model(prm_tok, "token-classification", seed=seed, max_position_embeddings=2048, num_labels=2).eval()
    scorer = TokenClassificationPRM(prm, prm_tok, PRMSpec(max_length=2048), batch_size=32,
                                    incremental=incremental)
    return generator, scorer


def unique_tokens(results, tokenizer) -> int:
    total = 0
    for r in results:
        total += len(tokenizer(r.problem["problem"])["input_ids"])
        total += sum(len(tokenizer(n.text)["input_ids"]) + 1 for n in r.tree)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--beam-width", type=int, default=2)
    ap.add_argument("--max-depth", type=int, default=4)
    ap.add_argument("--max-step-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-rescoring", action="store_true", help="score every candidate from scratch (no KV reuse)")
    args = ap.parse_args()

    from ttscale.data.toy_world import generate_problems
    from ttscale.search.registry import get_strategy
    from ttscale.search.types import SearchContext, SearchSettings

    generator, scorer = build_models(args.seed, args.threads, incremental=not args.full_rescoring)
    problems = generate_problems(args.problems, seed=args.seed + 1)
    ctx = SearchContext(generator=generator, scorer=scorer, settings=SearchSettings(seed=args.seed))
    beam = get_strategy("beam", {"beam_width": args.beam_width, "max_depth": args.max_depth,
                                 "max_step_tokens": args.max_step_tokens})
    beam.run(problems[:1], ctx, args.budget)   # warm-up

    # CPU time as well as wall time: on a shared machine wall time mostly measures the neighbours
    t0, c0 = time.perf_counter(), time.process_time()
    batched = beam.run(problems, ctx, args.budget)
    t_batched, c_batched = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    single = [r for p in problems for r in beam.run([p], ctx, args.budget)]
    t_single, c_single = time.perf_counter() - t0, time.process_time() - c0

    same = [[c.steps for c in r.candidates] for r in batched] == [[c.steps for c in r.candidates] for r in single]
    prm_tokens = sum(r.spent.prm_tokens for r in batched)
    uniq = unique_tokens(batched, scorer.tokenizer)
    report = {
        "problems": args.problems, "budget": args.budget, "beam_width": args.beam_width, "max_depth": args.max_depth,
        "prm_scoring": "full rescoring" if args.full_rescoring else "incremental (prefix KV cache)",
        "batched_problems_per_s": round(args.problems / t_batched, 3),
        "one_at_a_time_problems_per_s": round(args.problems / t_single, 3),
        "speedup_wall": round(t_single / t_batched, 2),
        "speedup_cpu_time": round(c_single / c_batched, 2),
        "same_results_batched_and_single": same,
        "generated_tokens": sum(r.spent.generated_tokens for r in batched),
        "prm_tokens_processed": prm_tokens, "unique_tokens": uniq,
        "prm_tokens_over_unique": round(prm_tokens / uniq, 2),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
