"""The language-model track: a small base policy made here (corpus, byte-level BPE tokenizer,
GPT-2-style model), text tasks with a gold reward, and sampling utilities.

Nothing here is imported by ``import rewardlab``; the track needs the ``lm`` extra
(``pip install -e ".[lm]"``: transformers, tokenizers, TRL, VADER, TextBlob).
"""
