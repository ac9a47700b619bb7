"""The settings of the base policy made here, and the record that marks a finished one.

:class:`BaseModelConfig` says how the base policy is made (tokenizer size, GPT-2 shape,
pretraining schedule, corpus, seed); :func:`rewardlab.lm.pretraining.pretrain` makes it and
:func:`rewardlab.lm.base_model.ensure_base_model` caches it under a hash of this config
(:meth:`BaseModelConfig.cache_key`). This module imports neither torch nor transformers (a
config section can hold the config); :func:`require_transformers` is what the rest of the
track calls first, and raises :class:`~rewardlab.errors.RewardLabError` telling to
``pip install -e ".[lm]"`` if transformers is missing.
"""

from __future__ import annotations

import hashlib
import json
import sys

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewardlab.config import Float, Int
from rewardlab.errors import ConfigError, RewardLabError
from rewardlab.lm.corpus import CORPORA

#: The file that marks a complete base-model directory (written last) and describes it.
BASE_MODEL_FILE = "rewardlab_base.json"
#: Version of the base-model recipe (corpus cleaning, tokenizer, training loop); part of the
#: cache key, so a change of recipe never reuses an old model.
FORMAT_VERSION = 1


def require_transformers() -> None:
    """Check that the ``lm`` extra is installed.

    Raises:
        RewardLabError: saying to ``pip install -e ".[lm]"`` if transformers or tokenizers
            cannot be imported.
    """
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        raise RewardLabError(
            f"the language-model track needs the lm extra ({err.name or err} is missing): "
            'pip install -e ".[lm]"') from None


class BaseModelConfig(BaseModel):
    """How the base policy is made: tokenizer, GPT-2 shape and pretraining.

    The defaults (a 4-layer, 128-wide GPT-2 of 1.09M parameters, 2,048-token vocabulary, 600
    steps of 16 x 128 tokens on the ``pydoc`` corpus's 60,000 training tokens) took 207 s of
    CPU time on one thread (2.9 steps per CPU second; eval loss 7.66 -> 4.29 nats/token,
    perplexity 73) with ``taskset -c 1 rewardlab lm pretrain --out DIR --no-progress``
    (commit 345c4d3); the wall time was 508 s because the core was shared with another job.

    Raises:
        ConfigError: naming the field, on an unknown field or a value out of range (from
            :meth:`from_overrides`; the constructor raises pydantic's ``ValidationError``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)

    corpus: str = "pydoc"
    """Corpus to train on: ``pydoc`` or ``pydoc+docstrings``
    (:data:`~rewardlab.lm.corpus.CORPORA`)."""
    vocab_size: Int = Field(2048, ge=300, le=65_536)
    """Most tokens of the byte-level BPE vocabulary (256 bytes, 2 special tokens, merges); the
    trainer stops earlier if the corpus has fewer merges that occur twice."""
    n_positions: Int = Field(256, ge=8, le=8192)
    """Longest sequence (prompt plus completion, tokens) the model can read."""
    n_embd: Int = Field(128, ge=8, le=4096)
    """Width of the residual stream; a multiple of ``n_head``."""
    n_layer: Int = Field(4, ge=1, le=48)
    """Transformer blocks."""
    n_head: Int = Field(4, ge=1, le=64)
    """Attention heads per block."""
    dropout: Float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout of embeddings, residuals and attention during pretraining (saved in the model's
    config; TRL trainers disable it by default)."""
    steps: Int = Field(600, ge=1, le=10_000_000)
    """Optimiser steps of pretraining."""
    batch_size: Int = Field(16, ge=1, le=4096)
    """Windows per step."""
    seq_len: Int = Field(128, ge=2, le=8192)
    """Tokens per training window (random windows of the token stream); at most
    ``n_positions``."""
    learning_rate: Float = Field(2e-3, gt=0.0, le=1.0)
    """Peak AdamW learning rate (after linear warm-up, then cosine decay to 10% of it)."""
    warmup_steps: Int = Field(50, ge=0, le=10_000_000)
    """Steps of linear learning-rate warm-up; at most ``steps``."""
    weight_decay: Float = Field(0.01, ge=0.0, le=1.0)
    """AdamW decoupled weight decay."""
    eval_every: Int = Field(100, ge=1, le=10_000_000)
    """Steps between evaluations of the loss on the ``eval`` paragraphs (also at the start and
    the end)."""
    eval_windows: Int = Field(128, ge=1, le=100_000)
    """Most non-overlapping ``seq_len`` windows of the ``eval`` stream evaluated."""
    seed: Int = Field(0, ge=0, le=2**63 - 1)
    """Seed of the initial weights, the batches and dropout."""

    @model_validator(mode="after")
    def _check(self) -> BaseModelConfig:
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus: unknown {self.corpus!r}; allowed: {', '.join(CORPORA)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head: must divide n_embd={self.n_embd}, got {self.n_head}")
        if self.seq_len > self.n_positions:
            raise ValueError(f"seq_len: must be at most n_positions={self.n_positions}, got "
                             f"{self.seq_len}")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps: must be at most steps={self.steps}, got "
                             f"{self.warmup_steps}")
        return self

    @classmethod
    def from_overrides(cls, overrides: list[str], base: BaseModelConfig | None = None) -> (
        BaseModelConfig
    ):
        """The config with ``key=value`` overrides (values read as YAML scalars, ``1e3`` a
        number, as in ``rewardlab train --set``) applied.

        Raises:
            ConfigError: one line naming each bad or unknown field and what it allows.
        """
        import yaml

        from rewardlab.config import StrictLoader

        data = (base or cls()).model_dump()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set steps=500")
            if key not in cls.model_fields:
                raise ConfigError(f"--set {item!r}: {key}: unknown key; allowed: "
                                  f"{', '.join(cls.model_fields)}")
            try:
                data[key] = yaml.load(raw, Loader=StrictLoader) if raw.strip() else ""  # noqa: S506
            except yaml.YAMLError:
                raise ConfigError(f"--set {item!r}: {key}: the value is not valid YAML") from None
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err)) from None

    def cache_key(self) -> str:
        """12 hex digits naming the model this config makes on this Python.

        A hash of the fields, :data:`FORMAT_VERSION` and the Python version (the corpus ships
        with Python, so another Python may give another corpus).
        """
        record = {"config": self.model_dump(), "format": FORMAT_VERSION,
                  "python": list(sys.version_info[:3])}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def format_validation_error(err: ValidationError) -> str:
    """``field: what is wrong, got value`` for each error, joined by ``; `` on one line."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "value_error" and (not loc or msg.split(":")[0] in BaseModelConfig
                                             .model_fields):
            parts.append(msg)  # our own message, naming its field
            continue
        elif "input" in e and "got" not in msg:
            msg = f"{msg}, got {e['input']!r}"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
