"""The base policy's tokenizer: byte-level BPE trained on the corpus, and the token stream.

Tokenizer conventions (:func:`train_tokenizer`): ``<|endoftext|>`` (id 0) is the BOS, EOS and
UNK token (as in GPT-2; byte-level BPE never needs UNK) and separates paragraphs in
pretraining, so a model ends a completion by emitting it; ``<|pad|>`` (id 1) pads and is never
trained on, so padding never hides a real EOS. Nothing is added to encoded text (no BOS):
``tokenizer(text)`` are the text's tokens only. The saved ``padding_side`` is ``left``, which
batched generation of a decoder-only model needs (every prompt ends where generation starts);
:func:`rewardlab.lm.generation.sample_completions` asks for left padding explicitly anyway, and
TRL's trainers pad as they need.

tokenizers and transformers are imported when a function runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardlab.errors import ConfigError
from rewardlab.lm.base_config import require_transformers

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

#: The BOS/EOS/UNK token and the paragraph separator.
EOS_TOKEN = "<|endoftext|>"
#: The padding token.
PAD_TOKEN = "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int, model_max_length: int = 1024) -> (
    PreTrainedTokenizerFast
):
    """Train a byte-level BPE tokenizer (GPT-2's scheme; Sennrich et al. 2016, BPE).

    Every string encodes (the 256 bytes are in the vocabulary) and decodes back exactly. See
    the module docstring for the special tokens and the padding side.

    Args:
        texts: training texts (e.g. the ``train`` corpus paragraphs).
        vocab_size: most tokens; merges must occur at least twice.
        model_max_length: the tokenizer's ``model_max_length`` (the model's ``n_positions``).

    Returns:
        A transformers fast tokenizer: ``eos_token = bos_token = unk_token = "<|endoftext|>"``
        (id 0), ``pad_token = "<|pad|>"`` (id 1), ``padding_side = "left"``.

    Raises:
        ConfigError: if ``texts`` is empty or ``vocab_size`` cannot hold the 258 base tokens.
    """
    require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise ConfigError("texts: no text to train the tokenizer on")
    if vocab_size < 258:
        raise ConfigError(f"vocab_size: must be at least 258 (256 bytes and 2 special tokens), "
                          f"got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN, padding_side="left", model_max_length=model_max_length)


def token_stream(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> torch.Tensor:
    """The texts' tokens, each text followed by EOS: ``(n_tokens,)`` int64."""
    import torch

    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return torch.tensor([t for row in ids for t in (*row, eos)], dtype=torch.int64)

