"""Run ``rewardlab train`` (a language-model method) in this process and signal it at a moment.

``python -m tests.lm.lm_killer MOMENT N -- ARGV...`` patches the library so that the N-th time
the run reaches MOMENT the process signals itself, then runs ``main(ARGV)``. SIGKILL moments
(no handler, no cleanup: a power cut or the OOM killer):

    during_round: a round's queries are stored, the teacher has not answered them.
    during_training: at the end of the N-th optimizer step (before its checkpoint, if any).

and one SIGINT moment (Ctrl-C, through the real handler):

    sigint_during_training: Ctrl-C arrives at the end of the N-th optimizer step.
"""

from __future__ import annotations

import signal
import sys

from tests.algorithms.killer import _killing


def arm(moment: str, nth: int) -> None:
    """Patch the library so that the ``nth`` arrival at ``moment`` signals the process."""
    from rewardlab.algorithms.lm import loop_callbacks, loop_rounds

    def always(*args: object, **kwargs: object) -> bool:
        return True

    if moment == "during_round":
        loop_rounds.answer_text_queries = _killing(loop_rounds.answer_text_queries, nth)
    elif moment == "during_training":
        loop_callbacks.StopAndProgress.on_step_end = _killing(
            loop_callbacks.StopAndProgress.on_step_end, nth, always)
    elif moment == "sigint_during_training":
        loop_callbacks.StopAndProgress.on_step_end = _killing(
            loop_callbacks.StopAndProgress.on_step_end, nth, always, sig=signal.SIGINT)
    else:
        raise SystemExit(f"unknown moment {moment!r}")


if __name__ == "__main__":
    moment, nth, sep, *argv = sys.argv[1:]
    assert sep == "--"
    import torch

    torch.set_num_threads(1)
    arm(moment, int(nth))
    from rewardlab.cli.main import main

    sys.exit(main(argv))
