"""Metric logging to JSONL and TensorBoard, always against environment steps.

Keys are namespaced (``eval/``, ``reward_model/``, ``feedback/``, ``train/``, ``time/``,
``rollout/``); a key without a namespace is refused, so dashboards stay navigable.
:func:`read_metrics` reads the rows back, :func:`series` one key of them and
:func:`gold_proxy_curves` the evaluation curves (gold and proxy return by step).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

NAMESPACES = ("eval", "reward_model", "feedback", "train", "time", "rollout", "diagnostics")

#: Metric keys :func:`gold_proxy_curves` extracts (besides ``step``).
EVAL_KEYS = (
    "eval/gold_return",
    "eval/proxy_return",
    "eval/gold_return_std",
    "eval/episode_length",
)


#: Seconds :meth:`MetricLogger.close` waits for TensorBoard's writer to close.
TB_CLOSE_TIMEOUT_S = 10.0

class MetricLogger:
    """Append-only metrics: one JSON object per line in ``metrics.jsonl`` plus TensorBoard.

    Args:
        run_dir: the run directory (``metrics.jsonl`` and ``tensorboard/`` go there).
        tensorboard: also write TensorBoard event files.
        purge_step: after a resume, the first step logged again: TensorBoard hides the
            events of earlier sessions from this step on (``None``: nothing to purge).
    """

    def __init__(
        self, run_dir: str | Path, tensorboard: bool = True, purge_step: int | None = None
    ) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"),
                                         purge_step=purge_step or None)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` at env step ``step``.

        Raises:
            ValueError: if a key has no known namespace prefix.
        """
        row: dict[str, Any] = {"step": int(step)}
        for key, value in metrics.items():
            if key.split("/", 1)[0] not in NAMESPACES or "/" not in key:
                raise ValueError(f"metric key {key!r}: must start with one of {NAMESPACES}/")
            if isinstance(value, (int, float)):
                value = float(value)
                if self._writer is not None and math.isfinite(value):
                    self._writer.add_scalar(key, value, int(step))
                row[key] = value if math.isfinite(value) else None
            else:
                row[key] = value
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def flush(self) -> None:
        """Push buffered rows to disk."""
        self._file.flush()
        if self._writer is not None:
            self._writer.flush()

    def bytes_written(self) -> int:
        """Length of ``metrics.jsonl`` in bytes (recorded by checkpoints)."""
        return self._file.tell()

    def close(self) -> None:
        """Flush and close the files.

        TensorBoard's writer is closed from a daemon thread given :data:`TB_CLOSE_TIMEOUT_S`:
        a Ctrl-C/SIGTERM raised inside its queue can leave its writer thread waiting forever
        (seen: ``SummaryWriter.close`` joining a thread blocked in ``Queue.get``), and a run
        must still finish; ``metrics.jsonl`` holds every row either way.
        """
        self._file.close()
        if self._writer is not None:
            closer = threading.Thread(target=self._writer.close, daemon=True,
                                      name="rewardlab-tb-close")
            closer.start()
            closer.join(TB_CLOSE_TIMEOUT_S)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of ``run_dir/metrics.jsonl`` (a torn last line from a crash is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of one metric key, in logged order (null values skipped)."""
    steps, values = [], []
    for r in rows:
        if r.get(key) is not None:
            steps.append(int(r["step"]))
            values.append(float(r[key]))
    return steps, values


def gold_proxy_curves(rows: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Evaluation curves from ``metrics.jsonl`` rows, aligned by env step.

    Data plumbing (no paper), feeding
    :func:`rewardlab.diagnostics.overoptimization.detect_divergence`. Takes the rows as
    :func:`read_metrics` returns them and keeps every step at which
    at least one of :data:`EVAL_KEYS` is logged (non-null). Several rows at the same step are
    merged, a later non-null value overriding an earlier one (e.g. rows re-logged after a
    resume); a key missing at a step is NaN.

    Args:
        rows: metric rows, each with an int ``"step"`` and namespaced keys.

    Returns:
        ``{"step": (n,) int64 sorted ascending, "eval/gold_return": (n,) float64,
        "eval/proxy_return": (n,) float64, "eval/gold_return_std": (n,) float64,
        "eval/episode_length": (n,) float64}``; returns in return units, length in env steps.

    Raises:
        ValueError: if a row with an eval key has no ``"step"``.
    """
    merged: dict[int, dict[str, float]] = {}
    for row in rows:
        present = {k: row[k] for k in EVAL_KEYS if row.get(k) is not None}
        if not present:
            continue
        if row.get("step") is None:
            raise ValueError(f"rows: a row with eval keys has no 'step': {dict(row)!r}")
        merged.setdefault(int(row["step"]), {}).update(
            {k: float(v) for k, v in present.items()}
        )
    step_list = sorted(merged)
    out: dict[str, np.ndarray] = {"step": np.asarray(step_list, dtype=np.int64)}
    for key in EVAL_KEYS:
        out[key] = np.asarray(
            [merged[s].get(key, math.nan) for s in step_list], dtype=np.float64
        )
    return out
