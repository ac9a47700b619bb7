"""What a training run shows in the terminal: a progress bar and status lines.

Output never stops training: when the terminal goes away (``rewardlab train 2>&1 | tee log``
and Ctrl-C also ends ``tee``), writes to the broken pipe are dropped
(:class:`PipeSafeStream`), so the run still saves its checkpoint and summary.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class PipeSafeStream:
    """A text stream that drops writes once its reader has gone (EPIPE), instead of raising.

    Args:
        stream: the stream to write to (default: ``sys.stderr``).
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except (BrokenPipeError, OSError) as err:
                if isinstance(err, BrokenPipeError) or err.errno == errno.EPIPE:
                    self._break()
                else:
                    raise
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (BrokenPipeError, OSError):
                self._break()

    def isatty(self) -> bool:
        return not self.broken and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def _break(self) -> None:
        self.broken = True
        try:  # the interpreter's own final flush of the stream must not fail either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def safe_console() -> Console:
    """A rich console on standard error that survives a closed pipe."""
    return Console(file=PipeSafeStream(sys.stderr))  # type: ignore[arg-type]


class TrainingProgress:
    """A rich progress bar over env steps with a status text, and status lines above it.

    Args:
        console: where it goes.
        label: shown before the bar (the algorithm).
        total_steps: the bar's end.
        enabled: ``False`` prints the status lines only.
    """

    def __init__(self, console: Console, label: str, total_steps: int, enabled: bool) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None
        if enabled:
            self._progress = Progress(
                TextColumn(f"[bold]{label}[/]"), BarColumn(bar_width=20), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"), console=console, transient=False,
            )
            self._task = self._progress.add_task("train", total=total_steps, status="")

    def start(self, step: int) -> None:
        """Show the bar at ``step``."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step)
            self._progress.start()

    def update(self, step: int, status: str) -> None:
        """Advance the bar to ``step`` with ``status``."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step, status=status)

    def status(self, text: str) -> None:
        """Show ``text`` as the bar's status (e.g. while waiting for people)."""
        if self._progress is not None:
            self._progress.update(self._task, status=text)

    def message(self, text: str) -> None:
        """Print a line above the bar (not wrapped: links stay whole)."""
        self.console.print(text, soft_wrap=True)

    def stop(self) -> None:
        """Remove the bar (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
