"""What a training run is doing now, shared between the trainer and the annotation page.

The trainer writes ``status.json`` in the run directory (atomically: a temporary file, then a
rename, so a reader never sees half a file); the web app reads it to tell people whether
training is waiting for their answers, and until when. Plain JSON, no torch.

Fields (every one optional for a reader; unknown ones are ignored):

- ``state``: ``"training"`` (no feedback needed now), ``"waiting"`` (training is paused until
  people answer the current round), ``"finished"`` or ``"stopped"``.
- ``step`` / ``total_steps``: env steps so far / in all.
- ``round``: the round being waited for; ``round_size``: its queries; ``answered``: those
  answered by enough people; ``required_answers``: people needed per query.
- ``deadline``: seconds since the Unix epoch when the timeout policy acts (``None``: wait).
- ``on_timeout``: ``"wait"``, ``"skip"`` or ``"scripted"``.
- ``asked`` / ``budget``: queries asked so far / the run's query budget.
- ``next_round_step``: env step of the next round (``None`` once the budget is spent).
- ``app_url``: where the trainer serves the annotation app (``None``: not served).
- ``prelabel_teacher``: id of the scripted teacher whose answers people audit (mixed mode).
- ``updated_at``: seconds since the Unix epoch of the write.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["STATUS_FILENAME", "read_status", "write_status"]

#: File name of the run status, in the run directory.
STATUS_FILENAME = "status.json"


def write_status(run_dir: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """Replace the run's status with ``fields`` (plus ``updated_at``), atomically.

    Args:
        run_dir: the run directory (must exist).
        **fields: JSON-serialisable values, see the module docstring.

    Returns:
        The status written.

    Raises:
        OSError: if the file cannot be written.
        TypeError: if a value is not JSON-serialisable.
    """
    status = {**fields, "updated_at": time.time()}
    path = Path(run_dir) / STATUS_FILENAME
    tmp = path.with_name(f".{STATUS_FILENAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)
    return status


def read_status(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's status, or ``None`` when no trainer has written one (or it is unreadable)."""
    path = Path(run_dir) / STATUS_FILENAME
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None
