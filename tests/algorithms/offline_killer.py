"""Run ``rewardlab train`` (an offline method) in this process and stop it at a chosen moment.

``python -m tests.algorithms.offline_killer MOMENT N -- ARGV...`` patches the library so that
the N-th time the run reaches MOMENT the process signals itself, then runs ``main(ARGV)``.
SIGKILL moments (no handler, no cleanup: a power cut or the OOM killer):

    during_round: a labelling round's queries are stored, the teacher has not answered them.
    writing_checkpoint: a checkpoint folder is half written (the agent is being saved).
    during_evaluation: an evaluation is running.
    during_training: inside the N-th gradient update of IQL.

and one SIGINT moment (Ctrl-C, through the real handler):

    sigint_during_training: Ctrl-C arrives during the N-th gradient update of IQL.
"""

from __future__ import annotations

import signal
import sys

from tests.algorithms.killer import _killing


def arm(moment: str, nth: int) -> None:
    """Patch the library so that the ``nth`` arrival at ``moment`` signals the process."""
    from rewardlab.algorithms import offline_loop
    from rewardlab.algorithms.offline.iql import IQL
    from rewardlab.feedback import rounds

    if moment == "during_round":
        rounds._answer_scripted = _killing(rounds._answer_scripted, nth)
    elif moment == "writing_checkpoint":
        IQL.save = _killing(IQL.save, nth)
    elif moment == "during_evaluation":
        offline_loop.evaluate_stage = _killing(offline_loop.evaluate_stage, nth)
    elif moment == "during_training":
        IQL.update = _killing(IQL.update, nth)
    elif moment == "sigint_during_training":
        IQL.update = _killing(IQL.update, nth, sig=signal.SIGINT)
    else:
        raise SystemExit(f"unknown moment {moment!r}")


if __name__ == "__main__":
    moment, nth, sep, *argv = sys.argv[1:]
    assert sep == "--"
    arm(moment, int(nth))
    from rewardlab.cli.main import main

    sys.exit(main(argv))
