"""The Bradley-Terry preference model and its cross-entropy loss, batched over ensemble members.

Source: Christiano et al. 2017, "Deep reinforcement learning from human preferences", Eq. (1):
``P[sigma_0 > sigma_1] = exp(sum_t r(s0_t, a0_t)) / (exp(sum_t r(s0_t, a0_t)) + exp(sum_t r(s1_t,
a1_t)))``, i.e. ``sigmoid(R_0 - R_1)``, trained with the cross-entropy against the label
distribution (0.5 / 0.5 for "equal"). PEBBLE (Lee et al. 2021, Eq. 4) uses the same loss.

Christiano et al. 2017, Sec. 2.2.3, fit a lapse model instead: "we assume there is a 10% chance
that the human responds uniformly at random", i.e. ``P = lapse / 2 + (1 - lapse) *
sigmoid(R_0 - R_1)`` with ``lapse = 0.1``. A label against a confidently ranked pair then costs at
most ``-log(lapse / 2)``, so flipped labels pull the reward less (``lapse`` argument of
:func:`bradley_terry_loss`). A teacher that flips a fraction ``eps`` of its labels (B-Pref's
mistake teacher) answers exactly this model with ``lapse = 2 * eps``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def preference_logits(step_rewards: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry logit of preferring the left segment, per member and query.

    Args:
        step_rewards: ``(members, batch, 2, T)`` float, predicted reward of each step of the
            left (index 0) and right (index 1) segment of each query.

    Returns:
        ``(members, batch)`` float: ``R_left - R_right`` with ``R = sum_t r_t``, so that
        ``sigmoid(logit) = P[left preferred]`` (Christiano et al. 2017, Eq. 1).

    Raises:
        ValueError: if ``step_rewards`` is not 4-dimensional with size 2 on dim 2.
    """
    if step_rewards.ndim != 4 or step_rewards.shape[2] != 2:
        raise ValueError(
            f"step_rewards: expected shape (members, batch, 2, T), got {tuple(step_rewards.shape)}"
        )
    returns = step_rewards.sum(dim=-1)  # (K, B, 2)
    return returns[..., 0] - returns[..., 1]


def bradley_terry_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
    lapse: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy between Bradley-Terry predictions and (soft) preference labels.

    Each member's loss is averaged over its batch; the members' losses are summed, so every
    member receives exactly the gradient it would get if trained alone.

    Args:
        logits: ``(members, batch)`` float, ``R_left - R_right`` from :func:`preference_logits`.
        targets: ``(batch,)`` or ``(members, batch)`` float in ``[0, 1]``: P[left preferred]
            (1.0 left, 0.0 right, 0.5 equal; see ``rewardlab.types.LABEL_TARGETS``).
        weights: optional ``(members, batch)`` float per-pair weights, still averaged over the
            whole batch (SURF's masked pseudo-label loss, Park et al. 2022, Eq. 5:
            ``mean_b 1[conf_b >= tau] CE_b``).
        lapse: probability in ``[0, 1)`` that the teacher answers uniformly at random
            (Christiano et al. 2017, Sec. 2.2.3: 0.1): the cross-entropy is taken against
            ``lapse / 2 + (1 - lapse) * sigmoid(logits)``. 0 (default): plain Bradley-Terry.

    Returns:
        Scalar tensor: ``sum_k mean_b w_k,b CE_k,b`` (``w = 1`` without weights).

    Raises:
        ValueError: if the shapes do not broadcast to ``logits``, or ``lapse`` is outside
            ``[0, 1)``.
    """
    if targets.shape != logits.shape:
        if targets.shape != logits.shape[1:]:
            raise ValueError(
                f"targets: expected shape {tuple(logits.shape)} or {tuple(logits.shape[1:])}, "
                f"got {tuple(targets.shape)}"
            )
        targets = targets.expand_as(logits)
    if not 0.0 <= lapse < 1.0:
        raise ValueError(f"lapse: must be in [0, 1), got {lapse}")
    targets = targets.to(logits.dtype)
    if lapse == 0.0:
        per_pair = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    else:  # log P and log(1 - P) of the lapse model, in log space for stability
        floor = torch.full_like(logits, math.log(lapse / 2))
        scale = math.log1p(-lapse)
        log_p = torch.logaddexp(floor, scale + F.logsigmoid(logits))
        log_q = torch.logaddexp(floor, scale + F.logsigmoid(-logits))
        per_pair = -(targets * log_p + (1 - targets) * log_q)
    if weights is not None:
        per_pair = per_pair * weights
    return per_pair.mean(dim=1).sum()


def preference_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of decided (non-equal) queries whose preferred side the model ranks higher.

    Args:
        logits: ``(..., batch)`` float, ``R_left - R_right``.
        targets: ``(batch,)`` float P[left preferred]; queries with target 0.5 are ignored.

    Returns:
        ``(...)`` float accuracy in ``[0, 1]`` (NaN when no query is decided).
    """
    decided = targets != 0.5
    correct = ((logits > 0) == (targets > 0.5)) & decided
    return correct.sum(dim=-1).to(torch.float32) / decided.sum().to(torch.float32)
