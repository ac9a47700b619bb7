"""Toy offline data for the offline-method tests: a contextual bandit whose behaviour data
holds good and bad actions in every state.

State ``s ~ N(0, I_2)``; action ``a = +-0.8 + N(0, 0.1^2)`` with either sign equally likely;
reward ``+1`` if ``sign(a) == sign(s_0)`` else ``-1``; every step terminates (so ``Q = r``).
The best policy plays ``0.8 sign(s_0)``; the behaviour policy is right half of the time.
"""

from __future__ import annotations

import numpy as np
import pytest

from rewardlab.algorithms.offline.common import PreferencePairs, Transitions

OBS_DIM, ACT_DIM = 2, 1


def bandit_steps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    sign = rng.choice([-1.0, 1.0], size=n)
    act = (0.8 * sign + 0.1 * rng.normal(size=n)).clip(-1, 1).astype(np.float32)[:, None]
    reward = np.where(np.sign(act[:, 0]) == np.sign(obs[:, 0]), 1.0, -1.0).astype(np.float32)
    return obs, act, reward


def policy_accuracy(act_fn, rng: np.random.Generator, n: int = 500) -> float:
    """Share of fresh states in which the policy's action has the good sign."""
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    return float((np.sign(act_fn(obs)[:, 0]) == np.sign(obs[:, 0])).mean())


@pytest.fixture
def bandit() -> Transitions:
    rng = np.random.default_rng(123)
    obs, act, rew = bandit_steps(rng, 2000)
    return Transitions(obs, act, rew, rng.normal(size=obs.shape).astype(np.float32),
                       np.ones(len(obs), dtype=bool))


@pytest.fixture
def bandit_pairs() -> PreferencePairs:
    """600 pairs of 3-step bandit segments labelled by their returns (ties: equal)."""
    rng = np.random.default_rng(321)
    m, t = 600, 3
    obs, act, rew = bandit_steps(rng, m * 2 * t)
    returns = rew.reshape(m, 2, t).sum(-1)
    targets = np.where(returns[:, 0] > returns[:, 1], 1.0,
                       np.where(returns[:, 0] < returns[:, 1], 0.0, 0.5)).astype(np.float32)
    return PreferencePairs(obs.reshape(m, 2, t, OBS_DIM), act.reshape(m, 2, t, ACT_DIM), targets)
