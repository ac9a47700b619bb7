"""Metric logging to JSONL and TensorBoard, always against environment steps.

Keys are namespaced (``eval/``, ``reward_model/``, ``feedback/``, ``train/``, ``time/``,
``rollout/``); a key without a namespace is refused, so dashboards stay navigable.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

NAMESPACES = ("eval", "reward_model", "feedback", "train", "time", "rollout", "diagnostics")


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
