"""`ttscale train-prm`: train a process reward model on step-labelled data.

Runs the same on one CPU, one GPU, or many processes under `accelerate launch` (DDP, DeepSpeed ZeRO-2/3,
FSDP; see accelerate_configs/): Trainer reads the launch environment, nothing here sets up processes.

The output folder is everything a scorer needs (ttscale.inference.scorers.load_scorer reads it): the model
(with LoRA, the adapter is merged into the weights; the adapter itself is kept in adapter/), the
tokenizer with the step tag, ttscale_prm.json (how inputs are built) and a README.md model card.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from ttscale.config import field, to_yaml
from ttscale.inference.prm_inputs import DEFAULT_STEP_TAG, SPEC_FILE, PRMSpec
from ttscale.train.options import TrainingOptions, default_for, is_main_process, quiet_libraries
from ttscale.train.batching import TokenCount


@dataclass(kw_only=True)  # kw_only: the required --model, --data and OUTPUT_DIR follow defaulted options
class Config(TrainingOptions):
    """Train a PRM (token classification or causal-LM "+"/"-") with transformers.Trainer.

    The training options (learning rate, steps, batch, precision, LoRA, ...) are ttscale.train.options'."""
    model: str = field(help="base model folder or hub name (a causal LM, or an existing PRM to continue)")
    data: str = field(help="step-labelled training data (.jsonl, .parquet or a datasets folder)")
    output_dir: str = field(help="where the trained PRM folder is written (checkpoints go in checkpoints/ inside)",
                            positional=True, deprecated_flag="--output-dir")
    tokenizer: str | None = field(None, help="tokenizer folder or hub name (default: --model)")
    data_format: str = field("ttscale", choices=["ttscale", "math-shepherd", "trl-stepwise", "prm800k",
                                                 "processbench", "rlhflow"],
                             help="format of --data/--eval-data (converted to native rows on reading)")
    eval_data: str | None = field(None, help="held-out data for evaluation during training (same format); "
                                  "default: hold out --eval-fraction of the problems of --data")
    eval_fraction: float = field(0.05, ge=0, lt=1, help="fraction of the problems held out for evaluation when --eval-data "
                                 "is not given (0 = no evaluation)")
    formulation: Literal["token-classification", "causal-lm", "implicit", "generative"] = field(
        "token-classification", help="token-classification: a per-token classifier head read at each step tag; "
        "causal-lm: the LM's '+'/'-' next-token logits at each step tag (Math-Shepherd style); implicit: a causal "
        "LM fine-tuned from --reference on OUTCOME labels only (a row's solution_correct, graded against the "
        "gold answer, else its last label), reward beta*log(pi/pi_ref), step scores from its partial sums "
        "(Yuan et al. 2024; no step labels, so no Monte Carlo rollouts needed); generative: SFT of a verifier "
        "that writes a check of each step then a verdict, on `ttscale build-critiques` rows (--data)")
    critique_samples: int = field(1, ge=1, help="generative: rationales sampled per step when scoring, verdicts "
                                  "averaged (recorded in the folder; --prm-samples overrides it)")
    rationale_tokens: int = field(48, ge=1, help="generative: token limit of one rationale when scoring")
    beta: float = field(0.05, gt=0, help="implicit: the reward scale beta in beta*log(pi_theta/pi_ref)")
    reference: str | None = field(None, help="implicit: the reference model pi_ref, frozen (default: --model, "
                                  "the model training starts from); the PRM folder records it for scoring")
    label_mode: Literal["hard", "soft"] = field("hard", help="hard: 0/1 step labels; soft: the Monte Carlo "
                                                "fraction of rollouts that reached the answer (never rounded)")
    negative_weight: float = field(1.0, gt=0, help="weight of the wrong-step part of the loss (1 = plain "
                                   "cross-entropy; >1 counts each wrong step as that many: 9 in 10 of the demo's "
                                   "labelled steps are right, and the rare wrong ones decide a search's ranking)")
    threshold: float = field(0.0, ge=0, lt=1, help="tau: a step is correct when its MC fraction (or stored label) is > tau; "
                             "hard labels are re-derived from mc_correct/mc_total when the rows carry them")
    num_labels: int = field(0, choices=[0, 1, 2], help="token-classification outputs per token: 2 (softmax, cross-entropy) or 1 "
                            "(sigmoid, BCE); 0 = 2 for hard labels, 1 for soft labels")
    train_on_last_step_only: bool = field(False, help="only the last labelled step of each row carries a loss "
                                          "(an outcome-reward-style ablation)")
    step_tag: str = field(DEFAULT_STEP_TAG, help="token placed after every step; added to the vocabulary (and the "
                          "embeddings resized) when missing")
    step_tag_init: Literal["delimiter", "newline", "mean"] = field(
        "delimiter", help="where a NEW step tag's embedding starts: the mean embedding of the step delimiter's "
        "tokens ('\\n\\n', the boundary the base model already reads; measured best in benchmarks/prm_tags.py), "
        "of a newline, or of the whole vocabulary (transformers' default)")
    positive_token: str = field("+", help="causal-lm: the token whose probability means 'step correct'")
    negative_token: str = field("-", help="causal-lm: the token whose probability means 'step wrong'")
    max_length: int = field(2048, ge=1, help="max tokens per example; the problem is left-truncated to keep every step")
    drop_overlong: bool = field(False, help="drop (and count) examples whose steps alone exceed --max-length "
                                "instead of stopping with an error naming the row")
    lora: bool = default_for("lora", False, help="train a LoRA adapter (peft; TOKEN_CLS or CAUSAL_LM to match "
                             "the formulation) instead of all weights; merged into the saved model, the adapter "
                             "kept in adapter/")
    seed: int = default_for("seed", 0, help="seed for initialisation, the eval split, data order and dropout")
    per_device_eval_batch_size: int | None = field(None, ge=1, help="examples per device per evaluation step "
                                                   "(default: --per-device-train-batch-size)")
    eval_steps: int = field(0, ge=0, help="also evaluate every this many steps during training (0 = once, at the end)")

    def __post_init__(self) -> None:
        if self.num_labels == 1 and self.formulation != "token-classification":
            raise ValueError(f"num_labels 1 applies to token-classification, not {self.formulation}")
        if self.formulation == "generative" and (self.lora or self.label_mode != "hard"):
            # its rows carry their verdicts; LoRA would need the SFT stages' merge option, not offered here
            raise ValueError("generative PRMs train on build-critiques rows: no --label-mode soft, no --lora yet")
        if self.formulation == "implicit" and self.label_mode != "hard":
            raise ValueError("implicit PRMs train on outcome labels (is the final answer right): use label_mode hard")

    def resolved_num_labels(self) -> int:
        return self.num_labels or (2 if self.label_mode == "hard" else 1)

    def tag_init_text(self) -> str | None:
        return {"delimiter": PRMSpec().step_delimiter, "newline": "\n", "mean": None}[self.step_tag_init]

    def reference_model(self) -> str:
        """The implicit PRM's reference: a local folder as an absolute path (the PRM folder records it)."""
        ref = self.reference or self.model
        return str(Path(ref).resolve()) if Path(ref).exists() else ref

    def spec(self) -> PRMSpec:
        implicit = self.formulation == "implicit"
        return PRMSpec(formulation=self.formulation, step_tag=self.step_tag, positive_token=self.positive_token,
                       negative_token=self.negative_token,
                       num_labels=2 if self.formulation != "token-classification" else self.resolved_num_labels(),
                       max_length=self.max_length, beta=self.beta,
                       reference=self.reference_model() if implicit else None, samples=self.critique_samples,
                       rationale_tokens=self.rationale_tokens)


def training_arguments(cfg: Config, has_eval: bool, num_examples: int | None = None):
    """The shared mapping (checkpoints in OUTPUT_DIR/checkpoints) plus what only a PRM has: evaluation, and
    batches of the collator's own columns."""
    return cfg.to_training_arguments(
        str(Path(cfg.output_dir) / "checkpoints"), num_examples=num_examples,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size or cfg.per_device_train_batch_size,
        eval_strategy="steps" if has_eval and cfg.eval_steps > 0 else "no", eval_steps=cfg.eval_steps or None,
        remove_unused_columns=False, ddp_find_unused_parameters=False)


def load_examples(cfg: Config, tokenizer, spec: PRMSpec):
    """(train examples, eval examples or None); prints (main process) what was kept and dropped."""
    from ttscale.train.prm_data import encode_rows, load_rows, split_by_problem

    rows = load_rows(cfg.data, cfg.data_format)
    if cfg.eval_data:
        train_rows, eval_rows = rows, load_rows(cfg.eval_data, cfg.data_format)
    else:
        train_rows, eval_rows = split_by_problem(rows, cfg.eval_fraction, cfg.seed)
    opts = dict(label_mode=cfg.label_mode, threshold=cfg.threshold, last_step_only=cfg.train_on_last_step_only,
                on_overlong="drop" if cfg.drop_overlong else "error")
    train, stats = encode_rows(train_rows, tokenizer, spec, where=cfg.data, **opts)
    say = print if is_main_process() else (lambda *_: None)
    say(f"train-prm: train data: {stats.summary()}")
    if not eval_rows:
        return train, None
    evals, estats = encode_rows(eval_rows, tokenizer, spec, where=cfg.eval_data or f"{cfg.data} (held out)", **opts)
    say(f"train-prm: eval data: {estats.summary()}")
    return train, evals


def build_model(cfg: Config, tokenizer, spec: PRMSpec):
    import contextlib

    import torch

    from ttscale.train.prm_trainer import load_prm_model, lora_model
    from ttscale.train.saving import whole_model_init

    # peft sets up the trainable step-tag row of a ZeRO-3-partitioned model on CUDA only (TrainableTokensLayer.
    # _collect_token_weights broadcasts from a cuda device): without CUDA a LoRA model is built whole on each
    # rank, and ZeRO-3 partitions it when training starts.
    whole = cfg.lora and not torch.cuda.is_available()
    with whole_model_init() if whole else contextlib.nullcontext():
        model = load_prm_model(cfg.model, tokenizer, spec, tag_init=cfg.tag_init_text())
        if cfg.lora:
            tag_id = tokenizer.convert_tokens_to_ids(spec.step_tag) if spec.formulation != "implicit" else None
            model = lora_model(model, spec, tag_id, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout,
                               cfg.lora_targets())
    return model


def build_reference(cfg: Config):
    """The implicit PRM's frozen reference, whole on every process (it is never trained or sharded)."""
    import transformers as tf

    from ttscale.train.saving import whole_model_init

    with whole_model_init():
        return tf.AutoModelForCausalLM.from_pretrained(cfg.reference_model())


def _reading(spec: PRMSpec) -> str:
    """How the model card says a step's score is read."""
    if spec.formulation == "implicit":
        return (f"An implicit PRM (no step tag): a step's score is sigmoid(q), q = {spec.beta} × the sum of "
                f"log(pi / pi_ref) over the response's tokens up to the step's last token, pi_ref = `{spec.reference}` "
                "(scoring loads it too).")
    where = f"Each step is followed by the step tag `{spec.step_tag}`; the step's score is read at that token "
    if spec.formulation == "causal-lm":
        return where + (f"as softmax over the next-token logits of `{spec.positive_token}` vs `{spec.negative_token}` "
                        f"(P(`{spec.positive_token}`)).")
    return where + ("as softmax(logits)[1] of the 2-label token classifier." if spec.num_labels == 2
                    else "as sigmoid of the 1-label token classifier.")


def model_card(cfg: Config, spec: PRMSpec, metrics: dict, n_train: int, n_eval: int) -> str:
    settings = dataclasses.asdict(cfg)
    return "\n".join([
        f"# Process reward model ({spec.formulation})", "",
        f"Trained with `ttscale train-prm` from `{cfg.model}` on `{cfg.data}` ({cfg.data_format} format): "
        f"{n_train} training and {n_eval} evaluation examples, {cfg.label_mode} labels "
        f"(tau = {cfg.threshold}){', last step only' if cfg.train_on_last_step_only else ''}.",
        (f"LoRA (r={cfg.lora_r}, alpha={cfg.lora_alpha}) merged into the weights; the adapter is in adapter/."
         if cfg.lora else "Full fine-tune."),
        "", "## Reading the scores", "",
        _reading(spec),
        f"`{SPEC_FILE}` holds these settings; `ttscale.inference.scorers.load_scorer(this_folder)` reads them.",
        "", "## Final metrics", "", "```json", json.dumps(metrics, indent=2, default=str), "```",
        "", "## Training settings", "", "```yaml", yaml.safe_dump(settings, sort_keys=False).rstrip(), "```", ""])


def save_prm(trainer, cfg: Config, tokenizer, spec: PRMSpec, card: str) -> Path:
    """Write the scorer-ready folder (every rank calls this: gathering sharded weights is collective).
    LoRA: the adapter goes to adapter/, the merged weights to the folder itself."""
    from ttscale.train.prm_trainer import load_prm_model
    from ttscale.train.saving import save_full_weights

    out = Path(cfg.output_dir)
    if save_full_weights(trainer, out, load_base=lambda: load_prm_model(
            cfg.model, tokenizer, spec, tag_init=cfg.tag_init_text())):
        tokenizer.save_pretrained(str(out))
        spec.save(out)
        (out / "README.md").write_text(card)
        (out / "train_prm.yaml").write_text(to_yaml(cfg))
    trainer.accelerator.wait_for_everyone()
    return out


def train_prm(cfg: Config):
    """Train and save; returns (trainer, output folder, final metrics). trainer.model is the in-memory PRM."""
    import torch
    from transformers import set_seed

    from ttscale.train.prm_data import PRMCollator
    from ttscale.train.prm_trainer import PRMHead, PRMTrainer, load_tokenizer
    from ttscale.train.saving import check_full_save

    quiet_libraries()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    spec = cfg.spec()
    if spec.formulation == "generative":   # sequence SFT on rationales, not a step-level loss
        from ttscale.train.generative_train import train_generative

        return train_generative(cfg, spec)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, spec.step_tag if spec.formulation != "implicit" else None)
    train, evals = load_examples(cfg, tokenizer, spec)
    # The arguments first: under DeepSpeed ZeRO-3 they register its config, so the model below is built
    # partitioned across ranks (zero3_init_flag) instead of whole on every rank.
    args = training_arguments(cfg, evals is not None, len(train))
    set_seed(cfg.seed)  # a new head and new embedding rows are drawn at random: same seed, same model
    model = build_model(cfg, tokenizer, spec)
    partitioned = any(hasattr(p, "ds_id") for p in model.parameters())  # built by ZeRO-3's zero.Init
    trainer = PRMTrainer(model=model, args=args, train_dataset=train, eval_dataset=evals,
                         data_collator=PRMCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                         prm_head=PRMHead.for_model(model, tokenizer, spec, reference=build_reference(cfg)
                                                    if spec.formulation == "implicit" else None),
                         negative_weight=cfg.negative_weight)
    check_full_save(trainer)
    tokens = TokenCount.attach(trainer)
    trainer.length_micro_batches = cfg.length_micro_batches
    result = trainer.train(resume_from_checkpoint=cfg.resume())
    metrics = {"train_loss": result.training_loss, "global_step": result.global_step,
               "world_size": trainer.args.world_size, "partitioned_init": partitioned, "tokens": tokens.summary(),
               "train_runtime": result.metrics.get("train_runtime")}
    if evals is not None:
        metrics.update(trainer.evaluate())
    card = model_card(cfg, spec, metrics, len(train), len(evals or []))
    out = save_prm(trainer, cfg, tokenizer, spec, card)
    if trainer.is_world_process_zero():
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
    return trainer, out, metrics


def run(cfg: Config) -> int:
    trainer, out, metrics = train_prm(cfg)
    if trainer.is_world_process_zero():
        print(json.dumps({"output_dir": str(out), **metrics}, default=str))
    return 0
