"""Step-tag placement: one score position per step, exact external formats, loud failures."""
from __future__ import annotations

import json

import pytest

from ttscale.inference.prm_inputs import (DEFAULT_STEP_TAG, QWEN_SYSTEM, SPEC_FILE, PRMSpec, StepAlignmentError,
                                          add_step_tag, encode_steps)

PROBLEM = "Tom has 3 apples and buys 4 more. How many apples?"
STEPS = ["He has 3 + 4 = 7 apples.", "The answer is \\boxed{7}."]


@pytest.fixture(scope="module")
def tok(prm_tokenizer):
    return prm_tokenizer


def test_native_positions_are_the_tags_and_steps_round_trip(tok):
    ids, pos = encode_steps(tok, PROBLEM, STEPS)
    tag = tok.convert_tokens_to_ids(DEFAULT_STEP_TAG)
    assert pos == [i for i, t in enumerate(ids) if t == tag] and len(pos) == len(STEPS)
    assert pos[-1] == len(ids) - 1
    assert tok.decode(ids[pos[0] + 1:pos[1]]) == STEPS[1]
    assert tok.decode(ids[:pos[0]]) == f"{PROBLEM}\n\n{STEPS[0]}"


def test_native_left_truncates_the_prompt_never_the_steps(tok):
    long_problem = " ".join(["Tom has 3 apples."] * 40)
    full, full_pos = encode_steps(tok, long_problem, STEPS)
    spec = PRMSpec(max_length=40)
    ids, pos = encode_steps(tok, long_problem, STEPS, spec)
    assert len(ids) == 40 < len(full)
    assert ids == full[-40:]                                  # the tail (all steps + tags) is intact
    assert [p - (len(full) - 40) for p in full_pos] == pos


def test_native_steps_alone_too_long_is_an_error(tok):
    with pytest.raises(StepAlignmentError, match=r"candidate 7: truncated: the steps alone need \d+ tokens > max_length 10"):
        encode_steps(tok, PROBLEM, STEPS, PRMSpec(max_length=10), label="candidate 7")


def test_native_tag_missing_or_inside_text(tok, tiny_tokenizer):
    with pytest.raises(StepAlignmentError, match="not in the tokenizer's vocabulary.*add_step_tag"):
        encode_steps(tiny_tokenizer, PROBLEM, STEPS)
    with pytest.raises(StepAlignmentError, match="step 2: the step text contains the step tag"):
        encode_steps(tok, PROBLEM, ["a", f"b {DEFAULT_STEP_TAG} c"])


def test_math_shepherd_exact_string(tok):
    spec = PRMSpec.for_style("math-shepherd")
    ids, pos = encode_steps(tok, PROBLEM, STEPS, spec)
    assert tok.decode(ids) == f"{PROBLEM} Step 1: {STEPS[0]} ки\nStep 2: {STEPS[1]} ки"
    assert [tok.decode([ids[p]]) for p in pos] == ["ки", "ки"]
    # an existing "Step k:" prefix is kept, not doubled
    ids2, _ = encode_steps(tok, PROBLEM, ["Step 1: x = 1", "y = 2"], spec)
    assert tok.decode(ids2) == f"{PROBLEM} Step 1: x = 1 ки\nStep 2: y = 2 ки"


def test_merging_tag_is_caught(tok):
    # "=" is one token alone, but in " =" byte-level BPE merges it with the space before it.
    assert len(tok.encode("=", add_special_tokens=False)) == 1
    spec = PRMSpec.for_style("math-shepherd", step_tag="=")
    with pytest.raises(StepAlignmentError, match=r"candidate 2: the tokenizer merged the step tag '=' with "
                                                 r"neighbouring text \(0 tag positions for 2 steps\)"):
        encode_steps(tok, "Find x", ["x is 1", "so 1"], spec, label="candidate 2")
    # a tag that also occurs in the text is caught too
    with pytest.raises(StepAlignmentError, match="also occurs inside the problem or step text"):
        encode_steps(tok, "What is ки?", STEPS, PRMSpec.for_style("math-shepherd"))


def test_qwen_prm_chat_format(tok):
    ids, pos = encode_steps(tok, PROBLEM, STEPS, PRMSpec.for_style("qwen-prm"))
    text = tok.decode(ids)
    assert QWEN_SYSTEM in text and f"{STEPS[0]}<extra_0>{STEPS[1]}<extra_0>" in text
    assert [tok.decode([ids[p]]) for p in pos] == ["<extra_0>", "<extra_0>"]


def test_rlhflow_reads_where_the_plus_is_predicted(tok):
    ids, pos = encode_steps(tok, PROBLEM, STEPS, PRMSpec.for_style("rlhflow"))
    assistant = tok.convert_tokens_to_ids("<|assistant|>")
    plus = tok.encode("+", add_special_tokens=False)[0]
    # the problem itself contains "+": only the assistant turns' "+" count
    assert pos == [i - 1 for i, t in enumerate(ids) if t == plus and ids[i - 2] == assistant]
    assert f"<|user|>\n{PROBLEM} {STEPS[0]}<|end|>\n<|assistant|>\n+<|end|>\n<|user|>\n{STEPS[1]}" in tok.decode(ids)


def test_skywork_reads_each_appended_newline(tok):
    ids, pos = encode_steps(tok, PROBLEM, STEPS, PRMSpec.for_style("skywork"))
    assert tok.decode(ids) == f"{PROBLEM}\n{STEPS[0]}\n{STEPS[1]}\n"
    newline = tok.encode("\n", add_special_tokens=False)[-1]
    assert pos == [i for i, t in enumerate(ids) if t == newline][1:]   # the first ends the problem


@pytest.mark.parametrize("style", ["math-shepherd", "qwen-prm", "rlhflow", "skywork"])
def test_external_formats_are_never_truncated(tok, style):
    with pytest.raises(StepAlignmentError, match=r"candidate 3: truncated: \d+ tokens > max_length 12"):
        encode_steps(tok, PROBLEM, STEPS, PRMSpec.for_style(style, max_length=12), label="candidate 3")


def test_empty_candidate(tok):
    assert encode_steps(tok, PROBLEM, []) == ([], [])


def test_spec_save_load_and_errors(tmp_path):
    spec = PRMSpec.for_style("math-shepherd", max_length=777)
    path = spec.save(tmp_path)
    assert path.name == SPEC_FILE and json.loads(path.read_text())["step_tag"] == "ки"
    assert PRMSpec.load(tmp_path) == spec
    # a hand-written file with only some fields gets its style's defaults for the rest
    path.write_text(json.dumps({"style": "skywork", "max_length": 99}))
    assert PRMSpec.load(tmp_path) == PRMSpec.for_style("skywork", max_length=99)
    path.write_text(json.dumps({"formulation": "causal-lm", "step_tagg": "x"}))
    with pytest.raises(ValueError, match=r"ttscale_prm.json: unknown field\(s\) \['step_tagg'\]"):
        PRMSpec.load(tmp_path)
    path.write_text(json.dumps({"num_labels": 3}))
    with pytest.raises(ValueError, match="ttscale_prm.json: num_labels must be 1"):
        PRMSpec.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="pass the PRM style explicitly"):
        PRMSpec.load(tmp_path / "nowhere")


def test_add_step_tag_grows_the_model(tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from ttscale.train.tiny import tiny_causal_lm

    tiny_tokenizer.save_pretrained(tmp_path)
    t = AutoTokenizer.from_pretrained(tmp_path)
    model = tiny_causal_lm(t, hidden_size=16, num_layers=1, num_heads=2)
    n = len(t)
    tag_id = add_step_tag(t, model)
    assert tag_id == n and len(t) == n + 1 and model.get_input_embeddings().num_embeddings == n + 1
    assert add_step_tag(t, model) == tag_id and len(t) == n + 1       # idempotent
    assert t.tokenize(f"a{DEFAULT_STEP_TAG}b")[1] == DEFAULT_STEP_TAG  # never split


def test_new_step_tag_starts_as_the_delimiter_embedding(tiny_tokenizer, tmp_path):
    """The tag's row starts where the base model reads a step boundary, in the input and the tied LM head;
    the tokenizer may already know the tag (load_tokenizer adds it before the model loads)."""
    import torch
    from transformers import AutoTokenizer

    from ttscale.train.tiny import tiny_causal_lm

    tiny_tokenizer.save_pretrained(tmp_path)
    t = AutoTokenizer.from_pretrained(tmp_path)
    model = tiny_causal_lm(t, hidden_size=16, num_layers=1, num_heads=2)
    add_step_tag(t)                                   # tokenizer first, as load_tokenizer does
    tag_id = add_step_tag(t, model, init_from="\n\n")
    ids = t.encode("\n\n", add_special_tokens=False)
    emb = model.get_input_embeddings().weight
    assert torch.allclose(emb[tag_id], emb[ids].mean(0))
    assert torch.allclose(model.get_output_embeddings().weight[tag_id], emb[ids].mean(0))
    before = emb[tag_id].clone()
    assert add_step_tag(t, model, init_from="x") == tag_id and torch.equal(emb[tag_id], before)  # never re-set
