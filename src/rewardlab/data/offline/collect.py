"""Recording transitions from a Gymnasium env into offline-dataset columns.

:class:`TransitionColumns` grows one step at a time and becomes an
:class:`~rewardlab.data.offline.record.OfflineDataset`; :class:`RecordingEnv` records the env
it wraps (an agent's training env: its replay buffer, for D4RL's medium-replay);
:func:`collect_episodes` rolls a policy out for whole episodes. Each step also keeps the MuJoCo
state ``concat(qpos, qvel)`` before and after it, for rendering clips. Gymnasium >= 1.0: the
observation recorded with a step is the one its action was taken in; a reset's observation
starts the next episode and never appears as a next observation. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rewardlab.data.offline.record import OfflineDataset

__all__ = ["PolicyFn", "RecordingEnv", "TransitionColumns", "collect_episodes", "mujoco_state"]

#: ``obs (obs_dim,) -> action (act_dim,)``.
PolicyFn = Callable[[np.ndarray], np.ndarray]


def mujoco_state(env: gym.Env) -> np.ndarray | None:
    """``concat(qpos, qvel)`` float64 of a MuJoCo env now, or ``None`` for other envs."""
    data = getattr(env.unwrapped, "data", None)
    if data is None or not hasattr(data, "qpos") or not hasattr(data, "qvel"):
        return None
    return np.concatenate([data.qpos, data.qvel]).astype(np.float64)


class TransitionColumns:
    """Growable per-step columns of transitions, appended one env step at a time.

    Attributes:
        rows: one list per name in :data:`NAMES`: observation the action was taken in,
            action, next observation, reward, terminated, truncated, episode id (from 0),
            step within the episode, MuJoCo state before and after the step (``None`` for
            other envs).
    """

    NAMES = ("observations", "actions", "next_observations", "rewards", "terminations",
             "truncations", "episode_ids", "steps", "render_states", "next_render_states")

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {name: [] for name in self.NAMES}
        self.episode, self.step = 0, 0

    def add(self, obs: Any, action: Any, next_obs: Any, reward: float, terminated: bool,
            truncated: bool, state: np.ndarray | None, next_state: np.ndarray | None) -> None:
        """Append one env step: ``obs``/``next_obs`` ``(obs_dim,)``, ``action``
        ``(act_dim,)``, the true reward, the episode-end flags and the MuJoCo states
        (qpos, qvel; float64) before and after it; an episode end starts the next episode."""
        values = (obs, action, next_obs, reward, terminated, truncated, self.episode, self.step,
                  state, next_state)
        for name, value in zip(self.NAMES, values, strict=True):
            self.rows[name].append(value)
        self.step += 1
        if terminated or truncated:
            self.episode, self.step = self.episode + 1, 0

    def __len__(self) -> int:
        return len(self.rows["rewards"])

    def dataset(self, dataset_id: str, env_id: str, stop: int | None = None,
                refs: tuple[float, float] | None = None) -> tuple[OfflineDataset,
                                                                  np.ndarray | None]:
        """The first ``stop`` rows (default all) as a dataset, the last step marked truncated
        if its episode goes on, and ``(E, state_dim)`` final render states (or ``None``)."""
        n = len(self) if stop is None else stop
        rows = {name: values[:n] for name, values in self.rows.items()}
        truncations = np.asarray(rows["truncations"], dtype=bool)
        terminations = np.asarray(rows["terminations"], dtype=bool)
        truncations[-1] |= not terminations[-1]  # cut by the end of the data
        has_states = rows["render_states"][0] is not None
        ds = OfflineDataset(
            observations=np.asarray(rows["observations"], dtype=np.float32),
            actions=np.asarray(rows["actions"], dtype=np.float32),
            next_observations=np.asarray(rows["next_observations"], dtype=np.float32),
            rewards=np.asarray(rows["rewards"], dtype=np.float32),
            terminations=terminations, truncations=truncations,
            episode_ids=np.asarray(rows["episode_ids"], dtype=np.int64),
            steps=np.asarray(rows["steps"], dtype=np.int64),
            dataset_id=dataset_id, env_id=env_id,
            render_states=np.asarray(rows["render_states"]) if has_states else None,
            ref_min_score=None if refs is None else refs[0],
            ref_max_score=None if refs is None else refs[1],
        )
        finals = None
        if has_states:
            last = np.r_[ds.episode_starts[1:], ds.n_steps] - 1
            finals = np.asarray(rows["next_render_states"])[last]
        return ds, finals


class RecordingEnv(gym.Wrapper):
    """Records every transition of the env it wraps (e.g. an agent's training env, so its
    replay buffer can be kept as a dataset) in :attr:`columns`."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.columns = TransitionColumns()
        self._obs: Any = None

    def reset(self, **kwargs: Any) -> Any:
        """Reset the wrapped env and remember the first observation."""
        self._obs, info = self.env.reset(**kwargs)
        return self._obs, info

    def step(self, action: Any) -> Any:
        """Step the wrapped env and record the transition in :attr:`columns`."""
        state = mujoco_state(self.env)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.columns.add(np.ravel(self._obs), np.ravel(action), np.ravel(next_obs),
                         float(reward), bool(terminated), bool(truncated), state,
                         mujoco_state(self.env))
        self._obs = next_obs
        return next_obs, reward, terminated, truncated, info


def collect_episodes(env: gym.Env, policy: PolicyFn, min_steps: int, seed: int,
                     on_step: Callable[[int], None] | None = None) -> TransitionColumns:
    """Whole episodes of ``policy`` until at least ``min_steps`` steps (resets seeded
    ``seed, seed + 1, ...``); ``on_step(steps so far)`` after each episode."""
    columns = TransitionColumns()
    episode = 0
    while len(columns) < min_steps:
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            state = mujoco_state(env)
            action = np.asarray(policy(obs), dtype=np.float32).reshape(env.action_space.shape)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            columns.add(np.ravel(obs), np.ravel(action), np.ravel(next_obs), float(reward),
                        bool(terminated), bool(truncated), state, mujoco_state(env))
            obs, done = next_obs, terminated or truncated
        episode += 1
        if on_step is not None:
            on_step(len(columns))
    return columns
