"""PRM scorers on tiny random Llama-shaped models: alignment, batching invariance, loading, usage, errors."""
from __future__ import annotations

import math
import re

import pytest
import torch

from ttscale.config import parse_config
from ttscale.inference.base import Scorer
from ttscale.inference.prm_inputs import PRMSpec, StepAlignmentError
from ttscale.train.tiny import tiny_model
from ttscale.inference.scorers import (CausalLMPRM, MathShepherdPRM, QwenPRM, RLHFlowPRM, SkyworkPRM,
                                       TokenClassificationPRM)
from ttscale.inference.scorers_load import ScorerArgs, load_scorer

ITEMS = [
    ("Tom has 3 apples and buys 4 more. How many apples?", ["He has 3 + 4 = 7 apples.", "The answer is \\boxed{7}."]),
    ("What is 2 * 5?", ["2 * 5 = 10", "so x = 10", "y = 3", "The answer is \\boxed{10}."]),
    ("What is 9 - 4?", ["9 - 4 = 5."]),
    ("Tom has 3 apples and buys 4 more. How many apples?", ["3 + 4 = 8", "The answer is \\boxed{8}."]),
    ("What is 1 + 1?", []),
    ("What is 6 + 7?", ["Step 1: 6 + 7 = 13", "Then x = \\frac{13}{1} and y = 13 apples.", "The answer is 13."]),
]


@pytest.fixture(scope="module")
def tok(prm_tokenizer):
    return prm_tokenizer


def _model(tok, kind, seed, **kw):
    # A wide init spreads the random scores over (0, 1), so a shifted position shows.
    return tiny_model(tok, kind, seed=seed, hidden_size=32, num_layers=2, max_position_embeddings=512,
                      initializer_range=0.3, **kw).eval()


@pytest.fixture(scope="module")
def models(tok):
    return {"tc2": _model(tok, "token-classification", 0, num_labels=2),
            "tc1": _model(tok, "token-classification", 1, num_labels=1),
            "lm": _model(tok, "causal-lm", 2)}


def _expected_positions(tok, style, ids):
    """Independently of prm_inputs: where each style's step scores are read."""
    def where(token):
        tid = tok.convert_tokens_to_ids(token) if token.startswith("<") or token == "ки" else \
            tok.encode(token, add_special_tokens=False)[-1]
        return [i for i, t in enumerate(ids) if t == tid]
    if style == "rlhflow":
        assistant, plus = tok.convert_tokens_to_ids("<|assistant|>"), tok.encode("+", add_special_tokens=False)[0]
        return [i - 1 for i, t in enumerate(ids) if t == plus and ids[i - 2] == assistant]
    if style == "skywork":
        return where("\n")[1:]                   # the first newline ends the problem
    return where({"ttscale": "<|step|>", "math-shepherd": "ки", "qwen-prm": "<extra_0>"}[style])


CASES = {  # name: (class, model, style, formulation, how logits become P(correct))
    "ttscale-tc2": (TokenClassificationPRM, "tc2", "ttscale", "token-classification", "softmax"),
    "ttscale-tc1": (TokenClassificationPRM, "tc1", "ttscale", "token-classification", "sigmoid"),
    "ttscale-causal": (CausalLMPRM, "lm", "ttscale", "causal-lm", "plus"),
    "math-shepherd": (MathShepherdPRM, "lm", "math-shepherd", "causal-lm", "plus"),
    "qwen-prm": (QwenPRM, "tc2", "qwen-prm", "token-classification", "softmax"),
    "rlhflow": (RLHFlowPRM, "lm", "rlhflow", "causal-lm", "plus"),
    "skywork": (SkyworkPRM, "tc1", "skywork", "token-classification", "sigmoid"),
}


def _make(case, tok, models, **kw):
    cls, model, style, formulation, _ = CASES[case]
    num_labels = 1 if model == "tc1" else 2
    return cls(models[model], tok, PRMSpec.for_style(style, formulation=formulation, num_labels=num_labels), **kw)


@pytest.mark.parametrize("case", list(CASES))
def test_scores_match_a_manual_forward_at_the_expected_positions(case, tok, models):
    scorer = _make(case, tok, models, batch_size=4)
    scores = scorer.score(ITEMS)
    _, model, style, _, head = CASES[case]
    plus, minus = tok.encode("+", add_special_tokens=False)[0], tok.encode("-", add_special_tokens=False)[0]
    if style == "math-shepherd":   # the model card's candidate tokens: "+ -" encoded together
        plus, minus = tok.encode("+ -", add_special_tokens=False)
    for (problem, steps), got in zip(ITEMS, scores):
        if not steps:
            assert got == []
            continue
        ids, _ = scorer.encode(problem, steps)
        pos = _expected_positions(tok, style, ids)
        with torch.no_grad():
            logits = models[model](torch.tensor([ids])).logits[0, pos].float()
        want = {"softmax": lambda x: torch.softmax(x, -1)[:, 1], "sigmoid": lambda x: torch.sigmoid(x[:, 0]),
                "plus": lambda x: torch.softmax(x[:, [plus, minus]], -1)[:, 0]}[head](logits)
        assert len(got) == len(steps)
        assert got == pytest.approx(want.tolist(), abs=1e-5)
        assert all(0.0 <= s <= 1.0 for s in got)
    assert len({round(s, 4) for row in scores for s in row}) > 5   # not a constant


@pytest.mark.parametrize("case", ["ttscale-tc2", "ttscale-causal", "rlhflow"])
def test_batching_invariance_and_usage(case, tok, models):
    alone = _make(case, tok, models, batch_size=1)
    batched = _make(case, tok, models, batch_size=3)
    one_by_one = [alone.score([item])[0] for item in ITEMS]
    together = batched.score(ITEMS)
    reversed_ = batched.score(ITEMS[::-1])[::-1]
    for a, b, c in zip(one_by_one, together, reversed_):
        assert a == pytest.approx(b, abs=1e-5) and b == pytest.approx(c, abs=1e-5)
    lengths = sum(len(batched.encode(p, s)[0]) for p, s in ITEMS if s)
    non_empty = sum(1 for _, s in ITEMS if s)
    assert alone.usage.calls == non_empty and alone.usage.tokens == lengths   # empty candidates cost nothing
    assert batched.usage.calls == 2 * math.ceil(non_empty / 3) and batched.usage.tokens == 2 * lengths
    before = batched.usage.snapshot()
    batched.score(ITEMS[:2])
    assert (batched.usage - before).calls == 1


def test_protocol_and_params(tok, models):
    scorer = _make("ttscale-tc2", tok, models)
    assert isinstance(scorer, Scorer)
    assert scorer.num_params == sum(p.numel() for p in models["tc2"].parameters())


def test_truncation_is_an_error_naming_the_candidate(tok, models):
    items = [ITEMS[2], ITEMS[0]]
    short, long = (len(_make("qwen-prm", tok, models).encode(*item)[0]) for item in items)
    assert short < long
    scorer = _make("qwen-prm", tok, models, max_length=short)
    with pytest.raises(StepAlignmentError, match=rf"candidate 1: truncated: {long} tokens > max_length {short}"):
        scorer.score(items)
    assert scorer.usage.calls == 0          # nothing runs before every candidate is encoded


def test_mismatched_model_and_style(tok, tiny_tokenizer, models):
    with pytest.raises(ValueError, match="is a causal LM.*causal-lm"):
        TokenClassificationPRM(models["lm"], tok)
    with pytest.raises(ValueError, match="no language-model head.*token-classification"):
        CausalLMPRM(models["tc2"], tok)
    with pytest.raises(ValueError, match="has 2 label.*num_labels: 2"):
        TokenClassificationPRM(models["tc2"], tok, PRMSpec(num_labels=1))
    with pytest.raises(ValueError, match=re.escape("step tag '<|step|>' is not a single token") + ".*add_step_tag"):
        TokenClassificationPRM(models["tc2"], tiny_tokenizer)


@pytest.fixture(scope="module")
def saved(tok, models, tmp_path_factory):
    """A token-classification and a causal ttscale PRM saved as checkpoint folders with ttscale_prm.json."""
    out = {}
    for name, spec in [("tc2", PRMSpec(max_length=256)), ("lm", PRMSpec(formulation="causal-lm"))]:
        path = tmp_path_factory.mktemp(f"prm_{name}")
        models[name].save_pretrained(path)
        tok.save_pretrained(path)
        spec.save(path)
        out[name] = path
    return out


def test_load_from_folder_matches_in_memory(saved, tok, models):
    for name, case in [("tc2", "ttscale-tc2"), ("lm", "ttscale-causal")]:
        loaded = load_scorer(saved[name], device="cpu")
        assert type(loaded).__name__ == CASES[case][0].__name__
        want = _make(case, tok, models).score(ITEMS)
        for got, exp in zip(loaded.score(ITEMS), want):
            assert got == pytest.approx(exp, abs=1e-5)
    assert load_scorer(saved["tc2"], device="cpu").spec.max_length == 256


def test_scorer_args_build_and_cli(saved):
    args = parse_config(ScorerArgs, ["--prm", str(saved["lm"]), "--prm-batch-size", "2", "--prm-max-length", "300",
                                     "--prm-device", "cpu", "--prm-threads", "1"])
    scorer = args.build()
    assert isinstance(scorer, CausalLMPRM) and scorer.batch_size == 2 and scorer.spec.max_length == 300
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="no PRM given"):
        ScorerArgs().build()


def test_load_refuses_a_style_that_does_not_fit(saved, tmp_path, models, tok):
    with pytest.raises(ValueError, match="holds a causal LM.*--prm-style causal-lm"):
        load_scorer(saved["lm"], "token-classification", device="cpu")
    with pytest.raises(ValueError, match="holds a token classifier.*--prm-style token-classification"):
        load_scorer(saved["tc2"], "math-shepherd", device="cpu")
    models["tc2"].save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no ttscale_prm.json.*pass its style explicitly"):
        load_scorer(tmp_path, device="cpu")
    assert isinstance(load_scorer(tmp_path, "qwen-prm", device="cpu"), QwenPRM)


# ------------------------------------------------------------------ incremental scoring (prefix KV cache)

_P = [ITEMS[0][0], ITEMS[1][0], ITEMS[2][0]]
_A = [f"He has {i} apples." for i in range(4)]
ROUNDS = [  # what step-wise search sends, call after call: each new candidate = a scored parent + new step(s)
    # depth 0: four first steps of one problem (shared prompt) and a lone candidate of another
    [(_P[0], [a]) for a in _A] + [(_P[1], ["2 * 5 = 10"])],
    # depth 1: children of cached parents (different prefix lengths, batched together), a candidate with
    # nothing cached, an exact repeat, an empty one
    [(_P[0], [_A[0], "So 3 + 4 = 7."]), (_P[0], [_A[0], "The answer is \\boxed{7}."]), (_P[0], [_A[3], "y = 3"]),
     (_P[1], ["2 * 5 = 10", "The answer is \\boxed{10}."]), (_P[2], ["9 - 4 = 5."]), (_P[0], [_A[1]]), (_P[1], [])],
    # lookahead: a child plus two rollout steps; then children of that child's prefix (held inside its entry)
    [(_P[0], [_A[0], "So 3 + 4 = 7.", "then 7 apples", "The answer is \\boxed{7}."])],
    [(_P[0], [_A[0], "So 3 + 4 = 7.", "x = 7"]), (_P[2], ["9 - 4 = 5.", "so 5", "The answer is 5."])],
]


def _n(scorer, problem, steps):
    return len(scorer.encode(problem, steps)[0]) if steps else 0


@pytest.mark.parametrize("case", ["ttscale-tc2", "ttscale-tc1", "ttscale-causal"])
def test_incremental_scores_equal_full_rescoring_and_run_only_new_tokens(case, tok, models):
    inc, full = _make(case, tok, models, batch_size=3), _make(case, tok, models, batch_size=3)
    n = lambda p, s: _n(full, p, s)  # noqa: E731
    prompt0 = len(tok(f"{_P[0]}\n\n")["input_ids"])
    expected = [  # tokens each item must run, from which prefix is already cached
        None,
        [n(*ROUNDS[1][0]) - n(_P[0], _A[:1]), n(*ROUNDS[1][1]) - n(_P[0], _A[:1]), n(*ROUNDS[1][2]) - n(_P[0], _A[3:]),
         n(*ROUNDS[1][3]) - n(*ROUNDS[0][4]), n(*ROUNDS[1][4]), 0, 0],
        [n(*ROUNDS[2][0]) - n(*ROUNDS[1][0])],
        [n(*ROUNDS[3][0]) - n(*ROUNDS[1][0]), n(*ROUNDS[3][1]) - n(*ROUNDS[1][4])],
    ]
    for items, want_tokens in zip(ROUNDS, expected):
        before = inc.usage.snapshot()
        got, want = inc.score_incremental(items), full.score(items)
        for g, w, (_, steps) in zip(got, want, items):
            assert len(g) == len(steps) and g == pytest.approx(w, abs=1e-4)
        spent = (inc.usage - before).tokens
        assert sum(inc.last_item_tokens) == spent
        if want_tokens is None:   # the shared prompt runs once, not four times
            assert spent == sum(n(*it) for it in items) - 3 * prompt0
        else:
            assert inc.last_item_tokens == want_tokens
    assert full.last_item_tokens == [n(*it) for it in ROUNDS[-1]]
    assert len({round(s, 4) for row in full.score(ROUNDS[1]) for s in row}) > 5   # not a constant


def test_incremental_cache_is_bounded_and_reset(tok, models):
    tiny = _make("ttscale-causal", tok, models, cache_entries=2)
    none = _make("ttscale-causal", tok, models, cache_bytes=1)      # every entry evicted at once
    full = _make("ttscale-causal", tok, models)
    for items in ROUNDS:
        want = full.score(items)
        for scorer in (tiny, none):
            for g, w in zip(scorer.score_incremental(items), want):
                assert g == pytest.approx(w, abs=1e-4)
            assert len(scorer.kv_cache) <= 2
        cold = _make("ttscale-causal", tok, models)
        cold.score_incremental(items)
        assert len(none.kv_cache) == 0 and none.last_item_tokens == cold.last_item_tokens   # nothing kept
    assert tiny.usage.tokens < none.usage.tokens
    assert len(tiny.kv_cache) == 2 and tiny.kv_cache.nbytes > 0
    tiny.reset_cache()
    assert len(tiny.kv_cache) == 0 and tiny.kv_cache.nbytes == 0
    tiny.score_incremental(ROUNDS[0][:1])
    assert tiny.last_item_tokens == [_n(full, *ROUNDS[0][0])]


def test_incremental_is_plain_scoring_where_prefixes_are_not_stable(tok, models):
    for scorer in (_make("qwen-prm", tok, models), _make("ttscale-tc2", tok, models, incremental=False)):
        got = scorer.score_incremental(ROUNDS[1])
        assert got == scorer.score(ROUNDS[1]) and len(scorer.kv_cache) == 0
        assert scorer.last_item_tokens == [_n(scorer, *it) for it in ROUNDS[1]]


@pytest.mark.parametrize("strategy", ["beam", "dvts", "lookahead"])
def test_stepwise_search_same_with_and_without_incremental_scoring(strategy, tok, models):
    from search_fakes import ScriptedGenerator, problems
    from ttscale.search.registry import get_strategy
    from ttscale.search.types import SearchContext, SearchSettings

    runs = {}
    for incremental in (True, False):
        scorer = _make("ttscale-tc2", tok, models, batch_size=4, incremental=incremental)
        ctx = SearchContext(generator=ScriptedGenerator(4), scorer=scorer, settings=SearchSettings())
        search = get_strategy(strategy, {"beam_width": 2, "max_depth": 4, "lookahead": 1})
        runs[incremental] = (search.run(problems(3), ctx, 4), scorer)
    (inc, inc_scorer), (full, _) = runs[True], runs[False]
    assert [[c.steps for c in r.candidates] for r in inc] == [[c.steps for c in r.candidates] for r in full]
    assert [r.chosen for r in inc] == [r.chosen for r in full]
    for a, b in zip(inc, full):
        for x, y in zip(a.candidates, b.candidates):
            assert x.step_scores == pytest.approx(y.step_scores, abs=1e-4)
    spent = lambda rs: sum(r.spent.prm_tokens for r in rs)  # noqa: E731
    assert spent(inc) == inc_scorer.usage.tokens and spent(inc) < spent(full) / 1.5
    assert len(inc_scorer.kv_cache) == 0   # handed back when the search ends


# ------------------------------------------------------------------ Skywork-style value-head checkpoint

def test_skywork_value_head_checkpoint_loads_from_the_cli_options(tok, tmp_path):
    from safetensors import safe_open

    from ttscale.errors import UserError
    from ttscale.inference.value_head import ValueHeadLM

    backbone = _model(tok, "causal-lm", 5)
    vh = ValueHeadLM(backbone)
    torch.manual_seed(5)
    torch.nn.init.normal_(vh.v_head.summary.weight, std=0.5)
    torch.nn.init.normal_(vh.v_head.summary.bias, std=0.5)
    vh.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:  # Skywork's layout
        keys = set(f.keys())
    assert {"v_head.summary.weight", "v_head.summary.bias", "model.embed_tokens.weight"} <= keys

    scorer = parse_config(ScorerArgs, ["--prm", str(tmp_path), "--prm-style", "skywork", "--prm-device", "cpu"]).build()
    assert isinstance(scorer, SkyworkPRM)
    got = scorer.score(ITEMS)
    # By hand: sigmoid(w . h_last + b) at each step's newline, h_last from the plain causal LM's hidden states.
    w, b = vh.v_head.summary.weight[0].detach(), vh.v_head.summary.bias[0].detach()
    for (problem, steps), scores in zip(ITEMS, got):
        if not steps:
            assert scores == []
            continue
        ids, _ = scorer.encode(problem, steps)
        pos = _expected_positions(tok, "skywork", ids)
        with torch.no_grad():
            h = backbone(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        want = torch.sigmoid(h[pos] @ w + b).tolist()
        assert scores == pytest.approx(want, abs=1e-5)

    bare = tmp_path / "bare"  # a plain causal LM: no value head to read
    backbone.save_pretrained(bare)
    tok.save_pretrained(bare)
    with pytest.raises(UserError, match="no v_head.summary.weight"):
        load_scorer(bare, "skywork", device="cpu")
