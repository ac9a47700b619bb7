"""Gold-versus-proxy evaluation of a policy on the same episodes.

Every evaluation rolls out the deterministic policy for a few episodes on a separate env and
reports, for the *same* episodes, the true (gold) return and the learned (proxy) return the
agent optimises, plus the ensemble disagreement on the policy's own states. A proxy return that
keeps rising while the gold return falls is the signature of reward over-optimisation
(Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rewardlab.rewards.model import RewardModel

#: ``obs (obs_dim,) -> action (act_dim,)`` deterministic policy.
Policy = Callable[[np.ndarray], np.ndarray]
#: ``(obs (N, obs_dim), actions (N, act_dim), ends (N,) bool) -> (N,)`` per-step proxy reward of
#: episodes laid end to end (``ends`` marks each episode's last step, for non-Markovian models).
StepRewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
#: ``(obs (N, obs_dim), actions (N, act_dim)) -> float`` ensemble disagreement on the steps.
DisagreementFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class EvalResult:
    """Per-episode results of one evaluation.

    Attributes:
        gold_returns: ``(episodes,)`` float64 undiscounted true returns.
        proxy_returns: ``(episodes,)`` float64 undiscounted returns under the agent's proxy
            reward (NaN before a reward model exists).
        lengths: ``(episodes,)`` int64 episode lengths in steps.
        disagreement: mean over visited steps of the ensemble's std of the per-step reward
            (raw member outputs; NaN without a reward model).
        states: ``(sum(lengths), obs_dim)`` float32 observations the actions were taken in,
            episodes concatenated (for policy-distance diagnostics); None if not kept.
    """

    gold_returns: np.ndarray
    proxy_returns: np.ndarray
    lengths: np.ndarray
    disagreement: float
    states: np.ndarray | None = None

    def metrics(self) -> dict[str, float]:
        """Namespaced metrics: ``eval/gold_return`` (mean), ``eval/proxy_return`` and more."""
        return {
            "eval/gold_return": float(self.gold_returns.mean()),
            "eval/gold_return_std": float(self.gold_returns.std()),
            "eval/proxy_return": float(np.mean(self.proxy_returns)),
            "eval/proxy_return_std": float(np.std(self.proxy_returns)),
            "eval/episode_length": float(self.lengths.mean()),
            "reward_model/disagreement_on_policy": self.disagreement,
        }


def rollout_episodes(
    env: gym.Env, policy: Policy, episodes: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """Run ``episodes`` episodes, seeding resets with ``seed, seed+1, ...``.

    Returns:
        One dict per episode: ``obs (T, obs_dim)`` (the state each action was taken in),
        ``actions (T, act_dim)`` and ``rewards (T,)`` float32.
    """
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        obs_list, act_list, rew_list = [], [], []
        done = False
        while not done:
            action = policy(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            obs_list.append(np.asarray(obs, dtype=np.float32))
            act_list.append(np.asarray(action, dtype=np.float32).reshape(-1))
            rew_list.append(float(reward))
            obs = next_obs
            done = terminated or truncated
        out.append({
            "obs": np.stack(obs_list),
            "actions": np.stack(act_list),
            "rewards": np.asarray(rew_list, dtype=np.float32),
        })
    return out


def evaluate(
    env: gym.Env, policy: Policy, reward_model: RewardModel | None, episodes: int, seed: int
) -> EvalResult:
    """Gold and proxy returns of the same deterministic-policy episodes.

    The proxy reward of all visited steps is computed in one batched call.
    """
    eps = rollout_episodes(env, policy, episodes, seed)
    lengths = np.array([len(e["rewards"]) for e in eps], dtype=np.int64)
    gold = np.array([float(e["rewards"].sum()) for e in eps])
    obs = np.concatenate([e["obs"] for e in eps])
    if reward_model is None:
        return EvalResult(gold, np.full(episodes, np.nan), lengths, float("nan"), obs)
    actions = np.concatenate([e["actions"] for e in eps])
    members = reward_model.predict_members(obs, actions)  # (K, N)
    reduced = reward_model.reduce(members)
    proxy_steps = (reduced - reward_model.reward_mean) / reward_model.reward_std
    bounds = np.cumsum(lengths)[:-1]
    proxy = np.array([float(p.sum()) for p in np.split(proxy_steps, bounds)])
    return EvalResult(gold, proxy, lengths, float(members.std(axis=0).mean()), obs)


def evaluate_episodes(
    env: gym.Env, policy: Policy, episodes: int, seed: int,
    proxy: StepRewardFn | None = None, disagreement: DisagreementFn | None = None,
) -> EvalResult:
    """Gold and proxy returns of the same deterministic-policy episodes, for any proxy reward.

    The general form of :func:`evaluate` (whose proxy is a :class:`RewardModel`'s standardised
    reward): the offline loop passes the reward its agent trained on, e.g. a Preference
    Transformer's per-step reward in the context of each episode, rescaled as the dataset was.
    All visited steps go through ``proxy`` in one batched call.

    Args:
        env: the evaluation env (its true reward is the gold return).
        policy: deterministic ``obs -> action``.
        episodes: episodes to roll out; reset seeds ``seed, seed + 1, ...``.
        seed: reset seed of the first episode.
        proxy: per-step proxy reward (``None``: proxy returns are NaN).
        disagreement: ensemble disagreement on the visited steps (``None``: NaN).

    Returns:
        The :class:`EvalResult` (undiscounted returns; proxy returns in the proxy's units).
    """
    eps = rollout_episodes(env, policy, episodes, seed)
    lengths = np.array([len(e["rewards"]) for e in eps], dtype=np.int64)
    gold = np.array([float(e["rewards"].sum()) for e in eps])
    obs = np.concatenate([e["obs"] for e in eps])
    actions = np.concatenate([e["actions"] for e in eps])
    proxy_returns = np.full(episodes, np.nan)
    if proxy is not None:
        ends = np.zeros(obs.shape[0], dtype=bool)
        ends[np.cumsum(lengths) - 1] = True
        steps = np.asarray(proxy(obs, actions, ends), dtype=np.float64)
        proxy_returns = np.add.reduceat(steps, np.r_[0, np.cumsum(lengths)[:-1]])
    spread = float("nan") if disagreement is None else float(disagreement(obs, actions))
    return EvalResult(gold, proxy_returns, lengths, spread, obs)
