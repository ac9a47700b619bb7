"""The offline dataset record: flat, checked arrays of transitions in episode order (D4RL).

Also the D4RL normalised score and concatenation of datasets (medium-expert). Pure NumPy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardlab.data.transitions import TransitionLog
from rewardlab.errors import DatasetError

__all__ = ["OfflineDataset", "concatenate", "normalized_score"]


def _floats(name: str, value: Any, ndim: int, dtype: type = np.float32) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise DatasetError(f"OfflineDataset.{name}: expected {ndim} dimensions, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DatasetError(f"OfflineDataset.{name}: expected floats, got dtype {arr.dtype}")
    arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        raise DatasetError(f"OfflineDataset.{name}: contains NaN or infinite values")
    return arr


def _ints(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DatasetError(
            f"OfflineDataset.{name}: expected a 1-d integer array, got {arr.dtype} {arr.shape}"
        )
    return arr.astype(np.int64, copy=False)


def _bools(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.dtype != np.bool_:
        raise DatasetError(
            f"OfflineDataset.{name}: expected a 1-d bool array, got {arr.dtype} {arr.shape}"
        )
    return arr


@dataclass(frozen=True, eq=False)  # identity equality: == on array fields is ambiguous
class OfflineDataset:
    """A fixed dataset of ``N`` transitions, episodes one after the other (D4RL layout).

    Attributes:
        observations: ``(N, obs_dim)`` float32, the observation each action was taken in.
        actions: ``(N, act_dim)`` float32, in the env's action units.
        next_observations: ``(N, obs_dim)`` float32, the observation after the step (the final
            observation at a termination or truncation, never a reset one).
        rewards: ``(N,)`` float32 TRUE (environment) reward of each step: for gold evaluation
            and the true-reward reference only, never for learning from preferences.
        terminations: ``(N,)`` bool, the step ended the episode in a terminal state.
        truncations: ``(N,)`` bool, the episode was cut after the step (time limit, or the
            end of the data collected).
        episode_ids: ``(N,)`` int64; each episode is one contiguous block of rows and no id
            occurs in two blocks.
        steps: ``(N,)`` int64 step within the episode, counting up by 1 inside a block.
        dataset_id: the Minari id, e.g. ``"rewardlab/halfcheetah/medium-replay-v0"``.
        env_id: the Gymnasium id of the env the data comes from, e.g. ``"HalfCheetah-v5"``.
        render_states: ``(N, nq + nv)`` float64 MuJoCo state ``concat(qpos, qvel)`` each
            action was taken in (for rendering clips of segments), or ``None``.
        ref_min_score: mean episode return of a uniformly random policy (D4RL's
            ``REF_MIN_SCORE``), or ``None`` when the dataset has none.
        ref_max_score: mean episode return of the expert policy (``REF_MAX_SCORE``), or
            ``None``.

    Raises:
        DatasetError: naming the field, on a wrong shape or dtype, non-finite values, lengths
            that differ, an episode split over two blocks, steps that do not count up by 1
            inside an episode, or a step after a termination/truncation in the same episode.
    """

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_ids: np.ndarray
    steps: np.ndarray
    dataset_id: str
    env_id: str
    render_states: np.ndarray | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None

    def __post_init__(self) -> None:
        obs = _floats("observations", self.observations, 2)
        n = obs.shape[0]
        if n < 1:
            raise DatasetError("OfflineDataset.observations: a dataset needs at least one step")
        fields: dict[str, np.ndarray] = {
            "observations": obs,
            "actions": _floats("actions", self.actions, 2),
            "next_observations": _floats("next_observations", self.next_observations, 2),
            "rewards": _floats("rewards", self.rewards, 1),
            "terminations": _bools("terminations", self.terminations),
            "truncations": _bools("truncations", self.truncations),
            "episode_ids": _ints("episode_ids", self.episode_ids),
            "steps": _ints("steps", self.steps),
        }
        if self.render_states is not None:
            fields["render_states"] = _floats("render_states", self.render_states, 2, np.float64)
        for name, arr in fields.items():
            if arr.shape[0] != n:
                raise DatasetError(f"OfflineDataset.{name}: {arr.shape[0]} rows, expected {n}")
        if fields["next_observations"].shape != obs.shape:
            raise DatasetError(
                f"OfflineDataset.next_observations: shape {fields['next_observations'].shape}, "
                f"expected {obs.shape} like observations"
            )
        for name, arr in fields.items():
            object.__setattr__(self, name, arr)
        for name in ("dataset_id", "env_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise DatasetError(f"OfflineDataset.{name}: must be a non-empty string")
        for name in ("ref_min_score", "ref_max_score"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not np.isfinite(float(value)):
                    raise DatasetError(f"OfflineDataset.{name}: must be a finite number")
                object.__setattr__(self, name, float(value))
        self._check_episodes()

    def _check_episodes(self) -> None:
        ids, steps = self.episode_ids, self.steps
        starts = self.episode_starts
        blocks = ids[starts]
        unique, counts = np.unique(blocks, return_counts=True)
        if unique.size != blocks.size:
            split = unique[counts > 1][:5].tolist()
            raise DatasetError(
                f"OfflineDataset.episode_ids: episodes {split} occur in more than one block of "
                "rows; each episode must be contiguous"
            )
        if np.any(steps < 0):
            raise DatasetError("OfflineDataset.steps: must be >= 0")
        inside = np.ones(ids.size, dtype=bool)
        inside[starts] = False  # rows that continue the episode of the row before
        bad = np.flatnonzero(inside[1:] & (steps[1:] != steps[:-1] + 1)) + 1
        if bad.size:
            i = int(bad[0])
            raise DatasetError(
                f"OfflineDataset.steps: episode {int(ids[i])} goes from step {int(steps[i - 1])} "
                f"to {int(steps[i])} at row {i}; steps must count up by 1 inside an episode"
            )
        done = self.terminations | self.truncations
        after = np.flatnonzero(done[:-1] & inside[1:])
        if after.size:
            i = int(after[0])
            raise DatasetError(
                f"OfflineDataset.terminations/truncations: episode {int(ids[i])} ends at row {i} "
                "but goes on; a terminated or truncated step must be its episode's last"
            )

    # ------------------------------------------------------------------ shape
    @property
    def n_steps(self) -> int:
        """Number of transitions ``N``."""
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        """Observation width."""
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action width."""
        return int(self.actions.shape[1])

    @property
    def episode_starts(self) -> np.ndarray:
        """``(E,)`` int64 row of each episode's first step, in order."""
        ids = self.episode_ids
        return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]).astype(np.int64)

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``E`` (a last episode cut by the end of the data counts)."""
        return int(self.episode_starts.size)

    def episode_lengths(self) -> np.ndarray:
        """``(E,)`` int64 steps per episode."""
        return np.diff(np.r_[self.episode_starts, self.n_steps]).astype(np.int64)

    def episode_returns(self) -> np.ndarray:
        """``(E,)`` float64 undiscounted true return of each episode (in the env's reward
        units), in order."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    def transition_log(self) -> TransitionLog:
        """The dataset as a one-column :class:`~rewardlab.data.transitions.TransitionLog`
        (arrays viewed, not copied), so segments are cut from it by the same window code as
        from live experience: a window never crosses an episode boundary."""
        return TransitionLog.from_flat(
            self.observations, self.actions, self.rewards, self.episode_ids, self.steps,
            self.render_states,
        )

    def fingerprint(self) -> str:
        """A content hash of the data: 16 hex digits of the SHA-256 of the transition arrays
        (observations, actions, next observations, rewards, terminations, truncations,
        episode ids, steps, in that order, as stored) and the reference scores. Equal for the
        same data under any id or path; any changed value changes it. Benchmarks record it
        so runs on two generations of a dataset made locally (e.g. on two machines) are told
        apart.

        Returns:
            16 lowercase hex digits (the first 64 bits of the SHA-256). Raises nothing: the
            arrays were checked when the dataset was built.
        """
        h = hashlib.sha256()
        for arr in (self.observations, self.actions, self.next_observations, self.rewards,
                    self.terminations, self.truncations, self.episode_ids, self.steps):
            h.update(str((arr.dtype.str, arr.shape)).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(repr((self.ref_min_score, self.ref_max_score)).encode())
        return h.hexdigest()[:16]

    def normalized_score(self, returns: float | np.ndarray) -> float | np.ndarray:
        """D4RL normalised score of ``returns`` against this dataset's reference scores.

        Raises:
            DatasetError: if the dataset has no ``ref_min_score``/``ref_max_score``.
        """
        if self.ref_min_score is None or self.ref_max_score is None:
            raise DatasetError(
                f"{self.dataset_id}: no ref_min_score/ref_max_score in its metadata, so no "
                "normalised score"
            )
        return normalized_score(returns, self.ref_min_score, self.ref_max_score)

    def behaviour_score(self) -> float | None:
        """D4RL normalised score (:meth:`normalized_score`; 0 random, 100 expert) of the mean
        true episode return of the data, i.e. of the policy that collected it; None for a
        dataset without reference scores. Raises nothing."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return float(self.normalized_score(self.episode_returns().mean()))


def normalized_score(
    returns: float | np.ndarray, random_score: float, expert_score: float
) -> float | np.ndarray:
    """D4RL normalised score: ``100 * (return - random) / (expert - random)``.

    0 is the return of a uniformly random policy and 100 that of the expert (Fu et al. 2020,
    Sec. 6; Minari's ``get_normalized_score`` is the same without the factor 100).

    Args:
        returns: undiscounted episode return(s), in the env's reward units.
        random_score: the random policy's mean return (``ref_min_score``).
        expert_score: the expert policy's mean return (``ref_max_score``).

    Returns:
        A float for a scalar ``returns``, else a float64 array of its shape.

    Raises:
        ValueError: if a reference score is not finite or both are equal.
    """
    lo, hi = float(random_score), float(expert_score)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi == lo:
        raise ValueError(
            f"normalized_score: needs finite, different reference scores, got random {lo} and "
            f"expert {hi}"
        )
    scores = 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)
    return float(scores) if scores.ndim == 0 else scores


def concatenate(datasets: Sequence[OfflineDataset], dataset_id: str) -> OfflineDataset:
    """Datasets one after the other, e.g. D4RL's medium-expert (medium, then expert).

    Episode ids are renumbered ``0 .. E-1`` in order; reference scores are kept when all
    datasets agree on them (else ``None``); render states only when every dataset has them.

    Raises:
        DatasetError: if ``datasets`` is empty or they come from different envs or widths.
    """
    if not datasets:
        raise DatasetError("concatenate: no datasets given")
    envs = {d.env_id for d in datasets}
    widths = {(d.obs_dim, d.act_dim) for d in datasets}
    if len(envs) > 1 or len(widths) > 1:
        raise DatasetError(
            f"concatenate: datasets of different envs or widths: {sorted(envs)} {sorted(widths)}"
        )
    offsets = np.cumsum([0] + [d.n_episodes for d in datasets[:-1]])
    renumbered = []
    for d, offset in zip(datasets, offsets, strict=True):
        block = np.cumsum(np.r_[0, d.episode_ids[1:] != d.episode_ids[:-1]])  # 0 .. E-1
        renumbered.append(block + offset)
    states = (
        np.concatenate([d.render_states for d in datasets])  # type: ignore[misc]
        if all(d.render_states is not None for d in datasets) else None
    )
    refs = {(d.ref_min_score, d.ref_max_score) for d in datasets}
    ref_min, ref_max = refs.pop() if len(refs) == 1 else (None, None)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(d, name) for d in datasets])

    return OfflineDataset(
        observations=cat("observations"), actions=cat("actions"),
        next_observations=cat("next_observations"), rewards=cat("rewards"),
        terminations=cat("terminations"), truncations=cat("truncations"),
        episode_ids=np.concatenate(renumbered).astype(np.int64), steps=cat("steps"),
        dataset_id=dataset_id, env_id=datasets[0].env_id, render_states=states,
        ref_min_score=ref_min, ref_max_score=ref_max,
    )
