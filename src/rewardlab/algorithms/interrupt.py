"""Ctrl-C during training that is never lost.

Python turns SIGINT into a ``KeyboardInterrupt`` raised in the main thread at the next bytecode
boundary. When that boundary is inside a finaliser (a ``__del__`` run by the garbage collector,
e.g. of a torch or MuJoCo object), the exception is printed as "Exception ignored in ..." and
swallowed, so the run goes on training as if the key had never been pressed. :class:`SigintLatch`
raises the ``KeyboardInterrupt`` as usual *and* remembers the press; the training loops call
:meth:`SigintLatch.check` between chunks, which raises it again if it was swallowed.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class SigintLatch:
    """A SIGINT handler that raises ``KeyboardInterrupt`` and latches the press.

    Installed only from the main thread (the only one Python delivers signals to); elsewhere it
    does nothing and :meth:`check` never raises. It is installed even when SIGINT was ignored at
    start-up (a run started with ``&`` from a non-interactive shell inherits ``SIG_IGN``), so
    ``kill -INT`` still stops such a run with a checkpoint.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> SigintLatch:
        """Put this handler in place of the current SIGINT handler. Returns ``self``."""
        if threading.current_thread() is threading.main_thread() and not self._installed:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def uninstall(self) -> None:
        """Restore the SIGINT handler that :meth:`install` replaced. Idempotent."""
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed since :meth:`install`.

        Raises:
            KeyboardInterrupt: if SIGINT arrived (whether or not its first raise was swallowed).
        """
        if self.pressed:
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        raise KeyboardInterrupt
