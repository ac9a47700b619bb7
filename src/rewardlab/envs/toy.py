"""Small registered toy tasks for tests and demos (fast, fixed horizon, known gold reward).

Importing this module registers ``PointGoal-v0``; Gymnasium imports it on demand with the
module-qualified id, so ``import rewardlab`` stays free of side effects::

    gymnasium.make("rewardlab.envs.toy:PointGoal-v0")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PointGoalEnv(gym.Env[np.ndarray, np.ndarray]):
    """A point in the plane that should move to a goal.

    Observation ``(4,)`` float32: position ``(x, y)`` and goal ``(gx, gy)``, each in [-1, 1]
    (unitless lengths). Action ``(2,)`` float32 in [-1, 1]: velocity; the point moves by
    ``0.1 * action`` per step and is clipped to the square. Reward: ``-||position - goal||``
    after the move (gold reward, per step). Episodes last exactly ``horizon`` steps (truncation
    only, so segment length leaks nothing about the reward).
    """

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 50) -> None:
        self.horizon = horizon
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2, dtype=np.float32)
        self._goal = np.zeros(2, dtype=np.float32)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._goal]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        self._goal = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        self._t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        self._pos = np.clip(self._pos + 0.1 * a, -1.0, 1.0).astype(np.float32)
        self._t += 1
        reward = -float(np.linalg.norm(self._pos - self._goal))
        return self._obs(), reward, False, self._t >= self.horizon, {}


# a string entry point: the env spec serialises (Minari datasets of it record where it lives)
gym.register(id="PointGoal-v0", entry_point="rewardlab.envs.toy:PointGoalEnv", max_episode_steps=50)
