"""Feedback rounds on text, as :mod:`rewardlab.algorithms.lm_loop` calls them: sample the
policy's completions, select same-prompt queries, have them answered
(:mod:`rewardlab.algorithms.lm.loop_answerers`), refit the reward-model ensemble on every label
and log the round. Nothing here decides when a round runs; the loop and its callbacks
(:mod:`rewardlab.algorithms.lm.loop_callbacks`) do.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from rewardlab.algorithms.lm.loop_answerers import GoldTeacher, scripted_teacher
from rewardlab.algorithms.lm.loop_state import LMRun, write_lm_status
from rewardlab.feedback.judges import answer_text_queries, judge_agreement
from rewardlab.feedback.queries import same_prompt_pairs, select_queries
from rewardlab.feedback.rounds import answer_round, round_size, round_step, total_rounds
from rewardlab.lm.generation import sample_completions
from rewardlab.types import LABEL_TARGETS, Label, TextSegment

#: Completions sampled per prompt when a round builds its candidate pool (each prompt gives
#: up to 4 * 3 / 2 = 6 same-prompt pairs).
QUERY_SAMPLES_PER_PROMPT = 4


def feedback_round(lm_run: LMRun, policy: Any, round_: int, step: int) -> dict[str, float]:
    """Ask round ``round_`` of the ``feedback`` schedule on ``policy``'s completions.

    The round samples :data:`QUERY_SAMPLES_PER_PROMPT` completions of random training prompts
    (its own generator, seeded by the run and the round), forms same-prompt pairs
    (:func:`~rewardlab.feedback.queries.same_prompt_pairs`, ``feedback.oversample`` times the
    round's size), selects the round's queries (uniform in round 0 or before any fit, else
    ``feedback.method`` on the ensemble's preference probabilities), stores the completions as
    :class:`~rewardlab.types.TextSegment` s with their gold score and the queries, and has them
    answered (:func:`~rewardlab.feedback.rounds.answer_round`, as control rounds are) by the
    judge, by the scripted teacher on gold
    (:func:`~rewardlab.feedback.judges.answer_text_queries`), or by people in the web app
    (``teacher=human``: the run waits for them, ``human.on_timeout`` acting after
    ``human.timeout_s``; in mixed mode the scripted teacher pre-labels). A round whose queries
    are already in the store (a run resumed after a kill) reuses them and asks only unanswered
    ones; answers already given (people's included) are kept.

    Returns:
        The round's ``feedback/`` metrics (judge-vs-gold agreement for a judge; with people
        ``people_answered``, ``timed_out``, ``scripted_on_timeout`` and ``time/human_wait_s``),
        plus ``_query_ids`` (list) for the refit's fresh-query check.

    Raises:
        KeyboardInterrupt: passes through while waiting for people (Ctrl-C).
    """
    c, store = lm_run.config, lm_run.store
    t0 = time.perf_counter()
    existing = [q.query_id for q in store.records.get_queries() if q.round == round_]
    if existing:
        query_ids = existing
    else:
        query_ids = _ask_new(lm_run, policy, round_)
    query_ids = sorted(int(q) for q in query_ids)  # id order: HumanTeacher's positions
    teacher = scripted_teacher(c, lm_run.seeds["teacher"] + round_)
    answerer = lm_run.judge if lm_run.judge is not None else teacher
    answerer_id = answerer.judge_id if lm_run.judge is not None else teacher.teacher_id

    def scripted(positions: np.ndarray) -> int:
        ids = [query_ids[i] for i in positions]
        before = len(store.records.answers_of(answerer_id, ids))
        answer_text_queries(store, ids, answerer)
        return len(ids) - before

    segment_ids = [i for q in store.records.get_queries(query_ids)
                   for i in (q.left_id, q.right_id)] if lm_run.human is not None else []
    labels, outcome, seconds = answer_round(
        round=round_, step=step, query_ids=query_ids, segment_ids=segment_ids, store=store,
        scripted=scripted, scripted_id=answerer_id, human=lm_run.human)
    counts = store.summary.counts()
    metrics: dict[str, Any] = {
        "feedback/round": float(round_ + 1),
        "feedback/queries_asked": float(counts["queries"]),
        "feedback/queries_answered": float(counts["answered"]),
        "feedback/queries_skipped": float(counts["skipped"]),
        "feedback/equal_fraction": float((labels == Label.EQUAL).mean()) if len(labels) else
        math.nan,
        "feedback/reused_round": float(bool(existing)),
        "feedback/round_step": float(step),
    }
    if outcome is not None:
        lm_run.state.seconds["human_wait"] = (lm_run.state.seconds.get("human_wait", 0.0)
                                              + seconds["human_wait"])
        metrics["feedback/people_answered"] = float(outcome.answered)
        metrics["feedback/timed_out"] = float(outcome.timed_out)
        metrics["feedback/scripted_on_timeout"] = float(outcome.scripted)
        metrics["time/human_wait_s"] = lm_run.state.seconds["human_wait"]
    if lm_run.judge is not None:
        segs = store.records.get_text_segments(
            [i for q in store.records.get_queries(query_ids) for i in (q.left_id, q.right_id)])
        gold = np.array([[a.gold, b.gold] for a, b in zip(segs[0::2], segs[1::2], strict=True)])
        oracle = GoldTeacher("oracle").label_text(gold)
        agree = judge_agreement(labels.astype(np.int64), oracle.astype(np.int64))
        metrics["feedback/judge_gold_agreement"] = float(agree["agreement"])
        metrics["feedback/judge_gold_kappa"] = float(agree["kappa"])
    lm_run.state.seconds["queries"] += (time.perf_counter() - t0
                                        - seconds.get("human_wait", 0.0))
    metrics["_query_ids"] = list(query_ids)
    return metrics


def _ask_new(lm_run: LMRun, policy: Any, round_: int) -> list[int]:
    """Sample, select and store round ``round_``'s queries; returns their ids."""
    c, fb, store = lm_run.config, lm_run.config.feedback, lm_run.store
    size = round_size(fb, round_)
    rng = np.random.default_rng([lm_run.seeds["queries"], round_])
    pool = size * fb.oversample
    pairs_per_prompt = QUERY_SAMPLES_PER_PROMPT * (QUERY_SAMPLES_PER_PROMPT - 1) // 2
    n_prompts = min(len(lm_run.train_prompts), max(1, math.ceil(pool / pairs_per_prompt)))
    chosen_prompts = rng.choice(len(lm_run.train_prompts), n_prompts, replace=False)
    prompts = [lm_run.train_prompts[i] for i in chosen_prompts]
    s = sample_completions(policy, lm_run.tokenizer, prompts, QUERY_SAMPLES_PER_PROMPT,
                           c.lm.max_new_tokens, seed=int(rng.integers(2**31)))
    pairs = same_prompt_pairs(s.prompt_index, rng, n=pool, completions=s.completions)
    if len(pairs) == 0:
        return []
    fitted = lm_run.ensemble is not None and lm_run.state.rounds > 0
    method = fb.method if fitted and round_ > 0 else "uniform"
    probs = None
    if method != "uniform":
        assert lm_run.ensemble is not None
        probs = lm_run.ensemble.preference_probs(
            [(s.prompts[a], s.completions[a], s.completions[b]) for a, b in pairs])
    picked = pairs[select_queries(method, min(size, len(pairs)), len(pairs), rng, probs)]
    used = np.unique(picked)  # (u,) sample indices
    gold = lm_run.task.gold([s.prompts[i] for i in used], [s.completions[i] for i in used])
    task_id = f"{lm_run.task.name}/{lm_run.base_dir.name}"[:255]
    segments = [
        TextSegment(s.prompts[i], s.completions[i], np.asarray(s.prompt_ids[i]),
                    np.asarray(s.completion_ids[i]), task_id,
                    prompt_id=int(chosen_prompts[s.prompt_index[i]]), sample_id=int(i),
                    gold=float(g))
        for i, g in zip(used, gold, strict=True)
    ]
    seg_ids = dict(zip(used.tolist(), store.records.add_text_segments(segments), strict=True))
    return store.records.add_queries(
        [(seg_ids[int(a)], seg_ids[int(b)]) for a, b in picked], round=round_, source=method)


def _heldout(query_ids: np.ndarray, fraction: float) -> np.ndarray:
    """``(n,)`` bool: which queries are held out, by a hash of the query id (stable)."""
    h = (query_ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return h.astype(np.float64) / 2**32 < fraction


def refit(lm_run: LMRun, round_metrics: dict[str, Any], round_: int) -> dict[str, float]:
    """Check the ensemble on the round's fresh queries, refit it on every label, check it on the
    held-out ones, and standardise it on the base policy's completions.

    Returns:
        ``reward_model/`` metrics: ``fresh_accuracy``/``fresh_ece`` (before the refit; not in
        round 0), ``train_accuracy``, ``heldout_accuracy``/``heldout_ece`` (NaN with no
        held-out label), ``labels``.
    """
    ensemble, lm = lm_run.ensemble, lm_run.config.lm
    assert ensemble is not None
    t0 = time.perf_counter()
    data = lm_run.store.records.text_training_pairs(
        fallback_teachers=lm_run.fallback_teachers)
    triples = [(a.prompt, a.completion, b.completion)
               for a, b in zip(data.left, data.right, strict=True)]
    targets = LABEL_TARGETS[data.labels.astype(np.int64)]
    metrics: dict[str, float] = {"reward_model/labels": float(np.isfinite(targets).sum())}
    fresh = np.isin(data.query_ids, np.asarray(round_metrics["_query_ids"], dtype=np.int64))
    fresh &= np.isfinite(targets)
    if lm_run.state.rounds > 0 and fresh.any():
        m = ensemble.evaluate([t for t, f in zip(triples, fresh, strict=True) if f],
                              targets[fresh])
        metrics["reward_model/fresh_accuracy"] = m.ensemble_accuracy
        metrics["reward_model/fresh_ece"] = m.ece
    held = _heldout(data.query_ids, lm.rm_holdout_fraction) & np.isfinite(targets)
    train = ~held & np.isfinite(targets)
    if train.any():
        history = ensemble.fit([t for t, k in zip(triples, train, strict=True) if k],
                               targets[train], epochs=lm.rm_epochs, batch_size=lm.rm_batch_size,
                               lr=lm.rm_lr, seed=lm_run.seeds["reward_model"] + round_,
                               val_fraction=0.0)
        metrics["reward_model/train_accuracy"] = history[-1]["train_accuracy"]
        metrics["reward_model/train_loss"] = history[-1]["train_loss"]
    metrics["reward_model/heldout_accuracy"] = math.nan
    metrics["reward_model/heldout_ece"] = math.nan
    if held.any():
        m = ensemble.evaluate([t for t, k in zip(triples, held, strict=True) if k], targets[held])
        metrics["reward_model/heldout_accuracy"] = m.ensemble_accuracy
        metrics["reward_model/heldout_ece"] = m.ece
        metrics["reward_model/heldout_disagreement"] = m.prob_std
    ensemble.normalize_on(*lm_run.normalization)
    lm_run.state.seconds["reward_training"] += time.perf_counter() - t0
    metrics["time/reward_training_s"] = lm_run.state.seconds["reward_training"]
    return metrics


def run_round(lm_run: LMRun, policy: Any, step: int) -> None:
    """Round ``state.rounds``: ask it, refit the ensemble, log its metrics at ``step`` and print
    its line; ``state.rounds`` counts it."""
    r = lm_run.state.rounds
    metrics = feedback_round(lm_run, policy, r, step)
    metrics.update(refit(lm_run, metrics, r))
    metrics.pop("_query_ids")
    metrics["time/elapsed_s"] = lm_run.clock.elapsed()
    lm_run.state.rounds = r + 1
    lm_run.run.log(step, metrics)
    lm_run.ui.message(describe_round(step, metrics))
    write_lm_status(lm_run, "training")


def describe_round(step: int, metrics: dict[str, float]) -> str:
    """One terminal line about a finished round."""
    parts = [f"step {step}: round {int(metrics['feedback/round'])}, "
             f"{int(metrics['feedback/queries_asked'])} queries"]
    for key, name in (("reward_model/heldout_accuracy", "held-out accuracy"),
                      ("reward_model/fresh_accuracy", "fresh accuracy"),
                      ("feedback/judge_gold_agreement", "judge-gold agreement")):
        value = metrics.get(key)
        if value is not None and math.isfinite(value):
            parts.append(f"{name} {value:.2f}")
    return ", ".join(parts) + (" (resumed round)" if metrics["feedback/reused_round"] else "")


def rounds_due(lm_run: LMRun, step: int) -> bool:
    """Whether the next round of the schedule is due at optimizer step ``step``."""
    fb = lm_run.config.feedback
    return (lm_run.needs_labels and lm_run.state.rounds < total_rounds(fb)
            and round_step(fb, lm_run.state.rounds) <= step)
