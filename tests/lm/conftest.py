"""Shared fixtures of the language-model tests: one tiny base model per test session.

``tiny_base_config`` is a :class:`~rewardlab.lm.base_config.BaseModelConfig` of a 2-layer,
64-wide GPT-2 with a 512-token vocabulary, pretrained for 50 steps on the ``pydoc`` corpus
(about 10 s on one core); ``tiny_base_model_dir`` is that model pretrained once per session and
saved with ``save_pretrained`` (load it with :func:`rewardlab.lm.base_model.load_policy`, or
pass the path to a TRL trainer); ``tiny_policy`` is a fresh ``(model, tokenizer)`` loaded from it
for each test, so a test may change the weights. No test downloads anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers", reason='the lm extra: pip install -e ".[lm]"')

from rewardlab.lm.base_config import BaseModelConfig  # noqa: E402
from rewardlab.lm.base_model import load_policy  # noqa: E402
from rewardlab.lm.pretraining import pretrain  # noqa: E402

#: ``--set`` overrides of the tiny config (also what the CLI tests pass).
TINY_BASE_OVERRIDES = [
    "vocab_size=512", "n_positions=64", "n_embd=64", "n_layer=2", "n_head=2", "dropout=0.0",
    "steps=50", "batch_size=8", "seq_len=32", "warmup_steps=5", "eval_every=25",
    "eval_windows=32", "learning_rate=0.003",
]


@pytest.fixture(scope="session")
def tiny_base_config() -> BaseModelConfig:
    """The tiny base-model config (see the module docstring)."""
    return BaseModelConfig.from_overrides(TINY_BASE_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_base_model_dir(tiny_base_config: BaseModelConfig,
                        tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base model pretrained once per session: a ``save_pretrained`` directory."""
    return pretrain(tiny_base_config, tmp_path_factory.mktemp("lm") / "tiny-base",
                    progress=False)


@pytest.fixture
def tiny_policy(tiny_base_model_dir: Path) -> tuple:
    """A fresh ``(model, tokenizer)`` of the tiny base model (eval mode), per test."""
    return load_policy(tiny_base_model_dir)
