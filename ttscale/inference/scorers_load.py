"""Load a PRM checkpoint as a Scorer: pick the style, check it fits the checkpoint, load model + tokenizer.

`ScorerArgs` is the block of `--prm-*` options that stage configs (search, evaluate, ...) inherit; its
`.build()` returns the Scorer. Settings come from the checkpoint's `ttscale_prm.json` when present.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.errors import UserError
from ttscale.config import field
from ttscale.inference.prm_inputs import SPEC_FILE, STYLES, PRMSpec
from ttscale.inference.scorers import PRMScorer, make_scorer

FORMULATION_STYLES = ("token-classification", "causal-lm", "implicit", "generative")   # = ttscale style with that formulation
STYLE_CHOICES = ("auto",) + STYLES + FORMULATION_STYLES


def resolve_spec(path: str | Path, style: str = "auto", architectures: list[str] | None = None) -> PRMSpec:
    """The input spec for a checkpoint: its ttscale_prm.json, the named style's defaults, or an error."""
    if style not in STYLE_CHOICES:
        raise UserError(f"PRM style {style!r} is unknown; choose one of {', '.join(STYLE_CHOICES)}")
    has_file = (Path(path) / SPEC_FILE).is_file()
    spec = PRMSpec.load(path) if has_file else None
    if style in FORMULATION_STYLES:
        base = spec if spec is not None and spec.style == "ttscale" else PRMSpec()
        return dataclasses.replace(base, formulation=style)
    if style == "auto":
        if spec is not None:
            return spec
        if any("ProcessRewardModel" in a for a in architectures or []):
            return PRMSpec.for_style("qwen-prm")
        raise UserError(f"{path}: no {SPEC_FILE} to say how to read this PRM; pass its style explicitly "
                         f"(one of {', '.join(STYLE_CHOICES[1:])})")
    return spec if spec is not None and spec.style == style else PRMSpec.for_style(style)


def _architectures(path: str | Path, trust_remote_code: bool) -> list[str]:
    from transformers import AutoConfig

    text = str(path)
    # A hub name is "org/name"; anything else that does not exist is a mistyped local folder.
    if not Path(text).exists() and (text.startswith((".", "/", "~")) or text.count("/") > 1):
        raise FileNotFoundError(f"PRM folder {text} does not exist; pass --prm a checkpoint folder (or a hub name)")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:  # transformers' way of saying the folder or hub name holds no usable checkpoint
        raise UserError(f"cannot load the PRM {text}: {e}") from e
    return list(getattr(config, "architectures", None) or [])


def _check_fits(path: str | Path, spec: PRMSpec, archs: list[str]) -> None:
    """A causal LM read as a classifier (or the reverse) gives meaningless scores: refuse with the fix."""
    if spec.style == "skywork":
        return  # a causal LM by design: its value head is loaded beside it (ttscale.inference.value_head)
    causal = any(a.endswith("ForCausalLM") for a in archs)
    classifier = any(a.endswith("ForTokenClassification") for a in archs)
    if spec.formulation == "token-classification" and causal:
        raise UserError(f"{path} holds a causal LM ({', '.join(archs)}) but PRM style {spec.style!r} reads a "
                         f"per-token classifier; use --prm-style causal-lm (or math-shepherd / rlhflow), or set "
                         f"formulation: causal-lm in {SPEC_FILE}")
    if spec.formulation in ("causal-lm", "implicit", "generative") and classifier:
        raise UserError(f"{path} holds a token classifier ({', '.join(archs)}) but PRM style {spec.style!r} reads "
                         f"'+'/'-' from a language-model head; use --prm-style token-classification, or set "
                         f"formulation: token-classification in {SPEC_FILE}")


def _load_model(path: str | Path, spec: PRMSpec, archs: list[str], dtype: Any, trust_remote_code: bool) -> Any:
    import transformers as tf

    kw = dict(dtype=dtype, trust_remote_code=trust_remote_code)
    if spec.formulation in ("causal-lm", "implicit", "generative"):
        return tf.AutoModelForCausalLM.from_pretrained(path, **kw)
    if spec.style == "ttscale" or any(a.endswith("ForTokenClassification") for a in archs):
        return tf.AutoModelForTokenClassification.from_pretrained(path, **kw)
    if spec.style == "qwen-prm":
        if not trust_remote_code:
            raise UserError(f"{path}: Qwen2.5-Math-PRM checkpoints ship their own model code; pass "
                             f"--prm-trust-remote-code true if you trust it")
        return tf.AutoModel.from_pretrained(path, **kw)
    if spec.style == "skywork":
        from ttscale.inference.value_head import ValueHeadLM

        return ValueHeadLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    raise UserError(f"{path}: PRM style {spec.style!r} has no loader for a {', '.join(archs) or 'model'} "
                    f"checkpoint; pass --prm-style")


def _reference(path: str | Path, spec: PRMSpec, override: str | None, dtype: Any, trust_remote_code: bool) -> Any:
    """An implicit PRM's reference model: `override`, else the one its ttscale_prm.json names."""
    import transformers as tf

    ref = override or spec.reference
    if not ref:
        raise UserError(f"{path}: an implicit PRM needs its reference model; set reference in {SPEC_FILE} or pass "
                        f"--prm-reference PATH (the model it was fine-tuned from)")
    if not Path(str(ref)).exists() and str(ref).startswith((".", "/", "~")):
        raise UserError(f"{path}: its reference model {ref} does not exist; pass --prm-reference PATH")
    return tf.AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, trust_remote_code=trust_remote_code)


def load_scorer(path_or_name: str | Path, style: str = "auto", *, batch_size: int = 8, max_length: int | None = None,
                dtype: str = "auto", device: str = "auto", threads: int = 0,
                trust_remote_code: bool = False, reference: str | None = None,
                samples: int | None = None) -> PRMScorer:
    """A Scorer for a PRM folder (or hub name). style="auto" reads the folder's ttscale_prm.json; an implicit
    PRM also loads its reference model (`reference` overrides the one the folder names); a generative one
    averages `samples` rationales per step (default: the folder's)."""
    import torch
    from transformers import AutoTokenizer

    from ttscale.inference.backend_rules import resolve_dtype
    from ttscale.inference.transformers_backend import resolve_device

    if threads > 0:
        torch.set_num_threads(threads)
    archs = _architectures(path_or_name, trust_remote_code)
    spec = resolve_spec(path_or_name, style, archs)
    _check_fits(path_or_name, spec, archs)
    tokenizer = AutoTokenizer.from_pretrained(path_or_name, trust_remote_code=trust_remote_code)
    device = resolve_device(device)
    model = _load_model(path_or_name, spec, archs, resolve_dtype(dtype, device), trust_remote_code).to(device)
    kw = dict(batch_size=batch_size, max_length=max_length, name=f"PRM {Path(str(path_or_name)).name}")
    if spec.formulation == "generative":   # it samples rationales: its own module, on top of the scorers
        from ttscale.inference.generative_prm import GenerativePRM

        return GenerativePRM(model, tokenizer, spec, samples=samples, **kw)
    extra = {"reference": _reference(path_or_name, spec, reference, resolve_dtype(dtype, device),
                                     trust_remote_code).to(device)} if spec.formulation == "implicit" else {}
    return make_scorer(model, tokenizer, spec, **kw, **extra)


@dataclass(kw_only=True)
class ScorerArgs:
    """The `--prm-*` options; a stage config inherits them (keyword-only, so field order never clashes)."""
    prm: str | None = field(None, help="PRM checkpoint folder (or hub name) that scores each step")
    prm_style: str = field("auto", choices=list(STYLE_CHOICES),
                           help=f"how the PRM reads its input; auto = the folder's {SPEC_FILE}")
    prm_batch_size: int = field(32, ge=1, run_key=False,
                                help="candidates per PRM forward pass (batched across problems)")
    prm_max_length: int | None = field(None, ge=1,
                                       help=f"max tokens per candidate (default: the checkpoint's {SPEC_FILE})")
    prm_dtype: str = field("auto", help="PRM weights dtype: auto (checkpoint dtype on GPU, float32 on CPU), float32, "
                                        "bfloat16, float16; probabilities are computed in float32 either way")
    prm_device: str = field("auto", run_key=False,
                            help="device for the PRM: auto (cuda > mps > cpu), cpu, cuda, cuda:1, ...")
    prm_threads: int = field(0, ge=0, run_key=False, help="CPU threads for torch (0 = leave torch's default)")
    prm_trust_remote_code: bool = field(False, help="allow checkpoints that ship their own model code (Qwen PRM)")
    prm_reference: str | None = field(None, help="implicit PRMs: the reference model (default: the one the PRM "
                                                 f"folder's {SPEC_FILE} names)")
    prm_samples: int | None = field(None, ge=1, help="generative PRMs: rationales sampled per step, their verdicts "
                                                     f"averaged (default: the folder's {SPEC_FILE}, 1)")

    def build(self) -> PRMScorer:
        if not self.prm:
            raise UserError("no PRM given: set --prm PATH (a PRM checkpoint folder)")
        return load_scorer(self.prm, self.prm_style, batch_size=self.prm_batch_size, max_length=self.prm_max_length,
                           dtype=self.prm_dtype, device=self.prm_device, threads=self.prm_threads,
                           trust_remote_code=self.prm_trust_remote_code, reference=self.prm_reference,
                           samples=self.prm_samples)
