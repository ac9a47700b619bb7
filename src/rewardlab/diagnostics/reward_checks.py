"""Checks of a trained reward ensemble on labelled queries: accuracy and calibration.

Used after every feedback round on two sets of labels:

* the held-out split of all labels so far (``reward_model/heldout_*``), after retraining;
* uniformly drawn pairs of segments of the run's own experience, judged by their gold (true)
  returns (``reward_model/random_pair_accuracy``): what the ensemble has learned about the task
  as a whole. Active selection asks the pairs the ensemble is least sure of, so accuracy on the
  fresh queries is low by design (below 0.5 is common) and says little about the reward model
  itself; this check does. It reads the true rewards the transition log keeps for evaluation;
  nothing of it reaches the learner.
* the round's *fresh* queries, measured with the model as it was *before* it is retrained on
  them (``reward_model/fresh_*``): an honest out-of-sample check, and the signal the
  ``calibration`` early-stopping mitigation watches. The queries are cut from the transition log
  (the whole log by default; only the steps since the previous round with
  ``mitigation.targeted_feedback``, or the last ``feedback.recent_steps``), so with targeted
  feedback it measures the reward model on the states the policy now visits.

Calibration is the expected calibration error of the ensemble-mean ``P[left preferred]``
(:func:`rewardlab.diagnostics.reward_eval.expected_calibration_error`).
"""

from __future__ import annotations

import numpy as np

from rewardlab.data.transitions import TransitionLog
from rewardlab.diagnostics.reward_eval import expected_calibration_error
from rewardlab.rewards.model import RewardModel
from rewardlab.types import LABEL_TARGETS


def label_metrics(
    reward_model: RewardModel,
    obs: np.ndarray,
    actions: np.ndarray,
    labels: np.ndarray,
    prefix: str,
) -> dict[str, float]:
    """Accuracy and ECE of the ensemble on labelled segment pairs.

    Args:
        reward_model: the ensemble.
        obs: ``(N, 2, T, obs_dim)`` float32 segment pairs.
        actions: ``(N, 2, T, act_dim)`` float32.
        labels: ``(N,)`` int :class:`~rewardlab.types.Label` codes; skipped answers are ignored
            and EQUAL counts as the soft outcome 0.5.
        prefix: metric key prefix, e.g. ``"reward_model/fresh"``.

    Returns:
        ``{prefix + "_accuracy", prefix + "_ece"}``: the members' mean accuracy on decided
        queries and the ECE (10 bins, probability units) of the ensemble-mean probability; NaN
        when nothing is labelled.
    """
    targets = LABEL_TARGETS[np.asarray(labels, dtype=np.int64)]
    keep = np.isfinite(targets)
    if not keep.any():
        return {f"{prefix}_accuracy": float("nan"), f"{prefix}_ece": float("nan")}
    obs, actions, targets = obs[keep], actions[keep], targets[keep].astype(np.float32)
    probs = reward_model.preference_probs(obs, actions)  # (K, N)
    return {
        f"{prefix}_accuracy": reward_model.accuracy(obs, actions, targets),
        f"{prefix}_ece": expected_calibration_error(
            np.clip(probs.mean(axis=0).astype(np.float64), 0.0, 1.0), targets
        ),
    }


def random_pair_accuracy(
    reward_model: RewardModel, log: TransitionLog, pairs: int, length: int,
    rng: np.random.Generator,
) -> float:
    """Accuracy of the ensemble's preference on uniformly drawn segment pairs, against gold.

    Args:
        reward_model: the ensemble.
        log: the run's experience (its ``true_rewards`` are the gold reward).
        pairs: pairs to draw (windows with replacement, uniformly over valid starts).
        length: steps per segment (``feedback.segment_len``).
        rng: a generator of its own (the training streams are not touched).

    Returns:
        The fraction of pairs with different gold returns whose larger-return segment the
        ensemble-mean probability prefers; NaN when the log has no gold reward or no window.
    """
    try:
        w = log.sample_windows(2 * pairs, length, rng)
    except ValueError:
        return float("nan")
    gold = w["true_rewards"].reshape(pairs, 2, length).sum(axis=-1)  # (pairs, 2)
    decided = np.isfinite(gold).all(axis=1) & (gold[:, 0] != gold[:, 1])
    if not decided.any():
        return float("nan")
    obs = w["obs"].reshape(pairs, 2, length, -1)[decided]
    actions = w["actions"].reshape(pairs, 2, length, -1)[decided]
    p_left = reward_model.preference_probs(obs, actions).mean(axis=0)  # (n,)
    return float(((p_left > 0.5) == (gold[decided, 0] > gold[decided, 1])).mean())
