"""The base policy on disk: the cache of pretrained base models, and loading a policy.

:func:`ensure_base_model` returns the directory of the base model a
:class:`~rewardlab.lm.base_config.BaseModelConfig` makes: cached under
``~/.cache/rewardlab/lm`` (``$REWARDLAB_LM_CACHE``) and reused, else made by
:func:`rewardlab.lm.pretraining.pretrain`. :func:`load_policy` loads it, or any local
transformers causal-LM directory a user has. transformers is imported when a function runs;
:func:`load_policy` raises :class:`~rewardlab.errors.RewardLabError` telling to
``pip install -e ".[lm]"`` if it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.errors import ModelDirError
from rewardlab.lm.base_config import BASE_MODEL_FILE, BaseModelConfig, require_transformers
from rewardlab.lm.pretraining import pretrain

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Files of which a saved tokenizer has at least one.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model",
                    "vocab.txt", "spiece.model")
#: Environment variable naming the cache folder of :func:`ensure_base_model`.
CACHE_ENV = "REWARDLAB_LM_CACHE"


def default_cache_root() -> Path:
    """``$REWARDLAB_LM_CACHE`` if set, else ``~/.cache/rewardlab/lm``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rewardlab" / "lm"


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` holds a finished base model (its
    :data:`~rewardlab.lm.base_config.BASE_MODEL_FILE` is written last)."""
    path = Path(path)
    return (path / BASE_MODEL_FILE).is_file() and (path / "config.json").is_file()


def read_base_record(path: str | Path) -> dict[str, Any]:
    """The :data:`~rewardlab.lm.base_config.BASE_MODEL_FILE` record of a base-model directory.

    Raises:
        ModelDirError: if the directory has none (not made by
            :func:`~rewardlab.lm.pretraining.pretrain`).
    """
    path = Path(path)
    try:
        return json.loads((path / BASE_MODEL_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ModelDirError(f"{path}: no readable {BASE_MODEL_FILE} ({err}); not a base model "
                            "made by `rewardlab lm pretrain`") from None


def ensure_base_model(config: BaseModelConfig | None = None, cache_dir: str | Path | None = None,
                      progress: bool = False, console: Console | None = None) -> Path:
    """The directory of the base model ``config`` makes: reused if cached, else pretrained.

    The directory is ``<cache>/base-<config.cache_key()>`` with ``<cache>`` from ``cache_dir``,
    else :func:`default_cache_root`. It is written atomically by
    :func:`~rewardlab.lm.pretraining.pretrain`, so a crash never leaves a half model; a folder
    there without :data:`~rewardlab.lm.base_config.BASE_MODEL_FILE` (not made by this
    function) is replaced. Two processes making the same model at once both train; the
    first to finish is kept.

    Returns:
        The model directory (load it with :func:`load_policy`).
    """
    config = config or BaseModelConfig()
    path = Path(cache_dir or default_cache_root()) / f"base-{config.cache_key()}"
    if is_complete(path):
        return path
    if path.is_dir():  # left by hand or by another tool: not ours to keep
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    try:
        return pretrain(config, path, progress=progress, console=console)
    except ModelDirError:
        if is_complete(path):  # another process finished it first
            return path
        raise


def load_policy(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local transformers causal language model and its tokenizer, in eval mode.

    Any ``save_pretrained`` directory of a causal LM with its tokenizer works (a base model of
    :func:`ensure_base_model` or a user's own). Nothing is downloaded. A tokenizer without a
    pad token gets its EOS token as pad token.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ModelDirError: naming the path, if it is not a directory, has no ``config.json``, or
            holds no loadable causal LM or tokenizer (or one with neither pad nor EOS token).
    """
    require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    hint = ("give a local transformers causal-LM directory (save_pretrained), or make one with "
            "`rewardlab lm pretrain`")
    if not path.is_dir():
        raise ModelDirError(f"{path}: no such directory; {hint}")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"{path}: no config.json, so not a transformers model directory; "
                            f"{hint}")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelDirError(f"{path}: cannot load a causal language model ({first}); "
                            f"{hint}") from None
    no_tokenizer = (f"{path}: cannot load its tokenizer ({{}}); save the tokenizer beside the "
                    "model (tokenizer.save_pretrained)")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        # transformers 5 would build an empty tokenizer from config.json alone
        raise ModelDirError(no_tokenizer.format(f"none of {', '.join(_TOKENIZER_FILES)}"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelDirError(no_tokenizer.format(first)) from None
    n_embeddings = model.get_input_embeddings().num_embeddings
    if not tokenizer("hello world")["input_ids"] or len(tokenizer) > n_embeddings:
        raise ModelDirError(no_tokenizer.format(
            f"{len(tokenizer)} tokens for {n_embeddings} embeddings, or it encodes nothing"))
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelDirError(f"{path}: the tokenizer has neither a pad nor an EOS token; set "
                                "one (tokenizer.pad_token = ...) and save it again")
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
