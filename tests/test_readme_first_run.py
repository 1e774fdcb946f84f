"""The README's first-run commands, verbatim, from the repository root and from another folder.

`make demo` takes minutes, so the test points the commands' `P` (they default it to the demo's folder) at
tiny models from the session fixtures; every other word is the README's own. The checkout has no .venv of
its own here, so a copy of the root gets `.venv` linked to the environment running the tests.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def first_run_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- first-run -->\s*```bash\n(.*?)```\s*<!-- /first-run -->", text, re.S)
    assert m, "README.md lost its <!-- first-run --> block"
    return m.group(1).replace("\\\n", " ").strip().splitlines()


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory, tiny_lm_dir, prm_tokenizer) -> Path:
    """A stand-in for demo_out/: the tiny policy and a tiny PRM (what the first run reads from $P)."""
    from ttscale.inference.prm_inputs import PRMSpec
    from ttscale.train.tiny import tiny_model

    out = tmp_path_factory.mktemp("demo_like")
    (out / "policy").symlink_to(tiny_lm_dir)
    model = tiny_model(prm_tokenizer, "token-classification", hidden_size=32, num_layers=1, num_labels=2)
    model.save_pretrained(out / "prm")
    prm_tokenizer.save_pretrained(out / "prm")
    PRMSpec(max_length=1024).save(out / "prm")
    return out


@pytest.fixture(scope="module")
def clone_root(tmp_path_factory) -> Path:
    if (ROOT / ".venv" / "bin" / "activate").exists():
        return ROOT
    root = tmp_path_factory.mktemp("clone")
    (root / ".venv").symlink_to(Path(sys.prefix))  # the venv running the tests
    return root


@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_first_run_commands_work_verbatim(where, demo_like, clone_root, tmp_path):
    lines = first_run_block()
    assert lines[0].startswith("source .venv/bin/activate")
    assert all(l.startswith(("source ", "P=", "cd ", "ttscale ")) for l in lines), lines
    # From another folder: the user activates at the root, then goes elsewhere before the rest.
    script = lines[0] + "\n" + (f"cd {tmp_path}\n" if where == "elsewhere" else "") + "\n".join(lines[1:])
    script = "set -euo pipefail\n" + script + "\npwd > " + str(tmp_path / "cwd.txt")
    env = {**os.environ, "P": str(demo_like), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "-c", script], cwd=clone_root, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = Path((tmp_path / "cwd.txt").read_text().strip())
    rows = [json.loads(l) for l in (work / "samples" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 and {"extracted_answer", "correct"} <= set(rows[0])
    assert json.loads((work / "runs" / "bon" / "summary.json").read_text())
