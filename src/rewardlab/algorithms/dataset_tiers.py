"""D4RL-style offline datasets made locally from RewardLab's own agent, written with Minari.

The tiers follow D4RL's Gym-MuJoCo datasets (Fu et al. 2020, "D4RL: Datasets for Deep
Data-Driven Reinforcement Learning", Sec. 5), scaled to a 2-core machine:

* ``random``: episodes of uniformly random actions.
* ``medium``: episodes of a policy stopped at about a third of the expert's return: the first
  evaluated snapshot of the expert's training whose deterministic return reaches
  ``random + medium_fraction * (expert - random)`` (with ``medium_fraction = 1/3`` and the
  references below; that is a third of the expert's return where a random policy scores about
  0, and stays meaningful where it does not).
* ``medium-replay``: every transition collected while training up to that snapshot (its replay
  buffer: the random warm-up steps and the training episodes, the last one cut and marked
  truncated at the snapshot's step).
* ``expert``: episodes of the trained expert: the snapshot with the best evaluation return.
* ``medium-expert``: ``medium`` then ``expert``, concatenated (as D4RL's).

The agent is :func:`rewardlab.algorithms.backbones.build_agent` (SBX CrossQ by default, the
agent of :mod:`rewardlab.algorithms.reference`; SBX SAC on HalfCheetah-v5, see
:data:`DEFAULT_BACKBONES`) trained on the true reward for
``expert_steps`` env steps, evaluated every ``eval_every`` steps (``eval_episodes``
deterministic episodes), each evaluation's policy kept as a snapshot. Datasets are collected
with the snapshots' stochastic policies (D4RL samples its SAC policies too), whole episodes
until at least ``tier_steps`` steps. Every tier's Minari metadata carries ``ref_min_score`` (a
uniformly random policy's mean return) and ``ref_max_score`` (the expert's deterministic mean
return), each over ``ref_episodes`` fresh episodes, for D4RL normalised scores
(:func:`rewardlab.data.offline.normalized_score`).

Caching: a tier is reused when its dataset exists (complete) with the same recipe; one with
other settings is refused (choose another ``version``). The expert's training run (its
evaluations, the medium and expert policy weights and the medium-replay transitions) is cached
under ``<MINARI_DATASETS_PATH>/rewardlab/<env>/.training-<key>/`` (hidden from Minari's
listing), so making more tiers of the same recipe later trains nothing.

Cost with the defaults on the 2-core machine: CrossQ trains HalfCheetah at about 65 env
steps/s on a core of its own (115 on an idle machine, BENCHMARKS.md ``engine_speed``; a 4,000-step
check on a core shared with a benchmark ran at about 20), so the 100,000-step expert takes about
26 min; its 21 evaluations (5 episodes of 1,000 steps) about 1.5 min; a trained policy collects
about 1,400 steps/s on a free core, so each 100,000-step policy tier takes about 70 s, ``random``
about 10 s, and writing a tier about 1 s (HDF5). All five tiers of one env: about 30 min, nearly
all of it training; HalfCheetah, Hopper and Walker2d: about 1.5 h. Memory: the training run's
transitions are kept in memory (about 140 MB per 100,000 HalfCheetah steps with render states).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rewardlab.config import EnvConfig, SACConfig
from rewardlab.data.offline import (
    METADATA_KEY,
    NAMESPACE,
    TIERS,
    OfflineDataset,
    concatenate,
    dataset_metadata,
    datasets_root,
    env_slug,
    final_render_states,
    load_offline_dataset,
    tier_dataset_id,
    write_minari_dataset,
)
from rewardlab.data.offline.collect import (
    PolicyFn,
    RecordingEnv,
    TransitionColumns,
    collect_episodes,
)
from rewardlab.diagnostics.evaluation import evaluate
from rewardlab.envs.make import make_env
from rewardlab.errors import ConfigError, DatasetError, MissingDatasetError

__all__ = ["DatasetRecipe", "make_tier_datasets"]

#: ``(done, total, status)``: progress of :func:`make_tier_datasets` in env steps.
ProgressFn = Callable[[int, int, str], None]
#: Version of the cached training run's files.
CACHE_FORMAT = 1
#: Named seed streams of a recipe (order never changes).
SEED_STREAMS = ("env", "agent", "eval", "refs", "random", "medium", "expert")
#: Recipe fields the expert's training run depends on (the rest only shape the datasets).
TRAINING_FIELDS = ("env_id", "max_episode_steps", "expert_steps", "medium_fraction",
                   "eval_every", "eval_episodes", "ref_episodes", "backbone", "net_arch",
                   "learning_starts", "seed")


#: Envs whose tiers come from another agent than SBX CrossQ by default, and why (measured with
#: 100,000-step experts, seed 0; ``benchmarks/offline.py``): on HalfCheetah-v5 CrossQ reaches
#: "medium" within 10,000 steps, so its medium-replay holds 10 episodes (IQL on its true reward:
#: normalised 15.7), while SBX SAC's holds 45 (IQL: 52.3). On Hopper-v5 SBX SAC's expert stays
#: at 190-440, so CrossQ (expert 3,439; medium-replay 154 episodes) is the default elsewhere.
DEFAULT_BACKBONES = {"HalfCheetah-v5": "sbx_sac"}


def default_backbone(env_id: str) -> str:
    """The agent an env's tiers come from unless asked otherwise: :data:`DEFAULT_BACKBONES`,
    else ``"crossq"``."""
    return DEFAULT_BACKBONES.get(env_id, "crossq")


@dataclass(frozen=True)
class DatasetRecipe:
    """How the tiers of one env are made (the options of ``rewardlab dataset make``).

    Raises:
        ConfigError: naming the field, on a value out of range.
    """

    env_id: str = "HalfCheetah-v5"
    """Gymnasium id (any MuJoCo env renders clips; any Box env works)."""
    expert_steps: int = 100_000
    """Env steps the expert trains for (CrossQ: ~65 steps/s on its own core, so ~26 min)."""
    tier_steps: int = 100_000
    """Steps of each collected tier (random, medium, expert); whole episodes, so a little
    more (D4RL: 1M)."""
    medium_fraction: float = 1 / 3
    """Medium policy: the first snapshot reaching random + fraction * (expert - random)."""
    eval_every: int = 5_000
    """Env steps between evaluations (and policy snapshots) while training the expert."""
    eval_episodes: int = 5
    """Deterministic episodes per evaluation."""
    ref_episodes: int = 10
    """Episodes of the random and the expert policy behind ref_min_score/ref_max_score."""
    backbone: str | None = None
    """Agent: crossq (SBX CrossQ), sac (SB3 SAC) or sbx_sac (SBX SAC); None (the default):
    the env's measured choice, :func:`default_backbone`."""
    net_arch: tuple[int, ...] = (256, 256)
    """Actor and critic hidden widths."""
    learning_starts: int = 1_000
    """Random-action steps before the agent learns (part of medium-replay)."""
    seed: int = 0
    """Seed of every stream (training, evaluations, references, each tier's episodes)."""
    version: int = 0
    """Version of the dataset ids (``rewardlab/<env>/<tier>-v<version>``)."""
    max_episode_steps: int | None = None
    """Override of the env's time limit (default: the registered one, 1000 for MuJoCo)."""

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ConfigError("env: must be a Gymnasium id such as HalfCheetah-v5")
        for name, low in (("expert_steps", 1), ("tier_steps", 1), ("eval_every", 1),
                          ("eval_episodes", 1), ("ref_episodes", 1), ("learning_starts", 0),
                          ("seed", 0), ("version", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
        if self.max_episode_steps is not None and (
            isinstance(self.max_episode_steps, bool) or self.max_episode_steps < 1
        ):
            raise ConfigError(
                f"max_episode_steps: must be an integer >= 1, got {self.max_episode_steps!r}")
        if not 0 < float(self.medium_fraction) < 1:
            raise ConfigError(
                f"medium_fraction: must be in (0, 1), got {self.medium_fraction!r}")
        if self.backbone is None:
            object.__setattr__(self, "backbone", default_backbone(self.env_id))
        if self.backbone not in ("crossq", "sac", "sbx_sac"):
            raise ConfigError(
                f"backbone: unknown {self.backbone!r}; allowed: crossq, sac, sbx_sac")
        arch = tuple(self.net_arch)
        if not arch or any(isinstance(w, bool) or int(w) < 1 for w in arch):
            raise ConfigError(f"net_arch: must be positive widths, got {self.net_arch!r}")
        object.__setattr__(self, "net_arch", tuple(int(w) for w in arch))

    def as_dict(self) -> dict[str, Any]:
        """The recipe as JSON values (kept in each tier's metadata)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def training_key(self) -> str:
        """12 hex digits of the SHA-256 of the fields the expert's training depends on."""
        fields = {k: self.as_dict()[k] for k in TRAINING_FIELDS}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def env_config(self) -> EnvConfig:
        """The env section to make the env with."""
        return EnvConfig(id=self.env_id, max_episode_steps=self.max_episode_steps)


def _seeds(seed: int) -> dict[str, int]:
    states = np.random.SeedSequence(seed).spawn(len(SEED_STREAMS))
    return {name: int(s.generate_state(1, dtype=np.uint32)[0] >> 1)
            for name, s in zip(SEED_STREAMS, states, strict=True)}


# ----------------------------------------------------------------------------- the expert run
@dataclass
class _ExpertRun:
    """What the tiers need from the expert's training run (cached on disk)."""

    evals: list[dict[str, Any]]
    medium_step: int
    expert_step: int
    ref_min: float
    ref_max: float
    target: float
    medium_weights: dict[str, Any]
    expert_weights: dict[str, Any]
    replay: TransitionColumns | None  # in memory after training; None when loaded from the cache
    replay_arrays: dict[str, np.ndarray] | None = None
    wall_time_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"evals": [{"step": e["step"], "return": e["return"]} for e in self.evals],
                "medium_step": self.medium_step, "expert_step": self.expert_step,
                "ref_min_score": self.ref_min, "ref_max_score": self.ref_max,
                "medium_target_return": self.target, "training_wall_time_s": self.wall_time_s}


def _snapshot(policy: Any, seed: int) -> Any:
    from rewardlab.algorithms.backbones import JaxPolicySnapshot, is_jax
    from rewardlab.algorithms.policies import frozen_copy

    return JaxPolicySnapshot(policy, seed) if is_jax(policy) else frozen_copy(policy)


def _policy_fn(snapshot: Any, deterministic: bool) -> PolicyFn:
    def act(obs: np.ndarray) -> np.ndarray:
        return snapshot.predict(np.asarray(obs, np.float32), deterministic=deterministic)[0]

    return act


@contextmanager
def _torch_seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG inside the block only (its state is restored after)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _random_fn(env: gym.Env, seed: int) -> PolicyFn:
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high

    def act(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(low, high).astype(np.float32)

    return act


def _build(recipe: DatasetRecipe, env: gym.Env, seed: int) -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    from rewardlab.algorithms.backbones import build_agent, limit_jax_threads

    if recipe.backbone != "sac":
        limit_jax_threads(1)  # before JAX starts; a user's XLA_FLAGS is kept
    venv = make_vec_env(lambda: env, n_envs=1, seed=seed)
    sac = SACConfig(buffer_size=max(1000, recipe.expert_steps), net_arch=recipe.net_arch,
                    learning_starts=recipe.learning_starts)
    return build_agent(recipe.backbone, sac, venv, seed)


class _ProgressCallback(BaseCallback):
    """Reports the agent's env steps every :attr:`EVERY` steps while it learns."""

    EVERY = 250

    def __init__(self, progress: Callable[[int, str], None]) -> None:
        super().__init__()
        self.progress = progress

    def _on_step(self) -> bool:
        if self.num_timesteps % self.EVERY == 0:
            self.progress(self.num_timesteps, "expert training")
        return True


def _train_expert(recipe: DatasetRecipe, progress: Callable[[int, str], None]) -> _ExpertRun:
    """Train the agent on the true reward, evaluating and snapshotting every ``eval_every``
    steps; pick the expert, the medium snapshot and the references."""
    t0 = time.perf_counter()
    seeds = _seeds(recipe.seed)
    recorder = RecordingEnv(make_env(recipe.env_config()))
    model = _build(recipe, recorder, seeds["agent"])
    eval_env = make_env(recipe.env_config())
    evals: list[dict[str, Any]] = []
    step = 0
    while True:
        snap = _snapshot(model.policy, seeds["agent"])
        res = evaluate(eval_env, _policy_fn(snap, True), None, recipe.eval_episodes,
                       seed=seeds["eval"])
        evals.append({"step": step, "return": float(res.gold_returns.mean()), "snapshot": snap})
        progress(step, f"expert training: return {evals[-1]['return']:.1f} at step {step}")
        if step >= recipe.expert_steps:
            break
        model.learn(min(recipe.eval_every, recipe.expert_steps - step),
                    reset_num_timesteps=False, progress_bar=False,
                    callback=_ProgressCallback(progress))
        step = int(model.num_timesteps)
    trained = [e for e in evals if e["step"] > 0]
    expert = max(reversed(trained), key=lambda e: e["return"])  # ties: the later snapshot
    ref_min = float(evaluate(eval_env, _random_fn(eval_env, seeds["refs"]), None,
                             recipe.ref_episodes, seed=seeds["refs"]).gold_returns.mean())
    ref_max = float(evaluate(eval_env, _policy_fn(expert["snapshot"], True), None,
                             recipe.ref_episodes, seed=seeds["refs"]).gold_returns.mean())
    eval_env.close()
    if not ref_max > ref_min:
        raise DatasetError(
            f"{recipe.env_id}: the expert's return {ref_max:.1f} is not above a random "
            f"policy's {ref_min:.1f} after {recipe.expert_steps} steps; raise --expert-steps"
        )
    target = ref_min + float(recipe.medium_fraction) * (ref_max - ref_min)
    early = [e for e in trained if e["step"] <= expert["step"]]
    reached = [e for e in early if e["return"] >= target]
    medium = reached[0] if reached else min(early, key=lambda e: abs(e["return"] - target))
    return _ExpertRun(
        evals=evals, medium_step=medium["step"], expert_step=expert["step"], ref_min=ref_min,
        ref_max=ref_max, target=target, medium_weights=medium["snapshot"].state_dict(),
        expert_weights=expert["snapshot"].state_dict(), replay=recorder.columns,
        wall_time_s=time.perf_counter() - t0,
    )


def _cache_dir(recipe: DatasetRecipe) -> Path:
    return (datasets_root() / NAMESPACE / env_slug(recipe.env_id)
            / f".training-{recipe.training_key()}")


def _save_run(run: _ExpertRun, recipe: DatasetRecipe, directory: Path) -> None:
    """Write the run to ``directory`` atomically (a temporary sibling renamed into place)."""
    from safetensors.torch import save_file

    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {**{f"medium/{k}": v for k, v in run.medium_weights.items()},
               **{f"expert/{k}": v for k, v in run.expert_weights.items()}}
    # medium and expert may be the same snapshot: copies, so no two tensors share memory
    save_file({k: v.detach().clone().contiguous() for k, v in weights.items()},
              str(tmp / "policies.safetensors"))
    assert run.replay is not None
    rows = {k: v[: run.medium_step] for k, v in run.replay.rows.items()}
    arrays = {k: np.asarray(v) for k, v in rows.items() if v and v[0] is not None}
    np.savez(tmp / "medium_replay.npz", **arrays)
    meta = {"format": CACHE_FORMAT, "training": {k: recipe.as_dict()[k] for k in TRAINING_FIELDS},
            **run.summary()}
    (tmp / "run.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def _load_run(directory: Path) -> _ExpertRun | None:
    """The cached run in ``directory``, or ``None`` if there is none (or another format)."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((directory / "run.json").read_text())
        weights = load_file(str(directory / "policies.safetensors"))
        with np.load(directory / "medium_replay.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None
    if meta.get("format") != CACHE_FORMAT:
        return None
    return _ExpertRun(
        evals=meta["evals"], medium_step=meta["medium_step"], expert_step=meta["expert_step"],
        ref_min=meta["ref_min_score"], ref_max=meta["ref_max_score"],
        target=meta["medium_target_return"],
        medium_weights={k[7:]: v for k, v in weights.items() if k.startswith("medium/")},
        expert_weights={k[7:]: v for k, v in weights.items() if k.startswith("expert/")},
        replay=None, replay_arrays=arrays, wall_time_s=meta["training_wall_time_s"],
    )


def _restore_policy(recipe: DatasetRecipe, weights: dict[str, Any], seed: int) -> Any:
    model = _build(recipe, make_env(recipe.env_config()), seed)
    snap = _snapshot(model.policy, seed)
    snap.load_state_dict(weights)
    return snap


def _replay_dataset(run: _ExpertRun, dataset_id: str, env_id: str) -> tuple[OfflineDataset,
                                                                            np.ndarray | None]:
    refs = (run.ref_min, run.ref_max)
    if run.replay is not None:
        return run.replay.dataset(dataset_id, env_id, run.medium_step, refs)
    columns = TransitionColumns()
    arrays = run.replay_arrays or {}
    for name in TransitionColumns.NAMES:
        columns.rows[name] = list(arrays[name]) if name in arrays else [None] * run.medium_step
    return columns.dataset(dataset_id, env_id, None, refs)


# ----------------------------------------------------------------------------- the tiers
def _existing(dataset_id: str, recipe: DatasetRecipe) -> bool:
    """Whether ``dataset_id`` exists, complete, with this recipe (reuse it).

    Raises:
        DatasetError: if it exists, complete, with another recipe.
    """
    try:
        meta = dataset_metadata(dataset_id)
    except MissingDatasetError:
        return False
    own = meta.get(METADATA_KEY)
    if not isinstance(own, dict) or not own.get("complete"):
        return False  # killed mid-write: made again
    if own.get("recipe") != recipe.as_dict():
        theirs = own.get("recipe") or {}
        diff = {k: (theirs.get(k), v) for k, v in recipe.as_dict().items() if theirs.get(k) != v}
        raise DatasetError(
            f"dataset {dataset_id!r} exists with other settings (stored, asked): {diff}; "
            f"choose another --version or delete it (`minari delete {dataset_id}`)"
        )
    return True


def make_tier_datasets(
    recipe: DatasetRecipe, tiers: Sequence[str] = TIERS, on_progress: ProgressFn | None = None,
) -> dict[str, str]:
    """Make (or reuse) the D4RL tiers of ``recipe.env_id`` as Minari datasets.

    Args:
        recipe: the settings (see :class:`DatasetRecipe`; cost in the module docstring).
        tiers: any of :data:`rewardlab.data.offline.TIERS`; ``medium-expert`` makes
            ``medium`` and ``expert`` too. Every tier, ``random`` alone included, needs the
            expert's training run (its ``ref_max_score``): the first ``make`` of a recipe
            trains, later ones reuse the cached run.
        on_progress: called with ``(done, total, status)`` in env steps (training plus
            collection) as work proceeds.

    Returns:
        ``{tier: dataset id}`` for every tier made or reused (ids
        ``rewardlab/<env>/<tier>-v<version>`` under ``MINARI_DATASETS_PATH``).

    Raises:
        DatasetError: on an unknown tier, a dataset of the same id made with other settings,
            an expert no better than a random policy, or a failed write.
        ConfigError: if the env cannot be made.
    """
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or not tiers:
        raise DatasetError(f"tiers: unknown {unknown or 'none given'}; allowed: {', '.join(TIERS)}")
    wanted = [t for t in TIERS if t in tiers or (t in ("medium", "expert")
                                                  and "medium-expert" in tiers)]
    ids = {t: tier_dataset_id(recipe.env_id, t, recipe.version) for t in wanted}
    todo = [t for t in wanted if not _existing(ids[t], recipe)]
    if not todo:
        return ids
    cache = _cache_dir(recipe)
    run = _load_run(cache)
    collected = [t for t in todo if t in ("random", "medium", "expert")]
    total = (0 if run is not None else recipe.expert_steps) + recipe.tier_steps * len(collected)
    done = 0

    def report(steps: int, status: str) -> None:
        if on_progress is not None:
            on_progress(min(done + steps, total), total, status)

    if run is None:
        run = _train_expert(recipe, report)
        _save_run(run, recipe, cache)
        done += recipe.expert_steps
    seeds = _seeds(recipe.seed)
    env_id, refs = recipe.env_id, (run.ref_min, run.ref_max)
    common = {"recipe": recipe.as_dict(), "training_key": recipe.training_key(), **run.summary()}
    made: dict[str, tuple[OfflineDataset, np.ndarray | None]] = {}
    for tier in todo:
        meta = {**common, "tier": tier}
        finals = None
        if tier == "medium-replay":
            ds, finals = _replay_dataset(run, ids[tier], env_id)
            meta["policy_step"] = run.medium_step
        elif tier == "medium-expert":
            parts = [made[t] if t in made else (load_offline_dataset(ids[t]),
                                                  final_render_states(ids[t]))
                     for t in ("medium", "expert")]
            ds = concatenate([p[0] for p in parts], ids[tier])
            if all(p[1] is not None for p in parts):
                finals = np.concatenate([p[1] for p in parts])  # type: ignore[misc]
        else:
            env = make_env(recipe.env_config())
            if tier == "random":
                policy = _random_fn(env, seeds["random"])
            else:
                weights = run.medium_weights if tier == "medium" else run.expert_weights
                snap = _restore_policy(recipe, weights, seeds[tier])
                policy = _policy_fn(snap, deterministic=False)
                meta["policy_step"] = run.medium_step if tier == "medium" else run.expert_step
            with _torch_seeded(seeds[tier]):  # SB3 policies sample with torch's global RNG
                columns = collect_episodes(env, policy, recipe.tier_steps, seeds[tier],
                                           lambda n, t=tier: report(n, f"collecting {t}"))
            env.close()
            done += recipe.tier_steps
            ds, finals = columns.dataset(ids[tier], env_id, None, refs)
            made[tier] = (ds, finals)
        meta["mean_episode_return"] = float(ds.episode_returns().mean())
        meta["episodes"], meta["steps"] = ds.n_episodes, ds.n_steps
        report(0, f"writing {ids[tier]}")
        write_minari_dataset(
            ds, final_render_states=finals, extra_metadata=meta,
            algorithm_name=f"rewardlab {recipe.backbone} ({tier})",
            description=f"D4RL-style {tier} tier of {env_id}, made by RewardLab "
                        f"(Fu et al. 2020 tiers; recipe in metadata['{METADATA_KEY}'])",
        )
    report(0, "done")
    return ids
