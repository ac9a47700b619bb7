"""People as the teacher: serve the annotation app from training and wait for their answers.

With ``teacher=human`` each feedback round stores its queries, then training pauses until every
query has answers from ``min(human.overlap, annotators)`` people, or until ``human.timeout_s``
passes and ``human.on_timeout`` acts (wait on; skip the unanswered queries; or let the scripted
teacher answer them). In mixed mode the scripted teacher pre-labels the round first and people
audit it: their answers, "can't tell" included, override the scripted ones when the reward
model is trained (:meth:`rewardlab.store.records.Records.training_arrays`).

This is the human-in-the-loop protocol of Christiano et al. 2017 ("Deep Reinforcement Learning
from Human Preferences", Sec. 2.2 and App. B: people compare short clips of two trajectory
segments and answer left, right, equal or can't tell), with training waiting on the person
instead of running asynchronously.

The state (training, or waiting for round r, answered n of m, deadline) is printed in the
terminal and written to ``status.json`` for the page (:mod:`rewardlab.feedback.run_status`).
Every answer is committed by the web app before it is acknowledged, so killing the trainer or
the server loses none; on ``--resume`` an unfinished round is waited for again
(:func:`rewardlab.feedback.rounds.feedback_round` reuses a stored round).

Serving the app is the web package's job: the caller passes a running server (for example
:class:`rewardlab.web.server.BackgroundServer`), or ``None`` when people use ``rewardlab annotate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np

from rewardlab.config import HumanConfig
from rewardlab.errors import RewardLabError
from rewardlab.feedback.run_status import write_status
from rewardlab.store.store import FeedbackStore

__all__ = ["AnnotationServer", "HumanTeacher", "RoundOutcome", "login_link"]


class AnnotationServer(Protocol):
    """What training needs of a running annotation web app."""

    host: str
    port: int

    def prefetch(self, segment_ids: list[int], store: FeedbackStore) -> None:
        """Queue renders of these segments' clips ahead of people."""

    def close(self) -> None:
        """Stop serving."""

#: Seconds between two status lines printed while waiting (the progress bar updates always).
REMINDER_EVERY_S = 60.0


@dataclass(frozen=True)
class RoundOutcome:
    """How a round ended.

    Attributes:
        answered: queries answered by people (enough of them, unless it timed out).
        timed_out: whether the timeout policy acted.
        scripted: queries the scripted teacher answered on timeout.
        waited_s: seconds training waited for people.
    """

    answered: int
    timed_out: bool
    scripted: int
    waited_s: float


def login_link(host: str, port: int, token: str) -> str:
    """The page URL that logs an annotator in: ``http://HOST:PORT/?token=TOKEN``."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{int(port)}/?token={quote(token, safe='')}"


class HumanTeacher:
    """Collects the answers of people to each round's queries, as ``config`` says.

    Args:
        config: the ``human`` section.
        run_dir: the run directory (``status.json`` goes there).
        store: the run's feedback store.
        scripted_id: ``teacher_id`` of the scripted teacher (pre-labels in mixed mode).
        budget: the run's query budget; total_steps: its length (shown on the page).
        message: prints a line in the terminal (above the progress bar).
        show: sets the progress bar's status text.
        server: the running annotation app, or ``None`` (people use ``rewardlab annotate``).
        stop_check: called at every poll while waiting for people; raises
            ``KeyboardInterrupt`` to stop the wait (the training loop's
            :meth:`~rewardlab.algorithms.interrupt.StopSignals.check`).

    Raises:
        StoreError: if annotators cannot be created.
    """

    def __init__(
        self,
        config: HumanConfig,
        run_dir: Path,
        store: FeedbackStore,
        scripted_id: str,
        budget: int,
        total_steps: int,
        message: Callable[[str], None],
        show: Callable[[str], None],
        server: AnnotationServer | None,
        stop_check: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.stop_check = stop_check
        self.run_dir = Path(run_dir)
        self.store = store
        self.scripted_id = scripted_id
        self.budget = budget
        self.total_steps = total_steps
        self.message = message
        self.show = show
        self.server = server
        host = server.host if server else config.host
        port = server.port if server else config.port
        self.app_url = f"http://{host}:{port}/" if server else None

        # tokens are stored hashed, so a link is shown once: when its annotator is made
        existing = {a.name for a in store.annotation.annotators()}
        for name in config.annotators:
            if name not in existing:
                _, token = store.annotation.add_annotator(name)
                self.message(f"annotator [bold]{name}[/]: {login_link(host, port, token)}")
        if server is not None:
            self.message(
                f"annotation app at {self.app_url} (add people with `rewardlab annotators add "
                f"NAME --run {self.run_dir}`)"
            )
        self.write("training", step=0, next_round_step=None)

    # ------------------------------------------------------------------ status
    def write(self, state: str, **fields: Any) -> None:
        """Write ``status.json`` with ``state`` and ``fields`` (kept until replaced)."""
        write_status(
            self.run_dir,
            state=state,
            on_timeout=self.config.on_timeout,
            budget=self.budget,
            total_steps=self.total_steps,
            asked=self.store.summary.counts()["queries"],
            prelabel_teacher=self.prelabel_teacher,
            app_url=self.app_url,
            **fields,
        )

    @property
    def prelabel_teacher(self) -> str | None:
        """Id of the scripted teacher that pre-labels in mixed mode (else ``None``)."""
        return self.scripted_id if self.config.mixed else None

    def required_answers(self) -> int:
        """People needed per query: ``min(overlap, annotators)``, at least 1."""
        return max(1, min(self.config.overlap, len(self.store.annotation.annotators())))

    # ------------------------------------------------------------------ rounds
    def collect(
        self,
        round: int,
        segment_ids: list[int],
        step: int,
        answer_with_script: Callable[[np.ndarray], int],
    ) -> RoundOutcome:
        """Wait until people answered the round's queries, or the timeout policy acts.

        Args:
            round: the round (its queries are already stored).
            segment_ids: the round's segment ids (clips rendered ahead for them).
            step: env step of training (shown in the status).
            answer_with_script: called on timeout with ``on_timeout=scripted`` with the
                ``(k,)`` int64 positions (in query id order) of the round's queries no person
                answered; stores the scripted teacher's answers and returns how many.

        Returns:
            The :class:`RoundOutcome`.

        Raises:
            KeyboardInterrupt: passes through (the caller saves a checkpoint).
            StoreError: if the store cannot be read.
        """
        if self.server is not None and segment_ids:
            try:
                self.server.prefetch(segment_ids, self.store)
            except (RewardLabError, RuntimeError) as err:
                self.message(f"[yellow]cannot render clips ahead:[/] {err}")
        h = self.config
        start = time.time()
        deadline = None if h.on_timeout == "wait" else start + h.timeout_s
        last_reminder = 0.0
        while True:
            ids, people = self.store.annotation.round_answers(round)
            need = self.required_answers()
            done = people >= need
            self.write(
                "waiting", step=step, round=round, round_size=int(ids.size),
                answered=int(done.sum()), required_answers=need, deadline=deadline,
                next_round_step=None,
            )
            left = f" timeout in {deadline - time.time():.0f}s" if deadline else ""
            self.show(f"waiting for people: {int(done.sum())}/{ids.size} answered{left}")
            if done.all():
                return RoundOutcome(
                    answered=int(ids.size), timed_out=False, scripted=0,
                    waited_s=time.time() - start,
                )
            now = time.time()
            if deadline is not None and now >= deadline:
                return self._time_out(round, ids, people, answer_with_script, start)
            if now - last_reminder >= REMINDER_EVERY_S:
                last_reminder = now
                self.message(
                    f"round {round}: training waits for people ({int(done.sum())} of "
                    f"{ids.size} queries answered{';' + left if left else ''})"
                )
            if self.stop_check is not None:
                self.stop_check()
            time.sleep(h.poll_s)

    def _time_out(
        self,
        round: int,
        ids: np.ndarray,
        people: np.ndarray,
        answer_with_script: Callable[[np.ndarray], int],
        start: float,
    ) -> RoundOutcome:
        answered = int((people > 0).sum())
        scripted = 0
        if self.config.on_timeout == "scripted" and not self.config.mixed:
            scripted = answer_with_script(np.flatnonzero(people == 0))
        what = {
            "skip": "skipping its unanswered queries",
            "scripted": f"the scripted teacher answered {scripted} queries",
        }[self.config.on_timeout]
        if self.config.mixed:
            what = "the scripted pre-labels stand where nobody audited"
        self.message(
            f"[yellow]round {round} timed out[/] after {self.config.timeout_s:.0f}s with "
            f"{answered} of {ids.size} queries answered by people: {what}"
        )
        return RoundOutcome(
            answered=answered, timed_out=True, scripted=scripted, waited_s=time.time() - start
        )

    def training(self, step: int, next_round_step: int | None) -> None:
        """Record that training runs (no feedback needed until ``next_round_step``)."""
        self.write("training", step=step, next_round_step=next_round_step)

    def close(self, step: int, interrupted: bool) -> None:
        """Write the final status and stop the web app."""
        self.write("stopped" if interrupted else "finished", step=step, next_round_step=None)
        if self.server is not None:
            self.server.close()
