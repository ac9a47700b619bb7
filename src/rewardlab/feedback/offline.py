"""Labelling an offline dataset: its segments asked in feedback rounds, into the feedback store.

The offline branch of preference RL (Kim et al. 2023, "Preference Transformer"; Yuan et al.
2024, "Uni-RLHF") labels segments of a fixed dataset instead of the agent's own experience.
:func:`label_dataset` runs the online path's feedback rounds
(:func:`rewardlab.feedback.rounds.feedback_round`: candidate pairs cut from the data, the same
query selection of :mod:`rewardlab.feedback.queries`, the same scripted teachers or people in
the web app, the same store) over the dataset seen as a one-column
:class:`~rewardlab.data.transitions.TransitionLog`, so a segment never crosses an episode
boundary, is stored with its provenance (``dataset_id``, the dataset's ``episode_id`` and the
``start_step`` within it) and, when the dataset has MuJoCo states, ``render_states`` from
which the web app renders its clip.

Rounds follow :class:`~rewardlab.config.FeedbackSchedule` (``total_budget``,
``queries_per_round``) and are idempotent as online: calling again after a kill finishes the
stored rounds instead of asking them again. Between rounds the caller may refit its reward
model and hand back new preference probabilities for active selection (``refit``).

Teacher margin (B-Pref's scale of the skip and equal thresholds): online it is the mean return
of the last 10 training episodes times ``segment_len / episode_limit``, i.e. the mean return
of a segment-long slice of experience. A dataset has no "last" episodes, so here it is the
mean true reward per step of the whole dataset times ``segment_len``, the same quantity over
the data labelled. The oracle (no skip, no equal) does not use it.

Nothing here imports torch: a reward model enters as a ``ProbFn`` returning ``(members,
pool)`` preference probabilities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import ValidationError

from rewardlab.config import FeedbackSchedule, QueryMethod
from rewardlab.data.offline import OfflineDataset
from rewardlab.errors import ConfigError, DatasetError
from rewardlab.feedback.human import HumanTeacher
from rewardlab.feedback.rounds import (
    JudgeFn,
    ProbFn,
    RoundResult,
    feedback_round,
    total_rounds,
)
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.store.store import FeedbackStore

__all__ = ["RefitFn", "dataset_schedule", "label_dataset"]

#: Called after each round with its result; returns the preference probabilities the next
#: round selects with (e.g. a reward ensemble refitted on the store), or ``None`` (uniform).
RefitFn = Callable[[RoundResult], ProbFn | None]


def dataset_schedule(
    budget: int, segment_len: int, selection: QueryMethod = "uniform",
    queries_per_round: int | None = None, oversample: int = 10,
) -> FeedbackSchedule:
    """The feedback schedule of labelling a dataset: ``budget`` queries in rounds.

    Args:
        budget: total queries.
        segment_len: steps ``T`` per segment.
        selection: ``uniform``, ``disagreement`` or ``entropy``.
        queries_per_round: queries per round (default: all in one round).
        oversample: candidate pool size as a multiple of the round's queries.

    Raises:
        ConfigError: naming the field, for a value the schedule refuses.
    """
    try:
        return FeedbackSchedule(
            total_budget=budget, queries_per_round=queries_per_round or budget,
            segment_len=segment_len, method=selection, oversample=oversample,
            first_round_at=0, round_every=1,
        )
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'schedule'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid labelling schedule: {problems}") from None


def label_dataset(
    dataset: OfflineDataset,
    store: FeedbackStore,
    teacher: ScriptedTeacher,
    budget: int,
    segment_len: int,
    selection: QueryMethod,
    rng: np.random.Generator,
    prob_fn: ProbFn | None = None,
    *,
    queries_per_round: int | None = None,
    oversample: int = 10,
    refit: RefitFn | None = None,
    judge: JudgeFn | None = None,
    human: HumanTeacher | None = None,
) -> list[RoundResult]:
    """Ask ``budget`` preference queries over segments of ``dataset``, in rounds, into ``store``.

    Round ``r`` (from 0) cuts ``queries_per_round * oversample`` candidate pairs of distinct
    ``segment_len``-step windows (never across an episode end) from the whole dataset, picks
    the round's queries with ``selection`` (uniform until ``prob_fn`` is given, as online),
    stores the segments (with ``dataset_id``, ``episode_id``, ``start_step`` and, if the
    dataset has them, ``render_states``) and the queries, and lets ``teacher`` answer from the
    dataset's true rewards (or ``judge``'s), or people through ``human``.

    Args:
        dataset: the data; its true rewards reach only the scripted teacher.
        store: the feedback store (shared with the rest of the run).
        teacher: the scripted teacher (with people: the one answering on timeout or
            pre-labelling in mixed mode).
        budget: total queries (>= 1).
        segment_len: steps ``T`` per segment (>= 1, at most the longest episode).
        selection: ``uniform``, ``disagreement`` or ``entropy``
            (:func:`rewardlab.feedback.queries.select_queries`).
        rng: generator for candidate windows and selection.
        prob_fn: ``(obs (P, 2, T, obs_dim), actions (P, 2, T, act_dim)) -> (members, P)``
            P[left preferred] of a reward ensemble, for the first round's active selection;
            ``None``: uniform.
        queries_per_round: queries per round (default: the whole budget in one round).
        oversample: candidate pool as a multiple of the round's queries (PEBBLE: 10).
        refit: called after each round with its result; its return value is the next
            round's ``prob_fn`` (refit a reward model on the store there).
        judge: per-step rewards the teacher judges by instead of the true ones.
        human: people answering in the web app.

    Returns:
        One :class:`~rewardlab.feedback.rounds.RoundResult` per round: stored query ids,
        ``obs (n, 2, T, obs_dim)``, ``actions (n, 2, T, act_dim)`` and the labels training uses.

    Raises:
        ConfigError: if the budget, round size, segment length or selection is invalid.
        DatasetError: if no episode of the dataset holds ``segment_len`` steps, or the
            dataset holds fewer than two such windows.
        StoreError: if the store cannot be read or written.
    """
    schedule = dataset_schedule(budget, segment_len, selection, queries_per_round, oversample)
    lengths = dataset.episode_lengths()
    windows = int(np.clip(lengths - segment_len + 1, 0, None).sum())
    if windows < 2:
        raise DatasetError(
            f"{dataset.dataset_id}: holds {windows} window(s) of segment_len={segment_len} "
            f"steps inside one episode (longest episode: {int(lengths.max())} steps); a query "
            "needs two: shorten the segments"
        )
    limit = int(lengths.max())
    mean_step = float(dataset.rewards.mean(dtype=np.float64))
    teacher.set_margin(mean_step * limit, segment_len, limit)  # = mean step reward * T
    log = dataset.transition_log()
    results: list[RoundResult] = []
    for r in range(total_rounds(schedule)):
        try:
            result = feedback_round(
                round=r, step=0, schedule=schedule, log=log, store=store, teacher=teacher,
                rng=rng, env_id=dataset.env_id, episode_limit=limit, prob_fn=prob_fn,
                judge=judge, human=human, dataset_id=dataset.dataset_id,
            )
        except ValueError as err:  # e.g. every candidate pair identical
            raise DatasetError(f"{dataset.dataset_id}: round {r}: {err}") from err
        results.append(result)
        if refit is not None:
            prob_fn = refit(result)
    return results
