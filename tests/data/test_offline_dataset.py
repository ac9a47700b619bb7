"""Offline datasets: the record's checks, Minari round trips, D4RL tiers, normalised scores."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rewardlab.algorithms.dataset_tiers import DatasetRecipe, make_tier_datasets
from rewardlab.data.offline import (
    METADATA_KEY,
    RENDER_STATE_KEY,
    OfflineDataset,
    concatenate,
    dataset_metadata,
    datasets_root,
    env_slug,
    final_render_states,
    list_offline_datasets,
    load_offline_dataset,
    normalized_score,
    tier_dataset_id,
    write_minari_dataset,
)
from rewardlab.errors import ConfigError, DatasetError, MissingDatasetError, RewardLabError
from tests.helpers import random_offline_dataset

FIELDS = ("observations", "actions", "next_observations", "rewards", "terminations",
          "truncations", "episode_ids", "steps", "render_states")


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def assert_same_arrays(a: OfflineDataset, b: OfflineDataset) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


# ----------------------------------------------------------------------------- the record
def test_record_shapes_and_episodes() -> None:
    ds, finals = random_offline_dataset(steps=200)
    assert ds.observations.dtype == np.float32 and ds.observations.shape == (ds.n_steps, 11)
    assert ds.actions.shape == (ds.n_steps, 3) and ds.rewards.dtype == np.float32
    assert ds.render_states is not None and ds.render_states.dtype == np.float64
    assert ds.render_states.shape == (ds.n_steps, 12)  # Hopper: nq 6 + nv 6
    assert finals is not None and finals.shape == (ds.n_episodes, 12)
    starts = ds.episode_starts
    assert starts[0] == 0 and np.all(ds.steps[starts] == 0)
    ends = np.r_[starts[1:], ds.n_steps] - 1
    done = ds.terminations | ds.truncations
    assert done[ends].all() and done.sum() == ds.n_episodes  # every episode ends, only there
    assert ds.terminations.any() and ds.truncations.any()  # Hopper falls; 40-step time limit
    inside = np.ones(ds.n_steps, bool)
    inside[starts] = False  # next observation of a step is the following step's observation
    np.testing.assert_array_equal(ds.next_observations[:-1][inside[1:]],
                                  ds.observations[1:][inside[1:]])
    np.testing.assert_allclose(ds.episode_returns().sum(), ds.rewards.sum(dtype=np.float64),
                               rtol=1e-6)
    assert ds.episode_lengths().sum() == ds.n_steps


def _fields(ds: OfflineDataset) -> dict:
    return {f.name: getattr(ds, f.name) for f in dataclasses.fields(ds)}


def test_record_refuses_broken_arrays() -> None:
    ds, _ = random_offline_dataset(steps=100)
    base = _fields(ds)
    cases = {
        "actions: ": {"actions": ds.actions[:-1]},
        "rewards: expected floats": {"rewards": ds.rewards.astype(np.int64)},
        "terminations: expected a 1-d bool": {"terminations": ds.terminations.astype(int)},
        "observations: contains NaN": {"observations": np.full_like(ds.observations, np.nan)},
        "next_observations: shape": {"next_observations": ds.next_observations[:, :3]},
        "dataset_id: must be a non-empty": {"dataset_id": ""},
    }
    for message, change in cases.items():
        with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
            OfflineDataset(**{**base, **change})
    ids = ds.episode_ids.copy()
    ids[-1] = ids[0]  # the first episode again at the end: split over two blocks
    with pytest.raises(DatasetError, match="more than one block"):
        OfflineDataset(**{**base, "episode_ids": ids})
    steps = ds.steps.copy()
    steps[5] += 1
    with pytest.raises(DatasetError, match="count up by 1"):
        OfflineDataset(**{**base, "steps": steps})
    term = ds.terminations.copy()
    term[1] = True  # step 1 of the first episode ends it, but the episode goes on
    with pytest.raises(DatasetError, match="must be its episode's last"):
        OfflineDataset(**{**base, "terminations": term})
    assert issubclass(DatasetError, RewardLabError)


def test_normalized_score_against_hand_computed_values() -> None:
    # D4RL: 100 * (return - random) / (expert - random)
    assert normalized_score(2220.0, -280.0, 4720.0) == pytest.approx(50.0)
    assert normalized_score(-280.0, -280.0, 4720.0) == 0.0
    assert normalized_score(4720.0, -280.0, 4720.0) == pytest.approx(100.0)
    np.testing.assert_allclose(normalized_score(np.array([0.0, 30.0, 130.0]), 10.0, 110.0),
                               [-10.0, 20.0, 120.0])
    assert isinstance(normalized_score(1.0, 0.0, 2.0), float)
    with pytest.raises(ValueError, match="different reference"):
        normalized_score(1.0, 5.0, 5.0)
    ds, _ = random_offline_dataset(steps=50)  # refs (-10, 90)
    assert ds.normalized_score(40.0) == pytest.approx(50.0)
    with pytest.raises(DatasetError, match="no ref_min_score"):
        dataclasses.replace(ds, ref_min_score=None).normalized_score(40.0)


def test_behaviour_score_is_the_normalised_mean_episode_return() -> None:
    ds, _ = random_offline_dataset(steps=50)  # refs (-10, 90)
    rewards = np.zeros_like(ds.rewards)
    starts = ds.episode_starts
    rewards[starts] = np.arange(len(starts), dtype=np.float32) * 10.0  # returns 0, 10, 20, ...
    ds = dataclasses.replace(ds, rewards=rewards)
    mean = 10.0 * (len(starts) - 1) / 2
    assert ds.behaviour_score() == pytest.approx(100 * (mean + 10) / 100)
    assert isinstance(ds.behaviour_score(), float)
    assert dataclasses.replace(ds, ref_max_score=None).behaviour_score() is None


def test_fingerprint_follows_the_data_not_the_name() -> None:
    a, _ = random_offline_dataset(steps=60, seed=1)
    same = dataclasses.replace(a, dataset_id="other/name-v3",
                               observations=a.observations.copy())
    assert a.fingerprint() == same.fingerprint() and len(a.fingerprint()) == 16
    obs = a.observations.copy()
    obs[7, 2] = np.nextafter(obs[7, 2], np.float32(np.inf))  # one value, one ulp
    assert dataclasses.replace(a, observations=obs).fingerprint() != a.fingerprint()
    assert dataclasses.replace(a, ref_max_score=91.0).fingerprint() != a.fingerprint()
    b, _ = random_offline_dataset(steps=60, seed=2)
    assert b.fingerprint() != a.fingerprint()


def test_concatenate_renumbers_episodes() -> None:
    a, _ = random_offline_dataset(steps=60, seed=1)
    b, _ = random_offline_dataset(steps=60, seed=2)
    both = concatenate([a, b], "rewardlab/hopper/medium-expert-v0")
    assert both.n_steps == a.n_steps + b.n_steps
    assert both.n_episodes == a.n_episodes + b.n_episodes
    np.testing.assert_array_equal(np.unique(both.episode_ids), np.arange(both.n_episodes))
    np.testing.assert_array_equal(both.observations[a.n_steps:], b.observations)
    assert (both.ref_min_score, both.ref_max_score) == (-10.0, 90.0)
    c = dataclasses.replace(b, ref_max_score=50.0)
    assert concatenate([a, c], "x/y-v0").ref_max_score is None  # disagreeing references


def test_ids_and_slugs() -> None:
    assert env_slug("HalfCheetah-v5") == "halfcheetah"
    assert env_slug("rewardlab.envs.toy:PointGoal-v0") == "pointgoal"
    assert tier_dataset_id("Walker2d-v5", "medium-replay", 2) == (
        "rewardlab/walker2d/medium-replay-v2")
    with pytest.raises(DatasetError, match="unknown 'best'"):
        tier_dataset_id("Hopper-v5", "best")


# ----------------------------------------------------------------------------- Minari
def test_minari_round_trip_is_exact(minari_root: Path) -> None:
    import minari

    ds, finals = random_offline_dataset(steps=150)
    path = write_minari_dataset(ds, final_render_states=finals, extra_metadata={"tier": "random"})
    assert path == minari_root / "rewardlab/hopper/random-v0" and datasets_root() == minari_root
    back = load_offline_dataset("rewardlab/hopper/random-v0")
    assert_same_arrays(ds, back)
    assert (back.dataset_id, back.env_id) == ("rewardlab/hopper/random-v0", "Hopper-v5")
    assert (back.ref_min_score, back.ref_max_score) == (-10.0, 90.0)
    assert_same_arrays(ds, load_offline_dataset(path))  # by path, too
    # Minari's own reader sees T + 1 observations and render states, the last the final ones
    mds = minari.load_dataset("rewardlab/hopper/random-v0")
    assert mds.total_steps == ds.n_steps and mds.total_episodes == ds.n_episodes
    episode = next(iter(mds.iterate_episodes([1])))
    t = len(episode.rewards)
    assert episode.observations.shape == (t + 1, 11)
    np.testing.assert_array_equal(episode.infos[RENDER_STATE_KEY][-1], finals[1])
    np.testing.assert_array_equal(final_render_states(ds.dataset_id), finals)
    meta = dataset_metadata("rewardlab/hopper/random-v0")
    assert meta[METADATA_KEY] == {"tier": "random", "complete": True}
    assert meta["data_format"] == "hdf5" and meta["ref_max_score"] == 90.0
    assert list(list_offline_datasets()) == ["rewardlab/hopper/random-v0"]
    with pytest.raises(DatasetError, match="exists already"):
        write_minari_dataset(ds)


def test_a_dataset_minari_collected_itself_loads(minari_root: Path) -> None:
    """Any local Minari dataset with Box spaces is input too, e.g. one from DataCollector."""
    import warnings

    import minari

    env = minari.DataCollector(gym.make("Hopper-v5", max_episode_steps=30))
    env.action_space.seed(0)
    lengths = []
    for episode in range(3):
        env.reset(seed=episode)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
        lengths.append(steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env.create_dataset("someone/hopper/random-v0", algorithm_name="random")
    env.close()
    ds = load_offline_dataset("someone/hopper/random-v0")
    assert (ds.dataset_id, ds.env_id) == ("someone/hopper/random-v0", "Hopper-v5")
    assert ds.episode_lengths().tolist() == lengths and ds.render_states is None
    assert ds.observations.dtype == np.float32 and ds.ref_min_score is None
    np.testing.assert_array_equal(ds.episode_ids, np.repeat(np.arange(3), lengths))
    assert (ds.terminations | ds.truncations)[np.cumsum(lengths) - 1].all()


def test_missing_and_malformed_ids_are_clear_errors(minari_root: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDatasetError) as info:
        load_offline_dataset("rewardlab/walker2d/medium-replay-v0")
    message = str(info.value)
    assert "'rewardlab/walker2d/medium-replay-v0' is not on this machine" in message
    assert "never downloads" in message and str(minari_root) in message
    assert "rewardlab dataset make --env Walker2d-v5 --tiers medium-replay" in message
    assert info.value.dataset_id == "rewardlab/walker2d/medium-replay-v0"
    with pytest.raises(MissingDatasetError, match="make --env ENV_ID --tiers TIER"):
        load_offline_dataset("mujoco/hopper/expert-v0")
    with pytest.raises(DatasetError, match="not a Minari id"):
        load_offline_dataset("hopper medium")
    with pytest.raises(DatasetError, match="not a Minari id"):
        load_offline_dataset("rewardlab/hopper/medium")  # no version
    with pytest.raises(DatasetError, match="not a Minari dataset directory"):
        load_offline_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no such dataset directory"):
        load_offline_dataset(tmp_path / "nowhere")


def test_an_interrupted_write_is_recognised_and_replaced(minari_root: Path) -> None:
    ds, finals = random_offline_dataset(steps=80)
    path = write_minari_dataset(ds, final_render_states=finals)
    meta_file = path / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    del meta[METADATA_KEY]  # as if killed after Minari wrote the episodes, before our record
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="left incomplete"):
        load_offline_dataset(ds.dataset_id)
    write_minari_dataset(ds, final_render_states=finals)  # replaced, not refused
    assert_same_arrays(ds, load_offline_dataset(ds.dataset_id))


# ----------------------------------------------------------------------------- the tiers
TINY = DatasetRecipe(
    env_id="HalfCheetah-v5", max_episode_steps=50, backbone="sac", net_arch=(32, 32),
    expert_steps=200, learning_starts=100, eval_every=100, eval_episodes=1, ref_episodes=2,
    tier_steps=100,
)


@pytest.fixture(scope="module")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """All five tiers of :data:`TINY` (a 200-step SB3 SAC expert, 100-step tiers), once."""
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        progress: list[tuple[int, int, str]] = []
        ids = make_tier_datasets(TINY, on_progress=lambda *a: progress.append(a))
        assert progress[-1] == (progress[-1][1], progress[-1][1], "done")
        assert [p[0] for p in progress] == sorted(p[0] for p in progress)  # never backwards
        yield root, ids


@pytest.mark.e2e
def test_tiers_are_d4rl_shaped(tiers: tuple[Path, dict[str, str]],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    root, ids = tiers
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    assert ids == {t: f"rewardlab/halfcheetah/{t}-v0" for t in
                   ("random", "medium", "medium-replay", "expert", "medium-expert")}
    data = {t: load_offline_dataset(i) for t, i in ids.items()}
    meta = {t: dataset_metadata(i)[METADATA_KEY] for t, i in ids.items()}
    refs = {(d.ref_min_score, d.ref_max_score) for d in data.values()}
    assert len(refs) == 1  # every tier carries the same references
    ref_min, ref_max = refs.pop()
    assert ref_max > ref_min
    for tier in ("random", "medium", "expert"):
        assert 100 <= data[tier].n_steps < 150  # whole 50-step episodes, at least 100 steps
        assert meta[tier]["recipe"] == TINY.as_dict()
    m = meta["medium"]
    assert m["medium_target_return"] == pytest.approx(ref_min + (ref_max - ref_min) / 3)
    assert m["policy_step"] == m["medium_step"]
    assert meta["expert"]["policy_step"] == m["expert_step"]
    # medium-replay: the training run's first medium_step transitions, the last one truncated
    replay = data["medium-replay"]
    assert replay.n_steps == m["medium_step"] and replay.truncations[-1]
    # medium-expert: medium, then expert, exactly
    both = data["medium-expert"]
    assert both.n_steps == data["medium"].n_steps + data["expert"].n_steps
    np.testing.assert_array_equal(final_render_states(ids["medium-expert"]), np.concatenate(
        [final_render_states(ids["medium"]), final_render_states(ids["expert"])]))
    np.testing.assert_array_equal(both.observations, np.concatenate(
        [data["medium"].observations, data["expert"].observations]))
    # the render states are the states the observations were taken in (HalfCheetah's
    # observation is qpos[1:] and qvel, exactly)
    env = gym.make("HalfCheetah-v5").unwrapped
    env.reset(seed=0)
    for d in data.values():
        assert d.render_states is not None
        rows = np.linspace(0, d.n_steps - 1, 7).astype(int)
        for row in rows:
            state = d.render_states[row]
            env.set_state(state[:9], state[9:])
            np.testing.assert_array_equal(env._get_obs().astype(np.float32), d.observations[row])
    for tier, d in data.items():  # and the final states the last next observations
        finals = final_render_states(ids[tier])
        last = np.r_[d.episode_starts[1:], d.n_steps] - 1
        for state, row in zip(finals, last, strict=True):
            env.set_state(state[:9], state[9:])
            np.testing.assert_array_equal(env._get_obs().astype(np.float32),
                                          d.next_observations[row])


@pytest.mark.e2e
def test_a_second_make_reuses_the_datasets(tiers: tuple[Path, dict[str, str]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root, ids = tiers
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    stamps = {i: (root / i / "data" / "main_data.hdf5").stat().st_mtime_ns for i in ids.values()}
    t0 = time.perf_counter()
    assert make_tier_datasets(TINY, ["medium-replay", "random"]) == {
        t: ids[t] for t in ("random", "medium-replay")}
    assert time.perf_counter() - t0 < 2.0  # no training, no collection
    assert stamps == {i: (root / i / "data" / "main_data.hdf5").stat().st_mtime_ns
                      for i in ids.values()}
    other = dataclasses.replace(TINY, tier_steps=150)
    with pytest.raises(DatasetError, match="exists with other settings.*tier_steps"):
        make_tier_datasets(other, ["random"])
    # another version of the same recipe: the cached training run is reused (no training)
    progress: list[tuple[int, int, str]] = []
    new = make_tier_datasets(dataclasses.replace(TINY, version=1), ["medium-replay"],
                             on_progress=lambda *a: progress.append(a))
    assert new == {"medium-replay": "rewardlab/halfcheetah/medium-replay-v1"}
    assert not any("training" in p[2] for p in progress)
    assert_same_arrays(load_offline_dataset(new["medium-replay"]),
                       dataclasses.replace(load_offline_dataset(ids["medium-replay"]),
                                           dataset_id=new["medium-replay"]))


@pytest.mark.e2e
def test_the_same_recipe_makes_the_same_data(tiers: tuple[Path, dict[str, str]],
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root, ids = tiers
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    first = {t: load_offline_dataset(ids[t]) for t in ("random", "medium-replay", "expert")}
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "again"))
    make_tier_datasets(TINY, ["random", "medium-replay", "expert"])
    for tier, ds in first.items():
        again = load_offline_dataset(ids[tier])
        assert_same_arrays(ds, again)
        assert ds.fingerprint() == again.fingerprint()


def test_recipe_validation() -> None:
    with pytest.raises(ConfigError, match="expert_steps: must be an integer >= 1"):
        DatasetRecipe(expert_steps=0)
    with pytest.raises(ConfigError, match=r"medium_fraction: must be in \(0, 1\)"):
        DatasetRecipe(medium_fraction=1.5)
    with pytest.raises(ConfigError, match="backbone: unknown 'ppo'"):
        DatasetRecipe(backbone="ppo")
    assert DatasetRecipe().training_key() == DatasetRecipe(tier_steps=5, version=3).training_key()
    # the backbone defaults per env (the measured choice) and is stored resolved
    assert DatasetRecipe().backbone == "sbx_sac"  # HalfCheetah-v5
    assert DatasetRecipe(env_id="Hopper-v5").as_dict()["backbone"] == "crossq"
    assert DatasetRecipe(env_id="Hopper-v5", backbone="sac").backbone == "sac"
    assert DatasetRecipe().training_key() != DatasetRecipe(seed=1).training_key()
    with pytest.raises(DatasetError, match="unknown"):
        make_tier_datasets(TINY, ["best"])


def test_importing_the_data_and_labelling_layers_loads_no_torch_or_minari() -> None:
    import subprocess
    import sys

    code = ("import sys, rewardlab.data.offline, rewardlab.feedback.offline, rewardlab.cli.main\n"
            "print(','.join(m for m in ('torch', 'minari', 'jax', 'stable_baselines3') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
