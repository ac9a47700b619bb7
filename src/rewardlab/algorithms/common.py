"""Pieces shared by the online preference-RL methods: the run's feedback loop and helpers.

A feedback round (Christiano et al. 2017, Sec. 2.2; Lee et al. 2021 "PEBBLE", Alg. 1 lines 9-15):
cut an oversampled pool of segment pairs from recent experience, pick the most informative
queries (:mod:`rewardlab.feedback.queries`), have the teacher answer them, persist segments,
queries and labels transactionally in the feedback store, then retrain the reward ensemble on
every label so far and re-measure its output normalisation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rewardlab.config import TrainConfig
from rewardlab.data.transitions import TransitionLog
from rewardlab.diagnostics.reward_checks import label_metrics
from rewardlab.feedback.queries import select_queries
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.rewards.model import RewardModel, holdout_mask
from rewardlab.store.store import FeedbackStore
from rewardlab.types import LABEL_TARGETS, Label, Preference, Segment

if TYPE_CHECKING:
    from rewardlab.algorithms.human import HumanFeedback, RoundOutcome

#: Steps of recent experience used to re-measure the proxy reward's normalisation.
NORMALIZATION_ROWS = 50_000


@dataclass
class FeedbackCounters:
    """Progress of the feedback schedule, saved in checkpoints."""

    asked: int = 0
    answered: int = 0
    skipped: int = 0
    rounds: int = 0
    last_round_step: int | None = None
    seconds: dict[str, float] = field(default_factory=lambda: {
        "queries": 0.0, "teacher": 0.0, "reward_training": 0.0, "relabel": 0.0,
    })


class PreferenceLearner:
    """The run's preference pipeline: query selection, teacher, store and reward ensemble.

    Args:
        config: the run config.
        store: the run's feedback store (the source of truth for labels).
        teacher: the scripted teacher answering queries.
        reward_model: the ensemble being trained.
        rng: generator for segment sampling and query selection.
        episode_limit: the env's time limit in steps (for the B-Pref teacher margin).
        human: people answering in the web app (``teacher=human``); then ``teacher`` is the
            scripted helper that answers on timeout or pre-labels in mixed mode.
    """

    def __init__(
        self,
        config: TrainConfig,
        store: FeedbackStore,
        teacher: ScriptedTeacher,
        reward_model: RewardModel,
        rng: np.random.Generator,
        episode_limit: int,
        human: HumanFeedback | None = None,
    ) -> None:
        self.config = config
        self.schedule = config.feedback
        self.store = store
        self.teacher = teacher
        self.reward_model = reward_model
        self.rng = rng
        self.episode_limit = episode_limit
        self.human = human
        self.counters = FeedbackCounters()
        self.last_outcome: RoundOutcome | None = None
        self.last_metrics: dict[str, float] = {}
        # testbed: a biased teacher judges segments by its own view of the task
        self.teacher_view = None
        if config.teacher_bias is not None:
            from rewardlab.envs.testbed import teacher_view

            self.teacher_view = teacher_view(config.teacher_bias)

    def round_due(self, step: int) -> bool:
        """Whether the schedule asks for a round at env step ``step``."""
        c = self.counters
        return self.schedule.round_due(step, c.asked, c.last_round_step)

    def next_round_step(self, step: int) -> int | None:
        """The env step of the next round after ``step`` (None once the budget is spent)."""
        c = self.counters
        if c.asked >= self.schedule.total_budget:
            return None
        if c.last_round_step is None:
            return max(self.schedule.first_round_at, step)
        return max(c.last_round_step + self.schedule.round_every, step)

    def run_round(self, log: TransitionLog, step: int) -> dict[str, float]:
        """Ask one round of queries, store the answers, retrain the reward model.

        Args:
            log: experience to cut segments from.
            step: current env step (recorded with the round).

        Returns:
            Namespaced metrics (``feedback/``, ``reward_model/``, ``time/``).
        """
        sch, c = self.schedule, self.counters
        n = sch.round_size(c.asked)
        seg_len = sch.segment_len
        pool = n * sch.oversample

        t0 = time.perf_counter()
        w = log.sample_windows(2 * pool, seg_len, self.rng, recent=sch.recent_steps)
        obs = w["obs"].reshape(pool, 2, seg_len, -1)
        actions = w["actions"].reshape(pool, 2, seg_len, -1)
        gold = w["true_rewards"].reshape(pool, 2, seg_len)
        method = sch.method if self.reward_model.updates > 0 else "uniform"
        probs = (
            self.reward_model.preference_probs(obs, actions) if method != "uniform" else None
        )
        pick = select_queries(method, n, pool, self.rng, probs)
        t1 = time.perf_counter()

        recent = log.finished_returns[-10:]
        if recent:
            self.teacher.set_margin(float(np.mean(recent)), seg_len, self.episode_limit)
        # the testbed's biased teacher judges segments by its own view of the task
        judged = gold[pick] if self.teacher_view is None else self.teacher_view(
            obs[pick], actions[pick]
        )
        episode_ids = w["episode_ids"].reshape(pool, 2)[pick]
        start_steps = w["start_steps"].reshape(pool, 2)[pick]
        states = w.get("states")
        if states is not None:
            states = states.reshape(pool, 2, seg_len, -1)
        segments = [
            Segment(obs[q, side], actions[q, side], gold[q, side], self.config.env.id,
                    int(episode_ids[i, side]), int(start_steps[i, side]),
                    render_states=None if states is None else states[q, side])
            for i, q in enumerate(pick) for side in (0, 1)
        ]
        seg_ids = self.store.records.add_segments(segments)
        pairs = [(seg_ids[2 * i], seg_ids[2 * i + 1]) for i in range(n)]
        query_ids = self.store.records.add_queries(pairs, round=c.rounds, source=method)
        c.asked += n
        labels = self._collect(c.rounds, query_ids, seg_ids, judged, step)
        c.seconds["queries"] += t1 - t0

        metrics = self._close_round(step, labels)
        if probs is not None:
            metrics["feedback/pool_disagreement"] = float(probs.std(axis=0).mean())
        if self.reward_model.updates > 0:  # the fresh queries, before retraining on them
            metrics.update(label_metrics(
                self.reward_model, obs[pick], actions[pick], labels, "reward_model/fresh"
            ))
        metrics.update(self.train_reward_model(log))
        self.last_metrics = metrics
        return metrics

    def _collect(
        self, round: int, query_ids: list[int], seg_ids: list[int], gold: np.ndarray, step: int
    ) -> np.ndarray:
        """Have the round answered (scripted teacher, people, or both); returns the labels.

        Args:
            round: the round of the stored queries.
            query_ids: the round's ``(n,)`` query ids; ``seg_ids`` their ``2n`` segment ids.
            gold: ``(n, 2, T)`` float32 true rewards of the queried segments.
            step: env step of training.

        Returns:
            ``(n,)`` int8 labels used for this round (people's where given, else the scripted
            teacher's, SKIP where nobody answered).
        """
        c = self.counters
        if self.human is None or self.human.human.mixed:
            t0 = time.perf_counter()
            labels = self._answer_scripted(query_ids, gold)
            c.seconds["teacher"] += time.perf_counter() - t0
            if self.human is None:
                return labels

        def answer_rest(positions: np.ndarray) -> int:
            if positions.size == 0:
                return 0
            t0 = time.perf_counter()
            done = self._answer_scripted([query_ids[i] for i in positions], gold[positions])
            c.seconds["teacher"] += time.perf_counter() - t0
            return int(done.size)

        outcome = self.human.collect(round, seg_ids, step, c.asked, answer_rest)
        c.seconds["human_wait"] = c.seconds.get("human_wait", 0.0) + outcome.waited_s
        self.last_outcome = outcome
        return self._round_labels(query_ids)

    def _answer_scripted(self, query_ids: list[int], gold: np.ndarray) -> np.ndarray:
        """The scripted teacher answers ``query_ids`` (gold ``(k, 2, T)`` float32), stored at
        once; queries it answered before (a resumed round) keep their answer.

        Returns:
            ``(k,)`` int8 labels.
        """
        records = self.store.records
        before = records.answers_of(self.teacher.teacher_id, query_ids) if self.human else {}
        labels = self.teacher.label(gold)  # (k,) int8
        now = time.time()
        self.store.records.add_preferences([
            Preference(qid, Label(int(lab)), self.teacher.teacher_id, now)
            for qid, lab in zip(query_ids, labels, strict=True) if qid not in before
        ])
        for i, qid in enumerate(query_ids):
            if qid in before:
                labels[i] = before[qid]
        return labels

    def _fallback_teachers(self) -> tuple[str, ...]:
        """Teachers whose answers count only where no person answered (mixed mode)."""
        mixed = self.human is not None and self.human.human.mixed
        return (self.teacher.teacher_id,) if mixed else ()

    def _round_labels(self, query_ids: list[int]) -> np.ndarray:
        """``(n,)`` int8 labels of the round's queries, as training will use them (first used
        answer per query; SKIP where none)."""
        rows = self.store.records.used_answers(query_ids, self._fallback_teachers())
        labels = np.full(len(query_ids), int(Label.SKIP), dtype=np.int8)
        position = {qid: i for i, qid in enumerate(query_ids)}
        for qid, label in reversed(rows):
            labels[position[qid]] = label
        return labels

    def resume_open_round(self, log: TransitionLog, step: int) -> dict[str, float] | None:
        """After ``--resume`` with people as the teacher: finish a round the checkpoint missed.

        A round whose queries were stored after the last checkpoint (the trainer stopped while
        people were answering it) is waited for again, under the same timeout policy, with
        every answer already given kept; then the reward model is trained on all labels.

        Returns:
            The round's metrics, or ``None`` when there is no such round.

        Raises:
            StoreError: if the store cannot be read or written.
        """
        current = self.store.records.current_round()
        if self.human is None or current is None or current < self.counters.rounds:
            return None
        queries = [q for q in self.store.records.get_queries() if q.round == current]
        query_ids = [int(q.query_id) for q in queries]  # type: ignore[arg-type]
        seg_ids = [i for q in queries for i in (q.left_id, q.right_id)]
        segments = self.store.records.get_segments(seg_ids)  # online runs store their true rewards
        def pairs(field: str) -> np.ndarray:  # (n, 2, T, ...) from the 2n segments
            stacked = np.stack([getattr(s, field) for s in segments])
            return stacked.reshape(len(queries), 2, *stacked.shape[1:])

        # the testbed's biased teacher judges by its own view, as in run_round
        judged = pairs("true_rewards") if self.teacher_view is None else self.teacher_view(
            pairs("obs"), pairs("actions")
        )
        self.counters.asked = self.store.summary.counts()["queries"]
        labels = self._collect(current, query_ids, seg_ids, judged, step)
        self.counters.rounds = current
        metrics = self._close_round(step, labels)
        metrics.update(self.train_reward_model(log))
        self.last_metrics = metrics
        return metrics

    def _close_round(self, step: int, labels: np.ndarray) -> dict[str, float]:
        """Advance the counters past a round (answers counted from the store); its metrics."""
        c = self.counters
        c.rounds += 1
        c.last_round_step = step
        counts = self.store.summary.counts()
        c.answered, c.skipped = counts["answered"], counts["skipped"]
        metrics = {
            "feedback/queries_asked": float(c.asked),
            "feedback/queries_answered": float(c.answered),
            "feedback/queries_skipped": float(c.skipped),
            "feedback/round": float(c.rounds),
            "feedback/equal_fraction": float((labels == Label.EQUAL).mean()),
        }
        if self.human is not None:
            outcome = self.last_outcome
            assert outcome is not None
            metrics["feedback/people_answered"] = float(outcome.answered)
            metrics["feedback/timed_out"] = float(outcome.timed_out)
            metrics["feedback/scripted_on_timeout"] = float(outcome.scripted)
            metrics["time/human_wait_s"] = self.counters.seconds["human_wait"]
        return metrics

    def train_reward_model(self, log: TransitionLog) -> dict[str, float]:
        """Fit the ensemble on every stored label (minus the held-out split); measure it.

        With no usable label yet (every answer a SKIP, or none given) the model is left as
        it is (``reward_model.updates`` unchanged) and only the held-out keys are returned.
        """
        t0 = time.perf_counter()
        data = self.store.records.training_arrays(fallback_teachers=self._fallback_teachers())
        if data["labels"].size == 0:  # e.g. people skipped every query so far
            return {"reward_model/heldout_accuracy": float("nan"),
                    "reward_model/heldout_queries": 0.0}
        targets = LABEL_TARGETS[data["labels"].astype(np.int64)]
        held = holdout_mask(data["query_ids"], self.config.reward_model.holdout_fraction)
        train = ~held
        if not train.any():
            train = np.ones_like(held)
        metrics: dict[str, float] = {}
        fit = self.reward_model.fit(data["obs"][train], data["actions"][train], targets[train])
        metrics["reward_model/loss"] = fit["loss"]
        metrics["reward_model/train_accuracy"] = fit["train_accuracy"]
        metrics["reward_model/epochs"] = fit["epochs"]
        # accuracy and ECE in one call (SKIPs are never in the training arrays)
        metrics.update(label_metrics(
            self.reward_model, data["obs"][held], data["actions"][held], data["labels"][held],
            "reward_model/heldout",
        ))
        metrics["reward_model/heldout_queries"] = float(held.sum())
        self.reward_model.update_normalization(*log.recent_flat(NORMALIZATION_ROWS))
        dt = time.perf_counter() - t0
        self.counters.seconds["reward_training"] += dt
        metrics["time/reward_training_s"] = self.counters.seconds["reward_training"]
        return metrics

    def state(self) -> dict[str, Any]:
        """JSON-serialisable counters (for checkpoints)."""
        c = self.counters
        return {
            "asked": c.asked, "answered": c.answered, "skipped": c.skipped,
            "rounds": c.rounds, "last_round_step": c.last_round_step,
            "seconds": dict(c.seconds),
            "teacher": self.teacher.stats(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore counters saved by :meth:`state`."""
        self.counters = FeedbackCounters(
            asked=state["asked"], answered=state["answered"], skipped=state["skipped"],
            rounds=state["rounds"], last_round_step=state["last_round_step"],
            seconds=dict(state["seconds"]),
        )
        for name, value in state.get("teacher", {}).items():
            setattr(self.teacher, name, int(value))
