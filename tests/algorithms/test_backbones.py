"""PEBBLE's backbones (pebble.backbone): SBX SAC and CrossQ checkpoints, critic reset, policy
snapshots, and PEBBLE end to end on CrossQ with a resume."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("sbx")
import jax  # noqa: E402

from rewardlab.algorithms import backbones  # noqa: E402
from rewardlab.algorithms.policies import gaussian_params, state_kl  # noqa: E402
from rewardlab.cli.main import main  # noqa: E402
from rewardlab.config import SACConfig  # noqa: E402
from rewardlab.diagnostics.metrics import read_metrics  # noqa: E402
from rewardlab.errors import RunDirError  # noqa: E402
from tests.helpers import POINT_GOAL, fast_overrides  # noqa: E402

SMALL = SACConfig(learning_starts=100, net_arch=(32, 32), batch_size=32, buffer_size=1000)


def _agent(backbone: str, seed: int = 0, learn: int = 0):
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(lambda: gym.make(POINT_GOAL), n_envs=1, seed=seed)
    model = backbones.build_agent(backbone, SMALL, venv, seed)
    if learn:
        model.learn(learn, progress_bar=False)
    return model


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _same(a, b) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


@pytest.mark.parametrize("backbone", ["sbx_sac", "crossq"])
def test_checkpoint_round_trip_is_exact(backbone, tmp_path):
    model = _agent(backbone, seed=0, learn=300)
    backbones.save_agent(model, tmp_path)
    assert (tmp_path / backbones.JAX_TENSORS).exists()
    meta = json.loads((tmp_path / backbones.JAX_JSON).read_text())
    assert set(meta["trees"]) == set(backbones.JAX_STATES)
    fresh = _agent(backbone, seed=1)
    assert not _same(fresh.policy.actor_state.params, model.policy.actor_state.params)
    backbones.load_agent(fresh, tmp_path)
    for name in backbones.JAX_STATES:
        assert _same(backbones._resolve(fresh, name), backbones._resolve(model, name)), name
    assert fresh.num_timesteps == model.num_timesteps and fresh._n_updates == model._n_updates
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(fresh.predict(obs, deterministic=True)[0],
                                  model.predict(obs, deterministic=True)[0])
    # training goes on identically from the restored state (same buffer, same RNG streams)
    from stable_baselines3.common.logger import configure

    fresh.replay_buffer = model.replay_buffer
    for m in (model, fresh):
        m.set_logger(configure(None, []))
        np.random.seed(123)  # noqa: NPY002  (SB3 samples minibatches from the global RNG)
        m.train(gradient_steps=3, batch_size=SMALL.batch_size)
    assert _same(fresh.policy.qf_state.params, model.policy.qf_state.params)


def test_checkpoint_of_another_backbone_is_refused(tmp_path):
    backbones.save_agent(_agent("sbx_sac"), tmp_path)
    with pytest.raises(RunDirError):
        backbones.load_agent(_agent("crossq"), tmp_path)


@pytest.mark.parametrize("backbone", ["sbx_sac", "crossq"])
def test_reset_critic_changes_the_critic_and_keeps_the_actor(backbone):
    model = _agent(backbone, learn=300)
    actor, critic = model.policy.actor_state, model.policy.qf_state
    backbones.reset_critic(model, seed=7)
    new = model.policy.qf_state
    assert _same(model.policy.actor_state, actor)
    assert not any(np.array_equal(a, b) for a, b in zip(_leaves(new.params),
                                                         _leaves(critic.params), strict=True)
                   if a.ndim == 2)
    assert _same(new.opt_state, critic.tx.init(new.params))  # fresh optimiser state
    if hasattr(new, "target_params"):
        assert _same(new.target_params, new.params)
    model.learn(50, reset_num_timesteps=False, progress_bar=False)  # still trains


@pytest.mark.parametrize("backbone", ["sbx_sac", "crossq"])
def test_snapshot_and_weights(backbone):
    model = _agent(backbone, learn=200)
    ref = backbones.frozen_policy(model.policy)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    mean, std = gaussian_params(model.policy, obs)
    assert mean.shape == std.shape == (8, 2) and (std > 0).all()
    np.testing.assert_allclose(state_kl(model.policy, ref, obs), 0.0, atol=1e-9)
    weights = backbones.policy_weights(model.policy)
    model.learn(100, reset_num_timesteps=False, progress_bar=False)
    assert state_kl(model.policy, ref, obs).mean() > 0  # the snapshot did not move
    assert np.asarray(ref.predict(obs[0], deterministic=False)[0]).shape == (2,)
    backbones.load_policy_weights(model.policy, weights)  # the early-stopping rollback
    np.testing.assert_allclose(state_kl(model.policy, ref, obs), 0.0, atol=1e-9)
    other = backbones.frozen_policy(model.policy)
    other.load_state_dict(ref.state_dict())
    assert _same(backbones._variables(other.actor_state),
                 backbones._variables(ref.actor_state))


def _train(run_dir, overrides):
    argv = ["train", "--run-dir", str(run_dir)]
    for o in overrides:
        argv += ["--set", o]
    return main(argv)


@pytest.mark.e2e
def test_pebble_on_crossq_trains_and_resumes(tmp_path):
    run = tmp_path / "r"
    overrides = [*fast_overrides("pebble", 1500), "pebble.backbone=crossq"]
    assert _train(run, overrides) == 0
    latest = run / "checkpoints/latest"
    assert (latest / backbones.JAX_TENSORS).exists()
    assert (latest / "reference_policy.safetensors").exists()
    assert main(["train", "--resume", str(run), "--set", "total_steps=2500"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2500
    evals = [r for r in read_metrics(run) if "eval/gold_return" in r]
    assert [r["step"] for r in evals][-1] == 2500
    assert all(np.isfinite(r["eval/gold_return"]) for r in evals)
    assert any("diagnostics/policy_kl" in r for r in evals)  # KL against the reference
