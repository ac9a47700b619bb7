"""Held-out checks of a :class:`~rewardlab.rewards.text_model.TextRewardEnsemble` on labelled
text pairs: accuracy, calibration and disagreement.

:func:`evaluate_ensemble` (what :meth:`TextRewardEnsemble.evaluate
<rewardlab.rewards.text_model.TextRewardEnsemble.evaluate>` returns) measures the members'
accuracy and the ensemble-mean accuracy on decided pairs, the expected calibration error of the
ensemble-mean P[left preferred] (:func:`~rewardlab.diagnostics.reward_eval.
expected_calibration_error`) with its reliability bins (:func:`reliability_bins`), and the
members' disagreement on the pairs' probabilities and on the texts' scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from rewardlab.diagnostics.reward_eval import expected_calibration_error
from rewardlab.rewards.bradley_terry import preference_accuracy

if TYPE_CHECKING:
    from rewardlab.rewards.text_model import TextPair, TextRewardEnsemble


def reliability_bins(
    probs: np.ndarray, outcomes: np.ndarray, n_bins: int = 10
) -> dict[str, list[float]]:
    """Reliability diagram of P[left preferred]: the bins of
    :func:`~rewardlab.diagnostics.reward_eval.expected_calibration_error`.

    Args:
        probs: ``(n,)`` float in [0, 1], predicted P[left preferred].
        outcomes: ``(n,)`` float in [0, 1] (1 left, 0 right, 0.5 equal); NaN entries ignored.
        n_bins: equal-width bins ``((b-1)/n_bins, b/n_bins]`` (p = 0 in the first).

    Returns:
        ``{"confidence", "frequency", "count"}``, each a list of ``n_bins`` values: the mean
        predicted probability, the observed frequency of "left preferred" (NaN for empty bins)
        and the number of pairs per bin.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    used = ~np.isnan(y)
    p, y = p[used], y[used]
    bins = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(bins, weights=p, minlength=n_bins) / count
        freq = np.bincount(bins, weights=y, minlength=n_bins) / count
    return {"confidence": conf.tolist(), "frequency": freq.tolist(), "count": count.tolist()}


@dataclass(frozen=True)
class PreferenceMetrics:
    """Held-out checks of a text reward ensemble on labelled pairs."""

    accuracy: float
    """Members' mean accuracy on decided (non-equal) pairs."""
    ensemble_accuracy: float
    """Accuracy of the ensemble-mean P[left preferred] (> 0.5 means left) on decided pairs."""
    ece: float
    """Expected calibration error (10 bins, probability units) of the ensemble-mean P[left]."""
    prob_std: float
    """Disagreement: mean over pairs of the members' std of P[left preferred]."""
    score_std: float
    """Disagreement: mean over texts of the members' std of their scores (score units)."""
    reliability: dict[str, list[float]] = field(default_factory=dict)
    """Reliability bins of the ensemble-mean P[left] (see :func:`reliability_bins`)."""

    def scalars(self, prefix: str = "reward_model/heldout_") -> dict[str, float]:
        """The scalar metrics as ``{prefix + name: value}`` (reliability bins left out)."""
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items() if k != "reliability"}


def evaluate_ensemble(
    ensemble: TextRewardEnsemble, pairs: Sequence[TextPair], targets: np.ndarray, n_bins: int = 10
) -> PreferenceMetrics:
    """Accuracy, calibration and disagreement on labelled pairs (NaN targets ignored).

    Args:
        ensemble: the ensemble checked.
        pairs: N pairs; targets: ``(N,)`` float P[left preferred] (NaN = skip).
        n_bins: calibration bins.

    Returns:
        :class:`PreferenceMetrics` of the labelled pairs.

    Raises:
        ValueError: if no target is finite.
    """
    targets = np.asarray(targets, dtype=np.float32)
    keep = ~np.isnan(targets)
    if not keep.any():
        raise ValueError("targets: no labelled pair to evaluate on")
    pairs = [p for p, kept in zip(pairs, keep, strict=True) if kept]
    y = targets[keep]
    logits = ensemble.preference_logits(pairs)  # (K, N)
    probs = torch.sigmoid(logits).numpy()
    yt = torch.from_numpy(y)
    mean_p = probs.mean(axis=0)
    scores = ensemble.score([p for p, _, _ in pairs] * 2,
                            [a for _, a, _ in pairs] + [b for _, _, b in pairs])
    return PreferenceMetrics(
        accuracy=float(preference_accuracy(logits, yt).mean()),
        ensemble_accuracy=float(preference_accuracy(
            torch.from_numpy(mean_p - 0.5), yt)),
        ece=expected_calibration_error(np.clip(mean_p, 0, 1).astype(np.float64), y, n_bins),
        prob_std=float(probs.std(axis=0).mean()),
        score_std=float(scores.std(axis=0).mean()),
        reliability=reliability_bins(mean_p, y, n_bins),
    )
