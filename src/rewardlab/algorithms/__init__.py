"""Online preference-based RL methods (one module each), the entry point :func:`train` and
:func:`preflight`, the checks of a config against its env and this machine before a run starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from rewardlab.algorithms.preflight import preflight
from rewardlab.config import TrainConfig

__all__ = ["preflight", "train"]


def train(
    config: TrainConfig, run_dir: str | Path, resume: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Train ``config.algorithm`` into ``run_dir`` and return the run summary.

    Raises:
        RunDirError: when resuming a run that has no checkpoint.
    """
    run_dir = Path(run_dir)
    if config.algorithm == "pebble":
        from rewardlab.algorithms.pebble import train_pebble

        return train_pebble(config, run_dir, resume, console)
    from rewardlab.algorithms.pref_ppo import train_pref_ppo

    return train_pref_ppo(config, run_dir, resume, console)
