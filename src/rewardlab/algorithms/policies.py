"""Stable-Baselines3 policy helpers: frozen reference copies, Gaussian parameters, policy KL.

Gao et al. 2022 ("Scaling Laws for Reward Model Overoptimization") measure how far optimisation
has moved a policy by ``d = sqrt(KL(pi || pi_init))``. Here ``pi_ref`` is a frozen copy of the
policy taken at the first reward-model update, and the KL is the closed form between the two
diagonal Gaussian action distributions (pre-squash for SAC, where KL is invariant under the
squashing), averaged over states (:func:`rewardlab.diagnostics.policy_kl.mean_state_kl`).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.sac.policies import SACPolicy

from rewardlab.diagnostics.policy_kl import kl_gaussian_policies, mean_state_kl


def frozen_copy(policy: BasePolicy) -> BasePolicy:
    """A detached copy of an SB3 policy (rebuilt from its constructor arguments, weights
    copied), in eval mode with gradients off."""
    with torch.random.fork_rng(devices=[]):  # building it must not move the agent's RNG
        copy_ = type(policy)(**policy._get_constructor_parameters())
    copy_.load_state_dict(policy.state_dict())
    copy_.eval()
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


def gaussian_params(policy: BasePolicy, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of an SB3 Gaussian policy at ``obs``.

    For SAC, the Gaussian before the tanh squashing (KL is invariant under the squashing).

    Args:
        policy: an SB3 ``ActorCriticPolicy`` (PPO, diagonal Gaussian) or ``SACPolicy``.
        obs: ``(N, obs_dim)`` float32 states.

    Returns:
        ``(mean (N, act_dim), std (N, act_dim))`` float64.

    Raises:
        TypeError: for a policy whose action distribution is not a diagonal Gaussian.
    """
    if hasattr(policy, "actor_state"):  # SBX policy or snapshot (JAX)
        return _jax_gaussian_params(policy.actor_state, obs)
    obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32))
    with torch.no_grad():
        if isinstance(policy, SACPolicy):
            mean, log_std, _ = policy.actor.get_action_dist_params(obs_t)
            std = log_std.exp()
        else:
            dist = getattr(policy.get_distribution(obs_t), "distribution", None)
            if not isinstance(dist, torch.distributions.Normal):
                raise TypeError(
                    f"{type(policy).__name__}: policy KL needs a diagonal Gaussian policy"
                )
            mean, std = dist.mean, dist.stddev
    mean_np = mean.double().numpy()
    return mean_np, np.broadcast_to(std.double().numpy(), mean_np.shape)


def _jax_gaussian_params(actor_state, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pre-tanh Gaussian of an SBX actor (SAC: variables in ``params``; CrossQ: batch renorm
    statistics apart, evaluated in inference mode)."""
    batch = np.asarray(obs, dtype=np.float32)
    if hasattr(actor_state, "batch_stats"):
        dist = actor_state.apply_fn({"params": actor_state.params,
                                     "batch_stats": actor_state.batch_stats}, batch, train=False)
    else:
        dist = actor_state.apply_fn(actor_state.params, batch)
    base = dist.distribution  # TanhTransformedDistribution over a diagonal Gaussian
    mean = np.asarray(base.mean(), dtype=np.float64)
    return mean, np.broadcast_to(np.asarray(base.stddev(), dtype=np.float64), mean.shape)


def state_kl(policy: BasePolicy, reference: BasePolicy, obs: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 per-state ``KL(pi(.|s) || pi_ref(.|s))`` in nats at ``(N, obs_dim)``."""
    mp, sp = gaussian_params(policy, obs)
    mq, sq = gaussian_params(reference, obs)
    return kl_gaussian_policies(mp, sp, mq, sq)


def policy_distance(
    policy: BasePolicy, reference: BasePolicy, states: np.ndarray
) -> dict[str, float]:
    """``diagnostics/policy_kl`` (mean over ``(N, obs_dim)`` states, nats) and its square root
    ``diagnostics/sqrt_kl`` (Gao et al.'s ``d``)."""
    mp, sp = gaussian_params(policy, states)
    mq, sq = gaussian_params(reference, states)
    kl = mean_state_kl(mp, sp, mq, sq)
    return {"diagnostics/policy_kl": kl, "diagnostics/sqrt_kl": math.sqrt(kl)}


def rollout_pairs(policy: BasePolicy, env: gym.Env, samples: int, seed: int) -> np.ndarray:
    """``(samples, obs_dim + act_dim)`` float32 state-action pairs of the *stochastic*
    ``policy`` in ``env`` (episodes reset with seeds ``seed, seed + 1, ...``; torch's global
    RNG is restored afterwards). Closes ``env``."""
    rows: list[np.ndarray] = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            episode = 0
            while len(rows) < samples:
                obs, _ = env.reset(seed=seed + episode)
                episode += 1
                done = False
                while not done and len(rows) < samples:
                    action = policy.predict(obs, deterministic=False)[0]
                    rows.append(np.concatenate([np.asarray(obs, np.float32).ravel(),
                                                np.asarray(action, np.float32).ravel()]))
                    obs, _, terminated, truncated, _ = env.step(action)
                    done = terminated or truncated
    finally:
        env.close()
    return np.stack(rows)
