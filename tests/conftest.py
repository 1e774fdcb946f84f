"""Shared, session-scoped fixtures: build tiny models once, not in every test.

Area-specific fixtures live in their own test modules; only fixtures several areas use belong here.
"""
from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(1)  # CI has 2 cores; 1 thread per process avoids collapse under contention


def _corpus() -> list[str]:
    from ttscale.data.steps import INSTRUCTION

    lines = [INSTRUCTION.format(problem="What is 3 + 4?")]
    for a in range(0, 30):
        b = (a * 7) % 13
        lines.append(f"Tom has {a} apples and buys {b} more. Then he has {a} + {b} = {a + b} apples.\n\n"
                     f"The answer is \\boxed{{{a + b}}}.")
        lines.append(f"Step {a}: {a} * {b} = {a * b}, so x = \\frac{{{a}}}{{{b + 1}}} and y = {a - b}.")
    return lines


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from ttscale.train.tiny import train_tokenizer

    return train_tokenizer(_corpus(), vocab_size=400)


@pytest.fixture(scope="session")
def tiny_lm(tiny_tokenizer):
    from ttscale.train.tiny import tiny_causal_lm

    return tiny_causal_lm(tiny_tokenizer, seed=0).eval()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, tiny_tokenizer, tiny_lm):
    """The tiny LM saved with save_pretrained (what any backend loads from a path)."""
    path = tmp_path_factory.mktemp("tiny_lm")
    tiny_lm.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def toy_base_dir(tmp_path_factory):
    """A tiny random Llama (64 wide, 2 layers) and a BPE tokenizer trained on toy-world text, saved like a hub
    checkpoint: the base the PRM trainers' tests fine-tune (every PRM formulation starts from it)."""
    from ttscale.data.toy_world import generate_problems
    from ttscale.train.tiny import tiny_causal_lm, train_tokenizer

    texts = [p["problem"] + "\n\n" + p["solution"] for p in generate_problems(200, seed=99)]
    tok = train_tokenizer(texts, vocab_size=400)
    path = tmp_path_factory.mktemp("toy_base")
    tiny_causal_lm(tok, hidden_size=64, num_layers=2, seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def prm_tokenizer(tiny_tokenizer, tmp_path_factory):
    """A copy of the session tokenizer with the step tag and the external styles' tags (the original is untouched)."""
    from transformers import AutoTokenizer

    from ttscale.inference.prm_inputs import add_step_tag

    path = tmp_path_factory.mktemp("prm_tok")
    tiny_tokenizer.save_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    add_step_tag(tok)
    tok.add_tokens(["<extra_0>", "ки"], special_tokens=True)
    return tok


@pytest.fixture(scope="session")
def prm_dir(prm_tokenizer, tmp_path_factory):
    """A tiny token-classification PRM folder with its ttscale_prm.json (search and serve load it by path)."""
    from ttscale.inference.prm_inputs import PRMSpec
    from ttscale.train.tiny import tiny_model

    path = tmp_path_factory.mktemp("search_prm")
    model = tiny_model(prm_tokenizer, "token-classification", hidden_size=32, num_layers=1, num_labels=2)
    model.save_pretrained(path)
    prm_tokenizer.save_pretrained(path)
    PRMSpec(max_length=1024).save(path)
    return path


@pytest.fixture(scope="session")
def label_problems(tmp_path_factory):
    """8 toy problems (levels 1-3) that the labeling tests label."""
    from ttscale.data.io import write_table
    from ttscale.data.toy_world import generate_problems

    path = tmp_path_factory.mktemp("label_problems") / "problems.jsonl"
    write_table(generate_problems(8, seed=3, levels=(1, 2, 3)), path)
    return path


@pytest.fixture(scope="session")
def label_reference(label_problems, tiny_lm_dir, tmp_path_factory):
    """An uninterrupted in-process `label` run (label_runs.label_argv): what resumed, sharded or Ray runs must
    reproduce. Tests read it, never write into it."""
    from label_runs import label_argv
    from ttscale.cli import main

    out = tmp_path_factory.mktemp("label_ref") / "run"
    assert main(label_argv(label_problems, tiny_lm_dir, out)) == 0
    return out


def pytest_collection_finish(session):
    """Start the vLLM suite's subprocess now when its test is selected: it overlaps the rest of the suite."""
    if not session.config.option.collectonly and any(item.fspath.basename == "test_vllm_ci.py"
                                                     for item in session.items):
        import vllm_ci

        vllm_ci.start()


def pytest_sessionfinish(session):
    """A session that ends before the vLLM test read its result (-x, Ctrl-C) stops the subprocess."""
    import sys

    if "vllm_ci" in sys.modules:
        sys.modules["vllm_ci"].stop()
