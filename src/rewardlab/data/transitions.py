"""A circular log of transitions from vectorised environments, and segment sampling from it.

Segments for queries must be contiguous pieces of one episode. The log records, per env
column, the observation an action was taken in, the action, the true (gold) reward, an episode
id and the step within the episode, and a global write counter, so that valid windows are found
with array arithmetic (no Python loop over samples).

Gymnasium >= 1.0 autoreset is handled by the writer (the reward wrapper), which always logs the
observation the action was taken in, never the reset observation of the next episode.
"""

from __future__ import annotations

import numpy as np


class TransitionLog:
    """Fixed-capacity circular log of ``(obs, action, true_reward)`` per vectorised env.

    Args:
        capacity: steps kept per env column (oldest overwritten first).
        n_envs: number of parallel environments.
        obs_dim: observation width.
        act_dim: action width.
        state_dim: width of the simulator state recorded for rendering clips (0: none).

    Attributes:
        obs: ``(capacity, n_envs, obs_dim)`` float32.
        actions: ``(capacity, n_envs, act_dim)`` float32.
        true_rewards: ``(capacity, n_envs)`` float32 (NaN where the env gives no gold reward).
        episode_ids: ``(capacity, n_envs)`` int64, unique across envs, -1 where unwritten.
        steps: ``(capacity, n_envs)`` int64 step within the episode.
        states: ``(capacity, n_envs, state_dim)`` float64 simulator states, or ``None``.
    """

    def __init__(
        self, capacity: int, n_envs: int, obs_dim: int, act_dim: int, state_dim: int = 0
    ) -> None:
        if capacity < 1 or n_envs < 1:
            raise ValueError("TransitionLog: capacity and n_envs must be >= 1")
        self.capacity = capacity
        self.n_envs = n_envs
        self.obs = np.zeros((capacity, n_envs, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, n_envs, act_dim), dtype=np.float32)
        self.true_rewards = np.zeros((capacity, n_envs), dtype=np.float32)
        self.episode_ids = np.full((capacity, n_envs), -1, dtype=np.int64)
        self.steps = np.zeros((capacity, n_envs), dtype=np.int64)
        self.states = (
            np.zeros((capacity, n_envs, state_dim), dtype=np.float64) if state_dim > 0 else None
        )
        self.written = 0  # rows written in total (each row = one step of every env)
        self._current_episode = np.arange(n_envs, dtype=np.int64)
        self._next_episode = n_envs
        self._current_step = np.zeros(n_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self._running_return = np.zeros(n_envs, dtype=np.float64)

    @classmethod
    def from_flat(
        cls,
        obs: np.ndarray,
        actions: np.ndarray,
        true_rewards: np.ndarray,
        episode_ids: np.ndarray,
        steps: np.ndarray,
        states: np.ndarray | None = None,
        finished_returns: list[float] | None = None,
    ) -> TransitionLog:
        """A full, read-only-by-convention log of one env column holding given flat arrays.

        Used to cut segments from a fixed dataset (e.g. an offline dataset) with the same
        window code as live experience. The arrays are viewed, not copied, with a
        ``(N, 1, ...)`` env axis; do not :meth:`add` to the result.

        Args:
            obs: ``(N, obs_dim)`` float32 observation each action was taken in.
            actions: ``(N, act_dim)`` float32.
            true_rewards: ``(N,)`` float32 gold reward of each step.
            episode_ids: ``(N,)`` int64; each episode one contiguous block of rows.
            steps: ``(N,)`` int64 step within the episode (consecutive within a block).
            states: ``(N, state_dim)`` float64 simulator states, or ``None``.
            finished_returns: returns the teacher margin is computed from (the log's
                :attr:`finished_returns`); default none.

        Raises:
            ValueError: if the arrays' lengths differ or the log would be empty.
        """
        n = int(np.shape(obs)[0])
        lengths = {len(a) for a in (actions, true_rewards, episode_ids, steps)}
        if states is not None:
            lengths.add(len(states))
        if n < 1 or lengths != {n}:
            raise ValueError(
                f"TransitionLog.from_flat: arrays must share a length N >= 1, got obs {n} and "
                f"{sorted(lengths)}"
            )
        log = cls(1, 1, int(np.shape(obs)[1]), int(np.shape(actions)[1]))
        log.capacity = n
        log.obs = np.asarray(obs, dtype=np.float32)[:, None, :]
        log.actions = np.asarray(actions, dtype=np.float32)[:, None, :]
        log.true_rewards = np.asarray(true_rewards, dtype=np.float32)[:, None]
        log.episode_ids = np.asarray(episode_ids, dtype=np.int64)[:, None]
        log.steps = np.asarray(steps, dtype=np.int64)[:, None]
        log.states = None if states is None else np.asarray(states, dtype=np.float64)[:, None, :]
        log.written = n
        log._next_episode = int(log.episode_ids.max()) + 1
        log.finished_returns = list(finished_returns or [])
        return log

    @property
    def size(self) -> int:
        """Rows currently held (<= capacity)."""
        return min(self.written, self.capacity)

    def add(
        self, obs: np.ndarray, actions: np.ndarray, true_rewards: np.ndarray, dones: np.ndarray,
        states: np.ndarray | None = None,
    ) -> None:
        """Append one step of every env.

        Args:
            obs: ``(n_envs, obs_dim)`` observation each action was taken in.
            actions: ``(n_envs, act_dim)``.
            true_rewards: ``(n_envs,)`` gold reward of the step.
            dones: ``(n_envs,)`` bool, True where the episode ended (terminated or truncated)
                with this step.
            states: ``(n_envs, state_dim)`` simulator state the action was taken in (only
                when the log records states).
        """
        row = self.written % self.capacity
        if self.states is not None and states is not None:
            self.states[row] = states
        self.obs[row] = obs
        self.actions[row] = actions
        self.true_rewards[row] = true_rewards
        self.episode_ids[row] = self._current_episode
        self.steps[row] = self._current_step
        self.written += 1
        self._running_return += true_rewards
        self._current_step += 1
        dones = np.asarray(dones, dtype=bool)
        if dones.any():
            self.finished_returns.extend(self._running_return[dones].tolist())
            self._running_return[dones] = 0.0
            n_done = int(dones.sum())
            self._current_episode[dones] = np.arange(
                self._next_episode, self._next_episode + n_done
            )
            self._next_episode += n_done
            self._current_step[dones] = 0

    def valid_starts(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """All ``(row, env)`` where a window of ``length`` steps stays inside one episode.

        Returns:
            Two ``(M,)`` int64 arrays: row indices and env indices of valid window starts.
        """
        size = self.size
        if size < length:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        oldest = self.written - size
        # logical time of each row, then the row that is length-1 steps later
        logical = np.arange(oldest, self.written - length + 1)
        rows = logical % self.capacity
        ends = (logical + length - 1) % self.capacity
        same = (self.episode_ids[rows] == self.episode_ids[ends]) & (
            self.steps[ends] - self.steps[rows] == length - 1
        )
        r, e = np.nonzero(same)
        return rows[r].astype(np.int64), e.astype(np.int64)

    def windows(
        self, rows: np.ndarray, envs: np.ndarray, length: int
    ) -> dict[str, np.ndarray]:
        """Gather windows starting at ``(rows[i], envs[i])``.

        Returns:
            ``obs (M, length, obs_dim)``, ``actions (M, length, act_dim)``,
            ``true_rewards (M, length)``, ``episode_ids (M,)``, ``start_steps (M,)``, and
            ``states (M, length, state_dim)`` when the log records states.
        """
        idx = (rows[:, None] + np.arange(length)[None, :]) % self.capacity  # (M, L)
        cols = envs[:, None]
        out = {
            "obs": self.obs[idx, cols],
            "actions": self.actions[idx, cols],
            "true_rewards": self.true_rewards[idx, cols],
            "episode_ids": self.episode_ids[rows, envs],
            "start_steps": self.steps[rows, envs],
        }
        if self.states is not None:
            out["states"] = self.states[idx, cols]
        return out

    def sample_windows(
        self, n: int, length: int, rng: np.random.Generator, recent: int | None = None
    ) -> dict[str, np.ndarray]:
        """Sample ``n`` windows uniformly (with replacement) among valid starts.

        Args:
            n: number of windows.
            length: steps per window.
            rng: random generator.
            recent: if set, only windows starting in the last ``recent`` rows written.

        Raises:
            ValueError: if no episode holds a window of ``length`` steps yet.
        """
        rows, envs = self.valid_starts(length)
        if recent is not None and rows.size:
            age = (self.written - 1 - rows) % self.capacity
            keep = age < recent
            if keep.any():
                rows, envs = rows[keep], envs[keep]
        if rows.size == 0:
            raise ValueError(
                f"no window of {length} steps inside one episode yet; collect more steps or "
                "shorten feedback.segment_len"
            )
        pick = rng.integers(0, rows.size, size=n)
        return self.windows(rows[pick], envs[pick], length)

    def recent_flat(self, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The most recent ``max_rows`` rows of all envs as ``(N, obs_dim)``, ``(N, act_dim)``."""
        size = min(self.size, max_rows)
        idx = (np.arange(self.written - size, self.written)) % self.capacity
        return (
            self.obs[idx].reshape(-1, self.obs.shape[-1]),
            self.actions[idx].reshape(-1, self.actions.shape[-1]),
        )


def save_log(log: TransitionLog, path: str) -> None:
    """Write the log to an ``.npz`` file (NumPy arrays only, no pickle)."""
    np.savez(
        path,
        obs=log.obs, actions=log.actions, true_rewards=log.true_rewards,
        episode_ids=log.episode_ids, steps=log.steps,
        counters=np.array([log.written, log._next_episode], dtype=np.int64),
        current_episode=log._current_episode, current_step=log._current_step,
        running_return=log._running_return,
        finished_returns=np.asarray(log.finished_returns, dtype=np.float64),
        **({"states": log.states} if log.states is not None else {}),
    )


def load_log(log: TransitionLog, path: str) -> None:
    """Restore a log written by :func:`save_log` into ``log`` (same capacity and widths).

    Raises:
        ValueError: if the saved arrays' shapes differ from ``log``'s.
    """
    with np.load(path, allow_pickle=False) as data:
        if data["obs"].shape != log.obs.shape or data["actions"].shape != log.actions.shape:
            raise ValueError(
                f"{path}: saved log shape {data['obs'].shape} differs from {log.obs.shape}; "
                "resume with the run's own config (log_capacity, env)"
            )
        log.obs[...] = data["obs"]
        log.actions[...] = data["actions"]
        log.true_rewards[...] = data["true_rewards"]
        log.episode_ids[...] = data["episode_ids"]
        log.steps[...] = data["steps"]
        log.written, log._next_episode = (int(v) for v in data["counters"])
        log._current_episode[...] = data["current_episode"]
        log._current_step[...] = data["current_step"]
        log._running_return[...] = data["running_return"]
        log.finished_returns = data["finished_returns"].tolist()
        if log.states is not None and "states" in data:
            log.states[...] = data["states"]
