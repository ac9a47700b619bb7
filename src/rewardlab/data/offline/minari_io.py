"""Minari storage of offline datasets: ids, the local root, reading, writing, listing.

A dataset with id ``(namespace/)name-vN`` is the directory ``<root>/<id>/data``
(``metadata.json`` and the episodes; RewardLab writes HDF5, Minari's default format), where
``<root>`` is ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``). In a Minari episode of
``T`` steps there are ``T + 1`` observations (the last is the final observation), ``T``
actions, rewards, terminations and truncations, and ``infos``, a dict of arrays of ``T + 1``
rows (the reset info, then one per step: the convention of Minari's ``DataCollector``).
RewardLab keeps the MuJoCo state ``concat(qpos, qvel)`` in ``infos["render_state"]`` (row ``t``:
the state observation ``t`` was taken in; row ``T``: the final state). Nothing is ever
downloaded. Minari is imported when a dataset is read or written; never torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.data.offline.record import OfflineDataset
from rewardlab.errors import DatasetError, MissingDatasetError

__all__ = [
    "DATA_FORMAT", "KNOWN_ENVS", "METADATA_KEY", "NAMESPACE", "RENDER_STATE_KEY", "TIERS",
    "dataset_metadata", "datasets_root", "env_slug", "final_render_states",
    "list_offline_datasets",
    "load_offline_dataset", "parse_dataset_id", "tier_dataset_id", "write_minari_dataset",
]

#: The D4RL tiers RewardLab generates (Fu et al. 2020, Sec. 5 "Gym-MuJoCo").
TIERS = ("random", "medium", "medium-replay", "expert", "medium-expert")
#: Minari namespace of the datasets RewardLab makes.
NAMESPACE = "rewardlab"
#: ``infos`` key of the ``(T + 1, nq + nv)`` float64 MuJoCo states of an episode.
RENDER_STATE_KEY = "render_state"
#: Metadata key of RewardLab's own record (recipe, tier, completion flag) in a dataset.
METADATA_KEY = "rewardlab"
#: Minari storage format RewardLab writes: Minari's default, one HDF5 file per dataset.
DATA_FORMAT = "hdf5"
#: Env ids of the D4RL locomotion tasks, by the slug their dataset ids use.
KNOWN_ENVS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}


# ----------------------------------------------------------------------------- ids and paths
def datasets_root() -> Path:
    """Where Minari keeps local datasets: ``MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets`` (read at call time, as Minari does; nothing is created)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root else Path.home() / ".minari" / "datasets"


def parse_dataset_id(dataset_id: str) -> tuple[str | None, str, int]:
    """Split a Minari dataset id ``(namespace/)name-vN`` into ``(namespace, name, version)``.

    Raises:
        DatasetError: naming the id and Minari's rules if it is not a valid id (a version is
            required; names use letters, digits, ``-`` and ``_``; namespaces may nest with
            ``/``).
    """
    from minari.dataset.minari_dataset import parse_dataset_id as minari_parse

    try:
        return minari_parse(dataset_id)
    except (ValueError, TypeError):
        raise DatasetError(
            f"dataset id {dataset_id!r} is not a Minari id: expected (namespace/)name-vN, e.g. "
            "'rewardlab/halfcheetah/medium-v0' (letters, digits, '-' and '_'; the version is "
            "required)"
        ) from None


def env_slug(env_id: str) -> str:
    """The lower-case env name a dataset id uses: ``"HalfCheetah-v5"`` -> ``"halfcheetah"``
    (a ``module:`` prefix and the ``-vN`` suffix dropped, other characters than letters,
    digits, ``-`` and ``_`` replaced by ``_``)."""
    name = env_id.rsplit(":", 1)[-1]
    name = re.sub(r"-v\d+$", "", name)
    return re.sub(r"[^\w-]", "_", name).lower() or "env"


def tier_dataset_id(env_id: str, tier: str, version: int = 0) -> str:
    """Id of a tier RewardLab makes: ``rewardlab/<env slug>/<tier>-v<version>``.

    Raises:
        DatasetError: if ``tier`` is not one of :data:`TIERS` or ``version`` is negative.
    """
    if tier not in TIERS:
        raise DatasetError(f"tier: unknown {tier!r}; allowed: {', '.join(TIERS)}")
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise DatasetError(f"version: must be an integer >= 0, got {version!r}")
    return f"{NAMESPACE}/{env_slug(env_id)}/{tier}-v{int(version)}"


def _make_command(dataset_id: str) -> str:
    """The ``rewardlab dataset make`` command that would make ``dataset_id``."""
    parts = dataset_id.split("/")
    if len(parts) == 3 and parts[0] == NAMESPACE:
        match = re.fullmatch(r"(.+)-v(\d+)", parts[2])
        if match and match.group(1) in TIERS:
            env = KNOWN_ENVS.get(parts[1], "ENV_ID")
            version = "" if match.group(2) == "0" else f" --version {match.group(2)}"
            return f"rewardlab dataset make --env {env} --tiers {match.group(1)}{version}"
    return "rewardlab dataset make --env ENV_ID --tiers TIER"


# ----------------------------------------------------------------------------- reading
def _data_path(source: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``(data directory, id asked for)`` of a dataset id or directory path.

    Raises:
        MissingDatasetError: if an id is not on this machine.
        DatasetError: if a path holds no Minari dataset or an id is malformed.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        for candidate in (path / "data", path):
            if (candidate / "metadata.json").is_file():
                return candidate, None
        raise DatasetError(
            f"{path}: not a Minari dataset directory (no data/metadata.json or metadata.json)"
        )
    if path.is_absolute() or text.startswith((".", "~")) or path.exists():
        raise DatasetError(f"{text}: no such dataset directory")
    parse_dataset_id(text)
    data = datasets_root() / text / "data"
    if not (data / "metadata.json").is_file():
        raise MissingDatasetError(
            f"offline dataset {text!r} is not on this machine (looked in {data.parent}; "
            f"MINARI_DATASETS_PATH={os.environ.get('MINARI_DATASETS_PATH', '(unset)')}). "
            f"RewardLab never downloads datasets: make it with `{_make_command(text)}`, or pass "
            "the path of a Minari dataset directory",
            text,
        )
    return data, text


def dataset_metadata(source: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw ``metadata.json`` of a dataset (by id or directory), without reading episodes.

    Raises:
        MissingDatasetError: if an id is not on this machine.
        DatasetError: if the metadata cannot be read.
    """
    data, _ = _data_path(source)
    try:
        return json.loads((data / "metadata.json").read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{data}: cannot read metadata.json: {exc}") from exc


def _open_minari(data: Path) -> Any:
    from minari import MinariDataset

    try:
        return MinariDataset(data)
    except ImportError as exc:  # e.g. h5py missing for an HDF5 dataset
        raise DatasetError(f"{data}: cannot read this Minari dataset: {exc}") from exc
    except (ValueError, KeyError, AssertionError, OSError) as exc:
        raise DatasetError(f"{data}: not a readable Minari dataset: {exc!r}") from exc


def load_offline_dataset(source: str | os.PathLike[str]) -> OfflineDataset:
    """Read a Minari dataset (by id, or by the path of its directory) as an OfflineDataset.

    Works for any local Minari dataset with flat ``Box`` observations and actions (the ones
    RewardLab makes, and e.g. Minari's ``mujoco/...`` datasets a user downloaded with
    ``minari download``). Observations, actions and rewards are cast to float32; a dataset
    whose every episode has ``infos["render_state"]`` gets ``render_states``.

    Args:
        source: a dataset id under ``MINARI_DATASETS_PATH`` (``"rewardlab/hopper/medium-v0"``;
            nothing is downloaded), or a dataset directory (holding ``data/metadata.json``,
            or the ``data`` directory itself).

    Returns:
        The dataset, with ``dataset_id`` the id in its metadata, ``env_id`` that of its
        ``env_spec``, and the reference scores of its metadata (or ``None``).

    Raises:
        MissingDatasetError: naming the id and the ``rewardlab dataset make`` command, if the
            id is not on this machine.
        DatasetError: if the id is malformed, the directory holds no readable Minari dataset,
            it was left incomplete by an interrupted ``rewardlab dataset make``, it has no
            env spec or no step, its spaces are not flat ``Box`` spaces, or its arrays break
            the :class:`OfflineDataset` rules.
    """
    import gymnasium as gym

    data, _ = _data_path(source)
    meta = dataset_metadata(data)
    if _incomplete(meta, str(meta.get("dataset_id", ""))):
        raise DatasetError(
            f"{data.parent}: left incomplete by an interrupted `rewardlab dataset make`; run "
            "the same command again to remake it"
        )
    minari_ds = _open_minari(data)
    dataset_id = str(minari_ds.id)
    obs_space, act_space = minari_ds.observation_space, minari_ds.action_space
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(act_space, gym.spaces.Box):
        raise DatasetError(
            f"{dataset_id}: has {type(obs_space).__name__} observations and "
            f"{type(act_space).__name__} actions; offline datasets need flat Box spaces"
        )
    if minari_ds.env_spec is None:
        raise DatasetError(f"{dataset_id}: has no env_spec, so no env to evaluate policies in")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "observations", "actions", "next_observations", "rewards", "terminations",
        "truncations", "episode_ids", "steps", "render_states")}
    for episode in minari_ds.iterate_episodes():  # one Python step per episode, not per sample
        t = len(episode.rewards)
        if t == 0:
            continue
        obs = np.asarray(episode.observations).reshape(t + 1, -1)
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(episode.actions).reshape(t, -1))
        parts["rewards"].append(np.asarray(episode.rewards, dtype=np.float32).reshape(t))
        parts["terminations"].append(np.asarray(episode.terminations, dtype=bool).reshape(t))
        parts["truncations"].append(np.asarray(episode.truncations, dtype=bool).reshape(t))
        parts["episode_ids"].append(np.full(t, int(episode.id), dtype=np.int64))
        parts["steps"].append(np.arange(t, dtype=np.int64))
        states = (episode.infos or {}).get(RENDER_STATE_KEY)
        if states is not None and len(states) >= t:
            parts["render_states"].append(np.asarray(states, dtype=np.float64)[:t].reshape(t, -1))
    if not parts["rewards"]:
        raise DatasetError(f"{dataset_id}: holds no step")
    states = (
        np.concatenate(parts.pop("render_states"))
        if len(parts["render_states"]) == len(parts["rewards"]) else None
    )
    parts.pop("render_states", None)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return OfflineDataset(
        **arrays, dataset_id=dataset_id, env_id=str(minari_ds.env_spec.id),
        render_states=states, ref_min_score=meta.get("ref_min_score"),
        ref_max_score=meta.get("ref_max_score"),
    )


def final_render_states(source: str | os.PathLike[str]) -> np.ndarray | None:
    """``(E, state_dim)`` float64 MuJoCo state after each episode's last step (the last row of
    ``infos["render_state"]``), or ``None`` when some episode has none.

    Raises:
        MissingDatasetError: if an id is not on this machine.
        DatasetError: if the dataset cannot be read.
    """
    data, _ = _data_path(source)
    finals = []
    for episode in _open_minari(data).iterate_episodes():
        states = (episode.infos or {}).get(RENDER_STATE_KEY)
        if len(episode.rewards) == 0:
            continue
        if states is None or len(states) != len(episode.rewards) + 1:
            return None
        finals.append(np.asarray(states[-1], dtype=np.float64).reshape(-1))
    return np.stack(finals) if finals else None


def list_offline_datasets() -> dict[str, dict[str, Any]]:
    """Every local Minari dataset (under :func:`datasets_root`) with its raw metadata, by id.

    Minari warns about (and leaves out) misconfigured directories.
    """
    import minari

    if not datasets_root().is_dir():
        return {}
    return dict(minari.list_local_datasets())


# ----------------------------------------------------------------------------- writing
def _incomplete(meta: dict[str, Any] | None, dataset_id: str) -> bool:
    """Whether a dataset of RewardLab's namespace was left half written.

    RewardLab writes its record (with ``"complete": True``) into the metadata after Minari has
    written every episode; a dataset of the namespace without it was killed mid-write.
    """
    if not dataset_id.startswith(NAMESPACE + "/"):
        return False
    own = (meta or {}).get(METADATA_KEY)
    return not (isinstance(own, dict) and own.get("complete", False))


def _read_meta(data: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data / "metadata.json").read_text())
    except (OSError, ValueError):
        return None


def write_minari_dataset(
    dataset: OfflineDataset,
    *,
    final_render_states: np.ndarray | None = None,
    extra_metadata: dict[str, Any] | None = None,
    algorithm_name: str = "rewardlab",
    description: str | None = None,
) -> Path:
    """Write ``dataset`` as the Minari dataset ``dataset.dataset_id`` under
    :func:`datasets_root` (HDF5, Minari's default format), with
    ``minari.create_dataset_from_buffers``.

    Each episode becomes one Minari episode: ``T + 1`` observations (the last is
    ``next_observations`` of its last step), ``T`` actions, rewards (stored as float64),
    terminations and truncations, and, with render states, ``infos["render_state"]`` of
    ``T + 1`` rows. ``ref_min_score``/``ref_max_score`` go into Minari's metadata when both
    are set; ``extra_metadata`` under :data:`METADATA_KEY` with ``"complete": True`` written
    last, so a write killed half way is recognised (and replaced by the next write of the same
    id). Minari numbers episodes ``0 .. E-1`` in order.

    Args:
        dataset: the data; ``env_id`` must be makeable with ``gymnasium.make``.
        final_render_states: ``(E, nq + nv)`` float64 state after each episode's last step;
            default: the last step's own state repeated.
        extra_metadata: JSON-serialisable record kept under :data:`METADATA_KEY`.
        algorithm_name: Minari's ``algorithm_name``.
        description: Minari's ``description``.

    Returns:
        The dataset directory ``<root>/<dataset_id>``.

    Raises:
        DatasetError: if the id is malformed, a complete dataset of that id exists already
            (delete it with ``minari delete ID`` or choose another version), the env cannot
            be made, or the write fails.
    """
    import gymnasium as gym
    from minari import create_dataset_from_buffers
    from minari.data_collector.episode_buffer import EpisodeBuffer

    parse_dataset_id(dataset.dataset_id)
    path = datasets_root() / dataset.dataset_id
    if path.exists():
        if not _incomplete(_read_meta(path / "data"), dataset.dataset_id):
            raise DatasetError(
                f"dataset {dataset.dataset_id!r} exists already at {path}; delete it "
                f"(`minari delete {dataset.dataset_id}`) or choose another version"
            )
        shutil.rmtree(path)
    starts = dataset.episode_starts
    ends = np.r_[starts[1:], dataset.n_steps]
    if final_render_states is not None:
        final_render_states = np.asarray(final_render_states, dtype=np.float64)
        if dataset.render_states is None or final_render_states.shape != (
            starts.size, dataset.render_states.shape[1]
        ):
            raise DatasetError(
                f"final_render_states: expected ({starts.size}, state_dim) with render_states, "
                f"got {final_render_states.shape}"
            )
    try:
        env = gym.make(dataset.env_id)
    except Exception as exc:  # noqa: BLE001 (any failure of a user-chosen env)
        raise DatasetError(f"env {dataset.env_id!r}: cannot make it: {exc}") from exc
    spec, obs_dtype = env.spec, env.observation_space.dtype
    env.close()
    buffers = []
    for e, (a, b) in enumerate(zip(starts, ends, strict=True)):
        obs = np.concatenate([dataset.observations[a:b], dataset.next_observations[b - 1 : b]])
        infos = None
        if dataset.render_states is not None:
            final = (dataset.render_states[b - 1] if final_render_states is None
                     else final_render_states[e])
            infos = {RENDER_STATE_KEY: np.concatenate([dataset.render_states[a:b], final[None]])}
        buffers.append(EpisodeBuffer(
            observations=obs.astype(obs_dtype), actions=dataset.actions[a:b],
            rewards=dataset.rewards[a:b].astype(np.float64),
            terminations=dataset.terminations[a:b], truncations=dataset.truncations[a:b],
            infos=infos,
        ))
    refs = {}
    if dataset.ref_min_score is not None and dataset.ref_max_score is not None:
        refs = {"ref_min_score": dataset.ref_min_score, "ref_max_score": dataset.ref_max_score}
    try:
        with warnings.catch_warnings():
            # Minari warns for each provenance field left unset (author, permalink, eval env)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
            created = create_dataset_from_buffers(
                dataset.dataset_id, buffers, env=spec, algorithm_name=algorithm_name,
                author="RewardLab", description=description, data_format=DATA_FORMAT,
                **refs,
            )
        created.storage.update_metadata(
            {METADATA_KEY: {**(extra_metadata or {}), "complete": True}}
        )
    except (ValueError, OSError, TypeError) as exc:
        raise DatasetError(f"cannot write dataset {dataset.dataset_id!r}: {exc}") from exc
    return path
