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
from typing import Any

import gymnasium as gym
import numpy as np

from rewardlab.config import TrainConfig
from rewardlab.data.transitions import TransitionLog
from rewardlab.diagnostics.reward_checks import label_metrics
from rewardlab.errors import ConfigError
from rewardlab.feedback.queries import select_queries
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.rewards.model import RewardModel, holdout_mask
from rewardlab.store.store import FeedbackStore
from rewardlab.types import LABEL_TARGETS, Label, Preference, Segment

#: Steps of recent experience used to re-measure the proxy reward's normalisation.
NORMALIZATION_ROWS = 50_000


def make_env(config: TrainConfig) -> gym.Env:
    """A fresh Gymnasium env for ``config.env`` (the time limit overridden when asked).

    Raises:
        ConfigError: if Gymnasium does not know ``env.id`` or rejects ``env.kwargs``.
    """
    kwargs = dict(config.env.kwargs)
    if config.env.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.env.max_episode_steps
    try:
        return gym.make(config.env.id, **kwargs)
    except gym.error.Error as err:
        raise ConfigError(f"env.id: cannot make {config.env.id!r}: {err}") from None
    except TypeError as err:
        raise ConfigError(f"env.kwargs: {config.env.id} rejected {kwargs}: {err}") from None


def env_dims(config: TrainConfig) -> tuple[int, int, int]:
    """``(obs_dim, act_dim, time limit in steps)`` of ``config.env`` (limit 1000 if none).

    Raises:
        ConfigError: if the env's observation or action space is not a flat Box.
    """
    env = make_env(config)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gym.spaces.Box) or not isinstance(act_space, gym.spaces.Box):
            raise ConfigError(
                f"env.id: {config.env.id} has {type(obs_space).__name__} observations and "
                f"{type(act_space).__name__} actions; RewardLab's online methods need "
                "continuous (Box) observation and action spaces"
            )
        spec = env.spec
        limit = int(spec.max_episode_steps) if spec and spec.max_episode_steps else 1000
        return int(np.prod(obs_space.shape)), int(np.prod(act_space.shape)), limit
    finally:
        env.close()


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
    """

    def __init__(
        self,
        config: TrainConfig,
        store: FeedbackStore,
        teacher: ScriptedTeacher,
        reward_model: RewardModel,
        rng: np.random.Generator,
        episode_limit: int,
    ) -> None:
        self.config = config
        self.schedule = config.feedback
        self.store = store
        self.teacher = teacher
        self.reward_model = reward_model
        self.rng = rng
        self.episode_limit = episode_limit
        self.counters = FeedbackCounters()
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
        judged = gold[pick] if self.teacher_view is None else self.teacher_view(
            obs[pick], actions[pick]
        )
        labels = self.teacher.label(judged)  # (n,) int8
        t2 = time.perf_counter()

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
        seg_ids = self.store.add_segments(segments)
        pairs = [(seg_ids[2 * i], seg_ids[2 * i + 1]) for i in range(n)]
        query_ids = self.store.add_queries(pairs, round=c.rounds, source=method)
        now = time.time()
        self.store.add_preferences([
            Preference(qid, Label(int(lab)), self.teacher.teacher_id, now)
            for qid, lab in zip(query_ids, labels, strict=True)
        ])

        c.asked += n
        n_skipped = int((labels == Label.SKIP).sum())
        c.skipped += n_skipped
        c.answered += n - n_skipped
        c.rounds += 1
        c.last_round_step = step
        c.seconds["queries"] += t1 - t0
        c.seconds["teacher"] += t2 - t1

        metrics = {
            "feedback/queries_asked": float(c.asked),
            "feedback/queries_answered": float(c.answered),
            "feedback/queries_skipped": float(c.skipped),
            "feedback/round": float(c.rounds),
            "feedback/equal_fraction": float((labels == Label.EQUAL).mean()),
        }
        if probs is not None:
            metrics["feedback/pool_disagreement"] = float(probs.std(axis=0).mean())
        if self.reward_model.updates > 0:  # the fresh queries, before retraining on them
            metrics.update(label_metrics(
                self.reward_model, obs[pick], actions[pick], labels, "reward_model/fresh"
            ))
        metrics.update(self.train_reward_model(log))
        self.last_metrics = metrics
        return metrics

    def train_reward_model(self, log: TransitionLog) -> dict[str, float]:
        """Fit the ensemble on every stored label (minus the held-out split); measure it."""
        t0 = time.perf_counter()
        data = self.store.training_arrays()
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
        metrics["reward_model/heldout_accuracy"] = self.reward_model.accuracy(
            data["obs"][held], data["actions"][held], targets[held]
        )
        metrics["reward_model/heldout_queries"] = float(held.sum())
        metrics["reward_model/heldout_ece"] = label_metrics(
            self.reward_model, data["obs"][held], data["actions"][held], data["labels"][held],
            "reward_model/heldout",
        )["reward_model/heldout_ece"]
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
