"""The toy-world policy stage: SFT data, a short real training run, save/reload, the report."""
from __future__ import annotations

import json

import pytest

from ttscale.data.toy_world import check_steps, generate_problems


def test_mistake_rates_are_linear_in_level():
    from ttscale.train.train_policy_cmd import mistake_rates

    assert mistake_rates([1, 3, 5], 0.1, 0.5) == pytest.approx({1: 0.1, 3: 0.3, 5: 0.5})


def test_sft_pairs_inject_mistakes_at_the_requested_rate(tiny_tokenizer):
    from ttscale.data.steps import build_prompt
    from ttscale.train.train_policy_cmd import sft_pairs

    rows = generate_problems(400, seed=2, levels=[1, 5])
    pairs = sft_pairs(rows, tiny_tokenizer, {1: 0.0, 5: 0.5}, seed=0)
    assert pairs == sft_pairs(rows, tiny_tokenizer, {1: 0.0, 5: 0.5}, seed=0)
    assert all(p["prompt"] == build_prompt(r["problem"], tiny_tokenizer) for p, r in zip(pairs, rows))
    wrong = {lv: sum(not all(check_steps(r, p["completion"])) for p, r in zip(pairs, rows) if r["level"] == lv)
             for lv in (1, 5)}
    assert wrong[1] == 0
    assert 70 <= wrong[5] <= 130  # ~ half of 200


def test_sft_pairs_misread_traps_the_same_way_at_the_requested_rate(tiny_tokenizer):
    from ttscale.data.toy_world import misread_solution
    from ttscale.train.train_policy_cmd import sft_pairs

    rows = [r for r in generate_problems(600, seed=2, levels=[4, 5]) if r["program"]["trap"] >= 0]
    pairs = sft_pairs(rows, tiny_tokenizer, {4: 0.0, 5: 0.0}, seed=0, misread_rate=0.7)
    misread = [p["completion"] == misread_solution(r) for p, r in zip(pairs, rows)]
    assert len(rows) > 200 and 0.6 < sum(misread) / len(rows) < 0.8
    assert all(p["completion"] == r["solution"] for p, r, m in zip(pairs, rows, misread) if not m)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ttscale.config import parse_config
    from ttscale.train.train_policy_cmd import Config, run

    out = tmp_path_factory.mktemp("policy")
    cfg = parse_config(Config, [str(out), "--n-train", "96", "--levels", "1", "2", "--max-steps", "25",
                                "--per-device-train-batch-size", "8", "--hidden-size", "32", "--num-layers", "1",
                                "--vocab-size", "300", "--eval-problems", "2", "--eval-samples", "2",
                                "--max-new-tokens", "24", "--threads", "1"])
    assert run(cfg) == 0
    return out


def test_training_lowers_the_loss_and_writes_a_report(trained):
    report = json.loads((trained / "policy_report.json").read_text())
    assert report["last_loss"] < report["first_loss"] * 0.8
    assert set(report["per_level"]) == {"1", "2"}
    for stats in report["per_level"].values():
        assert stats["samples"] == 4 and stats["problems"] == 2
        assert 0.0 <= stats["correct_rate"] <= 1.0
    assert report["num_params"] > 0 and report["train_seconds"] > 0


def test_saved_policy_reloads_with_auto_classes(trained):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.data.steps import build_prompt

    model = AutoModelForCausalLM.from_pretrained(trained).eval()
    tok = AutoTokenizer.from_pretrained(trained)
    prompt = build_prompt("Mia has 3 apples. Then she buys 2 more. How many apples?", tok)
    assert prompt.startswith("<|user|>") and prompt.endswith("<|assistant|>\n")  # chat template saved
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_policy_tokenizer_makes_the_fixed_instruction_a_few_tokens():
    from ttscale.data.steps import DEFAULT_DELIMITER, build_prompt
    from ttscale.train.train_policy_cmd import tokenizer_corpus
    from ttscale.train.tiny import train_tokenizer

    rows = generate_problems(500, seed=4)
    tok = train_tokenizer(tokenizer_corpus(rows), vocab_size=512, merge_words=True)  # train-policy's default
    assert len(tok(build_prompt("", tok))["input_ids"]) <= 12
    text = build_prompt(rows[0]["problem"], tok) + rows[0]["solution"]
    assert tok.decode(tok(text)["input_ids"]) == text
    # the step delimiter is its own token wherever it occurs, so continuing a prefix tokenizes like training
    delim = tok(DEFAULT_DELIMITER, add_special_tokens=False)["input_ids"]
    assert len(delim) == 1 and delim[0] in tok(rows[0]["solution"])["input_ids"]
