"""A run directory: its config record, metrics, checkpoints and summary.

Layout::

    config.yaml            the resolved TrainConfig
    feedback.db            the feedback store (SQLite by default; opened by the method)
    metrics.jsonl          one JSON row per log call, keyed by env step
    tensorboard/           the same metrics as TensorBoard events
    checkpoints/latest/    agent, buffers, reward model, state.json (written last)
    gold_vs_proxy.png      gold and proxy eval return against env steps
    summary.json           final figures of the run

Resume never strands a run and never repeats a step:

* A checkpoint is written into ``latest.tmp`` (``state.json`` last), then swapped in with two
  renames. Killed at any point of that, the newest *complete* checkpoint is found again
  (:meth:`RunDir.checkpoint`): ``latest``, else a complete ``latest.tmp``, else ``latest.old``.
* ``state.json`` records how many bytes of ``metrics.jsonl`` the checkpoint had written; on
  resume the file is cut back to that length (TensorBoard purges later steps), so each
  ``(step, key)`` is logged once however often a run is killed and resumed.
* A run killed before its first checkpoint resumes from step 0 in its own directory, with the
  labels already in its feedback store reused round by round
  (:func:`rewardlab.feedback.rounds.feedback_round`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import KVWriter, Logger

from rewardlab.config import TrainConfig, dump_config, load_run_config
from rewardlab.diagnostics.metrics import NAMESPACES, MetricLogger
from rewardlab.errors import RunDirError

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
#: Version of the ``state.json`` layout.
STATE_VERSION = 2


class _MetricForwarder(KVWriter):
    """SB3 output format that forwards numeric, namespaced values to a :class:`MetricLogger`.

    SB3's Monitor sits *inside* the proxy-reward wrapper, so its episode returns are gold returns
    of the training episodes: ``rollout/ep_rew_mean`` is renamed ``rollout/gold_return_mean``.
    """

    RENAME = {"rollout/ep_rew_mean": "rollout/gold_return_mean"}

    def __init__(self, logger: MetricLogger) -> None:
        self.logger = logger

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0
    ) -> None:
        values = {
            self.RENAME.get(k, k): float(v) for k, v in key_values.items()
            if isinstance(v, (int, float, np.floating, np.integer))
            and k.split("/", 1)[0] in NAMESPACES and "/" in k
        }
        if values:
            self.logger.log(step, values)

    def close(self) -> None:
        """Nothing to close: the MetricLogger is closed by the run directory."""


class RunDir:
    """The files of one run (see the module docstring).

    Use :meth:`create` for a new run and :meth:`resume` to continue one.

    Attributes:
        path: the directory.
        checkpoint_state: ``state.json`` of the checkpoint resumed from (``None``: start at 0).
        metrics: the run's :class:`MetricLogger` (open until :meth:`close`).
    """

    def __init__(self, path: Path, checkpoint_state: dict[str, Any] | None) -> None:
        self.path = path
        self.checkpoint_state = checkpoint_state
        kept = int(checkpoint_state["metrics_bytes"]) if checkpoint_state else 0
        metrics_file = path / "metrics.jsonl"
        if metrics_file.exists():
            with metrics_file.open("r+b") as f:  # forget what a killed run logged after it
                f.truncate(kept)
        step = int(checkpoint_state["step"]) if checkpoint_state else 0
        self.metrics = MetricLogger(path, purge_step=step + 1 if checkpoint_state else 0)

    @classmethod
    def create(cls, path: str | Path, config: TrainConfig) -> RunDir:
        """A new run directory holding ``config.yaml``.

        Raises:
            RunDirError: if ``path`` already holds a run.
        """
        path = Path(path)
        if (path / "config.yaml").exists():
            raise RunDirError(f"{path} already holds a run; use --resume {path} or another dir")
        path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / "config.yaml", dump_config(config))
        return cls(path, None)

    @classmethod
    def resume(cls, path: str | Path, config: TrainConfig) -> RunDir:
        """Reopen a run: from its newest complete checkpoint, or from step 0 if it has none.

        ``config`` (the run's own, possibly with overrides such as a longer ``total_steps``)
        is written back to ``config.yaml``.

        Raises:
            RunDirError: if ``path`` holds no run (no config.yaml) or an unreadable checkpoint.
        """
        path = Path(path)
        if not (path / "config.yaml").exists():
            raise RunDirError(f"{path}: not a run directory (no config.yaml)")
        _write_atomic(path / "config.yaml", dump_config(config))
        found = find_checkpoint(path)
        state = None
        if found is not None:
            try:
                state = json.loads((found / STATE_FILE).read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise RunDirError(f"{found / STATE_FILE}: unreadable checkpoint ({err})") from None
            if state.get("format_version") != STATE_VERSION:
                raise RunDirError(
                    f"{found / STATE_FILE}: checkpoint format {state.get('format_version')!r} "
                    f"was written by another RewardLab version (this one reads "
                    f"{STATE_VERSION}); start a new run"
                )
        return cls(path, state)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint(self) -> Path:
        """Folder of the checkpoint to resume from (valid when ``checkpoint_state`` is set)."""
        return self.path / CHECKPOINTS / "latest"

    def save_checkpoint(self, state: dict[str, Any], write: Callable[[Path], None]) -> None:
        """Write a checkpoint atomically: ``write(folder)`` fills a new folder, then
        ``state.json`` (with ``state`` and the metrics length) completes it, then it replaces
        ``latest`` by two renames.

        Args:
            state: JSON-serialisable loop state (must hold ``step``).
            write: writes the checkpoint's other files into the folder it is given.
        """
        root = self.path / CHECKPOINTS
        final, tmp, old = root / "latest", root / "latest.tmp", root / "latest.old"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        write(tmp)
        self.metrics.flush()
        record = {"format_version": STATE_VERSION, **state,
                  "metrics_bytes": self.metrics.bytes_written()}
        _write_atomic(tmp / STATE_FILE, json.dumps(record, indent=2))
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
        self.checkpoint_state = record

    # ------------------------------------------------------------------ logging
    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Log metrics at env step ``step`` (JSONL + TensorBoard)."""
        self.metrics.log(step, metrics)

    def sb3_logger(self) -> Logger:
        """An SB3 logger whose ``train/``, ``rollout/`` and ``time/`` values reach our metrics
        (and through them TensorBoard)."""
        return Logger(folder=str(self.path / "tensorboard"),
                      output_formats=[_MetricForwarder(self.metrics)])

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json``."""
        _write_atomic(self.path / "summary.json", json.dumps(_finite(summary), indent=2))

    def close(self) -> None:
        """Close the metric files."""
        self.metrics.close()


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of ``run_dir``, repairing an interrupted swap.

    A folder is complete when it holds ``state.json`` (written last). If a kill left no
    ``latest`` but a complete ``latest.tmp`` (newer) or ``latest.old``, that one becomes
    ``latest``; leftovers are removed.

    Returns:
        ``run_dir/checkpoints/latest``, or ``None`` if the run has no complete checkpoint.
    """
    root = run_dir / CHECKPOINTS
    final, tmp, old = root / "latest", root / "latest.tmp", root / "latest.old"
    if not (final / STATE_FILE).exists():
        if final.exists():
            shutil.rmtree(final)
        for candidate in (tmp, old):
            if (candidate / STATE_FILE).exists():
                os.replace(candidate, final)
                break
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    return final if (final / STATE_FILE).exists() else None


def resolve_resume(run_dir: Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config of an existing run (``run_dir/config.yaml``) with optional overrides.

    Raises:
        RunDirError: if ``run_dir`` holds no config.yaml.
        ConfigError: if an override is invalid.
    """
    path = run_dir / "config.yaml"
    if not path.exists():
        raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
    return load_run_config(path, overrides)


class Stopwatch:
    """Wall-clock seconds of training, across resumes.

    Args:
        before: seconds spent by earlier sessions of the run.
    """

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds so far, earlier sessions included."""
        return self.before + time.perf_counter() - self.start


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
