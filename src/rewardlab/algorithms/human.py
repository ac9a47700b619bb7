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
(:meth:`rewardlab.algorithms.common.PreferenceLearner.resume_open_round`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.config import HumanConfig, TrainConfig
from rewardlab.errors import RewardLabError
from rewardlab.feedback.run_status import write_status
from rewardlab.store.store import FeedbackStore

__all__ = ["HumanFeedback", "RoundOutcome"]

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


class HumanFeedback:
    """Collects the answers of people to each round's queries, as ``config.human`` says.

    Args:
        config: the run config (``teacher.preset == "human"``).
        run_dir: the run directory (the web app serves its store and clips).
        store: the run's feedback store.
        scripted_id: ``teacher_id`` of the scripted teacher (pre-labels in mixed mode).
        message: prints a line in the terminal (above the progress bar).
        show: sets the progress bar's status text.

    Raises:
        ConfigError: if the web app's port cannot be bound.
        StoreError: if annotators cannot be created.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        store: FeedbackStore,
        scripted_id: str,
        message: Callable[[str], None],
        show: Callable[[str], None],
    ) -> None:
        self.config = config
        self.human: HumanConfig = config.human
        self.run_dir = Path(run_dir)
        self.store = store
        self.scripted_id = scripted_id
        self.message = message
        self.show = show
        # the one place training reaches into the web package (lazily): it serves the app
        from rewardlab.web.cli import login_link
        from rewardlab.web.server import BackgroundServer

        h = self.human
        self.server = (
            BackgroundServer(self.run_dir, h.host, h.port, h.overlap, config.store_url)
            if h.serve else None
        )
        host = self.server.host if self.server else h.host
        port = self.server.port if self.server else h.port
        self.app_url = f"http://{host}:{port}/" if self.server else None

        # tokens are stored hashed, so a link is shown once: when its annotator is made
        existing = {a.name for a in store.annotation.annotators()}
        for name in h.annotators:
            if name not in existing:
                _, token = store.annotation.add_annotator(name)
                self.message(f"annotator [bold]{name}[/]: {login_link(host, port, token)}")
        if self.server is not None:
            self.message(
                f"annotation app at {self.app_url} (add people with `rewardlab annotators add "
                f"NAME --run {self.run_dir}`)"
            )
        self.write("training", step=0, asked=0, next_round_step=None)

    # ------------------------------------------------------------------ status
    def write(self, state: str, **fields: Any) -> None:
        """Write ``status.json`` with ``state`` and ``fields`` (kept until replaced)."""
        write_status(
            self.run_dir,
            state=state,
            on_timeout=self.human.on_timeout,
            budget=self.config.feedback.total_budget,
            total_steps=self.config.total_steps,
            prelabel_teacher=self.prelabel_teacher,
            app_url=self.app_url,
            **fields,
        )

    @property
    def prelabel_teacher(self) -> str | None:
        """Id of the scripted teacher that pre-labels in mixed mode (else ``None``)."""
        return self.scripted_id if self.human.mixed else None

    def required_answers(self) -> int:
        """People needed per query: ``min(overlap, annotators)``, at least 1."""
        return max(1, min(self.human.overlap, len(self.store.annotation.annotators())))

    # ------------------------------------------------------------------ rounds
    def collect(
        self,
        round: int,
        segment_ids: list[int],
        step: int,
        asked: int,
        answer_with_script: Callable[[np.ndarray], int],
    ) -> RoundOutcome:
        """Wait until people answered the round's queries, or the timeout policy acts.

        Args:
            round: the round (its queries are already stored).
            segment_ids: the round's segment ids (clips rendered ahead for them).
            step: env step of training (shown in the status).
            asked: queries asked so far, this round included.
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
        h = self.human
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
                asked=asked, next_round_step=None,
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
        if self.human.on_timeout == "scripted" and not self.human.mixed:
            scripted = answer_with_script(np.flatnonzero(people == 0))
        what = {
            "skip": "skipping its unanswered queries",
            "scripted": f"the scripted teacher answered {scripted} queries",
        }[self.human.on_timeout]
        if self.human.mixed:
            what = "the scripted pre-labels stand where nobody audited"
        self.message(
            f"[yellow]round {round} timed out[/] after {self.human.timeout_s:.0f}s with "
            f"{answered} of {ids.size} queries answered by people: {what}"
        )
        return RoundOutcome(
            answered=answered, timed_out=True, scripted=scripted, waited_s=time.time() - start
        )

    def training(self, step: int, asked: int, next_round_step: int | None) -> None:
        """Record that training runs (no feedback needed until ``next_round_step``)."""
        self.write("training", step=step, asked=asked, next_round_step=next_round_step)

    def close(self, step: int, asked: int, interrupted: bool) -> None:
        """Write the final status and stop the web app."""
        self.write("stopped" if interrupted else "finished", step=step, asked=asked,
                   next_round_step=None)
        if self.server is not None:
            self.server.close()
