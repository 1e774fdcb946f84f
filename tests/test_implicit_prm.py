"""Implicit PRM (Yuan et al. 2024): trained on outcome labels only, step scores from beta*log(pi/pi_ref).

A tiny causal LM is fine-tuned for real; its step scores are checked against a hand computation with plain
transformers calls (per-token log-probabilities of the two models), and the scorer meters both models."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ttscale.data.io import write_table
from ttscale.inference.prm_inputs import PRMSpec, encode_implicit
from ttscale.inference.scorers_load import load_scorer
from ttscale.train.prm_data import PRMCollator, encode_rows, toy_labelled_rows
from ttscale.train.prm_trainer import PRMHead
from ttscale.train.train_prm_cmd import Config, train_prm


@pytest.fixture(scope="module")
def base_dir(toy_base_dir):
    return toy_base_dir


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("implicit_data")
    write_table(toy_labelled_rows(80, seed=1, levels=(1, 2)), data / "train.jsonl")
    cfg = Config(model=str(base_dir), data=str(data / "train.jsonl"), output_dir=str(data / "prm"), threads=1,
                 seed=0, learning_rate=3e-4, per_device_train_batch_size=8, eval_fraction=0.0, report_to="none",
                 formulation="implicit", beta=0.5, max_steps=30, logging_steps=5)
    trainer, path, metrics = train_prm(cfg)
    return {"trainer": trainer, "path": path, "metrics": metrics, "rows": toy_labelled_rows(6, seed=7, levels=(1, 2))}


def _log_probs(model, ids: list[int]) -> list[float]:
    """log p(ids[t] | ids[:t]) for t >= 1, one plain forward pass, no ttscale code."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[t - 1, ids[t]]) for t in range(1, len(ids))]


def test_implicit_prm_saves_and_reloads_with_plain_transformers_and_records_its_reference(trained, base_dir):
    from transformers import AutoModelForCausalLM

    spec = PRMSpec.load(trained["path"])
    assert spec.formulation == "implicit" and spec.beta == 0.5 and spec.reference == str(base_dir.resolve())
    model = AutoModelForCausalLM.from_pretrained(trained["path"])
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    assert model.config.vocab_size == base.config.vocab_size     # no step tag: the reference's vocabulary
    assert trained["metrics"]["global_step"] == 30
    # trained on outcomes from a model equal to its reference (loss log 2 at step 0, every score 0.5: see
    # the last test); the first steps overshoot, then it fits the outcomes better than a coin
    losses = [h["loss"] for h in trained["trainer"].state.log_history if "loss" in h]
    assert losses[-1] < losses[0] and losses[-1] < math.log(2)


def test_step_scores_are_the_partial_log_ratio_sums_and_the_step_rewards_sum_to_the_sequence_reward(trained):
    from transformers import AutoModelForCausalLM

    scorer = load_scorer(trained["path"])
    rows = trained["rows"]
    scores = scorer.score([(r["problem"], r["steps"]) for r in rows])
    model = AutoModelForCausalLM.from_pretrained(trained["path"]).eval()
    ref = AutoModelForCausalLM.from_pretrained(scorer.spec.reference).eval()
    for r, got in zip(rows, scores):
        ids, positions, start = encode_implicit(scorer.tokenizer, r["problem"], r["steps"], scorer.spec)
        ratio = np.array(_log_probs(model, ids)) - np.array(_log_probs(ref, ids))   # ratio[t-1] is token t's
        q = [0.5 * ratio[start - 1:p].sum() for p in positions]
        assert got == pytest.approx([1 / (1 + math.exp(-v)) for v in q], abs=1e-5)
        rewards = np.diff([0.0, *q])            # the process reward of each step
        sequence = 0.5 * (sum(_log_probs(model, ids)[start - 1:]) - sum(_log_probs(ref, ids)[start - 1:]))
        assert rewards.sum() == pytest.approx(sequence, abs=1e-5)
        assert len(got) == len(r["steps"]) and len(set(np.round(got, 6))) > 1
    # both models run on every token: the meter charges their parameters together
    params = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in ref.parameters())
    assert scorer.num_params == params
    assert scorer.last_item_tokens == [len(encode_implicit(scorer.tokenizer, r["problem"], r["steps"],
                                                           scorer.spec)[0]) for r in rows]


def test_the_trainer_reads_what_the_scorer_reads(trained):
    """The in-memory model, through the collator and the training head, gives the saved scorer's scores."""
    trainer, rows = trained["trainer"], trained["rows"]
    spec = PRMSpec.load(trained["path"])
    scorer = load_scorer(trained["path"])
    full = [{**e, "labels": [0.0] * len(e["positions"])} for e in
            (dict(zip(("input_ids", "positions", "start"), encode_implicit(trainer.processing_class, r["problem"],
                                                                         r["steps"], spec))) for r in rows)]
    batch = PRMCollator(trainer.processing_class.pad_token_id)(full)
    model = trainer.model.eval()
    with torch.no_grad():
        margins = PRMHead.for_model(model, None, spec, reference=scorer.reference).margins(model, batch)
    column = {int(p): k for k, p in enumerate(batch["positions"])}
    mine = [[float(torch.sigmoid(margins[b, column[p]])) for p in e["positions"]] for b, e in enumerate(full)]
    loaded = scorer.score([(r["problem"], r["steps"]) for r in rows])
    np.testing.assert_allclose(np.concatenate(loaded), np.concatenate(mine), atol=2e-5)


def test_implicit_training_reads_only_the_outcome_and_an_untrained_one_scores_one_half(base_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.inference.scorers import ImplicitPRM

    rows = toy_labelled_rows(4, seed=3, levels=(1, 2))
    tok = AutoTokenizer.from_pretrained(base_dir)
    spec = PRMSpec(formulation="implicit", beta=0.1, reference=str(base_dir))
    examples, stats = encode_rows(rows, tok, spec)
    for e, r in zip(examples, rows):   # no solution_correct here: one label, the last step's
        assert e["labels"][:-1] == [-100.0] * (len(r["labels"]) - 1) and e["labels"][-1] == r["labels"][-1]
        assert 0 < e["start"] <= e["positions"][0]
    # rows from `label` say whether the final answer is right: the whole solution, that one label, even where
    # the step labels stop at the first error
    graded = [{**rows[1], "labels": rows[1]["labels"][:1], "solution_correct": False}]
    (e,), _ = encode_rows(graded, tok, spec)
    assert len(e["positions"]) == len(rows[1]["steps"]) and e["labels"][-1] == 0.0
    assert e["labels"][:-1] == [-100.0] * (len(rows[1]["steps"]) - 1)
    same = AutoModelForCausalLM.from_pretrained(base_dir)
    scorer = ImplicitPRM(same, tok, spec, reference=AutoModelForCausalLM.from_pretrained(base_dir))
    scores = scorer.score([(r["problem"], r["steps"]) for r in rows])
    assert np.allclose(np.concatenate(scores), 0.5)      # pi_theta = pi_ref: every log ratio is 0
    with pytest.raises(ValueError, match="label_mode hard"):
        Config(model=str(base_dir), data="x.jsonl", output_dir="o", formulation="implicit", label_mode="soft")


def test_a_search_with_an_implicit_prm_is_charged_both_models_on_every_token(trained):
    """Beam search (step-wise, so the PRM runs at every depth) with the implicit PRM as its scorer: every token
    it scored is charged 2 FLOPs per parameter of BOTH models (the fine-tuned one and its reference)."""
    from search_fakes import ScriptedGenerator, problems
    from ttscale.search.registry import get_strategy
    from ttscale.search.types import SearchContext, SearchSettings

    scorer = load_scorer(trained["path"])
    ctx = SearchContext(generator=ScriptedGenerator(depth=3), scorer=scorer, settings=SearchSettings(seed=1))
    before = scorer.usage.tokens
    results = get_strategy("beam", {"beam_width": 2}).run(problems(3), ctx, 4)
    charged = sum(r.spent.prm_tokens for r in results)
    assert charged == scorer.usage.tokens - before > 0
    for r in results:
        assert r.spent.prm_flops == pytest.approx(2.0 * scorer.num_params * r.spent.prm_tokens)
        assert all(0 < s < 1 for c in r.candidates for s in c.step_scores)
