"""(problem, steps) -> token ids + one score position per step: the one place that decides where step tags go.

Scorers (inference) and the PRM trainer both call `encode_steps`, so a checkpoint is always read at the
positions it was trained on. A *position* is the sequence index whose model output carries the step's
score: for token classification the logits there are the step's class logits; for a causal LM they are
the next-token logits over which P("+") vs P("-") is taken.

Two ways to build inputs:
- ttscale-native PRMs are tokenized piecewise (prompt, then each step followed by the step tag inserted as
  its own token id), so a tag can never merge with its neighbours; an over-long prompt is left-truncated,
  steps never are.
- External checkpoints (math-shepherd, qwen-prm, rlhflow, skywork) get the exact input their authors used;
  the tag positions are then located in the token ids and their count is checked against the steps.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ttscale.errors import UserError

DEFAULT_STEP_TAG = "<|step|>"
SPEC_FILE = "ttscale_prm.json"
STYLES = ("ttscale", "math-shepherd", "qwen-prm", "rlhflow", "skywork")
FORMULATIONS = ("token-classification", "causal-lm", "implicit", "generative")
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


class StepAlignmentError(UserError):
    """The step positions could not be recovered exactly (merged tag, truncation, tag inside the text)."""


class SequenceTooLongError(StepAlignmentError):
    """The input exceeds max_length: a property of one row (skip or truncate it), not of the setup."""


@dataclass
class PRMSpec:
    """How a PRM checkpoint reads its input; stored as `ttscale_prm.json` in the checkpoint folder."""
    style: str = "ttscale"
    formulation: str = "token-classification"
    step_tag: str = DEFAULT_STEP_TAG
    positive_token: str = "+"
    negative_token: str = "-"
    num_labels: int = 2
    max_length: int = 2048
    step_delimiter: str = "\n\n"
    prompt_template: str = "{problem}\n\n"   # ttscale-native only: text before the first step
    beta: float = 0.05                       # implicit: reward = beta * log(pi_theta / pi_ref)
    reference: str | None = None             # implicit: the reference model it was fine-tuned from
    samples: int = 1                         # generative: rationales per step, verdicts averaged (GenPRM's vote)
    rationale_tokens: int = 48               # generative: token limit of one rationale
    temperature: float = 0.8                 # generative: sampling temperature of the rationales

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise UserError(f"PRM style {self.style!r} is unknown; choose one of {', '.join(STYLES)}")
        if self.formulation not in FORMULATIONS:
            raise UserError(f"PRM formulation {self.formulation!r} is unknown; choose one of {', '.join(FORMULATIONS)}")
        if self.num_labels not in (1, 2):
            raise UserError(f"num_labels must be 1 (sigmoid) or 2 (softmax), got {self.num_labels}")
        if self.max_length <= 0:
            raise UserError(f"max_length must be positive, got {self.max_length}")
        if self.beta <= 0:
            raise UserError(f"beta must be positive, got {self.beta}")
        if self.samples < 1 or self.rationale_tokens < 1 or self.temperature < 0:
            raise UserError(f"samples and rationale_tokens must be >= 1 and temperature >= 0, got {self.samples}, "
                            f"{self.rationale_tokens}, {self.temperature}")
        if "{problem}" not in self.prompt_template:
            raise UserError(f"prompt_template {self.prompt_template!r} must contain '{{problem}}'")

    @classmethod
    def for_style(cls, style: str, **overrides: Any) -> "PRMSpec":
        """The published settings of each external checkpoint family (overridable field by field)."""
        defaults: dict[str, dict[str, Any]] = {
            "ttscale": {},
            "math-shepherd": dict(formulation="causal-lm", step_tag="ки", step_delimiter="\n", max_length=4096),
            "qwen-prm": dict(formulation="token-classification", step_tag="<extra_0>", num_labels=2, max_length=4096),
            "rlhflow": dict(formulation="causal-lm", step_tag="", max_length=8192),
            "skywork": dict(formulation="token-classification", step_tag="\n", num_labels=1,
                            step_delimiter="\n", max_length=4096),
        }
        if style not in defaults:
            raise UserError(f"PRM style {style!r} is unknown; choose one of {', '.join(STYLES)}")
        return cls(style=style, **{**defaults[style], **overrides})

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SPEC_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "PRMSpec":
        path = Path(directory) / SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a ttscale PRM folder carries its input settings there; "
                                    f"pass the PRM style explicitly (one of {', '.join(STYLES)}) or write one "
                                    f"with PRMSpec(...).save({str(directory)!r})")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from e
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{path}: unknown field(s) {unknown}; valid fields are {sorted(known)}")
        try:
            return cls.for_style(data.pop("style", "ttscale"), **data)
        except (TypeError, ValueError) as e:
            raise UserError(f"{path}: {e}") from e


# --------------------------------------------------------------------------------------------- helpers

def single_token_id(tokenizer: Any, text: str, what: str) -> int:
    """The id of `text` when it is one token (vocabulary entry or the last piece, as the reference code does)."""
    tid = tokenizer.convert_tokens_to_ids(text)
    if tid is not None and tid != tokenizer.unk_token_id:
        return int(tid)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    raise StepAlignmentError(f"{what} {text!r} is not a single token of this tokenizer (it encodes as {len(ids)} "
                             f"tokens {ids}); use a tokenizer that has it, or change it in {SPEC_FILE}")


def add_step_tag(tokenizer: Any, model: Any = None, tag: str = DEFAULT_STEP_TAG, init_from: str | None = None) -> int:
    """Register `tag` as a special token (and grow the model's embeddings); returns its id.

    A brand-new tag's embedding row starts as the mean of the vocabulary (transformers' resize), a vector
    the model has never read; with `init_from` it starts as the mean embedding of that text's tokens (e.g.
    the step delimiter "\n\n"), so the model reads the tag as the boundary it saw in pretraining, where
    TRL's PRMTrainer reads its label (at the delimiter itself). Rows that already existed are left alone."""
    if tag not in tokenizer.get_vocab():
        tokenizer.add_tokens([tag], special_tokens=True)  # special: never split, never merged
    tag_id = int(tokenizer.convert_tokens_to_ids(tag))
    rows = model.get_input_embeddings().num_embeddings if model is not None else None
    if rows is not None and rows < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
        if init_from and tag_id >= rows:   # the tag's row is one the resize just created
            _init_row(tokenizer, model, tag_id, init_from)
    return tag_id


def _init_row(tokenizer: Any, model: Any, row: int, text: str) -> None:
    import torch

    ids = [i for i in tokenizer.encode(text, add_special_tokens=False) if i != row]
    if not ids:
        raise UserError(f"step tag initialisation text {text!r} encodes to no tokens")
    with torch.no_grad():
        for emb in {id(e): e for e in (model.get_input_embeddings(), model.get_output_embeddings()) if e is not None}.values():
            weight = emb.weight
            if weight.shape[0] > row:   # tied or untied LM head alike; a classifier head has no row per token
                weight[row] = weight[ids].mean(dim=0)

def _ids(tokenizer: Any, text: str, special: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _check_length(n: int, max_length: int, label: str) -> None:
    if n > max_length:
        raise SequenceTooLongError(f"{label}: truncated: {n} tokens > max_length {max_length}; raise max_length "
                                 f"(the model's context permitting) or shorten the solution")


def _check_count(ids: list[int], positions: list[int], n_steps: int, tag: str, label: str) -> None:
    if len(positions) == n_steps:
        return
    if len(positions) < n_steps:
        cause = f"the tokenizer merged the step tag {tag!r} with neighbouring text"
    else:
        cause = f"the step tag {tag!r} also occurs inside the problem or step text"
    raise StepAlignmentError(f"{label}: {cause} ({len(positions)} tag positions for {n_steps} steps)")


# --------------------------------------------------------------------------------------------- formats

def _native(tok: Any, problem: str, steps: Sequence[str], spec: PRMSpec, label: str) -> tuple[list[int], list[int]]:
    tag_id = tok.convert_tokens_to_ids(spec.step_tag)
    if tag_id is None or (tag_id == tok.unk_token_id and spec.step_tag != tok.unk_token):
        raise StepAlignmentError(f"step tag {spec.step_tag!r} is not in the tokenizer's vocabulary; add it with "
                                 f"ttscale.inference.prm_inputs.add_step_tag(tokenizer, model) (the PRM trainer "
                                 f"does) or set step_tag in {SPEC_FILE} to a token the tokenizer has")
    prompt = _ids(tok, spec.prompt_template.format(problem=problem.strip()), special=True)
    pieces = []
    for k, step in enumerate(steps):
        piece = _ids(tok, step)
        if tag_id in piece:
            raise StepAlignmentError(f"{label}, step {k + 1}: the step text contains the step tag {spec.step_tag!r}")
        pieces.append(piece + [tag_id])
    if tag_id in prompt:
        raise StepAlignmentError(f"{label}: the problem text contains the step tag {spec.step_tag!r}")
    ids, positions, _ = _assemble(tok, prompt, pieces, spec, label)
    return ids, positions


def _assemble(tok: Any, prompt: list[int], pieces: list[list[int]], spec: PRMSpec, label: str
              ) -> tuple[list[int], list[int], int]:
    """prompt (cut to fit) + pieces: (ids, the index of each piece's last token, where the first piece starts)."""
    prompt = _fit_prompt(tok, prompt, sum(len(p) for p in pieces), spec, label)
    ids, positions = list(prompt), []
    for piece in pieces:
        ids += piece
        positions.append(len(ids) - 1)
    return ids, positions, len(prompt)


def _fit_prompt(tok: Any, prompt: list[int], steps_len: int, spec: PRMSpec, label: str) -> list[int]:
    """Left-truncate the prompt so prompt + steps fit max_length (the steps are what is scored), keeping a
    leading BOS; steps that alone do not fit are a SequenceTooLongError."""
    if len(prompt) + steps_len <= spec.max_length:
        return prompt
    head = prompt[:1] if prompt and prompt[0] == tok.bos_token_id else []
    room = spec.max_length - steps_len - len(head)
    if room < 0:
        raise SequenceTooLongError(f"{label}: truncated: the steps alone need {steps_len + len(head)} tokens > "
                                   f"max_length {spec.max_length}; raise max_length or use fewer/shorter steps")
    return head + (prompt[len(prompt) - room:] if room else [])


def encode_implicit(tok: Any, problem: str, steps: Sequence[str], spec: PRMSpec, *,
                    label: str = "candidate") -> tuple[list[int], list[int], int]:
    """An implicit PRM's input: the prompt, then the steps as the policy wrote them (joined by the step
    delimiter, no tag), tokenized piecewise so each step's last token is known. Returns (ids, the index of
    each step's last token, the index of the first response token)."""
    prompt = _ids(tok, spec.prompt_template.format(problem=problem.strip()), special=True)
    pieces = [_ids(tok, step if k == 0 else spec.step_delimiter + step) for k, step in enumerate(steps)]
    if any(not p for p in pieces):
        raise StepAlignmentError(f"{label}: a step encodes to no tokens, so it has no position to be read at")
    return _assemble(tok, prompt, pieces, spec, label)


def _math_shepherd(tok: Any, problem: str, steps: Sequence[str], spec: PRMSpec, label: str):
    # "question Step 1: ... ки\nStep 2: ... ки" as in the Math-Shepherd model card; keeps an existing "Step k:".
    lines = [s if re.match(rf"\s*Step {k + 1}\s*:", s) else f"Step {k + 1}: {s}" for k, s in enumerate(steps)]
    text = f"{problem} " + spec.step_delimiter.join(f"{line} {spec.step_tag}" for line in lines)
    ids = _ids(tok, text, special=True)
    _check_length(len(ids), spec.max_length, label)
    tag_id = tok.encode(spec.step_tag, add_special_tokens=False)[-1]
    positions = [i for i, t in enumerate(ids) if t == tag_id]
    _check_count(ids, positions, len(steps), spec.step_tag, label)
    return ids, positions


def _qwen_prm(tok: Any, problem: str, steps: Sequence[str], spec: PRMSpec, label: str):
    tag_id = single_token_id(tok, spec.step_tag, "step tag")
    messages = [{"role": "system", "content": QWEN_SYSTEM}, {"role": "user", "content": problem},
                {"role": "assistant", "content": spec.step_tag.join(steps) + spec.step_tag}]
    text = _chat(tok, messages, add_generation_prompt=False)
    ids = _ids(tok, text)
    _check_length(len(ids), spec.max_length, label)
    positions = [i for i, t in enumerate(ids) if t == tag_id]
    _check_count(ids, positions, len(steps), spec.step_tag, label)
    return ids, positions


def _rlhflow(tok: Any, problem: str, steps: Sequence[str], spec: PRMSpec, label: str):
    # One user turn per step (the first prefixed by the problem), each answered "+"; the score of step k is
    # read where the model predicts that "+". Its character offset = length of the rendered prefix.
    conv: list[dict[str, str]] = []
    starts = []
    for k, step in enumerate(steps):
        conv.append({"role": "user", "content": f"{problem} {step}" if k == 0 else step})
        starts.append(len(_chat(tok, conv, add_generation_prompt=True)))
        conv.append({"role": "assistant", "content": spec.positive_token})
    text = _chat(tok, conv, add_generation_prompt=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    _check_length(len(ids), spec.max_length, label)
    positions = []
    for k, start in enumerate(starts):
        j = next((i for i, (a, b) in enumerate(offsets) if a <= start < b), None)
        piece = text[offsets[j][0]:offsets[j][1]] if j is not None else ""
        if j is None or piece.strip() != spec.positive_token:
            raise StepAlignmentError(f"{label}, step {k + 1}: the tokenizer merged the assistant's "
                                     f"{spec.positive_token!r} with neighbouring text (token {piece!r}); the chat "
                                     f"template must render each turn as a prefix of the next")
        positions.append(j - 1)
    return ids, positions


def _skywork(tok: Any, problem: str, steps: Sequence[str], spec: PRMSpec, label: str):
    # Skywork-o1-Open-PRM's prepare_input: bos + problem + "\n", then each step's ids + the step-token id;
    # the value head is read at each appended step token.
    step_id = tok.encode(spec.step_tag, add_special_tokens=False)[-1]
    ids = _ids(tok, (tok.bos_token or "") + problem + "\n")
    positions = []
    for step in steps:
        ids += _ids(tok, step) + [step_id]
        positions.append(len(ids) - 1)
    _check_length(len(ids), spec.max_length, label)
    return ids, positions


def _chat(tok: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    if not getattr(tok, "chat_template", None):
        raise StepAlignmentError("this PRM style needs a tokenizer with a chat template (the checkpoint's own "
                                 "tokenizer has one); set tokenizer.chat_template or pick another style")
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


_FORMATS = {"ttscale": _native, "math-shepherd": _math_shepherd, "qwen-prm": _qwen_prm,
            "rlhflow": _rlhflow, "skywork": _skywork}


def encode_steps(tokenizer: Any, problem: str, steps: Sequence[str], spec: PRMSpec | None = None, *,
                 label: str = "candidate") -> tuple[list[int], list[int]]:
    """Token ids of (problem, steps) in `spec`'s format and exactly one score position per step.

    `label` names the candidate in errors. Raises StepAlignmentError when a step's position is lost.
    """
    spec = spec or PRMSpec()
    if not steps:
        return [], []
    if spec.formulation == "implicit":
        ids, positions, _ = encode_implicit(tokenizer, problem, list(steps), spec, label=label)
        return ids, positions
    ids, positions = _FORMATS[spec.style](tokenizer, problem, list(steps), spec, label)
    _check_count(ids, positions, len(steps), spec.step_tag, label)
    return ids, positions
