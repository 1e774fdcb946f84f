"""The Python API: TRL's PRMTrainer call on TRL's stepwise dataset, ttscale.run_search and load_scorer."""
from __future__ import annotations

import numpy as np
import pytest


def _trl_rows(n: int) -> list[dict]:
    """TRL's stepwise supervision rows from the toy world's labelled solutions."""
    from ttscale.train.prm_data import toy_labelled_rows

    return [{"prompt": r["problem"], "completions": r["steps"], "labels": [bool(y) for y in r["labels"]]}
            for r in toy_labelled_rows(n, seed=1, levels=(1, 2))]


def test_a_trl_prmtrainer_script_runs_with_one_import_changed(tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale import PRMConfig, PRMTrainer, load_scorer
    from ttscale.data.toy_world import generate_problems
    from ttscale.train.tiny import tiny_causal_lm, train_tokenizer

    tok = train_tokenizer([p["problem"] + "\n\n" + p["solution"] for p in generate_problems(100, seed=9)],
                          vocab_size=400)
    tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=0).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    train = datasets.Dataset.from_list(_trl_rows(20))
    # as a TRL 1.13 script wrote it, but for the import
    args = PRMConfig(output_dir=str(tmp_path / "prm"), step_separator="\n", max_length=256, max_steps=4,
                     per_device_train_batch_size=4, learning_rate=1e-3, train_on_last_step_only=False,
                     report_to="none", logging_steps=2, threads=1, disable_dropout=True)
    trainer = PRMTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    metrics = trainer.train()
    assert metrics["global_step"] == 4 and trainer.state.global_step == 4
    assert args.step_tag_init == "newline" and trainer.args.data_format == "trl-stepwise"
    folder = trainer.save_model()
    scorer = load_scorer(folder)
    rows = _trl_rows(3)
    scores = scorer.score([(r["prompt"], r["completions"]) for r in rows])
    assert [len(s) for s in scores] == [len(r["completions"]) for r in rows]
    assert all(0.0 < x < 1.0 for s in scores for x in s)
    with pytest.raises(TypeError, match="unknown option"):
        PRMConfig(output_dir="x", gradient_checkpointing_kwargs={})


def test_search_in_python_returns_answers_and_the_compute_spent(tiny_lm_dir, prm_dir):
    import ttscale

    out = ttscale.run_search(["Tom has 3 apples and buys 4 more. How many apples does he have?",
                          {"id": "q2", "problem": "What is 2 + 5?", "answer": "7"}],
                         policy=str(tiny_lm_dir), prm=str(prm_dir), strategy="weighted-best-of-n", budget=2,
                         max_new_tokens=12, device="cpu", prm_device="cpu", threads=1)
    assert [r["id"] for r in out] == ["0", "q2"]
    for r in out:
        assert len(r["candidates"]) == 2 and r["spent"]["generated_tokens"] > 0
        assert r["spent"]["policy_flops"] > 0 and np.isfinite(r["spent"]["prm_flops"])
