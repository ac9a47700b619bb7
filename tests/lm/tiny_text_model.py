"""A tiny GPT-2 and byte-level BPE tokenizer built in the test (no downloads), and VADER.

Test-local stand-in for the shared base-model fixture: the sentences are inline, the tokenizer
is trained with ``tokenizers`` and the model is a randomly initialised 2-layer GPT-2 saved with
``save_pretrained`` (TRL rebuilds reference models from ``config._name_or_path``).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

POSITIVE = ["good", "great", "happy", "love", "wonderful", "excellent", "nice", "fun",
            "beautiful", "amazing", "kind", "pleasant", "perfect", "delightful", "best"]
NEGATIVE = ["bad", "terrible", "sad", "hate", "awful", "horrible", "ugly", "boring",
            "worst", "nasty", "cruel", "painful", "poor", "angry", "disgusting"]
SUBJECTS = ["the movie", "this day", "my friend", "the food", "our trip", "the book",
            "the weather", "that song", "the game", "her idea"]
VERBS = ["was", "is", "seems", "felt"]


def sentences(polarity: str) -> list[str]:
    """``len(SUBJECTS) * len(VERBS) * 15`` sentences, e.g. ``"the movie was good"``."""
    words = POSITIVE if polarity == "positive" else NEGATIVE
    return [f"{s} {v} {w}" for s, v, w in itertools.product(SUBJECTS, VERBS, words)]


def gold(texts: list[str]) -> np.ndarray:
    """VADER compound score of each text, ``(n,)`` float32 in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float32)


def build_tiny_lm(directory: Path, seed: int = 0, pretrain_steps: int = 150) -> Path:
    """Train a byte-level BPE tokenizer on the inline sentences and a tiny GPT-2 on them.

    The model is pretrained by next-token prediction on the positive and negative sentences
    alike (``pretrain_steps`` AdamW steps of 64 sentences), so its samples are sentences of
    mixed sentiment: a base policy with a VADER score near 0 that optimisation can move.

    Returns:
        ``directory``, holding ``config.json``, ``model.safetensors`` and ``tokenizer.json``.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = sentences("positive") + sentences("negative")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|pad|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", pad_token="<|pad|>")
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=64,
                        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        batch = tokenizer([t + tokenizer.eos_token for t in corpus], padding=True,
                          return_tensors="pt")
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(pretrain_steps):
            idx = torch.randint(0, len(corpus), (64,))
            loss = model(input_ids=batch.input_ids[idx], attention_mask=batch.attention_mask[idx],
                         labels=labels[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
