"""ttscale's Python face: `PRMConfig` / `PRMTrainer` for users of TRL's removed PRMTrainer, `run_search`, `load_scorer`.

    from ttscale import PRMConfig, PRMTrainer
    args = PRMConfig(output_dir="prm", learning_rate=3e-4, max_steps=2000, per_device_train_batch_size=16)
    trainer = PRMTrainer(model="Qwen/Qwen2.5-0.5B", args=args, train_dataset=ds, processing_class=tokenizer)
    trainer.train()            # the folder in args.output_dir is a ttscale PRM: --prm / load_scorer read it

`train_dataset` is TRL's stepwise supervision dataset as it is ({prompt, completions, labels: list[bool]}),
or ttscale's own step-labelled rows. PRMConfig takes the TRL 1.13 PRMConfig fields that mean something here,
the training options (TrainingArguments' names) and every `ttscale train-prm` option on top: the trainer is
the same one `ttscale train-prm` runs (train.train_prm_cmd), so what the CLI documents holds here too.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from ttscale.errors import UserError

_TRL_ONLY = {   # TRL PRMConfig fields with no ttscale counterpart, and why they are safe to drop
    "disable_dropout": "ttscale keeps the model's dropout",
    "dataset_num_proc": "tokenisation runs in the training process",
}
_SEPARATOR_INIT = {"\n": "newline", "\n\n": "delimiter"}   # step_separator -> where the tag's embedding starts


def PRMConfig(output_dir: str, *, step_separator: str = "\n", max_length: int | None = None,  # noqa: N802
              max_prompt_length: int | None = None, max_completion_length: int | None = None,
              train_on_last_step_only: bool = False, **options: Any):
    """The settings of a PRM training run: a `ttscale train-prm` Config (its `model` and `data` are set by
    PRMTrainer).

    TRL names: TRL reads each step's label at `step_separator`; ttscale reads it at a step tag token of its
    own (it measured better, benchmarks/prm_tags.py) whose embedding starts as the separator's ("\n" or
    "\n\n"; others start from the step delimiter). `max_length` caps prompt + steps (the prompt is cut from the
    left, steps never are); `max_prompt_length` + `max_completion_length` give that cap when `max_length` is
    not set, and with `max_completion_length` a row whose steps alone do not fit is dropped and counted.
    Training options keep TrainingArguments' names (learning_rate, max_steps, per_device_train_batch_size,
    ...); any `ttscale train-prm` option (formulation, label_mode, negative_weight, lora, ...) may be added."""
    from ttscale.train.train_prm_cmd import Config

    for name, why in _TRL_ONLY.items():
        if options.pop(name, None) is not None:
            print(f"PRMConfig: {name} is not used ({why})")
    known = {f.name for f in dataclasses.fields(Config)} - {"model", "data", "output_dir"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"PRMConfig got unknown option(s) {unknown}; it takes TRL's PRMConfig names "
                        f"(step_separator, max_length, max_prompt_length, max_completion_length, "
                        f"train_on_last_step_only) and `ttscale train-prm`'s options ({', '.join(sorted(known))})")
    if max_length is None and max_prompt_length and max_completion_length:
        max_length = max_prompt_length + max_completion_length
    values: dict[str, Any] = {"output_dir": str(output_dir), "model": "", "data": "",
                              "train_on_last_step_only": train_on_last_step_only,
                              "step_tag_init": _SEPARATOR_INIT.get(step_separator, "delimiter"), **options}
    if max_length is not None:
        values["max_length"] = max_length
    if max_completion_length is not None:
        values.setdefault("drop_overlong", True)
    return Config(**values)


class PRMTrainer:
    """TRL's PRMTrainer call, ttscale's trainer (module doc). `model` is a path / hub name or a loaded model
    (saved to OUTPUT_DIR/base_model first: the trainer builds its head and step tag from a checkpoint)."""

    def __init__(self, model: Any, args: Any, train_dataset: Any, eval_dataset: Any = None,
                 processing_class: Any = None, peft_config: Any = None) -> None:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if peft_config is not None:   # a peft LoraConfig: its rank, alpha, dropout and targets
            args = dataclasses.replace(args, lora=True, lora_r=peft_config.r, lora_alpha=peft_config.lora_alpha,
                                       lora_dropout=peft_config.lora_dropout,
                                       lora_target_modules=sorted(peft_config.target_modules)
                                       if isinstance(peft_config.target_modules, (set, list)) else None)
        if not isinstance(model, (str, Path)):
            model.save_pretrained(out / "base_model")
            if processing_class is not None:
                processing_class.save_pretrained(out / "base_model")
            model = out / "base_model"
        elif processing_class is not None:
            processing_class.save_pretrained(out / "base_tokenizer")
            args = dataclasses.replace(args, tokenizer=str(out / "base_tokenizer"))
        data, fmt = _write_rows(train_dataset, out / "train_data.jsonl")
        evals = _write_rows(eval_dataset, out / "eval_data.jsonl")[0] if eval_dataset is not None else None
        self.args = dataclasses.replace(args, model=str(model), data=str(data), data_format=fmt,
                                        eval_data=str(evals) if evals else None,
                                        eval_fraction=0.0 if evals else args.eval_fraction)
        self.model = self.state = None
        self.metrics: dict[str, Any] = {}

    def train(self) -> dict[str, Any]:
        """Train and write the PRM folder (OUTPUT_DIR); returns the final metrics."""
        from ttscale.train.train_prm_cmd import train_prm

        trainer, _, self.metrics = train_prm(self.args)
        self.model, self.state = trainer.model, trainer.state
        return self.metrics

    def save_model(self, output_dir: str | None = None) -> Path:
        """The PRM folder: training already wrote it to OUTPUT_DIR; another `output_dir` gets a copy."""
        import shutil

        src = Path(self.args.output_dir)
        if output_dir is None or Path(output_dir).resolve() == src.resolve():
            return src
        shutil.copytree(src, output_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
        return Path(output_dir)


def _write_rows(dataset: Any, path: Path) -> tuple[Path, str]:
    """The dataset as a jsonl the trainer reads: TRL stepwise rows (format trl-stepwise) or ttscale's own."""
    rows = dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)
    if not rows:
        raise UserError("the training dataset is empty")
    fmt = "trl-stepwise" if {"prompt", "completions", "labels"} <= set(rows[0]) else "ttscale"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path, fmt


def run_search(problems: Sequence[Any], *, policy: str, prm: str | None = None, strategy: str = "weighted-best-of-n",
           budget: int = 16, **options: Any) -> list[dict[str, Any]]:
    """Search each problem (text, or a dict with `problem` and optionally `id`, `answer`) with `strategy` at
    `budget`, in this process; any `ttscale search` option is a keyword (revision_model, temperature,
    beam_width, allocation, ...). Returns per problem: id, answer, solution (the chosen candidate's steps
    joined), score-free candidates, and `spent` (the measured compute, as `search` records it)."""
    from ttscale.data.steps import join_steps
    from ttscale.search.search_cmd import Config, build_context

    cfg = Config(output_dir="", policy=policy, prm=prm, strategy=strategy, budget=budget, **options)
    runner = cfg.make_strategy()
    ctx, _ = build_context(cfg, runner.needs_policy)
    runner.validate(budget, ctx)
    rows = [{"id": str(i), "problem": p, "answer": None} if isinstance(p, str) else
            {"id": str(p.get("id", i)), "answer": p.get("answer"), **p} for i, p in enumerate(problems)]
    out = []
    for r in runner.run(rows, ctx, budget):
        best = r.candidates[r.chosen] if r.chosen >= 0 else None
        out.append({"id": r.problem["id"], "answer": r.prediction,
                    "solution": join_steps(best.steps, cfg.step_delimiter) if best else None,
                    "candidates": [join_steps(c.steps, cfg.step_delimiter) for c in r.candidates],
                    "choice": r.choice, "spent": r.spent.to_dict()})
    return out
