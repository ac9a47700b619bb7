"""Run ``rewardlab train`` in this process and SIGKILL it at a chosen moment.

Used by the resume tests: ``python -m tests.algorithms.killer MOMENT N -- ARGV...`` patches the
library so that the N-th time the run reaches MOMENT the process kills itself with SIGKILL (no
handler, no cleanup: as a power cut or the OOM killer would), then runs ``main(ARGV)``.

Moments:
    before_first_round: the first look at the discriminator after SAC's first chunk (before any
        query exists and before the first checkpoint).
    during_round: a round's queries are stored, the teacher has not answered them.
    writing_checkpoint: a checkpoint folder is half written (agent saved, log and state not).
    swapping_checkpoint: the old checkpoint was moved aside, the new one not yet in place.
    during_evaluation: an evaluation is running.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _killing(fn: Callable[..., Any], nth: int, when: Callable[..., bool] = lambda *a: True,
             sig: int = signal.SIGKILL) -> Callable[..., Any]:
    """``fn`` sending this process ``sig`` at its ``nth`` call for which ``when`` holds."""
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                os.kill(os.getpid(), sig)
        return fn(*args, **kwargs)

    return wrapper


def arm(moment: str, nth: int) -> None:
    """Patch the library so that the ``nth`` arrival at ``moment`` kills the process."""
    from rewardlab.algorithms import run_dir, training
    from rewardlab.feedback import rounds

    if moment == "before_first_round":
        training.fit_discriminator = _killing(training.fit_discriminator, nth)
    elif moment == "during_round":
        rounds._answer_scripted = _killing(rounds._answer_scripted, nth)
    elif moment == "writing_checkpoint":
        training.save_log = _killing(training.save_log, nth)
    elif moment == "swapping_checkpoint":
        replace = os.replace
        run_dir.os = type(os)("os_patched")  # the module's own os, with replace patched
        run_dir.os.__dict__.update(os.__dict__)
        run_dir.os.replace = _killing(
            replace, nth, lambda src, dst: os.path.basename(str(src)) == "latest.tmp")
    elif moment == "during_evaluation":
        training.Evaluator.run = _killing(training.Evaluator.run, nth)
    else:
        raise SystemExit(f"unknown moment {moment!r}")


if __name__ == "__main__":
    moment, nth, sep, *argv = sys.argv[1:]
    assert sep == "--"
    arm(moment, int(nth))
    from rewardlab.cli.main import main

    sys.exit(main(argv))
