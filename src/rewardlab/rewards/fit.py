"""Refit the reward ensemble on every label so far and measure it (one feedback round's fit).

Christiano et al. 2017, Sec. 2.2.3: the predictor is refit on all comparisons collected so far
with a held-out split for validation, and its output normalised to a fixed scale; PEBBLE (Lee
et al. 2021, App. B) refits after each round until 97% training accuracy.
"""

from __future__ import annotations

import numpy as np

from rewardlab.diagnostics.reward_checks import label_metrics
from rewardlab.rewards.model import RewardModel, holdout_mask
from rewardlab.types import LABEL_TARGETS


def fit_reward_model(
    reward_model: RewardModel,
    data: dict[str, np.ndarray],
    holdout_fraction: float,
    norm_obs: np.ndarray | None,
    norm_actions: np.ndarray | None,
    unlabeled: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Fit on every labelled query outside the held-out split, then measure and renormalise.

    With no usable label (every answer a SKIP, or none given) the model is left as it is
    (``reward_model.updates`` unchanged) and only the held-out keys are returned (NaN / 0).

    Args:
        reward_model: the ensemble to fit.
        data: the store's training arrays: ``query_ids (N,)`` int64, ``obs (N, 2, T,
            obs_dim)`` float32, ``actions (N, 2, T, act_dim)`` float32, ``labels (N,)`` int8
            (no SKIPs).
        holdout_fraction: expected fraction of queries held out (split by query id).
        norm_obs: ``(M, obs_dim)`` float32 recent experience the proxy reward is standardised
            on; norm_actions: ``(M, act_dim)``. ``None``: no standardisation (a model without
            one, e.g. the Preference Transformer, duck-typed: ``fit``, ``accuracy`` and
            ``preference_probs`` are all this function calls then).
        unlabeled: optional ``(obs (U, 2, T, obs_dim), actions (U, 2, T, act_dim))`` float32
            unlabelled segment pairs for SURF's pseudo-labels (:meth:`RewardModel.fit`).

    Returns:
        ``reward_model/`` metrics: ``loss``, ``train_accuracy``, ``epochs``,
        ``heldout_accuracy``, ``heldout_ece``, ``heldout_queries`` (and
        ``pseudo_labeled_fraction`` with unlabelled pairs).
    """
    if data["labels"].size == 0:
        return {"reward_model/heldout_accuracy": float("nan"),
                "reward_model/heldout_queries": 0.0}
    targets = LABEL_TARGETS[data["labels"].astype(np.int64)]
    held = holdout_mask(data["query_ids"], holdout_fraction)
    train = ~held if (~held).any() else np.ones_like(held)
    extra = {} if unlabeled is None else {"unlabeled_obs": unlabeled[0],
                                          "unlabeled_actions": unlabeled[1]}
    fit = reward_model.fit(data["obs"][train], data["actions"][train], targets[train], **extra)
    metrics = {
        "reward_model/loss": fit["loss"],
        "reward_model/train_accuracy": fit["train_accuracy"],
        "reward_model/epochs": fit["epochs"],
        "reward_model/heldout_queries": float(held.sum()),
    }
    if "pseudo_labeled_fraction" in fit:
        metrics["reward_model/pseudo_labeled_fraction"] = fit["pseudo_labeled_fraction"]
    metrics.update(label_metrics(
        reward_model, data["obs"][held], data["actions"][held], data["labels"][held],
        "reward_model/heldout",
    ))
    if norm_obs is not None and norm_actions is not None:
        reward_model.update_normalization(norm_obs, norm_actions)
    return metrics
