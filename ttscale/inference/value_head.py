"""A causal-LM backbone with a scalar value head: the layout of Skywork-o1-Open-PRM checkpoints.

Such a checkpoint is an ordinary causal-LM folder (config.json, tokenizer, safetensors) whose weights also
hold `v_head.summary.weight` [1, hidden] and `v_head.summary.bias` [1]. The value of token t is
summary(last hidden state at t); its sigmoid is P(step correct) where a step ends. Loading needs no remote
code: the backbone loads through AutoModelForCausalLM and the head is read from the safetensors files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ttscale.errors import UserError

HEAD_PREFIX = "v_head."
HEAD_KEYS = ("v_head.summary.weight", "v_head.summary.bias")
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
HEAD_FILE = "value_head.safetensors"  # where save_pretrained puts the head of a sharded backbone


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)  # named as in the checkpoints: v_head.summary.*

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


class ValueHeadLM(nn.Module):
    """Backbone causal LM + value head; forward returns the per-token value logits [B, T] (no LM logits)."""

    def __init__(self, backbone: Any, head: ValueHead | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.v_head = head or ValueHead(backbone.config.hidden_size)
        self.config = backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:
        # The base transformer's last hidden state (after the final norm) is what the head reads; running
        # the base model alone skips the [B, T, vocab] LM logits the score never uses.
        out = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask, **kw)
        return self.v_head(out.last_hidden_state)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: Any = None, **kw: Any) -> "ValueHeadLM":
        from transformers import AutoModelForCausalLM

        backbone = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw)
        head = ValueHead(backbone.config.hidden_size)
        head.load_state_dict(read_head(path))
        return cls(backbone, head.to(backbone.dtype))

    def save_pretrained(self, path: str | Path) -> None:
        """The backbone as save_pretrained writes it, with the head's tensors added to its safetensors."""
        from safetensors.torch import load_file, save_file

        path = Path(path)
        self.backbone.save_pretrained(path)
        head = {HEAD_PREFIX + k: v.detach().cpu().contiguous() for k, v in self.v_head.state_dict().items()}
        if (path / SINGLE_FILE).is_file():
            save_file({**load_file(path / SINGLE_FILE), **head}, path / SINGLE_FILE, metadata={"format": "pt"})
            return
        index = json.loads((path / INDEX_FILE).read_text())
        save_file(head, path / HEAD_FILE, metadata={"format": "pt"})
        index["weight_map"].update({k: HEAD_FILE for k in head})
        (path / INDEX_FILE).write_text(json.dumps(index, indent=2))


def _head_files(path: Path) -> list[Path]:
    if (path / INDEX_FILE).is_file():
        weight_map = json.loads((path / INDEX_FILE).read_text()).get("weight_map", {})
        return sorted({path / f for k, f in weight_map.items() if k.startswith(HEAD_PREFIX)})
    return [p for p in (path / SINGLE_FILE, path / HEAD_FILE) if p.is_file()]


def read_head(path: str | Path) -> dict[str, torch.Tensor]:
    """{"summary.weight", "summary.bias"} from a value-head checkpoint folder's safetensors files."""
    from safetensors import safe_open

    path = Path(path)
    found: dict[str, torch.Tensor] = {}
    for file in _head_files(path):
        with safe_open(str(file), framework="pt", device="cpu") as f:
            found.update({k[len(HEAD_PREFIX):]: f.get_tensor(k) for k in f.keys() if k in HEAD_KEYS})
    missing = [k for k in HEAD_KEYS if k[len(HEAD_PREFIX):] not in found]
    if missing:
        raise UserError(f"{path}: no {', '.join(missing)} in its safetensors files, so it is not a Skywork-style "
                        f"value-head PRM (a local folder with safetensors weights is needed); pick another "
                        f"--prm-style")
    return found
