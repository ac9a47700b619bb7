"""One feedback round: cut candidate segment pairs, select queries, ask the teacher, store.

Source: Christiano et al. 2017, "Deep reinforcement learning from human preferences", Sec. 2.2;
Lee, Smith & Abbeel 2021, "PEBBLE", Alg. 1 lines 9-15 and App. B: a pool of candidate segment
pairs ``oversample`` times larger than the round is cut from recent experience, the most
informative pairs under the reward ensemble are asked (:mod:`rewardlab.feedback.queries`), and
the teacher's answers are stored with the queries.

The schedule is a fixed grid: round ``r`` (from 0) is due at env step
``first_round_at + r * round_every`` and asks ``min(queries_per_round, budget - r *
queries_per_round)`` queries, so a resumed run asks its rounds at the same steps as an
uninterrupted one. A round is *idempotent*: if the store already holds queries of round ``r``
(the run was killed during or after it, before its next checkpoint), those queries are reused,
answers already given are kept and only missing ones are asked again; no label is lost or
duplicated.

Candidate pairs never compare a segment with itself or with an identical copy (same
observations and actions), and a segment cut twice in one round is stored once.

This module does not import torch: the reward ensemble enters as a function returning
``(members, pool)`` preference probabilities.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rewardlab.config import FeedbackSchedule, MitigationConfig
from rewardlab.data.transitions import TransitionLog
from rewardlab.feedback.human import HumanTeacher, RoundOutcome
from rewardlab.feedback.queries import select_queries
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.store.store import FeedbackStore
from rewardlab.types import Label, Preference, Segment

#: ``(obs (pool, 2, T, obs_dim), actions (pool, 2, T, act_dim)) -> (members, pool)`` P[left].
ProbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``(obs (n, 2, T, obs_dim), actions (n, 2, T, act_dim)) -> (n, 2, T)`` per-step rewards the
#: teacher judges by (the testbed's biased teacher); default: the true rewards.
JudgeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Finished training episodes whose mean return sets the B-Pref teacher margin.
MARGIN_EPISODES = 10


# ----------------------------------------------------------------------------- schedule
def effective_schedule(
    feedback: FeedbackSchedule, mitigation: MitigationConfig, total_steps: int, n_envs: int
) -> FeedbackSchedule:
    """The feedback schedule a run actually follows.

    With ``mitigation.targeted_feedback`` the query budget is spread evenly over the run
    (``round_every`` raised to ``(total_steps - first_round_at) / rounds`` when that is longer;
    kept as configured with ``mitigation.targeted_spread`` off) and every round cuts its
    segments from the steps collected since the previous round only (``recent_steps =
    round_every / n_envs`` rows per env), so queries are about the states the policy now
    visits. Otherwise ``feedback`` unchanged.
    """
    if not mitigation.targeted_feedback:
        return feedback
    every = feedback.round_every
    if mitigation.targeted_spread:
        rounds = math.ceil(feedback.total_budget / feedback.queries_per_round)
        span = max(total_steps - feedback.first_round_at, 1)
        every = max(every, span // rounds)
    return feedback.model_copy(update={
        "round_every": every, "recent_steps": max(every // n_envs, feedback.segment_len),
    })


def round_step(schedule: FeedbackSchedule, round: int) -> int:
    """Env step at which round ``round`` (from 0) is due."""
    return schedule.first_round_at + round * schedule.round_every


def total_rounds(schedule: FeedbackSchedule) -> int:
    """Rounds needed to spend the query budget."""
    return math.ceil(schedule.total_budget / schedule.queries_per_round)


def round_size(schedule: FeedbackSchedule, round: int) -> int:
    """Queries asked at round ``round`` (the rest of the budget at the last one; 0 after)."""
    asked_before = round * schedule.queries_per_round
    return max(0, min(schedule.queries_per_round, schedule.total_budget - asked_before))


def queries_asked(schedule: FeedbackSchedule, rounds_done: int) -> int:
    """Queries asked by the first ``rounds_done`` rounds (the sum of their sizes)."""
    return min(rounds_done * schedule.queries_per_round, schedule.total_budget)


def next_round_step(schedule: FeedbackSchedule, rounds_done: int) -> int | None:
    """Env step of the next round after ``rounds_done`` rounds (``None``: budget spent)."""
    return round_step(schedule, rounds_done) if rounds_done < total_rounds(schedule) else None


# ----------------------------------------------------------------------------- candidates
def sample_candidate_pairs(
    log: TransitionLog, pool: int, length: int, rng: np.random.Generator,
    recent: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Cut up to ``pool`` candidate pairs of distinct, non-identical segments from ``log``.

    Windows are drawn without replacement while the log holds enough of them; with fewer,
    each pair still takes two different windows. Pairs whose two segments have the same
    observations and actions are dropped.

    Args:
        log: experience to cut segments from.
        pool: candidate pairs wanted.
        length: steps per segment.
        rng: the round's generator.
        recent: only windows starting in the last ``recent`` rows (per env).

    Returns:
        ``(windows, pairs)``: the distinct windows (``obs (W, T, obs_dim)``, ``actions (W, T,
        act_dim)``, ``true_rewards (W, T)``, ``episode_ids (W,)``, ``start_steps (W,)``, and
        ``states`` when the log records them) and ``(P, 2)`` int64 window indices of the
        candidate pairs, ``P <= pool``.

    Raises:
        ValueError: if the log holds fewer than two windows of ``length`` steps.
    """
    rows, envs = log.valid_starts(length)
    if recent is not None and rows.size:
        keep = (log.written - 1 - rows) % log.capacity < recent
        if keep.sum() >= 2:
            rows, envs = rows[keep], envs[keep]
    m = rows.size
    if m < 2:
        raise ValueError(
            f"the transition log holds {m} window(s) of {length} steps inside one episode; a "
            "query needs two: collect more steps first or shorten feedback.segment_len"
        )
    if m >= 2 * pool:
        chosen = rng.choice(m, size=2 * pool, replace=False)
        windows = log.windows(rows[chosen], envs[chosen], length)
        pairs = np.arange(2 * pool, dtype=np.int64).reshape(pool, 2)
    else:
        windows = log.windows(rows, envs, length)
        left = rng.integers(0, m, size=pool)
        right = (left + rng.integers(1, m, size=pool)) % m  # never the same window
        pairs = np.stack([left, right], axis=1).astype(np.int64)
    obs, actions = windows["obs"], windows["actions"]
    same = (obs[pairs[:, 0]] == obs[pairs[:, 1]]).all(axis=(1, 2)) & (
        actions[pairs[:, 0]] == actions[pairs[:, 1]]
    ).all(axis=(1, 2))
    pairs = pairs[~same]
    if pairs.shape[0] == 0:
        raise ValueError(
            "every candidate pair compared two identical segments; the environment repeats "
            "itself: collect more varied experience before asking"
        )
    return windows, pairs


def unlabeled_pairs(
    log: TransitionLog, count: int, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random segment pairs of ``log`` that nobody is asked about: SURF's unlabelled data
    (Park et al. 2022, Alg. 1: ``inv_label_ratio`` random pairs per labelled one), cut as
    :func:`sample_candidate_pairs` cuts candidates, from the whole log.

    Args:
        log: experience (or an offline dataset's transition log) to cut from.
        count: pairs wanted (fewer when the log holds too few distinct windows).
        length: steps per segment.
        rng: the fit's generator.

    Returns:
        ``obs (P, 2, T, obs_dim)`` and ``actions (P, 2, T, act_dim)`` float32, ``P <= count``.

    Raises:
        ValueError: if the log holds fewer than two windows of ``length`` steps.
    """
    windows, pairs = sample_candidate_pairs(log, count, length, rng)
    return windows["obs"][pairs], windows["actions"][pairs]


# ----------------------------------------------------------------------------- the round
@dataclass
class RoundResult:
    """What a feedback round asked and what training will use.

    Attributes:
        round: the round (from 0).
        query_ids: ``(n,)`` stored query ids.
        obs: ``(n, 2, T, obs_dim)`` float32 segments of the queries.
        actions: ``(n, 2, T, act_dim)`` float32.
        labels: ``(n,)`` int8 :class:`~rewardlab.types.Label` codes training uses (people's
            answers where given, else the scripted teacher's; ``SKIP`` where nobody answered).
        method: the selection method used (``uniform`` before the ensemble is trained;
            ``stored`` for a round reused from the store).
        reused: whether the queries were already stored (a resumed round).
        pool_disagreement: mean ensemble std of P[left] over the candidate pool (active
            selection only), else NaN.
        outcome: how people answered (human teacher only).
        seconds: wall seconds spent selecting (``queries``), in the scripted teacher
            (``teacher``) and waiting for people (``human_wait``).
    """

    round: int
    query_ids: list[int]
    obs: np.ndarray
    actions: np.ndarray
    labels: np.ndarray
    method: str
    reused: bool = False
    pool_disagreement: float = float("nan")
    outcome: RoundOutcome | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def feedback_round(
    *,
    round: int,
    step: int,
    schedule: FeedbackSchedule,
    log: TransitionLog,
    store: FeedbackStore,
    teacher: ScriptedTeacher,
    rng: np.random.Generator,
    env_id: str,
    episode_limit: int,
    prob_fn: ProbFn | None,
    judge: JudgeFn | None = None,
    human: HumanTeacher | None = None,
    dataset_id: str | None = None,
) -> RoundResult:
    """Ask round ``round`` (or finish it, if the store already holds its queries).

    Args:
        round: the round (from 0); its size is :func:`round_size`.
        step: env step of training (shown to people; recorded nowhere else).
        schedule: the run's feedback schedule.
        log: experience to cut segments from.
        store: the run's feedback store.
        teacher: the scripted teacher (with people: the one that answers on timeout or
            pre-labels in mixed mode).
        rng: generator for segment sampling and query selection.
        env_id: recorded with each segment.
        episode_limit: the env's time limit (B-Pref's teacher margin).
        prob_fn: the ensemble's preference probabilities for active selection; ``None``
            selects uniformly (before the ensemble is trained).
        judge: per-step rewards the teacher judges by instead of the true ones (testbed).
        human: people answering in the web app (``teacher=human``).
        dataset_id: recorded with each segment when ``log`` holds an offline dataset
            (:func:`rewardlab.feedback.offline.label_dataset`); its episode ids and steps are
            then the dataset's.

    Returns:
        The :class:`RoundResult`.

    Raises:
        ValueError: if the log holds no two segments to compare yet.
        StoreError: if the store cannot be read or written.
        KeyboardInterrupt: passes through while waiting for people.
    """
    n = round_size(schedule, round)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    current = store.records.current_round()  # one cheap query; the scan only after a kill
    stored = ([q for q in store.records.get_queries() if q.round == round]
              if current is not None and current >= round else [])
    if stored:
        result = _stored_round(round, stored, store, judge)
        gold = result.pop("gold")
        seg_ids = result.pop("seg_ids")
        query_ids = [int(q.query_id) for q in stored]  # type: ignore[arg-type]
        method, pool_dis, reused = "stored", float("nan"), True
        obs, actions = result["obs"], result["actions"]
    else:
        seg_len = schedule.segment_len
        method = schedule.method if prob_fn is not None else "uniform"
        windows, candidates = sample_candidate_pairs(
            log, n * schedule.oversample, seg_len, rng, recent=schedule.recent_steps
        )
        pool_obs = windows["obs"][candidates]  # (P, 2, T, obs_dim)
        pool_act = windows["actions"][candidates]
        probs = prob_fn(pool_obs, pool_act) if method != "uniform" and prob_fn else None
        pick = select_queries(method, min(n, candidates.shape[0]), candidates.shape[0], rng,
                              probs)
        pairs = candidates[pick]  # (n, 2) window indices
        obs, actions = pool_obs[pick], pool_act[pick]
        gold = windows["true_rewards"][pairs] if judge is None else judge(obs, actions)
        used, inverse = np.unique(pairs.reshape(-1), return_inverse=True)
        states = windows.get("states")
        segments = [
            Segment(windows["obs"][w], windows["actions"][w], windows["true_rewards"][w],
                    env_id, int(windows["episode_ids"][w]), int(windows["start_steps"][w]),
                    render_states=None if states is None else states[w],
                    dataset_id=dataset_id)
            for w in used
        ]
        unique_ids = np.asarray(store.records.add_segments(segments), dtype=np.int64)
        seg_ids = unique_ids[inverse].tolist()  # 2n ids, left/right per query
        query_ids = store.records.add_queries(
            [(seg_ids[2 * i], seg_ids[2 * i + 1]) for i in range(len(pick))],
            round=round, source=method,
        )
        pool_dis = float(probs.std(axis=0).mean()) if probs is not None else float("nan")
        reused = False
    seconds["queries"] = time.perf_counter() - t0

    recent = log.finished_returns[-MARGIN_EPISODES:]
    if recent:
        teacher.set_margin(float(np.mean(recent)), schedule.segment_len, episode_limit)

    def scripted(positions: np.ndarray) -> int:
        return _answer_scripted(store, teacher, [query_ids[i] for i in positions],
                                gold[positions])

    labels, outcome, answer_seconds = answer_round(
        round=round, step=step, query_ids=query_ids, segment_ids=seg_ids, store=store,
        scripted=scripted, scripted_id=teacher.teacher_id, human=human)
    seconds.update(answer_seconds)
    return RoundResult(round, query_ids, obs, actions, labels, method, reused, pool_dis,
                       outcome, seconds)


def answer_round(
    *,
    round: int,
    step: int,
    query_ids: list[int],
    segment_ids: list[int],
    store: FeedbackStore,
    scripted: Callable[[np.ndarray], int],
    scripted_id: str,
    human: HumanTeacher | None,
) -> tuple[np.ndarray, RoundOutcome | None, dict[str, float]]:
    """Have a round's stored queries answered: by the scripted teacher, by people, or both.

    Without people the scripted teacher answers every query. With people (``teacher=human``)
    training waits for them (:meth:`HumanTeacher.collect`); in mixed mode the scripted teacher
    pre-labels the whole round first and people's answers override its; on a timeout with
    ``human.on_timeout=scripted`` it answers the queries nobody answered. Shared by the control
    rounds (:func:`feedback_round`) and the language-model rounds
    (:func:`rewardlab.algorithms.lm.loop_rounds.feedback_round`); idempotent, like a round.

    Args:
        round: the round (its queries are stored).
        step: training step (shown to people).
        query_ids: the round's query ids in id order (the order of the positions
            :meth:`HumanTeacher.collect` hands back).
        segment_ids: the round's segment ids (clips rendered ahead for people).
        store: the run's feedback store.
        scripted: answers the queries at these ``(k,)`` int64 positions of ``query_ids`` that
            it has not answered yet, stores the answers (one transaction) and returns how many
            it stored; never called with ``k = 0``.
        scripted_id: the ``teacher_id`` of ``scripted``'s answers (in mixed mode they count
            only where no person answered).
        human: people answering in the web app, or ``None``.

    Returns:
        ``(labels, outcome, seconds)``: ``(n,)`` int8 labels training uses
        (:func:`round_labels`; ``SKIP`` where nobody answered), how people answered (``None``
        without people), and wall seconds in the scripted teacher (``teacher``) and waiting
        for people (``human_wait``).

    Raises:
        KeyboardInterrupt: passes through while waiting for people.
        StoreError: if the store cannot be read or written.
    """
    seconds: dict[str, float] = {}
    outcome = None
    if human is None or human.config.mixed:
        t0 = time.perf_counter()
        if query_ids:
            scripted(np.arange(len(query_ids), dtype=np.int64))
        seconds["teacher"] = time.perf_counter() - t0
    if human is not None:
        def answer_rest(positions: np.ndarray) -> int:
            return 0 if positions.size == 0 else scripted(positions)

        outcome = human.collect(round, segment_ids, step, answer_rest)
        seconds["human_wait"] = outcome.waited_s
    fallback = (scripted_id,) if human is not None and human.config.mixed else ()
    return round_labels(store, query_ids, fallback), outcome, seconds


def _stored_round(
    round: int, queries: list, store: FeedbackStore, judge: JudgeFn | None
) -> dict[str, np.ndarray | list[int]]:
    """Arrays of a round already in the store: ``obs``, ``actions``, ``gold`` ``(n, 2, T,
    ...)`` and the ``2n`` ``seg_ids``."""
    seg_ids = [i for q in queries for i in (q.left_id, q.right_id)]
    segments = store.records.get_segments(seg_ids)

    def pairs(name: str) -> np.ndarray:
        stacked = np.stack([getattr(s, name) for s in segments])
        return stacked.reshape(len(queries), 2, *stacked.shape[1:])

    obs, actions = pairs("obs"), pairs("actions")
    gold = pairs("true_rewards") if judge is None else judge(obs, actions)
    return {"obs": obs, "actions": actions, "gold": gold, "seg_ids": seg_ids}


def _answer_scripted(
    store: FeedbackStore, teacher: ScriptedTeacher, query_ids: list[int], gold: np.ndarray
) -> int:
    """The scripted teacher answers those of ``query_ids`` it has not answered yet.

    Args:
        gold: ``(k, 2, T)`` float32 per-step rewards it judges by.

    Returns:
        The number of answers stored now.
    """
    before = store.records.answers_of(teacher.teacher_id, query_ids)
    todo = np.array([qid not in before for qid in query_ids], dtype=bool)
    if not todo.any():
        return 0
    labels = teacher.label(gold[todo])  # (k,) int8
    now = time.time()
    asked = [qid for qid, t in zip(query_ids, todo, strict=True) if t]
    store.records.add_preferences([
        Preference(qid, Label(int(lab)), teacher.teacher_id, now)
        for qid, lab in zip(asked, labels, strict=True)
    ])
    return len(asked)


def round_labels(
    store: FeedbackStore, query_ids: list[int], fallback_teachers: tuple[str, ...] = ()
) -> np.ndarray:
    """``(n,)`` int8 labels of ``query_ids`` as training uses them (the first used answer per
    query, people's before ``fallback_teachers``'; ``SKIP`` where none)."""
    rows = store.records.used_answers(query_ids, fallback_teachers)
    labels = np.full(len(query_ids), int(Label.SKIP), dtype=np.int8)
    position = {qid: i for i, qid in enumerate(query_ids)}
    for qid, label in reversed(rows):
        labels[position[qid]] = label
    return labels
