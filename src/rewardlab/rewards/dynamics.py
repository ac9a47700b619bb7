"""REED's self-future-consistency (SFC) task: dynamics-aware reward representations.

Source: Metcalf et al. 2023, "Sample-Efficient Preference-based Reinforcement Learning with
Dynamics Aware Rewards" (REED, CoRL 2023; reference code github.com/apple/ml-reed). Each reward
member encodes the state (``obs -> state_embed``) and the action (``action -> action_embed``)
separately, feeds both embeddings through its hidden layers to a state-action representation
``z_sa``, and reads the reward from ``z_sa`` with one linear layer. Before each preference fit
every member is trained to predict, from ``z_sa`` of ``(s_t, a_t)``, the embedding of the next
state ``s_{t+1}`` under its own state encoder: a SimSiam-style objective (the reference's
``distillation_reed``; reed/models/self_predictive_representations_model.py,
``StateActionSelfPredictiveRepresentationsNetwork``, here
:class:`rewardlab.rewards.ensemble.DynamicsHeads`, and
reed/algorithms/next_state_representation_consistency.py)::

    p = h(g(f(z_sa)))              f: hidden -> state_embed, g: state_embed -> comparison,
    t = stopgrad(g(enc_s(s')))     h: comparison -> comparison / 8 -> comparison (BN, ReLU)
    loss = -cos(p, t)              mean over transitions, summed over members

Every weight but the reward's output layer is shared between the two tasks, so the preference
fit starts from (and fine-tunes) an encoder that already reflects the environment's dynamics.
The heads here are the reference's state-observation heads; what differs from it is stated in
:class:`rewardlab.config.RewardModelConfig` (``architecture``, ``sfc_*``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rewardlab.data.transitions import TransitionLog


def consistency_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SimSiam's negative cosine similarity (REED's SFC loss, not symmetrised).

    Args:
        predicted: ``(K, N, D)`` float32 predicted next-state embeddings.
        target: ``(K, N, D)`` float32 target embeddings (detached by the caller).

    Returns:
        Scalar: the mean over transitions of ``-cos``, summed over members.
    """
    return -nn.functional.cosine_similarity(predicted, target, dim=-1).mean(dim=1).sum()


def dynamics_transitions(
    log: TransitionLog, max_transitions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transitions ``(s_t, a_t, s_{t+1})`` of the run's experience for the SFC task.

    Only steps followed by a step of the same episode count (an episode's last step has no
    next observation in the log). REED trains on the whole replay buffer; above
    ``max_transitions`` a uniform sample without replacement keeps each fit's cost bounded.

    Args:
        log: the run's transitions.
        max_transitions: most transitions returned (0: all).
        rng: draws the sample.

    Returns:
        ``obs (N, obs_dim)``, ``actions (N, act_dim)``, ``next_obs (N, obs_dim)``, float32
        (``N = 0`` before any episode holds two steps). Raises nothing.
    """
    rows, envs = log.valid_starts(2)
    if max_transitions and rows.size > max_transitions:
        keep = np.sort(rng.choice(rows.size, size=max_transitions, replace=False))
        rows, envs = rows[keep], envs[keep]
    pairs = log.windows(rows, envs, 2)
    return pairs["obs"][:, 0], pairs["actions"][:, 0], pairs["obs"][:, 1]
