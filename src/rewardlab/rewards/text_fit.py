"""Fitting a :class:`~rewardlab.rewards.text_model.TextRewardEnsemble` on labelled text pairs.

:func:`fit_ensemble` fine-tunes every member with the shared Bradley-Terry cross-entropy
(Christiano et al. 2017, Eq. 1; :func:`rewardlab.rewards.bradley_terry.bradley_terry_loss`)
against soft targets P[left preferred], with AdamW at a constant learning rate; each member
draws its own permutation of the training pairs every epoch (PEBBLE's bootstrapped order), and
all members step together, each batched over ``(batch * 2, seq)``.
:meth:`TextRewardEnsemble.fit <rewardlab.rewards.text_model.TextRewardEnsemble.fit>` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from rewardlab.rewards.bradley_terry import bradley_terry_loss, preference_accuracy

if TYPE_CHECKING:
    from rewardlab.rewards.text_model import TextPair, TextRewardEnsemble


def fit_ensemble(
    ensemble: TextRewardEnsemble,
    pairs: Sequence[TextPair],
    targets: np.ndarray,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 1e-4,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> list[dict[str, float]]:
    """Fine-tune every member of ``ensemble`` on labelled pairs (AdamW, constant learning rate).

    Pairs whose target is NaN (``Label.SKIP`` through ``rewardlab.types.LABEL_TARGETS``) are
    dropped. A random ``val_fraction`` of the rest (drawn with ``seed``) is held out. Each
    epoch every member draws its own permutation of the training pairs.

    Args:
        ensemble: the ensemble; its members are trained in place and left in eval mode.
        pairs: N ``(prompt, left completion, right completion)`` texts.
        targets: ``(N,)`` float P[left preferred]: 1 LEFT, 0 RIGHT, 0.5 EQUAL, NaN SKIP.
        epochs: passes over the training pairs (>= 1).
        batch_size: pairs per optimiser step.
        lr: AdamW learning rate.
        seed: seeds the split and the shuffles.
        val_fraction: held-out share in [0, 1).

    Returns:
        One row per epoch: ``epoch``, ``train_loss`` and ``train_accuracy`` (members' mean
        over the epoch's batches), ``val_loss`` and ``val_accuracy`` (members' mean on the
        held-out pairs after the epoch; NaN without held-out pairs).

    Raises:
        ValueError: on mismatched lengths, targets outside [0, 1], no usable pair or a bad
            argument.
    """
    targets = np.asarray(targets, dtype=np.float32)
    if targets.shape != (len(pairs),):
        raise ValueError(f"targets: expected shape ({len(pairs)},), got {targets.shape}")
    if epochs < 1 or batch_size < 1 or not 0 <= val_fraction < 1:
        raise ValueError("epochs and batch_size: must be >= 1; val_fraction: in [0, 1)")
    keep = np.flatnonzero(~np.isnan(targets))
    if np.any((targets[keep] < 0) | (targets[keep] > 1)):
        raise ValueError("targets: must be P[left preferred] in [0, 1] or NaN (skip)")
    if keep.size == 0:
        raise ValueError("fit: no labelled pair (all targets NaN)")
    rng = np.random.default_rng(seed)
    keep = rng.permutation(keep)
    n_val = int(round(val_fraction * keep.size))
    val_idx, train_idx = keep[:n_val], keep[n_val:]
    if train_idx.size == 0:
        raise ValueError("val_fraction: leaves no pair to train on; lower it")
    ids, mask = ensemble.tokenize_pairs([pairs[i] for i in train_idx])
    y = torch.from_numpy(targets[train_idx])
    val = None
    if n_val:
        vids, vmask = ensemble.tokenize_pairs([pairs[i] for i in val_idx])
        val = (vids, vmask, torch.from_numpy(targets[val_idx]))
    optimizer = torch.optim.AdamW(
        ensemble.members.parameters(), lr=lr, weight_decay=ensemble.config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    k, n = ensemble.config.members, train_idx.size
    history = []
    for epoch in range(1, epochs + 1):
        ensemble.members.train()
        order = torch.argsort(torch.rand(k, n, generator=gen), dim=1)  # (K, n)
        loss_sum, acc_sum, batches = 0.0, 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]  # (K, b)
            logits = ensemble.pair_logits(ids, mask, idx)  # (K, b)
            loss = bradley_terry_loss(logits, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if ensemble.config.max_grad_norm > 0:
                for member in ensemble.members:
                    nn.utils.clip_grad_norm_(member.parameters(), ensemble.config.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                loss_sum += float(loss) / k
                acc_sum += float(_batched_accuracy(logits, y[idx]).nanmean())
            batches += 1
        row = {"epoch": float(epoch), "train_loss": loss_sum / batches,
               "train_accuracy": acc_sum / batches,
               "val_loss": math.nan, "val_accuracy": math.nan}
        if val is not None:
            row["val_loss"], row["val_accuracy"] = _validate(ensemble, *val)
        history.append(row)
    ensemble.members.eval()
    return history


@torch.inference_mode()
def _validate(ensemble: TextRewardEnsemble, ids: torch.Tensor, mask: torch.Tensor,
              y: torch.Tensor) -> tuple[float, float]:
    """Members' mean loss and accuracy on held-out pairs ``ids``/``mask`` ``(n, 2, L)`` int64
    with targets ``y`` ``(n,)`` float32."""
    ensemble.members.eval()
    logits = ensemble.chunked_pair_logits(ids, mask)
    loss = float(bradley_terry_loss(logits, y)) / ensemble.config.members
    return loss, float(preference_accuracy(logits, y).mean())


def _batched_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-member accuracy when each member has its own targets: ``(K, b)`` -> ``(K,)``."""
    decided = targets != 0.5
    correct = ((logits > 0) == (targets > 0.5)) & decided
    return correct.sum(dim=1).float() / decided.sum(dim=1).float()
