"""PRM trainer, metrics and eval-prm, trained for real on tiny models with true toy-world step labels.

One module-scoped PRM is trained properly (and reused); the other formulations / LoRA / soft labels train
a few steps each, enough to check the saved checkpoint scores exactly like the in-memory model.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ttscale.data.io import read_jsonl, write_table
from ttscale.inference.prm_inputs import PRMSpec, StepAlignmentError
from ttscale.inference.scorers_load import load_scorer
from ttscale.train import prm_metrics as pm
from ttscale.train.prm_data import PRMCollator, encode_rows, split_by_problem, step_targets, toy_labelled_rows
from ttscale.train.prm_trainer import PRMHead, load_tokenizer
from ttscale.train.train_prm_cmd import Config, train_prm

TAG = "<|step|>"
AUC_MIN = 0.62  # measured 0.662 held-out (see test_prm_separates_correct_from_wrong_steps)


ADD_VERBS = ("buys", "finds", "is given")


def _verb_rows(rows: list[dict]) -> list[dict]:
    """Toy solutions relabelled "does this step add?": a label visible in the step's own text, so it
    checks that each label lands on its own step and is learnable in tens of steps."""
    return [{**r, "labels": [float(any(v in s for v in ADD_VERBS)) for s in r["steps"]]} for r in rows]


@pytest.fixture(scope="module")
def base_dir(toy_base_dir):
    """A tiny random Llama + a BPE tokenizer trained on toy-world text, saved like a hub checkpoint."""
    return toy_base_dir


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("prm_data")
    train = toy_labelled_rows(120, seed=1, levels=(1, 2))
    test = toy_labelled_rows(60, seed=7, levels=(1, 2))
    write_table(train, path / "train.jsonl")
    return {"train": path / "train.jsonl", "test": test, "dir": path}


def _cfg(base_dir, data, out, **kw) -> Config:
    opts = dict(model=str(base_dir), data=str(data), output_dir=str(out), threads=1, logging_steps=5, seed=0,
                learning_rate=5e-3, per_device_train_batch_size=8, eval_fraction=0.0, report_to="none")
    opts.update(kw)
    return Config(**opts)


@pytest.fixture(scope="module")
def trained(base_dir, toy_data, tmp_path_factory):
    """The properly trained token-classification PRM (hard labels, held-out eval during training)."""
    out = tmp_path_factory.mktemp("prm_tc")
    # whole batches: this 100-step run's learning margin is near the noise of the head's dropout masks, which
    # micro-batches draw per piece (test_length_micro_batches_take_the_same_step_as_whole_batches)
    cfg = _cfg(base_dir, toy_data["train"], out, max_steps=100, eval_fraction=0.1, eval_steps=50,
               warmup_steps=0.1, length_micro_batches=False)
    trainer, path, metrics = train_prm(cfg)
    return {"trainer": trainer, "path": path, "metrics": metrics, "cfg": cfg}


def _in_memory_scores(trainer, tokenizer, spec, rows) -> list[list[float]]:
    """Scores of the in-memory model, computed the training way (collator + PRMHead margins)."""
    examples, _ = encode_rows(rows, tokenizer, spec, label_mode="soft")
    batch = PRMCollator(tokenizer.pad_token_id)(examples)
    model = trainer.model.eval()
    with torch.no_grad():
        margins = PRMHead.for_model(model, tokenizer, spec).margins(model, batch)
    column = {int(p): k for k, p in enumerate(batch["positions"])}
    return [[float(torch.sigmoid(margins[b, column[p]])) for p in e["positions"]] for b, e in enumerate(examples)]


def _assert_reload_matches(trainer, path, rows):
    tokenizer = trainer.processing_class
    spec = PRMSpec.load(path)
    mine = _in_memory_scores(trainer, tokenizer, spec, rows)
    loaded = load_scorer(path).score([(r["problem"], r["steps"]) for r in rows])
    assert [len(s) for s in loaded] == [len(r["steps"]) for r in rows]
    np.testing.assert_allclose(np.concatenate(loaded), np.concatenate(mine), atol=2e-5)


# ----------------------------------------------------------------------------------------- training

def test_loss_goes_down(trained):
    losses = [h["loss"] for h in json.loads((trained["path"] / "log_history.json").read_text()) if "loss" in h]
    assert len(losses) >= 10
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.05, losses


def test_prm_separates_correct_from_wrong_steps(trained, base_dir, toy_data, tmp_path):
    # Measured (100 steps, tiny random-init Llama): held-out step AUC 0.662; untrained (zero-init head): 0.5.
    # Toy steps are wrong through arithmetic, which a random-init 2-layer model learns only slowly;
    # test_learns_a_step_local_signal shows the trainer learning a visible per-step signal to AUC > 0.95.
    test = toy_data["test"]
    labels = [r["labels"] for r in test]
    scores = load_scorer(trained["path"]).score([(r["problem"], r["steps"]) for r in test])
    m = pm.prm_metrics(list(zip(scores, labels)))
    untrained = _cfg(base_dir, toy_data["train"], tmp_path / "untrained", max_steps=1, learning_rate=1e-12)
    train_prm(untrained)
    base = pm.prm_metrics(list(zip(load_scorer(tmp_path / "untrained").score(
        [(r["problem"], r["steps"]) for r in test]), labels)))
    print("held-out AUC trained", m["step_auc"], "untrained", base["step_auc"])
    assert m["step_auc"] > AUC_MIN, m
    assert m["step_auc"] > base["step_auc"] + 0.1, (m, base)
    for key in ("eval_step_auc", "eval_step_accuracy", "eval_first_error_f1", "eval_acc_error", "eval_acc_correct"):
        assert 0.0 <= trained["metrics"][key] <= 1.0


@pytest.fixture(scope="module")
def verb_prm(base_dir, toy_data, tmp_path_factory):
    data = toy_data["dir"] / "verbs.jsonl"
    write_table(_verb_rows(toy_labelled_rows(60, seed=1, levels=(1, 2))), data)
    _, path, _ = train_prm(_cfg(base_dir, data, tmp_path_factory.mktemp("verbs"), max_steps=40,
                                per_device_train_batch_size=16, learning_rate=3e-3))
    return path


def test_learns_a_step_local_signal(verb_prm, toy_data):
    # Measured: held-out step AUC 0.979, accuracy 0.963 after 40 steps.
    test = _verb_rows(toy_data["test"])
    scores = load_scorer(verb_prm).score([(r["problem"], r["steps"]) for r in test])
    m = pm.prm_metrics(list(zip(scores, [r["labels"] for r in test])))
    assert m["step_auc"] > 0.95 and m["step_accuracy"] > 0.9, m


def test_saved_folder_is_complete_and_reloads_identically(trained, toy_data):
    path = trained["path"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "ttscale_prm.json", "README.md"):
        assert (path / name).is_file(), name
    spec = PRMSpec.load(path)
    assert (spec.formulation, spec.num_labels, spec.step_tag) == ("token-classification", 2, TAG)
    card = (path / "README.md").read_text()
    assert "label_mode: hard" in card and str(trained["cfg"].data) in card
    _assert_reload_matches(trained["trainer"], path, toy_data["test"][:12])


def test_causal_lm_soft_labels_save_and_reload(base_dir, toy_data, tmp_path):
    soft = toy_data["dir"] / "soft.jsonl"
    write_table(toy_labelled_rows(20, seed=3, levels=(1, 2), rollouts=4), soft)
    cfg = _cfg(base_dir, soft, tmp_path / "clm", formulation="causal-lm", label_mode="soft", max_steps=4)
    trainer, path, _ = train_prm(cfg)
    spec = PRMSpec.load(path)
    assert spec.formulation == "causal-lm"
    assert json.loads((path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    _assert_reload_matches(trainer, path, toy_data["test"][:8])


def test_lora_token_classification_merges_on_save(base_dir, toy_data, tmp_path):
    cfg = _cfg(base_dir, toy_data["train"], tmp_path / "lora", lora=True, lora_r=4, lora_alpha=8,
               label_mode="soft", max_steps=4, learning_rate=2e-2)
    trainer, path, _ = train_prm(cfg)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("score" in n for n in trainable)
    assert not any("mlp.up_proj.base_layer" in n for n in trainable)
    assert (path / "adapter" / "adapter_config.json").is_file()
    assert PRMSpec.load(path).num_labels == 1  # soft labels -> one sigmoid logit by default
    _assert_reload_matches(trainer, path, toy_data["test"][:8])


# ----------------------------------------------------------------------------------------- data

def test_soft_labels_stay_fractional_in_the_batch(base_dir):
    rows = toy_labelled_rows(6, seed=5, levels=(1, 2), rollouts=4)
    tok = load_tokenizer(str(base_dir), TAG)
    examples, stats = encode_rows(rows, tok, PRMSpec(max_length=512), label_mode="soft")
    batch = PRMCollator(tok.pad_token_id)(examples)
    labels = batch["labels"][batch["labels"] != pm.IGNORE]
    assert labels.dtype == torch.float32
    expected = [c / t for r in rows for c, t in zip(r["mc_correct"], r["mc_total"])]
    assert sorted(labels.tolist()) == pytest.approx(sorted(expected))
    assert any(0 < v < 1 for v in labels.tolist())
    ids = batch["input_ids"]
    tag_id = tok.convert_tokens_to_ids(TAG)
    for b, e in enumerate(examples):  # every labelled step owns exactly one position, and it is its tag
        assert [int(ids[b, p]) for p in e["positions"]] == [tag_id] * len(e["labels"])
    assert stats.labelled_steps == len(expected)


def test_label_modes_threshold_and_last_step_only():
    row = {"labels": [0.75, 0.25, 0.0], "mc_correct": [3, 1, 0], "mc_total": [4, 4, 4]}
    assert step_targets(row, "soft") == [0.75, 0.25, 0.0]
    assert step_targets(row, "hard", threshold=0.0) == [1.0, 1.0, 0.0]
    assert step_targets(row, "hard", threshold=0.5) == [1.0, 0.0, 0.0]  # re-derived from the MC evidence
    assert step_targets({"labels": [0.75, 0.25]}, "hard", threshold=0.5) == [1.0, 0.0]
    assert step_targets(row, "soft", last_step_only=True) == [pm.IGNORE, pm.IGNORE, 0.0]


def test_negative_weight_scales_the_wrong_step_part_of_the_loss_by_hand():
    """m = 0 (p = 0.5): a right step costs log 2, a wrong one w log 2; a soft target 0.25 splits it 0.25 : 0.75w;
    IGNORE positions cost nothing. With w = 1 it is plain cross-entropy."""
    from ttscale.train.prm_trainer import step_loss_sum

    margins = torch.tensor([[0.0, 0.0, 0.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0, 0.25, pm.IGNORE]])
    loss, n = step_loss_sum(margins, labels, negative_weight=3.0)
    assert int(n) == 3 and float(loss) == pytest.approx(math.log(2) * (1 + 3 + 0.25 + 0.75 * 3))
    plain, _ = step_loss_sum(margins, labels)
    assert float(plain) == pytest.approx(3 * math.log(2))
    assert float(step_loss_sum(margins, labels, 1.0 + 1e-12)[0]) == pytest.approx(float(plain))


def test_overlong_rows_error_by_name_or_are_dropped(base_dir):
    rows = toy_labelled_rows(4, seed=2, levels=(1, 3))
    tok = load_tokenizer(str(base_dir), TAG)
    spec = PRMSpec(max_length=60)
    with pytest.raises(StepAlignmentError, match=r"train\.jsonl: row \d+ \(id 'toy-2-0000\d-\w+'\).*truncated"):
        encode_rows(rows, tok, spec, where="train.jsonl")
    kept, stats = encode_rows(rows, tok, spec, on_overlong="drop")
    assert stats.dropped_overlong > 0 and len(kept) == len(rows) - stats.dropped_overlong
    assert all(len(e["input_ids"]) <= 60 for e in kept)
    # The prompt is left-truncated (steps kept) before a row counts as over-long.
    long_problem = {**rows[0], "problem": "word " * 200}
    (ex,), _ = encode_rows([long_problem], tok, PRMSpec(max_length=80))
    assert len(ex["input_ids"]) == 80 and len(ex["positions"]) == len(rows[0]["steps"])


def test_new_step_tag_never_merges_and_tag_in_text_is_caught(base_dir):
    tok = load_tokenizer(str(base_dir), "ки")  # not in the vocabulary: added as one special token
    tag_id = tok.convert_tokens_to_ids("ки")
    rows = [{"id": "r1", "problem": "2 + 2?", "steps": ["2 + 2 = 4 к", "so и"], "labels": [1.0, 1.0]}]
    (ex,), _ = encode_rows(rows, tok, PRMSpec(step_tag="ки", max_length=128))
    assert [ex["input_ids"][p] for p in ex["positions"]] == [tag_id, tag_id]
    assert ex["input_ids"].count(tag_id) == 2
    bad = [{"id": "r2", "problem": "p", "steps": ["a ки b"], "labels": [1.0]}]
    with pytest.raises(StepAlignmentError, match="r2.*step tag"):
        encode_rows(bad, tok, PRMSpec(step_tag="ки", max_length=128))


def test_eval_split_holds_out_whole_problems():
    rows = toy_labelled_rows(40, seed=4, levels=(1,))
    train, held = split_by_problem(rows, 0.25, seed=0)
    assert len(held) == 20 and len(train) == 60
    assert not {r["problem"] for r in train} & {r["problem"] for r in held}
    assert split_by_problem(rows, 0.25, seed=0)[1] == held


# ----------------------------------------------------------------------------------------- metrics

def test_first_error_f1_matches_processbench_definition():
    # 3 erroneous rows (2 found exactly), 2 correct rows (1 predicted clean) -> F1 = 2*(2/3*1/2)/(2/3+1/2)
    s = pm.first_error_scores(pred=[1, 0, -1, -1, 2], gold=[1, 0, 2, -1, -1])
    assert (s["acc_error"], s["acc_correct"]) == (pytest.approx(2 / 3), 0.5)
    assert s["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert pm.first_error([0.9, 0.5, 0.1]) == 1 and pm.first_error([0.9, 0.6]) == -1


def test_threshold_sweep_equals_brute_force():
    rng = np.random.default_rng(0)
    rows = [rng.random(rng.integers(1, 6)).tolist() for _ in range(60)]
    gold = [int(rng.integers(-1, len(r))) for r in rows]
    t, f1 = pm.f1_by_threshold(rows, gold)
    for k in rng.choice(len(t), 15, replace=False):
        brute = pm.first_error_scores([pm.first_error(r, t[k]) for r in rows], gold)["f1"]
        assert f1[k] == pytest.approx(brute), t[k]
    best, best_f1 = pm.best_threshold(rows, gold)
    assert best_f1 == pytest.approx(f1.max())
    assert pm.first_error_scores([pm.first_error(r, best) for r in rows], gold)["f1"] == pytest.approx(best_f1)


# ----------------------------------------------------------------------------------------- eval-prm

def test_eval_prm_on_processbench_file(verb_prm, toy_data, tmp_path, capsys):
    from ttscale.cli import main

    test = _verb_rows(toy_data["test"])  # first "error" = first step that does not add
    bench = [{"id": r["id"], "problem": r["problem"], "steps": r["steps"], "label": pm.first_error(r["labels"]),
              "split": "easy" if len(r["steps"]) <= 2 else "hard"} for r in test]
    write_table(bench[:30], tmp_path / "fit.jsonl")    # threshold fitted here ...
    write_table(bench[30:], tmp_path / "bench.jsonl")  # ... and reported here
    preds = tmp_path / "preds.jsonl"
    argv = ["eval-prm", "--data", str(tmp_path / "bench.jsonl"), "--prm", str(verb_prm),
            "--predictions", str(preds), "--prm-threads", "1"]
    out = tmp_path / "s.json"
    assert main(argv + ["--threshold", "0.5", "--summary", str(out)]) == 0
    given = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{\n"):]) == given  # the printed JSON summary
    rows = read_jsonl(preds)
    assert len(rows) == len(bench) - 30 and {"pred", "scores", "match", "split"} <= set(rows[0])
    for name, split in given["splits"].items():  # F1 recomputed from the written predictions
        part = [r for r in rows if r["split"] == name]
        assert split["f1"] == pytest.approx(pm.first_error_scores([r["pred"] for r in part],
                                                                   [r["label"] for r in part])["f1"])
    assert given["f1"] == pytest.approx(np.mean([s["f1"] for s in given["splits"].values()]))
    assert given["f1"] > 0.8, given  # measured 0.96 pooled
    assert given["step_auc"] > 0.9, given  # the verb signal is step-local: measured 0.98 in training
    assert main(argv + ["--threshold-from", str(tmp_path / "fit.jsonl"), "--summary", str(out)]) == 0
    tuned = json.loads(out.read_text())
    assert tuned["threshold_source"] == "threshold-from" and tuned["threshold_fit"]["rows"] == 30
    assert not math.isnan(tuned["threshold"]) and tuned["skipped"] == 0


# ------------------------------------------------------------------------ one training-option set

def test_training_stages_share_one_option_set():
    """train-prm, train-revision and train-policy take the same training options, under the same flags,
    and build their Trainer arguments through the one mapping."""
    import dataclasses

    from ttscale.config import build_parser
    from ttscale.train import train_policy_cmd, train_prm_cmd, train_revision_cmd
    from ttscale.train.options import TrainingOptions

    shared = [f.name for f in dataclasses.fields(TrainingOptions)]
    stages = (train_prm_cmd.Config, train_revision_cmd.Config, train_policy_cmd.Config)
    flags = []
    for cls in stages:
        assert issubclass(cls, TrainingOptions)
        assert cls.to_training_arguments is TrainingOptions.to_training_arguments
        by_dest = {a.dest: tuple(a.option_strings) for a in build_parser(cls)._actions}
        flags.append({name: by_dest[name] for name in shared})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in shared:  # a stage may change a default, never the type
            assert fields[name].type == TrainingOptions.__dataclass_fields__[name].type, (cls, name)
        # the old per-stage spellings are gone
        assert not {"batch_size", "grad_accum", "epochs", "warmup", "bf16", "lora_targets"} & set(fields)
    assert flags[0] == flags[1] == flags[2]
    assert flags[0]["per_device_train_batch_size"] == ("--per-device-train-batch-size",)
    # per-stage defaults are today's
    assert train_prm_cmd.Config.__dataclass_fields__["learning_rate"].default == 1e-5
    assert train_revision_cmd.Config.__dataclass_fields__["learning_rate"].default == 1e-4
    policy = train_policy_cmd.Config.__dataclass_fields__
    assert (policy["learning_rate"].default, policy["max_steps"].default, policy["lr_scheduler_type"].default,
            policy["warmup_steps"].default, policy["per_device_train_batch_size"].default) == (3e-3, 700, "cosine",
                                                                                             0.05, 16)


def test_training_options_map_to_trainer_arguments(tmp_path):
    from transformers import TrainingArguments
    from trl import SFTConfig

    from ttscale.train.options import TrainingOptions
    from ttscale.train.sft import SFTArgs, sft_config
    from ttscale.train.train_prm_cmd import training_arguments

    common = dict(learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=5.0, weight_decay=0.1,
                  num_train_epochs=2.0, max_steps=40, per_device_train_batch_size=4, gradient_accumulation_steps=3,
                  precision="fp32", gradient_checkpointing=True, logging_steps=100, save_steps=7,
                  save_total_limit=1, report_to="none", seed=5)
    expected = dict(learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=5, weight_decay=0.1,
                    num_train_epochs=2.0, max_steps=40, per_device_train_batch_size=4,
                    gradient_accumulation_steps=3, bf16=False, fp16=False, activation_checkpointing=True,
                    activation_checkpointing_kwargs={"use_reentrant": False},
                    logging_steps=8,  # a 40-step run logs every 40/5 steps, not every 100
                    save_strategy="steps", save_steps=7, save_total_limit=1, seed=5, data_seed=5,
                    dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
                    train_sampling_strategy="random")
    args = TrainingOptions(**common).to_training_arguments(str(tmp_path / "a"))
    sft = sft_config(SFTArgs(**common, max_length=77), tmp_path / "b")
    assert type(args) is TrainingArguments and isinstance(sft, SFTConfig)
    for name, value in expected.items():
        assert getattr(args, name) == getattr(sft, name) == value, name
    assert args.report_to == sft.report_to and args.lr_scheduler_type == sft.lr_scheduler_type
    assert sft.max_length == 77 and sft.completion_only_loss is True
    assert str(args.output_dir) == str(tmp_path / "a")

    # epochs instead of steps; a warmup below 1 is a fraction; what only the PRM adds
    cfg = Config(model="m", data="d", output_dir=str(tmp_path / "prm"), max_steps=0, warmup_steps=0.1,
                 per_device_train_batch_size=6)
    prm = training_arguments(cfg, has_eval=True)
    assert (prm.max_steps, prm.warmup_steps, prm.logging_steps, prm.save_strategy) == (-1, 0.1, 10, "no")
    assert prm.per_device_eval_batch_size == 6 and prm.eval_strategy == "no"   # evaluated once, at the end
    assert training_arguments(Config(model="m", data="d", output_dir="o", eval_steps=50), True).eval_strategy == "steps"
    assert TrainingOptions(group_by_length=True).to_training_arguments("o").train_sampling_strategy == "group_by_length"
    assert prm.remove_unused_columns is False and str(prm.output_dir).endswith("checkpoints")
    # a short epoch-based run still logs several losses
    assert training_arguments(cfg, has_eval=False, num_examples=60).logging_steps == 2


def test_lora_target_modules_one_type():
    from ttscale.train.options import TrainingOptions

    assert TrainingOptions().lora_targets() == "all-linear"
    assert TrainingOptions(lora_target_modules=["q_proj", "v_proj"]).lora_targets() == ["q_proj", "v_proj"]
    assert TrainingOptions(lora_target_modules=["q_proj,v_proj"]).lora_targets() == ["q_proj", "v_proj"]


def test_grouped_batches_pad_little_and_keep_batches_shuffled():
    import random

    from ttscale.train.batching import GroupedBatches

    rng = random.Random(0)
    lengths = [rng.randint(10, 200) for _ in range(1003)]
    order = list(GroupedBatches(lengths, 8, seed=1, groups=10))
    assert sorted(order) == list(range(1003)) and order == list(GroupedBatches(lengths, 8, seed=1, groups=10))
    assert order != list(GroupedBatches(lengths, 8, seed=2, groups=10))
    batches = [order[i:i + 8] for i in range(0, len(order), 8)]
    real = sum(lengths[i] for i in order)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert real / padded > 0.9     # random batches of this data pad to ~0.5
    # the batches come in random order, not long to short: their longest rows are uncorrelated with position
    longest = [max(lengths[i] for i in b) for b in batches[:-1]]
    ups = sum(a < b for a, b in zip(longest, longest[1:]))
    assert 0.3 < ups / (len(longest) - 1) < 0.7
    assert len(batches[-1]) == 1003 % 8   # a group's short batch is last, so every other batch is whole


def test_length_cuts_sort_and_cut_only_where_it_pays():
    from ttscale.train.batching import length_cuts

    assert length_cuts([50, 10, 52, 11]) == [[1, 3], [0, 2]]      # two lengths: two pieces, sorted
    assert length_cuts([50, 49, 51, 50]) == [[1, 0, 3, 2]]        # nothing to save: one piece
    pieces = length_cuts([5, 200, 7, 190, 60, 6, 58, 195])
    assert sorted(i for p in pieces for i in p) == list(range(8)) and len(pieces) == 3


@pytest.mark.parametrize("kind", ["prm", "sft"])
def test_length_micro_batches_take_the_same_step_as_whole_batches(kind, base_dir, toy_data, tmp_path, monkeypatch):
    """Each batch run as length-sorted pieces with their gradients accumulated is the same optimizer step as
    the whole padded batch: same losses and weights (to float rounding), fewer padded tokens. (Dropout, which
    the token-classification head has, is off here: its masks are drawn per piece, so they differ.)"""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, *a, **k: x)

    def run(micro: bool):
        if kind == "prm":
            trainer, _, metrics = train_prm(_cfg(base_dir, toy_data["train"], tmp_path / f"prm{micro}", max_steps=6,
                                                 length_micro_batches=micro))
            return trainer, metrics["tokens"], metrics["train_loss"]
        from ttscale.train.sft import SFTArgs, sft_trainer

        rows = read_jsonl(toy_data["train"])
        pairs = datasets.Dataset.from_list([{"prompt": r["problem"] + "\n\n", "completion": "\n\n".join(r["steps"])}
                                            for r in rows])
        tok = AutoTokenizer.from_pretrained(base_dir)
        tok.pad_token = tok.pad_token or tok.eos_token
        trainer = sft_trainer(lambda: AutoModelForCausalLM.from_pretrained(base_dir), tok, pairs,
                              SFTArgs(max_steps=6, per_device_train_batch_size=8, threads=1, seed=0,
                                      learning_rate=5e-3, report_to="none", length_micro_batches=micro),
                              tmp_path / f"sft{micro}")
        result = trainer.train()
        return trainer, trainer.token_count.summary(), result.training_loss

    (whole, whole_tokens, whole_loss), (cut, cut_tokens, cut_loss) = run(False), run(True)
    assert cut_loss == pytest.approx(whole_loss, rel=1e-5)
    for (name, a), b in zip(whole.model.named_parameters(), cut.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    assert cut_tokens["real"] == whole_tokens["real"] and cut_tokens["batches"] == whole_tokens["batches"] == 6
    assert cut_tokens["real_per_padded"] > whole_tokens["real_per_padded"]
