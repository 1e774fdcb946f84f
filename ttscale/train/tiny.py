"""Tiny models built from a config with a locally trained tokenizer.

No hub at run time on CPU-only machines: the demo's policy and the tests' PRMs start from these. The
tokenizer is byte-level BPE, so any text (chat markup, LaTeX, digits) encodes without unknown tokens.
"""
from __future__ import annotations

from typing import Iterable

# A minimal chat template so the chat-template path of prompt building is exercised like a real model's.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, chat_template: str | None = CHAT_TEMPLATE,
                    merge_words: bool = False):
    """Train a byte-level BPE tokenizer on `texts` and wrap it as a transformers fast tokenizer.

    Digits are split one per token (like Llama/Qwen), which makes arithmetic learnable by tiny models.
    With `merge_words`, merges may cross spaces (but never digits or newlines), so text that repeats in
    the corpus (a fixed instruction, "The answer is") becomes a few tokens: short sequences train faster.
    Newlines stay separate tokens either way, so a step delimiter tokenizes the same in any context.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        *([pre_tokenizers.Split(Regex("\n+"), behavior="isolated")] if merge_words else []),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not merge_words),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|endoftext|>", pad_token="<|pad|>",
        additional_special_tokens=SPECIAL_TOKENS[2:],
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tiny_llama_config(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                      max_position_embeddings: int = 1024, **extra):
    """A Llama config sized for CPU (≈ vocab·hidden + 12·L·h² params); `extra` sets e.g. num_labels."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **extra,
    )


def tiny_model(tokenizer, kind: str = "causal-lm", seed: int = 0, **config_kw):
    """A randomly initialised tiny Llama: "causal-lm" (policy, +/- PRM) or "token-classification" (PRM head)."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    classes = {"causal-lm": LlamaForCausalLM, "token-classification": LlamaForTokenClassification}
    if kind not in classes:
        raise ValueError(f"tiny_model kind must be one of {sorted(classes)}, got {kind!r}")
    torch.manual_seed(seed)
    model = classes[kind](tiny_llama_config(tokenizer, **config_kw))
    if kind == "causal-lm":
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_causal_lm(tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                   max_position_embeddings: int = 1024, seed: int = 0):
    """A randomly initialised Llama-shaped causal LM sized for CPU tests."""
    return tiny_model(tokenizer, "causal-lm", seed=seed, hidden_size=hidden_size, num_layers=num_layers,
                      num_heads=num_heads, max_position_embeddings=max_position_embeddings)
