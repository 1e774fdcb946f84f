"""TransformersGenerator on the tiny model: counts, finish reasons, stops, seeds, batch invariance, PEFT."""
from __future__ import annotations

import copy

import pytest
import torch

from ttscale.data.answers import extract_answer, is_correct
from ttscale.inference.base import Completion, Generator, SamplingParams
from ttscale.inference.loading import GeneratorArgs
from ttscale.inference.backend_rules import derive_seed, find_stop
from ttscale.inference.transformers_backend import TransformersGenerator

PROMPTS = ["What is 3 + 4?", "Tom has 5 apples and buys 7 more.", "Step 2: 4 * 6 ="]


@pytest.fixture(scope="module")
def gen(tiny_lm, tiny_tokenizer):
    return TransformersGenerator(tiny_lm, tiny_tokenizer, batch_size=16, progress=False)


def test_protocol_and_shapes(gen):
    assert isinstance(gen, Generator)
    assert gen.num_params == sum(p.numel() for p in gen.model.parameters()) > 0
    out = gen.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=7, seed=0))
    assert [len(o) for o in out] == [3, 3, 3]
    for c in (c for o in out for c in o):
        assert isinstance(c, Completion) and c.finish_reason == "length" and c.num_tokens == 7 and c.text


def test_seeded_reproducible_and_n_differ(gen):
    sp = SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=3)
    a, b = gen.generate(PROMPTS, sp), gen.generate(PROMPTS, sp)
    assert a == b
    assert len({c.text for c in a[0]}) == 4  # n samples of one prompt differ
    other = gen.generate(PROMPTS, SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=4))
    assert other != a


def test_batch_invariance(tiny_lm, tiny_tokenizer, gen):
    sp = SamplingParams(n=2, temperature=0.9, top_p=0.9, max_new_tokens=10, seed=5, stop=("e",))
    together = gen.generate(PROMPTS, sp)
    alone = [gen.generate([p], sp)[0] for p in PROMPTS]
    assert alone == together
    one_by_one = TransformersGenerator(tiny_lm, tiny_tokenizer, batch_size=1, progress=False)
    assert one_by_one.generate(PROMPTS[::-1], sp) == together[::-1]


def test_per_prompt_counts_give_the_first_completions_of_a_larger_request(gen):
    """n=[...] asks each prompt for its own count; completion j does not depend on how many were asked, so
    a prompt asked for k gets the first k of a request for more, and one asked for 0 is not run at all."""
    sp = SamplingParams(n=4, temperature=1.0, max_new_tokens=9, seed=2, stop=("e",))
    full = gen.generate(PROMPTS, sp)
    some = gen.generate(PROMPTS, sp, n=[1, 0, 3])
    assert some == [full[0][:1], [], full[2][:3]]
    assert gen.last_prompt_tokens[1] == 0 and gen.last_prompt_tokens[0] > 0
    with pytest.raises(ValueError, match="a count >= 0 for each of the 3 prompts"):
        gen.generate(PROMPTS, sp, n=[1, 2])
    # start=[...] asks for completions from index start on: the tail of the larger request
    tail = gen.generate(PROMPTS, sp, n=[3, 0, 1], start=[1, 2, 3])
    assert tail == [full[0][1:4], [], full[2][3:4]]
    with pytest.raises(ValueError, match="an index >= 0 for each of the 3 prompts"):
        gen.generate(PROMPTS, sp, n=[1, 1, 1], start=[0, -1, 0])


def test_greedy_matches_hf_generate(gen, tiny_lm, tiny_tokenizer):
    out = gen.generate(PROMPTS[:1], SamplingParams(n=2, temperature=0, max_new_tokens=8))[0]
    assert out[0] == out[1]
    ids = tiny_tokenizer(PROMPTS[0], return_tensors="pt")
    ref = tiny_lm.generate(**ids, do_sample=False, max_new_tokens=8, min_new_tokens=8)[0, ids["input_ids"].shape[1]:]
    assert out[0].text == tiny_tokenizer.decode(ref, skip_special_tokens=True)


def test_stop_strings_and_token_counts(gen):
    stops = ("e", "?")
    out = gen.generate(PROMPTS, SamplingParams(n=4, temperature=1.0, max_new_tokens=40, stop=stops, seed=1))
    finished = [c for o in out for c in o if c.finish_reason == "stop"]
    assert len(finished) >= 8
    for c in finished:
        assert c.text.endswith(stops)
        assert find_stop(c.text, stops) == len(c.text)  # the first stop ends the text, nothing after it
        assert 1 <= c.num_tokens <= 40
    # num_tokens counts up to the token that completed the stop: the same seed with that many tokens and
    # no stop contains the stop; one token fewer does not.
    for p in PROMPTS:
        s = gen.generate([p], SamplingParams(temperature=1.0, max_new_tokens=40, seed=2, stop=("e",)))[0][0]
        assert s.finish_reason == "stop"
        upto = gen.generate([p], SamplingParams(temperature=1.0, max_new_tokens=s.num_tokens, seed=2))[0][0]
        assert upto.text.startswith(s.text) and "e" in upto.text
        if s.num_tokens > 1:
            before = gen.generate([p], SamplingParams(temperature=1.0, max_new_tokens=s.num_tokens - 1, seed=2))[0][0]
            assert "e" not in before.text


def test_eos_and_length(tiny_lm, tiny_tokenizer, gen):
    greedy = gen.generate(PROMPTS[:1], SamplingParams(temperature=0, max_new_tokens=5))[0][0]
    first = tiny_tokenizer(greedy.text, add_special_tokens=False)["input_ids"][0]
    lm = copy.deepcopy(tiny_lm)  # a model whose EOS list includes its favourite token, like Llama 3's
    lm.generation_config.eos_token_id = [tiny_tokenizer.eos_token_id, first]
    g = TransformersGenerator(lm, tiny_tokenizer, progress=False)
    c = g.generate(PROMPTS[:1], SamplingParams(temperature=0, max_new_tokens=5))[0][0]
    assert c == Completion(text="", num_tokens=1, finish_reason="eos")
    c = gen.generate(PROMPTS[:1], SamplingParams(temperature=1.0, max_new_tokens=3))[0][0]
    assert c.finish_reason == "length" and c.num_tokens == 3


def test_seed_derivation_is_stable():
    assert derive_seed(0, "abc", 1) == derive_seed(0, "abc", 1)
    assert len({derive_seed(0, "abc", 0), derive_seed(0, "abc", 1), derive_seed(1, "abc", 0),
                derive_seed(0, "abd", 0)}) == 4
    assert 0 <= derive_seed(7, "x") < 2 ** 63
    assert find_stop("a\n\nb\n\n", ["\n\n", "b"]) == 3


def test_reports_the_prompt_tokens_it_prefilled(tiny_lm, tiny_tokenizer, gen):
    lengths = [len(gen.encode(p)) for p in PROMPTS]
    gen.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=2))
    assert gen.last_prompt_tokens == lengths and gen.last_cached_tokens == [0] * len(PROMPTS)   # one prefill each
    # batch_size 2 sequences: a prompt's 3 samples fall in 2 chunks, each prefilling the prompt again
    small = TransformersGenerator(tiny_lm, tiny_tokenizer, batch_size=2, progress=False)
    small.generate(PROMPTS[:1], SamplingParams(n=3, temperature=1.0, max_new_tokens=2))
    assert small.last_prompt_tokens == [2 * lengths[0]]


def test_loads_dir_and_peft_adapter(tmp_path, tiny_lm_dir, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    torch.manual_seed(0)
    peft_lm = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_lm.save_pretrained(tmp_path / "adapter")
    sp = SamplingParams(n=2, temperature=0.8, max_new_tokens=6, seed=0)

    plain = GeneratorArgs(policy=str(tiny_lm_dir), batch_size=4).build()
    via_arg = TransformersGenerator(str(tiny_lm_dir), adapter=str(tmp_path / "adapter"), progress=False)
    via_dir = TransformersGenerator(str(tmp_path / "adapter"), progress=False)  # base found in adapter_config
    ids = tiny_tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = peft_lm(ids).logits
        assert torch.allclose(via_arg.model(ids).logits, want, atol=1e-5)
        assert not torch.allclose(plain.model(ids).logits, want, atol=1e-3)
    assert via_arg.generate(PROMPTS, sp) == via_dir.generate(PROMPTS, sp)
    assert plain.num_params == via_arg.num_params  # LoRA merged into the base weights


def test_bad_inputs(gen):
    with pytest.raises(TypeError, match="list of prompts"):
        gen.generate("one string", SamplingParams())
    with pytest.raises(ValueError, match="n >= 1"):
        gen.generate(PROMPTS, SamplingParams(n=0))


def test_generate_stage_writes_rows(tmp_path, tiny_lm_dir):
    import json

    from ttscale.cli import main
    from ttscale.data.io import read_table

    src = tmp_path / "problems.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"What is {i} + 4?", "answer": str(i + 4)}) + "\n"
                           for i in range(3)))
    out = tmp_path / "samples"      # a folder, as every producing stage writes
    argv = ["generate", str(out), "--problems", str(src), "--policy", str(tiny_lm_dir), "--n", "2",
            "--temperature", "1.0", "--max-new-tokens", "12", "--until", "step", "--stop", "e", "--seed", "3",
            "--batch-size", "4"]
    assert main(argv) == 0
    assert (out / "config.yaml").is_file()
    rows = read_table(out / "samples.jsonl").to_list()
    assert [(r["id"], r["sample"]) for r in rows] == [(f"p{i}", j) for i in range(3) for j in range(2)]
    assert set(rows[0]) == {"id", "problem", "sample", "completion", "num_tokens", "finish_reason", "answer",
                            "extracted_answer", "correct"}
    for r in rows:
        assert 1 <= r["num_tokens"] <= 12 and r["finish_reason"] in ("stop", "length")
        assert (r["finish_reason"] == "stop") == r["completion"].endswith(("e", "\n\n"))
        assert r["answer"] == str(int(r["id"][1:]) + 4) and r["correct"] is is_correct(r["completion"], r["answer"])
        assert r["extracted_answer"] == extract_answer(r["completion"])
    # same rows as the generator called directly on the chat-template prompts
    from ttscale.data.steps import build_prompt

    g = TransformersGenerator(str(tiny_lm_dir), progress=False)
    direct = g.generate([build_prompt(r["problem"], g.tokenizer) for r in rows[::2]],
                        SamplingParams(n=2, temperature=1.0, max_new_tokens=12, stop=("e", "\n\n"), seed=3))
    assert [c.text for o in direct for c in o] == [r["completion"] for r in rows]
    assert (out / "config.yaml").read_text().count("policy:") == 1


def test_generate_rows_carry_answer_and_correctness(tmp_path, tiny_lm_dir, monkeypatch):
    import json

    from ttscale.cli import main
    from ttscale.data.io import read_table
    from ttscale.inference import transformers_backend

    def fake(self, prompts, params):  # the tiny model answers nothing; these rows have known answers
        return [[Completion("1 + 4 = 5.\n\nThe answer is \\boxed{5}.", 9, "eos"), Completion("no idea", 2, "eos")]
                for _ in prompts]

    monkeypatch.setattr(transformers_backend.TransformersGenerator, "generate", fake)
    src = tmp_path / "problems.jsonl"
    src.write_text(json.dumps({"id": "a", "problem": "What is 1 + 4?", "answer": "5"}) + "\n"
                   + json.dumps({"id": "b", "problem": "What is 2 + 4?", "answer": "6"}) + "\n"
                   + json.dumps({"id": "c", "problem": "What is 3 + 4?"}) + "\n")
    out = tmp_path / "samples.jsonl"   # the old form, a file: still written, with a notice
    assert main(["generate", str(out), "--problems", str(src), "--policy", str(tiny_lm_dir), "--n", "2"]) == 0
    got = [(r["id"], r["extracted_answer"], r["correct"]) for r in read_table(out).to_list()]
    assert got == [("a", "5", True), ("a", None, False), ("b", "5", False), ("b", None, False),
                   ("c", "5", None), ("c", None, None)]


def test_serve_mode_joins_callers_into_one_running_batch_with_the_same_results(tiny_lm, tiny_tokenizer):
    """serve(): generate calls from several threads share one decode loop (continuous batching across
    callers); each gets what it would get alone, and reads its own call's prompt-token counts."""
    from concurrent.futures import ThreadPoolExecutor

    sp = SamplingParams(n=3, temperature=0.9, max_new_tokens=12, seed=7, stop=("e",))
    alone = TransformersGenerator(tiny_lm, tiny_tokenizer, batch_size=8, progress=False)
    want = [alone.generate([p], sp)[0] for p in PROMPTS]
    shared = TransformersGenerator(tiny_lm, tiny_tokenizer, batch_size=8, progress=False).serve()
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda p: (shared.generate([p] * 2, sp), shared.last_prompt_tokens), PROMPTS * 2))
    assert [g for g, _ in got] == [[w, w] for w in want * 2]
    for (_, counts), p in zip(got, PROMPTS * 2):   # each call ran its own prompts at least once
        assert len(counts) == 2 and all(c > 0 and c % len(shared.encode(p)) == 0 for c in counts)


def test_vectorised_sampling_follows_the_distribution_top_p_and_greedy():
    from ttscale.inference.decode import sample, uniforms

    rows = 20000
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))[None].repeat(rows, 1)
    u = uniforms(torch.arange(rows), torch.zeros(rows, dtype=torch.long))
    assert 0 <= float(u.min()) and float(u.max()) < 1 and torch.equal(u, uniforms(torch.arange(rows), torch.zeros(rows, dtype=torch.long)))
    freq = torch.bincount(sample(logits, u, torch.ones(rows), torch.ones(rows)), minlength=3).double() / rows
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2], dtype=torch.double), atol=0.015)
    # top-p 0.6 keeps the first two tokens, renormalised; temperature 0 takes the argmax
    freq = torch.bincount(sample(logits, u, torch.ones(rows), torch.full((rows,), 0.6)), minlength=3).double() / rows
    assert freq[2] == 0 and abs(freq[0] - 0.625) < 0.015
    assert sample(logits[:3], u[:3], torch.zeros(3), torch.ones(3)).tolist() == [0, 0, 0]
