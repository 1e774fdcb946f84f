"""`train-prm` under `accelerate launch` with 2 CPU processes: DDP over gloo, and DeepSpeed ZeRO-2.

Each run must really use 2 processes, take the asked number of optimizer steps, and leave a checkpoint
that load_scorer reads; its scores are compared with a single-process run of the same global batch
(2 x 4 vs 1 x 8): same model family and scale, not bit-equal (the shards see the data in another order).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ttscale.data.io import write_table
from ttscale.inference.scorers_load import load_scorer
from ttscale.train.prm_data import toy_labelled_rows
from ttscale.train.train_prm_cmd import Config, train_prm

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ttscale.data.toy_world import generate_problems
    from ttscale.train.tiny import tiny_causal_lm, train_tokenizer

    path = tmp_path_factory.mktemp("prm_mp")
    texts = [p["problem"] + "\n\n" + p["solution"] for p in generate_problems(100, seed=99)]
    tok = train_tokenizer(texts, vocab_size=400)
    tiny_causal_lm(tok, hidden_size=32, num_layers=2, seed=0).save_pretrained(path / "base")
    tok.save_pretrained(path / "base")
    rows = toy_labelled_rows(40, seed=1, levels=(1, 2))
    write_table(rows, path / "train.jsonl")
    common = dict(model=str(path / "base"), data=str(path / "train.jsonl"), max_steps=STEPS, learning_rate=1e-2,
                  logging_steps=1, eval_fraction=0.0, seed=0)
    _, single, _ = train_prm(Config(output_dir=str(path / "single"), per_device_train_batch_size=8, threads=1, **common))
    args = [f"--{k.replace('_', '-')}={v}" for k, v in common.items()]
    return {"path": path, "args": args, "single": single, "rows": rows[:10]}


def _launch(setup, config: str, out: str, *extra: str) -> Path:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_configs" / config),
           *extra, "-m", "ttscale", "train-prm", *setup["args"], "--per-device-train-batch-size=4", "--threads=1",
           f"--output-dir={setup['path'] / out}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return setup["path"] / out


def _losses(path: Path) -> list[float]:
    return [h["loss"] for h in json.loads((path / "log_history.json").read_text()) if "loss" in h]


def _scores(path: Path, rows) -> np.ndarray:
    return np.concatenate(load_scorer(path, threads=1).score([(r["problem"], r["steps"]) for r in rows]))


def _check_same_as_single(setup, out: Path, atol: float) -> None:
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == STEPS
    losses = _losses(out)
    assert len(losses) == STEPS and all(np.isfinite(losses))
    scores, single = _scores(out, setup["rows"]), _scores(setup["single"], setup["rows"])
    assert scores.shape == single.shape and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(scores, single, atol=atol)


def test_ddp_two_cpu_processes(setup):
    out = _launch(setup, "cpu2.yaml", "ddp")
    _check_same_as_single(setup, out, atol=0.1)


def test_deepspeed_zero2_two_cpu_processes(setup):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: pip install 'ttscale[deepspeed]'")
    out = _launch(setup, "zero2.yaml", "zero2", "--num_processes=2", "--mixed_precision=no")
    _check_same_as_single(setup, out, atol=0.1)
