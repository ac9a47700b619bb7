"""Ctrl-C and SIGTERM during training, never lost.

Both signals become a ``KeyboardInterrupt`` in the main thread, on which a training loop saves
a checkpoint and stops (SIGTERM behaves exactly like Ctrl-C, so ``kill``, ``timeout`` and job
schedulers stop a run cleanly).

Python raises the exception at the next bytecode boundary. When that boundary is inside a
finaliser (a ``__del__`` run by the garbage collector, e.g. of a torch or MuJoCo object), the
exception is printed as "Exception ignored in ..." and swallowed, so the run would go on as if
the key had never been pressed. :class:`StopSignals` raises the ``KeyboardInterrupt`` as usual
*and* remembers the signal; the training loops call :meth:`StopSignals.check` between chunks,
which raises it again if it was swallowed.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

#: Signals that stop training with a checkpoint.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Handlers for SIGINT and SIGTERM that raise ``KeyboardInterrupt`` and latch the signal.

    Use as a context manager around the training loop. Installed only from the main thread (the
    only one Python delivers signals to); elsewhere it does nothing and :meth:`check` never
    raises. It is installed even when a signal was ignored at start-up (a run started with
    ``&`` from a non-interactive shell inherits ``SIG_IGN`` for SIGINT), so ``kill -INT`` still
    stops such a run with a checkpoint. The previous handlers are restored on exit.

    Attributes:
        received: the signal number that arrived (``None`` while none has).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def pressed(self) -> bool:
        """Whether a stop signal arrived since :meth:`install`."""
        return self.received is not None

    def install(self) -> StopSignals:
        """Put these handlers in place. Returns ``self``."""
        if threading.current_thread() is threading.main_thread() and not self._previous:
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Restore the handlers that :meth:`install` replaced. Idempotent."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop signal arrived since :meth:`install`.

        Raises:
            KeyboardInterrupt: if SIGINT or SIGTERM arrived (whether or not its first raise
                was swallowed).
        """
        if self.pressed:
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = signum
        if first:
            raise KeyboardInterrupt
