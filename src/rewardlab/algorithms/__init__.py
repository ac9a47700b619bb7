"""Preference-based RL methods (one module each) and the entry point :func:`train`: the online
PEBBLE and preference PPO, the offline loop of IQL, TD3+BC and CPL
(:mod:`rewardlab.algorithms.offline_loop`), and the language-model loop of GRPO, RLOO, DPO,
online DPO and best-of-n (:mod:`rewardlab.algorithms.lm_loop`).

:func:`rewardlab.algorithms.preflight.preflight` checks a config against its env and this
machine before a run starts (the CLI calls it before creating the run directory)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from rewardlab.config import TrainConfig
    from rewardlab.feedback.human import AnnotationServer

__all__ = ["train"]


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    console: Console | None = None,
    server: AnnotationServer | None = None,
) -> dict[str, Any]:
    """Train ``config.algorithm`` into ``run_dir`` and return the run summary.

    Args:
        config: the validated run config.
        run_dir: the run directory (new, or the run to continue with ``resume``).
        resume: continue the run in ``run_dir`` (from its newest checkpoint, or from step 0
            with its stored labels if it was killed before its first one).
        console: where progress goes (default: standard error).
        server: the annotation web app people answer in when ``teacher=human`` (e.g.
            :class:`rewardlab.web.server.BackgroundServer`); ``None``: people use
            ``rewardlab annotate RUN_DIR``.

    Raises:
        RunDirError: if ``run_dir`` already holds a run (new run) or holds none (resume).
        ConfigError: if the config cannot run here (see
            :func:`rewardlab.algorithms.preflight.preflight`, called by the CLI).
    """
    import torch

    torch.set_num_threads(config.torch_threads)  # process-wide: set here, never at import
    if (config.algorithm == "pebble" and config.pebble.backbone != "sac"
            or config.algorithm == "iql"):  # SBX backbones; IQL's update is a JAX step
        from rewardlab.algorithms.backbones import limit_jax_threads

        limit_jax_threads(config.torch_threads)  # JAX's too, before it starts
    if config.is_lm:
        from transformers.utils import logging as hf_logging

        from rewardlab.algorithms.lm_loop import train_lm

        hf_logging.disable_progress_bar()  # weight loading/saving bars between our lines

        return train_lm(config, run_dir, resume, console, server)
    if config.is_offline:
        from rewardlab.algorithms.offline_loop import train_offline

        return train_offline(config, run_dir, resume, console, server)
    if config.algorithm == "pebble":
        from rewardlab.algorithms.pebble import train_pebble

        return train_pebble(config, run_dir, resume, console, server)
    from rewardlab.algorithms.pref_ppo import train_pref_ppo

    return train_pref_ppo(config, run_dir, resume, console, server)
