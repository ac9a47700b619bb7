"""Unit tests of the over-optimisation mitigations (no training loop)."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from rewardlab.algorithms.policies import frozen_copy, gaussian_params, policy_distance, state_kl
from rewardlab.algorithms.training import (
    agent_reward,
    build_regularizer,
    fit_discriminator,
)
from rewardlab.config import EnvConfig, build_config
from rewardlab.diagnostics.early_stopping import EarlyStopping
from rewardlab.feedback.rounds import effective_schedule
from rewardlab.rewards.regularizers import RATIO_CLIP, OccupancyDiscriminator, chi2_penalty

ENV = "rewardlab.envs.testbed:PointNarrow-v0"


def _config(*overrides):
    return build_config({}, ["algorithm=pref_ppo", f"env.id={ENV}", "total_steps=20480",
                             "feedback.total_budget=100", "feedback.queries_per_round=20",
                             "feedback.first_round_at=1024", "feedback.round_every=1024",
                             "ppo.n_envs=4", *overrides])


def _ppo(seed=0):
    return PPO("MlpPolicy", gym.make(ENV), n_steps=64, batch_size=64, seed=seed, device="cpu",
               policy_kwargs={"net_arch": [16, 16]})


def test_effective_schedule_spreads_budget_and_cuts_recent_segments():
    plain = _config()
    assert effective_schedule(plain.feedback, plain.mitigation, plain.total_steps, 4) == (
        plain.feedback)
    targeted = _config("mitigation.targeted_feedback=true")
    sch = effective_schedule(targeted.feedback, targeted.mitigation, targeted.total_steps, 4)
    # 5 rounds over the 19456 steps after the first round
    assert sch.round_every == (20480 - 1024) // 5
    assert sch.recent_steps == sch.round_every // 4
    assert sch.total_budget == 100 and sch.first_round_at == 1024
    # targeted_spread off: the configured cadence stays, the segments are still the recent ones
    kept = _config("mitigation.targeted_feedback=true", "mitigation.targeted_spread=false")
    sch = effective_schedule(kept.feedback, kept.mitigation, kept.total_steps, 4)
    assert sch.round_every == kept.feedback.round_every < (20480 - 1024) // 5
    assert sch.recent_steps == sch.round_every // 4


def test_chi2_penalty_hand_values_and_clipping():
    out = chi2_penalty(np.array([0.0, math.log(3.0), 50.0, -50.0]))
    np.testing.assert_allclose(out, [0.0, 4.0, 2 * (RATIO_CLIP - 1), 2 * (1 / RATIO_CLIP - 1)])


def test_discriminator_estimates_the_log_density_ratio():
    rng = np.random.default_rng(0)
    cur = rng.normal(0.5, 1.0, size=(4000, 1)).astype(np.float32)
    ref = rng.normal(-0.5, 1.0, size=(4000, 1)).astype(np.float32)
    disc = OccupancyDiscriminator(1, seed=0)
    disc.fit(cur, ref, steps=600)
    x = np.linspace(-1.5, 1.5, 31, dtype=np.float32)[:, None]
    true = x[:, 0].astype(np.float64)  # log N(x; .5, 1) - log N(x; -.5, 1) = x
    est = disc.log_ratio(x)
    assert np.corrcoef(est, true)[0, 1] > 0.95
    assert np.abs(est - true).mean() < 0.35


def test_policy_kl_zero_to_own_copy_and_positive_after_change():
    model = _ppo()
    ref = frozen_copy(model.policy)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(20, 2)).astype(np.float32)
    m, s = gaussian_params(model.policy, obs)
    mr, sr = gaussian_params(ref, obs)
    np.testing.assert_allclose(m, mr)
    with torch.no_grad():
        model.policy.log_std.add_(0.3)
    kl = state_kl(model.policy, ref, obs)
    # KL(N(m, (s e^.3)^2) || N(m, s^2)) per dim = (e^.6 - 1)/2 - .3, two dims
    np.testing.assert_allclose(kl, 2 * ((math.exp(0.6) - 1) / 2 - 0.3), rtol=1e-6)
    metrics = policy_distance(model.policy, ref, obs)
    assert metrics["diagnostics/policy_kl"] == pytest.approx(kl.mean())
    assert metrics["diagnostics/sqrt_kl"] == pytest.approx(math.sqrt(kl.mean()))


def test_frozen_copy_does_not_move_the_global_torch_rng():
    model = _ppo()
    state = torch.random.get_rng_state()
    frozen_copy(model.policy)
    assert torch.equal(state, torch.random.get_rng_state())


def test_disagreement_early_stop_fires_after_patience_and_remembers_the_trusted_step():
    cfg = _config("mitigation.early_stop=disagreement", "mitigation.early_stop_ratio=1.5",
                  "mitigation.early_stop_patience=2")
    stop = EarlyStopping(cfg.mitigation)
    stop.reward_updated()
    assert stop.check_disagreement(2048, 0.10) == "trust"  # baseline
    assert stop.check_disagreement(4096, 0.14) == "trust"  # within 1.5x
    assert stop.check_disagreement(6144, 0.2) == "fail"  # first failure (patience 2)
    assert stop.check_disagreement(8192, 0.3) == "stop"  # second: stop
    assert stop.stopped_at == 8192 and "disagreement" in stop.reason
    assert stop.trusted_step == 4096
    assert stop.check_disagreement(9000, float("nan")) == "skip"
    restored = EarlyStopping(cfg.mitigation)
    restored.load_state(stop.state())
    assert restored == stop


def test_calibration_early_stop_uses_fresh_query_ece():
    cfg = _config("mitigation.early_stop=calibration", "mitigation.early_stop_ece=0.2")
    stop = EarlyStopping(cfg.mitigation)
    assert stop.check_calibration(1024, float("nan")) == "trust"  # first round: no fresh ECE
    assert stop.check_calibration(2048, 0.1) == "trust"
    assert stop.check_calibration(3072, 0.3) == "stop"
    assert stop.trusted_step == 2048 and stop.stopped_at == 3072
    assert stop.check_disagreement(4096, 1.0) == "skip"  # the other rule is off


def test_chi2_regulariser_penalises_reward_off_reference_states():
    cfg = _config("mitigation.regularizer=chi2_occupancy", "mitigation.reg_coef=0.5",
                  "mitigation.reference_samples=400", "mitigation.discriminator_steps=200")
    model = _ppo()
    reg = build_regularizer(cfg.mitigation, model, frozen_copy(model.policy),
                            EnvConfig(id=ENV), seed=0)
    assert reg.reference_pairs.shape == (400, 4)

    class _Log:  # current policy visits the right half, the reference starts on the left
        def recent_flat(self, rows):
            rng = np.random.default_rng(1)
            obs = rng.uniform(0.5, 1.0, size=(rows, 2)).astype(np.float32)
            return obs, rng.uniform(-1, 1, size=(rows, 2)).astype(np.float32)

    metrics = fit_discriminator(reg, _Log(), 400, cfg.mitigation.discriminator_steps)
    assert set(metrics) == {"diagnostics/discriminator_loss", "diagnostics/chi2_penalty_mean"}

    class _Zero:  # the proxy reward: 0 everywhere
        def reward(self, o, a):
            return np.zeros(len(o), dtype=np.float32)

    reward = agent_reward(_Zero(), reg)
    far = reward(np.full((5, 2), 0.8, np.float32), np.zeros((5, 2), np.float32))
    near = reward(reg.reference_pairs[:5, :2], reg.reference_pairs[:5, 2:])
    assert far.mean() < near.mean() and far.mean() < 0


def test_action_kl_regulariser_is_zero_at_the_reference():
    cfg = _config("mitigation.regularizer=action_kl", "mitigation.reg_coef=1.0")
    model = _ppo()
    reg = build_regularizer(cfg.mitigation, model, frozen_copy(model.policy),
                            EnvConfig(id=ENV), seed=0)
    obs = np.zeros((3, 2), np.float32)
    np.testing.assert_allclose(reg.penalty(obs, obs), 0.0, atol=1e-12)
    with torch.no_grad():
        model.policy.log_std.add_(0.3)
    assert (reg.penalty(obs, obs) > 0).all()
