"""`ttscale train-policy OUTPUT_DIR`: train the tiny toy-world policy the demo searches with.

A tokenizer trained on toy-world text and a tiny Llama (ttscale.train.tiny) are fine-tuned with TRL's
SFTTrainer on prompt/completion pairs: prompt = build_prompt(problem) through the chat template,
completion = the reference solution or, with a per-level probability, one with an injected mistake
(ttscale.data.toy_world.inject_mistake) or, on a problem with a trap clause, the trap's misreading
(toy_world.misread_solution) with probability --misread-rate; loss on the completion only, EOS after the
answer. The point is a policy whose sampled solutions are right at a rate that falls with difficulty, with
random mistakes that differ between samples and, on trap problems, a systematic one that most samples share. The saved folder loads with AutoModelForCausalLM/AutoTokenizer; the measured
per-level correctness goes to policy_report.json beside it.
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ttscale.config import field, to_yaml
from ttscale.data.toy_world import MISTAKE_KINDS
from ttscale.train.options import default_for, quiet_libraries
from ttscale.train.sft import SFTArgs


@dataclass(kw_only=True)
class Config(SFTArgs):
    """Train the tiny toy-world policy and measure its per-level correctness.

    The training options are train-revision's (ttscale.train.sft.SFTArgs), with the policy's defaults."""
    output_dir: str = field(help="folder for the save_pretrained checkpoint and policy_report.json", positional=True)
    learning_rate: float = default_for("learning_rate", 3e-3)
    lr_scheduler_type: str = default_for("lr_scheduler_type", "cosine")
    warmup_steps: float = default_for("warmup_steps", 0.05)
    max_steps: int = default_for("max_steps", 700)
    per_device_train_batch_size: int = default_for("per_device_train_batch_size", 16)
    logging_steps: int = default_for("logging_steps", 25)
    threads: int = default_for("threads", 1)  # 1 is fastest when the cores are shared
    seed: int = default_for("seed", 0, help="seed for problems, mistakes, initialisation, data order and sampling")
    lora: bool = default_for("lora", False, help="not available in train-policy: the policy starts from random "
                             "weights, so all of them are trained")
    max_length: int = default_for("max_length", 512, SFTArgs)
    n_train: int = field(4000, ge=1, help="training problems (levels round-robin)")
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5], help="toy-world levels to train and evaluate")
    hidden_size: int = field(64, ge=1, help="model width")
    num_layers: int = field(2, ge=1, help="transformer layers")
    num_heads: int = field(4, ge=1, help="attention heads")
    vocab_size: int = field(512, ge=64, help="BPE tokenizer vocabulary size (digits are always single tokens)")
    mistake_rate: float = field(0.02, ge=0, le=1, help="probability that a level-1 training solution has an injected mistake")
    mistake_rate_max: float = field(0.1, ge=0, le=1, help="the same probability at the hardest level (linear in between)")
    mistake_kinds: list[str] = field(default_factory=lambda: list(MISTAKE_KINDS),
                                     help="kinds of injected mistakes the policy learns to make: slip (arithmetic), "
                                          "operand, operation, drop (a skipped step)")
    misread_rate: float = field(0.0, ge=0, le=1, help="probability that a training solution of a trap problem misreads the "
                                "trap (the same wrong step every time), so the policy repeats it on most samples")
    eval_problems: int = field(20, ge=0, help="held-out problems per level for the correctness report")
    eval_samples: int = field(4, ge=1, help="sampled solutions per held-out problem")
    temperature: float = field(0.8, ge=0, help="sampling temperature for the report")
    max_new_tokens: int = field(200, ge=1, help="generation limit per solution in the report")

    def __post_init__(self):
        if self.lora:
            raise ValueError("--lora does not apply to train-policy: the policy starts from random weights")
        for name in ("n_train", "per_device_train_batch_size", "hidden_size", "num_layers", "eval_samples", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("mistake_rate", "mistake_rate_max", "misread_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        from ttscale.data.toy_world import check_mistake_kinds

        check_mistake_kinds(self.mistake_kinds)   # fail at parse time, not after tokenizer training


def mistake_rates(levels: Sequence[int], low: float, high: float) -> dict[int, float]:
    """Per-level mistake probability, linear from `low` at level 1 to `high` at level 5."""
    from ttscale.data.toy_world import LEVELS

    lo, hi = min(LEVELS), max(LEVELS)
    return {lv: low + (high - low) * (lv - lo) / (hi - lo) for lv in levels}


def sft_pairs(rows: Sequence[dict], tokenizer: Any, rates: dict[int, float], seed: int,
              kinds: Sequence[str] | None = None, misread_rate: float = 0.0) -> list[dict[str, str]]:
    """Prompt/completion pairs; a trap problem's completion is its misreading with probability misread_rate,
    otherwise a row's completion carries an injected mistake with probability rates[level]."""
    from ttscale.data.steps import build_prompt
    from ttscale.data.toy_world import MISTAKE_KINDS, inject_mistake, misread_solution

    rng = random.Random(seed)
    pairs = []
    for row in rows:
        completion = row["solution"]
        misread = misread_solution(row)
        if misread is not None and rng.random() < misread_rate:
            completion = misread
        elif rng.random() < rates[row["level"]]:
            completion, _ = inject_mistake(row, rng, kinds or MISTAKE_KINDS)
        pairs.append({"prompt": build_prompt(row["problem"], tokenizer), "completion": completion})
    return pairs


def tokenizer_corpus(rows: Sequence[dict]) -> list[str]:
    """What the policy reads and writes: the instruction, problems and solutions."""
    from ttscale.data.steps import INSTRUCTION

    return [INSTRUCTION.format(problem=r["problem"]) + "\n\n" + r["solution"] for r in rows]


def train_policy(cfg: Config, out: Path):
    """Tokenizer + tiny Llama + SFTTrainer (ttscale.train.sft, the revision stage's code path);
    returns (model, tokenizer, loss history, real/padded token counts)."""
    import datasets
    import torch

    from ttscale.data.toy_world import generate_problems
    from ttscale.train.sft import sft_trainer
    from ttscale.train.tiny import tiny_causal_lm, train_tokenizer

    rows = generate_problems(cfg.n_train, seed=cfg.seed, levels=cfg.levels)
    tokenizer = train_tokenizer(tokenizer_corpus(rows[:1000]), vocab_size=cfg.vocab_size, merge_words=True)
    model = tiny_causal_lm(tokenizer, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                           num_heads=cfg.num_heads, seed=cfg.seed)
    rates = mistake_rates(cfg.levels, cfg.mistake_rate, cfg.mistake_rate_max)
    train = datasets.Dataset.from_list(sft_pairs(rows, tokenizer, rates, seed=cfg.seed, kinds=cfg.mistake_kinds,
                                                misread_rate=cfg.misread_rate))
    # use_cpu: without CUDA the tiny model trains on the CPU, never on MPS (same numbers on every machine)
    trainer = sft_trainer(model, tokenizer, train, cfg, out / "checkpoints", use_cpu=not torch.cuda.is_available())
    trainer.train(resume_from_checkpoint=cfg.resume())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return trainer.model, tokenizer, losses, trainer.token_count.summary()


def evaluate_policy(generator: Any, rows: Sequence[dict], samples: int, temperature: float, seed: int,
                    max_new_tokens: int = 200) -> dict[str, Any]:
    """Sampled correctness per level (+ step accuracy from the exact checker, majority-vote accuracy, and on
    trap problems how often a sample misreads the trap)."""
    from ttscale.data.steps import build_prompt, split_steps
    from ttscale.data.toy_world import check_steps, final_answer, misread_solution
    from ttscale.inference.base import SamplingParams

    prompts = [build_prompt(r["problem"], generator.tokenizer) for r in rows]
    params = SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    outputs = generator.generate(prompts, params)
    stats: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row, comps in zip(rows, outputs):
        s = stats[row["level"]]
        answers = [final_answer(c.text) for c in comps]
        misread = misread_solution(row)
        trap = row["program"].get("trap", -1)
        for c, ans in zip(comps, answers):
            labels = check_steps(row, c.text)
            s["correct"].append(ans == row["answer"])
            s["step_acc"].append(sum(labels) / max(len(labels), 1))
            s["finished"].append(c.finish_reason != "length")
            s["tokens"].append(c.num_tokens)
            if misread is not None:   # the sample reads the trap the policy's systematic wrong way
                s["trap_misread"].append(split_steps(c.text)[:trap + 1] == split_steps(misread)[:trap + 1])
        wrong = [a for a in answers if a is not None and a != row["answer"]]
        voted = Counter(a for a in answers if a is not None).most_common(1)
        s["majority"].append(bool(voted) and voted[0][0] == row["answer"])
        s["distinct_wrong"].append(len(set(wrong)) / len(wrong) if wrong else None)

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return round(sum(xs) / len(xs), 4) if xs else None

    per_level = {str(lv): {"correct_rate": mean(s["correct"]), "majority_correct": mean(s["majority"]),
                           "step_accuracy": mean(s["step_acc"]), "finished_rate": mean(s["finished"]),
                           "distinct_wrong_answers": mean(s["distinct_wrong"]), "mean_tokens": mean(s["tokens"]),
                           "trap_misread_rate": mean(s["trap_misread"]), "trap_samples": len(s["trap_misread"]),
                           "problems": len(s["majority"]), "samples": len(s["correct"])}
                 for lv, s in sorted(stats.items())}
    return {"per_level": per_level, "correct_rate": mean([c for s in stats.values() for c in s["correct"]])}


def run(cfg: Config) -> int:
    import torch

    from ttscale.data.toy_world import generate_problems
    from ttscale.inference.transformers_backend import TransformersGenerator

    quiet_libraries()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.yaml").write_text(to_yaml(cfg))
    t0 = time.perf_counter()
    model, tokenizer, losses, tokens = train_policy(cfg, out)
    train_s = time.perf_counter() - t0
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    t1 = time.perf_counter()
    generator = TransformersGenerator(model, tokenizer, threads=cfg.threads)
    held_out = generate_problems(cfg.eval_problems * len(cfg.levels), seed=cfg.seed + 1_000_003, levels=cfg.levels)
    report = evaluate_policy(generator, held_out, cfg.eval_samples, cfg.temperature, cfg.seed, cfg.max_new_tokens)
    report.update(num_params=sum(p.numel() for p in model.parameters()), train_seconds=round(train_s, 1),
                  eval_seconds=round(time.perf_counter() - t1, 1), first_loss=losses[0] if losses else None,
                  last_loss=losses[-1] if losses else None, temperature=cfg.temperature, tokens=tokens,
                  mistake_rates=mistake_rates(cfg.levels, cfg.mistake_rate, cfg.mistake_rate_max))
    (out / "policy_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"saved policy to {out} (train {train_s:.0f}s, report {out / 'policy_report.json'})")
    return 0
