"""``rewardlab lm``: the language-model track's commands.

Commands::

    rewardlab lm pretrain [--out DIR] [--set key=value ...] [--no-progress]

``pretrain`` makes the base policy (:func:`rewardlab.lm.pretraining.pretrain`): without
``--out`` into the cache (``$REWARDLAB_LM_CACHE`` or ``~/.cache/rewardlab/lm``), reused when
it is there already; with ``--out DIR`` into ``DIR``, which must not exist or be empty. Keys of
``--set`` are the fields of :class:`~rewardlab.lm.base_config.BaseModelConfig`. Bad input exits
2 with one message naming the field, before any work starts; transformers is imported only
when a command runs, so ``rewardlab --help`` works without the ``lm`` extra.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console


def add_lm_parser(sub: Any) -> None:
    """Add ``lm pretrain`` to the CLI's subparsers."""
    lm = sub.add_parser("lm", help="language models: make the base policy (needs the lm extra)")
    lm_sub = lm.add_subparsers(dest="lm_command", required=True)
    pt = lm_sub.add_parser(
        "pretrain", help="pretrain the small GPT-2 base policy on Python's documentation",
        description="Train a byte-level BPE tokenizer and a small GPT-2 by next-token "
        "prediction on English text that ships with Python, and save them as a transformers "
        "directory (AutoModelForCausalLM/AutoTokenizer.from_pretrained load it). Default: "
        "into the cache, reused if there (a few minutes on one core otherwise).")
    pt.add_argument("--out", metavar="DIR",
                    help="directory to write (must not exist or be empty; default: the cache, "
                    "$REWARDLAB_LM_CACHE or ~/.cache/rewardlab/lm)")
    pt.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a BaseModelConfig field, e.g. --set steps=300 (repeatable)")
    pt.add_argument("--no-progress", action="store_true", help="disable the progress bar")


def cmd_pretrain(args: argparse.Namespace, console: Console) -> int:
    """Run ``rewardlab lm pretrain``."""
    from rewardlab.lm.base_config import BaseModelConfig, require_transformers
    from rewardlab.lm.base_model import (
        default_cache_root,
        ensure_base_model,
        is_complete,
        read_base_record,
    )
    from rewardlab.lm.pretraining import pretrain

    config = BaseModelConfig.from_overrides(list(args.overrides))
    require_transformers()
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            from rewardlab.errors import ConfigError

            raise ConfigError(f"--out: {out} exists and is not an empty directory; choose "
                              "another --out or remove it")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)  # process-wide: set where the command starts
    hf_logging.disable_progress_bar()  # transformers' own bars (writing shards)
    try:
        if args.out is not None:
            path = pretrain(config, args.out, progress=not args.no_progress, console=console)
        else:
            cached = default_cache_root() / f"base-{config.cache_key()}"
            if is_complete(cached):
                record = read_base_record(cached)
                console.print(f"base model cached: {cached} (eval loss "
                              f"{record['final_eval_loss']:.3f}, made in "
                              f"{record['wall_time_s']:.0f} s)", highlight=False)
                return 0
            path = ensure_base_model(config, progress=not args.no_progress, console=console)
    except KeyboardInterrupt:
        console.print("interrupted: nothing was written (the model is saved only when complete)")
        return 130
    console.print(f"load it with rewardlab.lm.base_model.load_policy({str(path)!r})",
                  highlight=False)
    return 0


def cmd_lm(args: argparse.Namespace, console: Console) -> int:
    """Run ``rewardlab lm <pretrain>``."""
    commands = {"pretrain": cmd_pretrain}
    return commands[args.lm_command](args, console)
