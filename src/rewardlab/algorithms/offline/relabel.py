"""The reward an offline agent trains on: a dataset relabelled with a learned reward, rescaled.

Sources: Kostrikov et al. 2022 (IQL), whose code rescales D4RL locomotion rewards by
``scale / (max - min episode return)`` with ``scale`` the episode limit (1000); Kim et al. 2023
(Preference Transformer), whose ``train_offline.py`` does the same to a learned reward and
then adds 0.5 on locomotion tasks, and relabels each step with the transformer's ``r_t`` in the
context of its episode. Pure NumPy around the reward models' own predict calls.
"""

from __future__ import annotations

import numpy as np

from rewardlab.algorithms.offline.iql import return_spread
from rewardlab.config import OfflineConfig
from rewardlab.data.offline import OfflineDataset
from rewardlab.diagnostics.reward_eval import rank_correlation
from rewardlab.errors import ConfigError
from rewardlab.rewards.model import RewardModel
from rewardlab.rewards.preference_transformer import PreferenceTransformer

__all__ = ["LearnedReward", "episode_end_flags", "learned_step_rewards", "rescaling",
           "reward_checks"]

#: A reward model an offline run learns: the Markovian ensemble or the Preference Transformer.
LearnedReward = RewardModel | PreferenceTransformer


def episode_end_flags(dataset: OfflineDataset) -> np.ndarray:
    """``(N,)`` bool, True at the last row of each episode of ``dataset``."""
    ends = np.zeros(dataset.n_steps, dtype=bool)
    ends[np.r_[dataset.episode_starts[1:], dataset.n_steps] - 1] = True
    return ends


def learned_step_rewards(model: LearnedReward, obs: np.ndarray, actions: np.ndarray,
                         ends: np.ndarray, window: int) -> np.ndarray:
    """``(N,)`` float32 learned reward of flat episodes ``obs (N, obs_dim)``, ``actions (N,
    act_dim)``, ``ends (N,)`` bool: the MLP ensemble's standardised reward, or the Preference
    Transformer's ``r_t`` at the end of the ``window``-step stretch of its episode ending at t
    (:meth:`PreferenceTransformer.relabel`)."""
    if isinstance(model, PreferenceTransformer):
        return model.relabel(obs, actions, ends, window)
    return model.reward(obs, actions)


def rescaling(raw: np.ndarray, ends: np.ndarray, offline: OfflineConfig, episode_limit: int,
              learned: bool) -> tuple[float, float]:
    """``(factor, shift)`` of the training reward ``raw * factor + shift``.

    With ``offline.normalize_rewards``: ``factor = scale / (max - min episode return of raw)``
    (``scale``: ``offline.reward_scale``, default the episode limit) and ``shift =
    offline.reward_shift`` (default 0.5 for a learned reward, 0 for the true one); else
    ``(1, 0)``.

    Args:
        raw: ``(N,)`` per-step rewards of the dataset, episodes one after the other.
        ends: ``(N,)`` bool episode ends.
        offline: the ``offline`` config section.
        episode_limit: the env's time limit, in steps.
        learned: whether ``raw`` is a learned reward.

    Raises:
        ConfigError: naming ``offline.normalize_rewards`` if every episode has the same return.
    """
    if not offline.normalize_rewards:
        return 1.0, 0.0
    spread = return_spread(raw, ends)
    if not spread > 0:
        raise ConfigError(
            "offline.normalize_rewards: every episode of the dataset has the same return under "
            "the training reward, so it cannot be rescaled by their spread; set "
            "offline.normalize_rewards=false"
        )
    shift = offline.reward_shift if offline.reward_shift is not None else (
        0.5 if learned else 0.0)
    return float((offline.reward_scale or episode_limit) / spread), float(shift)


def reward_checks(dataset: OfflineDataset, rewards: np.ndarray) -> dict[str, float]:
    """How the training reward ranks the dataset against gold: Spearman correlation of the
    per-step rewards and of the episode returns with the true ones (``reward_model/``)."""
    starts = dataset.episode_starts
    return {
        "reward_model/dataset_step_spearman": rank_correlation(
            rewards.astype(np.float64), dataset.rewards.astype(np.float64)),
        "reward_model/dataset_return_spearman": rank_correlation(
            np.add.reduceat(rewards.astype(np.float64), starts), dataset.episode_returns()),
    }
