"""The sample store: what one run drew another reads back, the same completions, charged the same."""
from __future__ import annotations

import os

import pytest

from ttscale.inference.base import SamplingParams
from ttscale.inference.sample_store import SampleStore, StoredGenerator, StoreOverlay, model_id
from ttscale.inference.transformers_backend import TransformersGenerator
from ttscale.search.meter import Meter

from search_fakes import ScriptedGenerator

PROMPTS = ["Problem: 3 + 4\nSolution:", "Problem: 12 - 5\nSolution:"]
SP = SamplingParams(n=1, temperature=1.0, max_new_tokens=8, seed=5)


@pytest.fixture(scope="module")
def gen(tiny_lm, tiny_tokenizer):
    return TransformersGenerator(tiny_lm, tiny_tokenizer, batch_size=8, progress=False)


def test_a_later_run_draws_only_the_samples_after_those_held(gen, tmp_path):
    fresh = gen.generate(PROMPTS, SP, n=[5, 3])
    charged = list(gen.last_prompt_tokens)
    store = SampleStore(tmp_path / "s.sqlite")
    stored = StoredGenerator(gen, store, "tiny")
    assert stored.generate(PROMPTS, SP, n=[2, 3]) == [fresh[0][:2], fresh[1]]
    assert (stored.stats.generated, stored.stats.stored) == (5, 0)
    # 3 more of the first prompt (j = 2..4): drawn from j = 2 on; the second prompt is served whole
    assert stored.generate(PROMPTS, SP, n=[5, 3]) == fresh
    assert (stored.stats.generated, stored.stats.stored) == (8, 5)
    assert stored.last_prompt_tokens == charged     # a prompt served from the store reports its first draw's
    # a new process opens the file: everything is there, nothing is drawn; n=0 and start= still hold
    store.close()
    again = StoredGenerator(gen, SampleStore(tmp_path / "s.sqlite"), "tiny")
    assert again.generate(PROMPTS, SP, n=[2, 0], start=[3, 0]) == [fresh[0][3:5], []]
    assert again.stats.generated == 0 and again.last_prompt_tokens == [charged[0], 0]
    # other params, model or seed are other samples
    other = StoredGenerator(gen, SampleStore(tmp_path / "s.sqlite"), "other")
    other.generate(PROMPTS[:1], SP, n=[1])
    assert other.stats.generated == 1


def test_a_meter_charges_a_stored_run_as_a_fresh_one(tmp_path):
    def charged(generator) -> list:
        meter = Meter(2)
        meter.generate(generator, ["a b c", "d e"], [0, 1], SP, n=[3, 2])
        meter.generate(generator, ["a b c", "d e"], [0, 1], SP, n=[2, 2], start=[3, 2])
        return meter.spent

    plain = ScriptedGenerator(cached_words=1)
    store = SampleStore(tmp_path / "s.sqlite")
    warm = StoredGenerator(ScriptedGenerator(cached_words=1), store, "fake")
    warm.generate(["a b c", "d e"], SP, n=[5, 4])
    inner = ScriptedGenerator(cached_words=1)
    served = StoredGenerator(inner, store, "fake")
    assert charged(served) == charged(plain)
    assert inner.calls == []          # all of it read back


def test_a_generator_without_start_is_asked_from_zero_and_the_meter_keeps_the_tail():
    class NoStart(ScriptedGenerator):
        def generate(self, prompts, params, n=None):
            return super().generate(prompts, params, n)

    full = ScriptedGenerator().generate(["a b"], SP, n=[5])[0]
    meter, gen = Meter(1), NoStart()
    assert meter.generate(gen, ["a b"], [0], SP, n=[2], start=[3]) == [full[3:5]]
    assert gen.calls[0]["n"] == [5]               # drawn from 0 ...
    assert meter.spent[0].generated_tokens == sum(c.num_tokens for c in full)   # ... and every one charged


def test_overlay_reads_through_and_drains(tmp_path):
    base = SampleStore(tmp_path / "s.sqlite")
    StoredGenerator(ScriptedGenerator(), base, "fake").generate(["a"], SP, n=[2])
    overlay = StoreOverlay(SampleStore.open_readonly(tmp_path / "s.sqlite"))
    g = StoredGenerator(ScriptedGenerator(), overlay, "fake")
    g.generate(["a", "b"], SP, n=[3, 1])
    assert g.stats.generated == 2 and g.stats.stored == 2
    fresh = overlay.drain()
    assert sorted(len(h.completions) for h in fresh.values()) == [1, 1]
    base.put_many(fresh)
    g2 = StoredGenerator(ScriptedGenerator(), base, "fake")
    g2.generate(["a", "b"], SP, n=[3, 1])
    assert g2.stats.generated == 0


def test_model_id_follows_the_checkpoint_files(tmp_path):
    ckpt = tmp_path / "m"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"x" * 10)
    (ckpt / "config.json").write_text("{}")
    first = model_id(ckpt)
    assert model_id(ckpt) == first and model_id("org/hub-model") == "org/hub-model"
    os.utime(ckpt / "model.safetensors", ns=(1, 1))   # saved again
    assert model_id(ckpt) != first
