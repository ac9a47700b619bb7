"""Ctrl-C and SIGTERM during training, never lost.

The first SIGINT or SIGTERM only *latches* a flag. The training loops stop at the next safe
point: between chunks of agent updates (:meth:`StopSignals.check`), inside the agent's own
``learn`` (the SB3 callback of :meth:`StopSignals.callback` ends it at the next env step) and
inside waits for people; there they raise ``KeyboardInterrupt``, on which the loop saves a
checkpoint and stops. SIGTERM behaves exactly like Ctrl-C, so ``kill``, ``timeout`` and job
schedulers stop a run cleanly.

Why not raise at once, as Python's default handler does: an exception raised asynchronously at
an arbitrary bytecode lands inside whatever library code runs at that moment. Seen here: inside
TensorBoard's writer queue (``SummaryWriter.close`` then joined a thread blocked in
``Queue.get`` forever), and inside finalisers (``__del__`` of a torch or MuJoCo object), which
print "Exception ignored" and swallow it. A flag read at safe points has neither problem.

A *second* signal while the first is pending raises ``KeyboardInterrupt`` at once (press
Ctrl-C twice to force a stop when a safe point is far away, e.g. in a long reward fit).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

#: Signals that stop training with a checkpoint.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Handlers for SIGINT and SIGTERM that latch the signal; the loop stops at a safe point.

    Use as a context manager around the training loop, call :meth:`check` between chunks of
    work and pass :meth:`callback` to the agent's ``learn``. Installed only from the main
    thread (the only one Python delivers signals to); elsewhere it does nothing and
    :meth:`check` never raises. It is installed even when a signal was ignored at start-up (a
    run started with ``&`` from a non-interactive shell inherits ``SIG_IGN`` for SIGINT), so
    ``kill -INT`` still stops such a run with a checkpoint. The previous handlers are restored
    on exit.

    Attributes:
        received: the signal number that arrived first (``None`` while none has).
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
        """A safe point: raise ``KeyboardInterrupt`` if a stop signal arrived.

        Raises:
            KeyboardInterrupt: if SIGINT or SIGTERM arrived since :meth:`install`.
        """
        if self.pressed:
            raise KeyboardInterrupt

    def callback(self) -> _StopOnSignal:
        """An SB3 callback that ends ``model.learn`` at the next env step once a signal arrived.

        ``learn`` then returns normally (SB3 and SBX stop when ``_on_step`` returns ``False``)
        and the caller's next :meth:`check` raises.
        """
        return _StopOnSignal(self)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # the second press: stop now, wherever we are
            raise KeyboardInterrupt
        self.received = signum


class _StopOnSignal(BaseCallback):
    """Ends SB3/SBX ``learn`` at the next env step once ``signals`` latched a stop signal."""

    def __init__(self, signals: StopSignals) -> None:
        super().__init__()
        self.signals = signals

    def _on_step(self) -> bool:
        return not self.signals.pressed
