"""Generative PRM: critique data kept where the re-derived step's verdict agrees with the label, SFT of the
verifier, and a scorer whose step score is the verdict probability after a sampled rationale, read by hand here
with plain transformers calls; the rationale tokens are metered as the verifier's compute."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ttscale.data.critique_format import VERDICT, agrees, critique_prompt
from ttscale.data.io import write_table
from ttscale.inference.base import Completion
from ttscale.train.prm_data import toy_labelled_rows


def test_a_rederived_step_agrees_when_it_reaches_the_same_result():
    assert agrees("He buys 4 more: 3 + 4 = 7.", "He buys 4: 3 + 4 = 7.")
    assert not agrees("He buys 4 more: 3 + 4 = 8.", "He buys 4: 3 + 4 = 7.")
    assert agrees("x = 2.0", "so 2") and not agrees("no number", "7")
    assert agrees("The end.", "The  end.") and not agrees("The end.", "The start.")


class EchoPolicy:
    """Re-derives step k exactly for even k and with a wrong result for odd k."""
    tokenizer = None
    num_params = 1

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, params, n=None, start=None):
        self.calls += 1
        out = []
        for p in prompts:
            k = p.count("\n\n") - 2          # build_prompt's own blank lines, then one per prefix step
            out.append([Completion(text=f"step = {k if k % 2 == 0 else 99}\n\n", num_tokens=4, finish_reason="stop")])
        return out


def test_critiques_are_kept_only_where_the_verdict_agrees_with_the_label():
    from ttscale.config import parse_config
    from ttscale.train.build_critiques_cmd import Config, checks, critique_rows

    rows = [{"id": "r", "problem": "Add.", "steps": ["a = 0", "b = 1", "c = 2", "d = 3"],
             "labels": [1.0, 1.0, 0.0, 1.0]}]
    cfg = parse_config(Config, ["out", "--labels", "x", "--policy", "p"])
    kept = critique_rows(rows, EchoPolicy(), cfg)
    # step 0: agrees, label right -> kept "+"; step 1: disagrees, label right -> dropped;
    # step 2: agrees, label wrong -> dropped; step 3: disagrees, label right -> dropped
    assert [(r["step"], r["verdict"], r["label"]) for r in kept] == [("a = 0", "+", 1.0)]
    assert checks(rows[0], 0.0) == [(0, True), (1, True), (2, False), (3, True)]
    wrong = [{**rows[0], "steps": ["a = 0", "b = 5"], "labels": [1.0, 0.0]}]
    assert [(r["step"], r["verdict"]) for r in critique_rows(wrong, EchoPolicy(), cfg)] == [("a = 0", "+"), ("b = 5", "-")]


def test_build_critiques_resumes_and_refuses_changed_labels(tiny_lm_dir, tmp_path, capsys):
    from ttscale.cli import main

    rows = toy_labelled_rows(6, seed=4, levels=(1,))
    write_table(rows, tmp_path / "labels.jsonl")
    argv = ["build-critiques", str(tmp_path / "c"), "--labels", str(tmp_path / "labels.jsonl"), "--policy",
            str(tiny_lm_dir), "--threads", "1", "--chunk-rows", "8", "--max-new-tokens", "8"]
    rc = main(argv)
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    kept = [json.loads(line) for line in (tmp_path / "c" / "critiques.jsonl").read_text().splitlines()]
    assert rc in (0, 1) and summary["kept"] == len(kept) and summary["rows"] == len(rows)
    assert len(list((tmp_path / "c" / "parts").glob("part-*.jsonl"))) == 2
    for r in kept:
        assert (r["verdict"] == "+") == (r["label"] == 1.0) == agrees(r["rationale"], r["step"])
    first = (tmp_path / "c" / "critiques.jsonl").read_text()
    assert main(argv) == rc and (tmp_path / "c" / "critiques.jsonl").read_text() == first   # nothing redone
    # balanced: every wrong-step row and as many right ones, re-joined from the parts without generating again
    assert main(argv + ["--balance"]) == rc
    both = [json.loads(line) for line in (tmp_path / "c" / "critiques.jsonl").read_text().splitlines()]
    wrong = [r for r in kept if r["label"] == 0.0]
    assert sorted(r["id"] for r in both if r["label"] == 0.0) == sorted(r["id"] for r in wrong)
    assert sum(r["label"] == 1.0 for r in both) == min(len(wrong), len(kept) - len(wrong))
    write_table(toy_labelled_rows(6, seed=5, levels=(1,)), tmp_path / "labels.jsonl")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "labels changed" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def verifier(tmp_path_factory, toy_base_dir):
    """A tiny verifier trained on critique rows: a right step's rationale reaches its number ("+"), a wrong
    step's rationale another one ("-")."""
    from ttscale.train.train_prm_cmd import Config, train_prm

    root = tmp_path_factory.mktemp("generative")
    rows = []
    for r in toy_labelled_rows(30, seed=2, levels=(1, 2)):
        for k, y in enumerate(r["labels"]):
            rows.append({"problem": r["problem"], "prefix": r["steps"][:k], "step": r["steps"][k],
                         "rationale": r["steps"][k] if y else r["steps"][k] + " = 12345", "verdict": "+" if y else "-"})
            if not y:
                break
    write_table(rows, root / "critiques.jsonl")
    cfg = Config(model=str(toy_base_dir), data=str(root / "critiques.jsonl"), output_dir=str(root / "prm"),
                 formulation="generative", threads=1, seed=0, learning_rate=1e-3, per_device_train_batch_size=8,
                 max_steps=12, logging_steps=4, report_to="none", rationale_tokens=12)
    trainer, path, metrics = train_prm(cfg)
    return {"path": path, "metrics": metrics, "rows": toy_labelled_rows(3, seed=8, levels=(1, 2))}


def test_the_verifier_trains_saves_and_reloads_with_plain_transformers(verifier):
    from transformers import AutoModelForCausalLM

    from ttscale.inference.prm_inputs import PRMSpec

    spec = PRMSpec.load(verifier["path"])
    assert spec.formulation == "generative" and spec.rationale_tokens == 12 and spec.samples == 1
    assert AutoModelForCausalLM.from_pretrained(verifier["path"]).config.architectures == ["LlamaForCausalLM"]
    assert verifier["metrics"]["global_step"] == 12 and verifier["metrics"]["verdicts"]["-"] > 0


@pytest.mark.parametrize("samples", [1, 3])
def test_a_step_score_is_the_verdict_probability_after_its_rationales(verifier, samples):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.inference.scorers_load import load_scorer

    scorer = load_scorer(verifier["path"], samples=samples)
    rows = verifier["rows"]
    scores = scorer.score([(r["problem"], r["steps"]) for r in rows])
    model = AutoModelForCausalLM.from_pretrained(verifier["path"]).eval()
    tok = AutoTokenizer.from_pretrained(verifier["path"])
    plus, minus = tok.convert_tokens_to_ids("+"), tok.convert_tokens_to_ids("-")
    for r, got, rationales in zip(rows, scores, scorer.last_rationales):
        assert len(got) == len(r["steps"]) and all(len(rs) == samples for rs in rationales)
        for k, (score, rs) in enumerate(zip(got, rationales)):
            probs = []
            for rationale in rs:   # by hand: one forward pass over prompt + rationale + marker
                text = critique_prompt(r["problem"], r["steps"][:k], r["steps"][k], tok) + " " + rationale + VERDICT
                ids = tok(text)["input_ids"]
                with torch.no_grad():
                    last = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
                probs.append(float(torch.softmax(last[[plus, minus]], dim=-1)[0]))
            assert score == pytest.approx(np.mean(probs), abs=1e-5)


def test_every_verifier_token_is_metered_in_a_search(verifier):
    """Beam search scoring with the generative PRM: what the meter charges is every token it ran, the
    rationales it generated included, at 2 FLOPs per parameter."""
    from search_fakes import ScriptedGenerator, problems
    from ttscale.inference.scorers_load import load_scorer
    from ttscale.search.registry import get_strategy
    from ttscale.search.types import SearchContext, SearchSettings

    scorer = load_scorer(verifier["path"])
    items = [(verifier["rows"][0]["problem"], verifier["rows"][0]["steps"])]
    scorer.score(items)
    tok = scorer.tokenizer
    prompts = [critique_prompt(items[0][0], items[0][1][:k], items[0][1][k], tok) for k in range(len(items[0][1]))]
    verdict_pass = sum(len(tok(p + " " + rat + VERDICT)["input_ids"])
                       for p, (rat,) in zip(prompts, scorer.last_rationales[0]))
    prompts = sum(len(tok(p)["input_ids"]) for p in prompts)
    assert scorer.last_item_tokens[0] > verdict_pass + prompts      # plus the rationale tokens generated
    ctx = SearchContext(generator=ScriptedGenerator(depth=2), scorer=scorer, settings=SearchSettings(seed=1))
    before = scorer.usage.tokens
    results = get_strategy("beam", {"beam_width": 2}).run(problems(2), ctx, 2)
    assert sum(r.spent.prm_tokens for r in results) == scorer.usage.tokens - before > 0
    for r in results:
        assert r.spent.prm_flops == pytest.approx(2.0 * scorer.num_params * r.spent.prm_tokens)
