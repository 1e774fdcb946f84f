"""Training throughput of the PRM trainer.

1. PRMTrainer vs a plain `transformers.Trainer` (AutoModelForTokenClassification's own cross-entropy on
   token labels, -100 off the step tags) on the same token-classification batches: tokens/s (goal >= 0.95x).
2. 1 process vs 2 CPU processes under each launch config: DDP (cpu2.yaml), DeepSpeed ZeRO-2 (zero2.yaml),
   ZeRO-3 (cpu2_zero3.yaml), FSDP2 (fsdp.yaml, only where 2 GPUs are: accelerate never runs FSDP on CPU
   processes): tokens/s, and the time to save full weights (gathered from the shards) and reload them in
   plain transformers.

    python benchmarks/train_prm.py [--steps 40] [--repeats 2] [--configs ddp zero3 ...] [--skip-multiprocess]

Tokens/s counts real (unpadded) tokens of every batch the trainer consumed, summed over processes.
On a CPU shared with other jobs the figures are noisy: each trainer runs --repeats times, alternating,
and the best run counts.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# name -> (accelerate config, extra launch flags); None = one plain process
CONFIGS = {"one_process": None, "ddp": ("cpu2.yaml", []),
           "zero2": ("zero2.yaml", ["--num_processes=2", "--mixed_precision=no"]),
           "zero3": ("cpu2_zero3.yaml", []), "fsdp": ("fsdp.yaml", ["--num_processes=2", "--mixed_precision=no"])}


def build_base(path: Path, hidden: int, layers: int) -> None:
    from ttscale.data.toy_world import generate_problems
    from ttscale.train.tiny import tiny_causal_lm, train_tokenizer

    texts = [p["problem"] + "\n\n" + p["solution"] for p in generate_problems(200, seed=99)]
    tok = train_tokenizer(texts, vocab_size=400)
    tiny_causal_lm(tok, hidden_size=hidden, num_layers=layers, num_heads=4, seed=0).save_pretrained(path)
    tok.save_pretrained(path)


class CountingCollator:
    """Wraps a collator and counts the real tokens of every batch it builds."""

    def __init__(self, inner):
        self.inner, self.tokens = inner, 0

    def __call__(self, examples):
        batch = self.inner(examples)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


class PlainCollator:
    """Token labels for the stock loss: class 1/0 at each step tag, -100 everywhere else."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples):
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for b, e in enumerate(examples):
            ids[b, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
            mask[b, :len(e["input_ids"])] = 1
            for p, y in zip(e["positions"], e["labels"]):
                labels[b, p] = int(y > 0.5)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def worker(kind: str, base: str, steps: int, batch_size: int, n_problems: int, save: bool = False,
           precision: str = "fp32", checkpointing: bool = False, attn: str = "") -> dict:
    """One timed training run in this process (rank 0 reports the totals over processes)."""
    import torch
    import transformers

    from ttscale.inference.prm_inputs import PRMSpec
    from ttscale.train.prm_data import PRMCollator, encode_rows, toy_labelled_rows
    from ttscale.train.prm_trainer import PRMHead, PRMTrainer, load_prm_model, load_tokenizer
    from ttscale.train.options import _cpu_processes, precision_flags
    from ttscale.train.saving import save_full_weights, whole_model_init

    torch.set_num_threads(1)
    spec = PRMSpec(max_length=512)
    tok = load_tokenizer(base, spec.step_tag)
    examples, _ = encode_rows(toy_labelled_rows(n_problems, seed=1, levels=(1, 2, 3, 4)), tok, spec)
    with tempfile.TemporaryDirectory() as out:
        # Arguments before the model: under ZeRO-3 they make from_pretrained build it partitioned.
        args = transformers.TrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=1e-4,
            logging_steps=10_000, save_strategy="no", report_to="none", seed=0, data_seed=0,
            remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True, use_cpu=_cpu_processes(),
            gradient_checkpointing=checkpointing, **precision_flags(precision))
        model = load_prm_model(base, tok, spec)
        if attn:
            model.set_attn_implementation(attn)
        if kind == "prm":
            collator = CountingCollator(PRMCollator(tok.pad_token_id))
            trainer = PRMTrainer(model=model, args=args, train_dataset=examples, data_collator=collator,
                                 prm_head=PRMHead.for_model(model, tok, spec))
        else:
            collator = CountingCollator(PlainCollator(tok.pad_token_id))
            trainer = transformers.Trainer(model=model, args=args, train_dataset=examples, data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        save_reload = None
        if save:
            start = time.perf_counter()
            if save_full_weights(trainer, Path(out) / "model"):
                with whole_model_init():  # a plain load on rank 0, outside ZeRO-3's collective init
                    transformers.AutoModelForTokenClassification.from_pretrained(Path(out) / "model")
            save_reload = round(time.perf_counter() - start, 3)
    tokens = torch.tensor([collator.tokens], dtype=torch.long)
    if trainer.args.world_size > 1:
        tokens = trainer.accelerator.gather(tokens)
    total = int(tokens.sum())
    res = {"kind": kind, "processes": trainer.args.world_size, "steps": steps, "tokens": total,
           "seconds": round(seconds, 3), "tokens_per_s": round(total / seconds, 1), "save_reload_s": save_reload,
           "precision": precision, "gradient_checkpointing": checkpointing,
           "attention": model.config._attn_implementation}
    if torch.cuda.is_available():
        res["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return res


def launch(config: str, base: str, steps: int, batch_size: int, n_problems: int, options: list[str]) -> dict:
    """One timed PRM training (+ save and reload) under CONFIGS[config]."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        worker_args = [str(Path(__file__).resolve()), "--worker", "prm", "--save", "--base", base, "--steps",
                       str(steps), "--batch-size", str(batch_size), "--problems", str(n_problems), "--result",
                       str(result), *options]
        if CONFIGS[config] is None:
            cmd = [sys.executable] + worker_args
        else:
            file, extra = CONFIGS[config]
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(ROOT / "accelerate_configs" / file), *extra] + worker_args
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per timed run")
    ap.add_argument("--batch-size", type=int, default=8, help="examples per device per step")
    ap.add_argument("--problems", type=int, default=200, help="toy problems (2 labelled solutions each)")
    ap.add_argument("--model", help="train this model folder (e.g. SmolLM2 from `ttscale convert-gguf`) instead "
                    "of a tiny Llama built here")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="training precision")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    ap.add_argument("--attn", default="", help="attention implementation (sdpa, eager, ...; default: the model's)")
    ap.add_argument("--hidden", type=int, default=128, help="tiny Llama hidden size")
    ap.add_argument("--layers", type=int, default=4, help="tiny Llama layers")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per trainer (best counts; 0 = skip)")
    import torch

    default = [c for c in CONFIGS if c != "fsdp" or torch.cuda.device_count() >= 2]
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=default,
                    help="launch configs to time (2 processes each, but one_process; fsdp needs 2 GPUs)")
    ap.add_argument("--skip-multiprocess", action="store_true", help="skip the launch-config comparison")
    ap.add_argument("--save", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=["prm", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        res = worker(a.worker, a.base, a.steps, a.batch_size, a.problems, a.save, a.precision,
                     a.gradient_checkpointing, a.attn)
        if int(os.environ.get("RANK", "0")) == 0:
            Path(a.result).write_text(json.dumps(res))
        return

    with tempfile.TemporaryDirectory() as tmp:
        base = a.model or str(Path(tmp) / "base")
        if not a.model:
            build_base(Path(base), a.hidden, a.layers)
        options = [f"--precision={a.precision}", *(["--gradient-checkpointing"] if a.gradient_checkpointing else []),
                   *([f"--attn={a.attn}"] if a.attn else [])]
        runs: dict[str, list[dict]] = {"prm": [], "plain": []}
        for _ in range(a.repeats):
            for kind in ("plain", "prm"):
                runs[kind].append(worker(kind, base, a.steps, a.batch_size, a.problems, False, a.precision,
                                         a.gradient_checkpointing, a.attn))
        report = {"model": a.model or f"tiny Llama hidden={a.hidden} layers={a.layers}", "batch_size": a.batch_size,
                  "steps": a.steps}
        if a.repeats > 0:  # --repeats 0: only the 1 vs 2 process comparison
            best = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in runs.items()}
            report.update({"prm_trainer": best["prm"], "plain_trainer": best["plain"],
                           "prm_vs_plain": round(best["prm"]["tokens_per_s"] / best["plain"]["tokens_per_s"], 3)})
        if not a.skip_multiprocess:
            launched = {}
            for name in a.configs:  # each also on stderr as it ends: a long run shows progress
                launched[name] = launch(name, base, a.steps, a.batch_size, a.problems, options)
                print(name, json.dumps(launched[name]), file=sys.stderr, flush=True)
            one = launched.get("one_process")
            for res in launched.values():
                if one:
                    res["vs_one_process"] = round(res["tokens_per_s"] / one["tokens_per_s"], 3)
            report["launch_configs"] = launched
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
