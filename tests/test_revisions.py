"""Revision data (Snell et al. §6.1), THE revision prompt format, and revision-model SFT on a tiny model."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch

from ttscale.data.revision_format import (INFO_FILE, REVISION_FORMAT_VERSION, read_revision_info, revision_prompt,
                                          write_revision_info)
from ttscale.data.revisions import build_revision_examples, closest_index, levenshtein, revision_trajectory
from ttscale.data.steps import build_prompt, split_steps
from ttscale.data.toy_world import final_answer, generate_problems, inject_mistake


def toy_grader(text: str, gold: str) -> bool:
    return final_answer(text) == gold


def _dp_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_levenshtein_matches_textbook_dp():
    rng = random.Random(0)
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3 and levenshtein("ab", "ab") == 0
    for _ in range(400):
        a = "".join(rng.choice("ab1 \n") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("ab12\n") for _ in range(rng.randint(0, 90)))  # > 64 bits: multi-word ints
        assert levenshtein(a, b) == _dp_distance(a, b) == levenshtein(b, a), (a, b)


@pytest.fixture(scope="module")
def toy_samples():
    """Per problem: 5 correct answers (the reference) and 6 distinct wrong ones (injected mistakes)."""
    problems = generate_problems(12, seed=3, levels=[3, 4, 5])
    samples = {}
    for p in problems:
        rng = random.Random(p["id"])
        wrong = []
        while len(wrong) < 6:
            text, _ = inject_mistake(p, rng)
            if text not in wrong:
                wrong.append(text)
        samples[p["id"]] = [p["solution"]] * 5 + wrong
    return problems, samples


def test_last_attempt_is_the_closest_incorrect_answer():
    correct = "Mia has 12 + 7 = 19 apples.\n\nThe answer is \\boxed{19}."
    near = "Mia has 12 + 7 = 18 apples.\n\nThe answer is \\boxed{18}."            # one digit off
    medium = "Mia has 12 - 7 = 5 apples.\n\nThe answer is \\boxed{5}."
    far = "I think the answer is 42, obviously, because of many reasons.\n\n\\boxed{42}"
    incorrect = [far, medium, near]
    assert closest_index(correct, incorrect) == 2
    seen = Counter()
    for seed in range(40):
        attempts = revision_trajectory(correct, incorrect, random.Random(seed), max_incorrect=4)
        seen[len(attempts)] += 1
        if attempts:
            assert attempts[-1] == near
            assert near not in attempts[:-1] and set(attempts) <= set(incorrect) and len(set(attempts)) == len(attempts)
    assert set(seen) == {0, 1, 2, 3}  # only as many as exist (3), every count drawn


def test_examples_counts_only_incorrect_and_targets_correct(toy_samples):
    problems, samples = toy_samples
    rows = build_revision_examples(problems, samples, max_incorrect=4, seed=0, grader=toy_grader)
    assert len(rows) == 5 * len(problems)
    by_id = {p["id"]: p for p in problems}
    counts = Counter(r["num_incorrect"] for r in rows)
    assert set(counts) == {0, 1, 2, 3, 4}
    for r in rows:
        p = by_id[r["problem_id"]]
        wrong = samples[p["id"]][5:]
        assert r["target"] == p["solution"] and r["problem"] == p["problem"]
        assert r["num_incorrect"] == len(r["prompt_attempts"]) <= 4
        assert all(a in wrong for a in r["prompt_attempts"]) and len(set(r["prompt_attempts"])) == r["num_incorrect"]
        if r["prompt_attempts"]:
            assert r["prompt_attempts"][-1] == wrong[closest_index(p["solution"], wrong)]
    assert len({r["id"] for r in rows}) == len(rows)
    # Caps: max_incorrect, and problems with no correct sample give nothing.
    capped = build_revision_examples(problems, samples, max_incorrect=2, seed=0, grader=toy_grader)
    assert max(r["num_incorrect"] for r in capped) == 2
    only_wrong = {pid: s[5:] for pid, s in samples.items()}
    assert build_revision_examples(problems, only_wrong, grader=toy_grader) == []


def test_examples_are_deterministic_by_seed(toy_samples):
    problems, samples = toy_samples
    a = build_revision_examples(problems, samples, seed=7, grader=toy_grader)
    b = build_revision_examples(problems, samples, seed=7, grader=toy_grader)
    c = build_revision_examples(problems, samples, seed=8, grader=toy_grader)
    assert a == b and a != c
    # A problem's rows do not depend on the other problems in the set.
    alone = build_revision_examples(problems[:1], samples, seed=7, grader=toy_grader)
    assert alone == [r for r in a if r["problem_id"] == problems[0]["id"]]


def test_keep_rate_puts_a_correct_attempt_last_in_that_share_of_rows(toy_samples):
    from ttscale.data.revisions import trajectory_count

    problems, samples = toy_samples
    plain = build_revision_examples(problems, samples, seed=3, grader=toy_grader)
    assert build_revision_examples(problems, samples, seed=3, keep_rate=0.0, grader=toy_grader) == plain
    assert not any(r["kept"] for r in plain)
    rows = build_revision_examples(problems, samples, seed=3, keep_rate=0.5, grader=toy_grader)
    by_id = {p["id"]: p for p in problems}
    kept = [r for r in rows if r["kept"]]
    assert len(rows) == len(plain) and 0.3 * len(rows) < len(kept) < 0.7 * len(rows)
    for r in kept:
        p, wrong = by_id[r["problem_id"]], samples[r["problem_id"]][5:]
        assert r["prompt_attempts"][-1] == r["target"] == p["solution"]   # a right answer shown, kept
        assert all(a in wrong for a in r["prompt_attempts"][:-1]) and r["num_incorrect"] == len(r["prompt_attempts"]) - 1 <= 3
    keys = [(r["problem_id"], tuple(r["prompt_attempts"]), r["target"]) for r in rows]
    assert len(set(keys)) == len(keys)
    # 1 correct answer, 2 wrong ones, up to 4 in context: 3 wrong-only trajectories + (1 + 2 + 2) kept ones
    assert trajectory_count(2, 4, 1) == 3 + 5 and trajectory_count(2, 0, 1) == 1
    with pytest.raises(ValueError, match="keep_rate"):
        build_revision_examples(problems, samples, keep_rate=1.5, grader=toy_grader)


def test_default_grader_is_the_answers_module(toy_samples):
    pytest.importorskip("ttscale.data.answers")
    problems, samples = toy_samples
    rows = build_revision_examples(problems[:3], samples, seed=0)
    assert rows == build_revision_examples(problems[:3], samples, seed=0, grader=toy_grader)


def test_prompt_keeps_last_attempts_in_order(tiny_tokenizer):
    attempts = [f"Attempt text {i}.\n\nThe answer is \\boxed{{{i}}}." for i in range(6)]
    text = revision_prompt("What is 3 + 4?", attempts)
    assert "Attempt text 0" not in text and "Attempt text 1" not in text
    positions = [text.index(f"Previous attempt {n}:\nAttempt text {i}.") for n, i in zip(range(1, 5), range(2, 6))]
    assert positions == sorted(positions) and "Previous attempt 5" not in text
    assert text.startswith(build_prompt("What is 3 + 4?").split("Problem:")[0]) and text.endswith("Solution:\n")
    assert "corrected solution" in text
    assert revision_prompt("What is 3 + 4?", attempts[:2]).count("Previous attempt") == 2
    assert revision_prompt("What is 3 + 4?", attempts, max_attempts=1).count("Previous attempt") == 1
    # Zero attempts: exactly the policy's first-attempt prompt, with and without a chat template.
    assert revision_prompt("What is 3 + 4?", []) == build_prompt("What is 3 + 4?")
    assert revision_prompt("What is 3 + 4?", [], tiny_tokenizer) == build_prompt("What is 3 + 4?", tiny_tokenizer)
    chat = revision_prompt("What is 3 + 4?", attempts, tiny_tokenizer)
    assert chat.startswith("<|user|>\n") and chat.endswith("<|assistant|>\n") and chat.count("<|user|>") == 1


def test_revision_info_round_trip_and_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-revision"):
        read_revision_info(tmp_path)
    write_revision_info(tmp_path, 3, base_model="policy")
    assert read_revision_info(tmp_path) == {"format_version": REVISION_FORMAT_VERSION, "max_attempts": 3,
                                            "base_model": "policy"}
    (tmp_path / INFO_FILE).write_text(json.dumps({"format_version": 999, "max_attempts": 4}))
    with pytest.raises(ValueError, match="version 999"):
        read_revision_info(tmp_path)


@pytest.fixture(scope="module")
def revision_rows(toy_samples):
    problems, samples = toy_samples
    return build_revision_examples(problems[:4], samples, seed=0, grader=toy_grader)


def test_sft_labels_mask_every_prompt_token(tiny_tokenizer, tiny_lm_dir, revision_rows, tmp_path):
    from transformers import AutoModelForCausalLM

    from ttscale.train.train_revision_cmd import revision_pairs
    from ttscale.train.sft import SFTArgs, sft_trainer

    pairs = revision_pairs(revision_rows, tiny_tokenizer)
    assert all(c.endswith(tiny_tokenizer.eos_token) for c in pairs["completion"])
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    trainer = sft_trainer(model, tiny_tokenizer, pairs, SFTArgs(max_length=4096), tmp_path)
    examples = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(examples)
    for i, row in enumerate(pairs.select(range(4))):
        prompt_len = len(tiny_tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
        full = tiny_tokenizer(row["prompt"] + row["completion"], add_special_tokens=False)["input_ids"]
        labels = batch["labels"][i].tolist()
        assert batch["input_ids"][i].tolist()[:len(full)] == full
        assert all(x == -100 for x in labels[:prompt_len])
        assert labels[prompt_len:len(full)] == full[prompt_len:]
        assert labels[len(full) - 1] == tiny_tokenizer.eos_token_id
        assert all(x == -100 for x in labels[len(full):])  # padding
    with pytest.raises(ValueError, match="row 0 has no 'target'"):
        revision_pairs([{"problem": "p", "prompt_attempts": []}], tiny_tokenizer)
    # the LM head runs only from the first labelled position, and the loss is still the model's own
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        own = model(**batch, use_cache=False).loss
        ours = trainer.compute_loss(model, batch)
        summed = trainer.compute_loss(model, batch, num_items_in_batch=(batch["labels"][:, 1:] != -100).sum())
    assert ours.item() == pytest.approx(own.item(), rel=1e-5) and summed.item() == pytest.approx(own.item(), rel=1e-5)


def test_train_revision_stage_saves_and_reloads(tiny_lm_dir, revision_rows, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.cli import main
    from ttscale.data.io import write_table

    data = write_table(revision_rows, tmp_path / "revisions.jsonl")
    out = tmp_path / "rev"
    rc = main(["train-revision", str(data), str(out), "--model", str(tiny_lm_dir), "--max-steps", "6",
               "--per-device-train-batch-size", "4", "--learning-rate", "3e-3", "--logging-steps", "1", "--threads", "1"])
    assert rc == 0
    info = read_revision_info(out)
    assert info["max_attempts"] == 4 and info["num_examples"] == len(revision_rows)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["last_logged_loss"] < summary["first_logged_loss"]
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.eos_token == "<|endoftext|>"
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    changed = [n for (n, p), (_, q) in zip(model.named_parameters(), base.named_parameters()) if not p.equal(q)]
    assert changed  # the saved weights are the trained ones


def test_build_revisions_stage_from_samples_file(toy_samples, tmp_path):
    from ttscale.cli import main
    from ttscale.data.io import read_jsonl, write_table

    problems, samples = toy_samples
    problems_path = write_table(problems[:4], tmp_path / "problems.jsonl")
    sample_rows = [{"id": pid, "completion": text} for pid in list(samples)[:4] for text in samples[pid]]
    sample_rows.append({"id": "not-a-problem", "completion": "\\boxed{1}"})
    samples_path = write_table(sample_rows, tmp_path / "samples.jsonl")
    out = tmp_path / "revisions.jsonl"
    assert main(["build-revisions", str(out), "--problems", str(problems_path), "--samples", str(samples_path),
                 "--seed", "5"]) == 0
    rows = read_jsonl(out)
    # The default grader (ttscale.data.answers) agrees with the toy world's exact answers.
    assert rows == build_revision_examples(problems[:4], samples, seed=5, grader=toy_grader)
    write_table([{"id": "x", "text": "no completion column"}], tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="bad.jsonl: missing column.*completion"):
        main(["build-revisions", str(out), "--problems", str(problems_path), "--samples", str(tmp_path / "bad.jsonl")])


def test_build_revisions_reuses_a_label_datasets_solutions(toy_samples, tmp_path, capsys):
    import datasets

    from ttscale.cli import main
    from ttscale.data.io import read_jsonl, write_table

    problems, samples = toy_samples
    problems_path = write_table(problems[:4], tmp_path / "problems.jsonl")
    # what `ttscale label` writes: one row per solution, its problem id and steps (other columns ignored)
    labelled = [{"id": f"{pid}-s{j}", "problem_id": pid, "steps": split_steps(text), "labels": [1.0]}
                for pid in list(samples)[:4] for j, text in enumerate(samples[pid])]
    datasets.Dataset.from_list(labelled).save_to_disk(str(tmp_path / "labels"))
    out = tmp_path / "revisions.jsonl"
    assert main(["build-revisions", str(out), "--problems", str(problems_path), "--samples", str(tmp_path / "labels"),
                 "--seed", "5", "--keep-rate", "0.5"]) == 0
    assert read_jsonl(out) == build_revision_examples(problems[:4], samples, seed=5, keep_rate=0.5, grader=toy_grader)
    assert '"rows_keeping_a_correct_attempt": ' in capsys.readouterr().out
    write_table([], tmp_path / "empty.jsonl")
    assert main(["train-revision", str(tmp_path / "empty.jsonl"), str(tmp_path / "rev"), "--model", "x"]) == 2
    assert "no revision rows to train on" in capsys.readouterr().err


def test_build_revisions_stage_samples_from_policy(tiny_lm_dir, toy_samples, tmp_path):
    from ttscale.cli import main
    from ttscale.data.io import read_jsonl, write_table

    problems, _ = toy_samples
    problems_path = write_table(problems[:3], tmp_path / "problems.jsonl")
    args = ["build-revisions", str(tmp_path / "rev.jsonl"), "--problems", str(problems_path), "--policy",
            str(tiny_lm_dir), "--samples-per-problem", "3", "--max-new-tokens", "8", "--threads", "1"]
    # A random tiny policy is never right: no rows, non-zero exit, but the samples it drew are saved.
    assert main(args + ["--save-samples", str(tmp_path / "a.jsonl")]) == 1
    assert main(args + ["--save-samples", str(tmp_path / "b.jsonl")]) == 1
    drawn = read_jsonl(tmp_path / "a.jsonl")
    assert Counter(r["id"] for r in drawn) == {p["id"]: 3 for p in problems[:3]}
    assert all(0 < r["num_tokens"] <= 8 for r in drawn)
    assert drawn == read_jsonl(tmp_path / "b.jsonl")  # seeded


def test_train_revision_lora_merges_into_a_plain_checkpoint(tiny_lm_dir, revision_rows, tmp_path):
    from transformers import AutoModelForCausalLM

    from ttscale.config import parse_config
    from ttscale.data.io import write_table
    from ttscale.train.train_revision_cmd import Config, run

    data = write_table(revision_rows[:8], tmp_path / "revisions.jsonl")
    cfg = parse_config(Config, [str(data), str(tmp_path / "lora"), "--model", str(tiny_lm_dir), "--lora",
                                "--lora-target-modules", "q_proj", "v_proj", "--lora-r", "4", "--max-steps", "2",
                                "--learning-rate", "1e-2", "--threads", "1", "--max-attempts", "2"])
    assert run(cfg) == 0
    assert not (tmp_path / "lora" / "adapter_config.json").exists()
    assert read_revision_info(tmp_path / "lora")["max_attempts"] == 2
    merged = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "lora").named_parameters())
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_lm_dir).named_parameters())
    assert merged.keys() == base.keys()  # no lora_A/lora_B left: a plain checkpoint
    changed = {n.split(".")[-2] for n in base if not merged[n].equal(base[n])}
    assert changed == {"q_proj", "v_proj"}  # only the adapted projections moved


def test_no_duplicate_revision_rows(toy_samples, tmp_path, capsys):
    from ttscale.cli import main
    from ttscale.data.io import read_jsonl, write_table
    from ttscale.data.revisions import trajectory_count

    problems, samples = toy_samples
    assert [trajectory_count(n, 4) for n in (0, 1, 2, 3, 6)] == [1, 2, 3, 6, 1 + 1 + 5 + 20 + 60]
    # Repeated correct answers with few distinct wrong ones: the data holds 1 + 1 and 1 + 1 + 1 trajectories.
    few = {problems[0]["id"]: [problems[0]["solution"]] * 12 + samples[problems[0]["id"]][5:6],
           problems[1]["id"]: [problems[1]["solution"]] * 12 + samples[problems[1]["id"]][5:7] * 3}
    rows = build_revision_examples(problems[:2], few, seed=0, grader=toy_grader)
    keys = [(r["problem_id"], tuple(r["prompt_attempts"]), r["target"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 + 3
    # Plenty of distinct wrong answers: every correct answer still gets its own (distinct) row.
    rows = build_revision_examples(problems, samples, seed=1, grader=toy_grader)
    keys = {(r["problem_id"], tuple(r["prompt_attempts"]), r["target"]) for r in rows}
    assert len(keys) == len(rows) == 5 * len(problems)
    # The stage says how many distinct rows the data gives.
    problems_path = write_table(problems[:2], tmp_path / "problems.jsonl")
    samples_path = write_table([{"id": pid, "completion": t} for pid, ts in few.items() for t in ts],
                               tmp_path / "samples.jsonl")
    assert main(["build-revisions", str(tmp_path / "rev.jsonl"), "--problems", str(problems_path),
                 "--samples", str(samples_path)]) == 0
    assert len(read_jsonl(tmp_path / "rev.jsonl")) == 5
    out = capsys.readouterr().out
    assert '"repeats_not_written": 19' in out and "24 correct answers give only 5 distinct" in out
