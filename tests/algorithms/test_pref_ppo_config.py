"""PPOConfig's gSDE settings reach the Stable-Baselines3 PPO that preference PPO trains."""

from __future__ import annotations

import pytest
from stable_baselines3.common.env_util import make_vec_env

from rewardlab.algorithms.pref_ppo import build_ppo
from rewardlab.config import ConfigError, build_config

ENV = "Pendulum-v1"


def _model(overrides: list[str]):
    config = build_config({}, ["algorithm=pref_ppo", f"env.id={ENV}", *overrides])
    env = make_vec_env(ENV, n_envs=config.ppo.n_envs, seed=0)
    return config, build_ppo(config.ppo, env, seed=0)


def test_sde_settings_reach_the_sb3_model():
    config, model = _model(["ppo.use_sde=true", "ppo.sde_sample_freq=4", "ppo.n_steps=1024",
                            "ppo.gamma=0.9", "ppo.learning_rate=0.001"])
    assert model.use_sde is True and model.policy.use_sde is True
    assert model.sde_sample_freq == 4
    assert (model.n_steps, model.gamma, model.learning_rate) == (1024, 0.9, 0.001)
    # gSDE noise is state dependent: the policy holds the exploration matrix it samples from
    assert model.policy.action_dist.exploration_mat is not None
    assert config.ppo.use_sde is True


def test_sde_is_off_by_default_as_in_sb3():
    config, model = _model([])
    assert (config.ppo.use_sde, config.ppo.sde_sample_freq) == (False, -1)
    assert model.use_sde is False and model.sde_sample_freq == -1


@pytest.mark.parametrize("overrides, message", [
    (["ppo.sde_sample_freq=4"], "ppo.use_sde=true"),
    (["ppo.use_sde=true", "ppo.sde_sample_freq=0"], "sde_sample_freq: 0"),
    (["ppo.use_sde=true", "ppo.sde_sample_freq=-2"], "sde_sample_freq"),
])
def test_bad_sde_settings_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config({}, ["algorithm=pref_ppo", *overrides])


def test_pref_ppo_reward_model_defaults_fill_only_the_keys_not_given(tmp_path):
    from rewardlab.config import (
        PREF_PPO_REWARD_MODEL_DEFAULTS,
        RewardModelConfig,
        dump_config,
        load_run_config,
    )

    config = build_config({}, ["algorithm=pref_ppo"])
    for key, value in PREF_PPO_REWARD_MODEL_DEFAULTS.items():
        assert getattr(config.reward_model, key) == value
    assert config.reward_model.members == RewardModelConfig().members  # the rest: as PEBBLE
    given = build_config({}, ["algorithm=pref_ppo", "reward_model.hidden_sizes=[256,256]"])
    assert given.reward_model.hidden_sizes == (256, 256)
    # the saved config reads back to the same config (resume)
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_run_config(path) == config


def test_pebble_takes_the_fields_reward_model_and_offline_methods_pebbles_3x256():
    from rewardlab.config import OFFLINE_REWARD_MODEL_DEFAULTS, RewardModelConfig

    # PEBBLE (the default algorithm, or given) takes the field's 3 x 128
    for overrides in ([], ["algorithm=pebble"]):
        assert build_config({}, overrides).reward_model == RewardModelConfig()
    assert RewardModelConfig().hidden_sizes == (128, 128, 128)
    # the offline methods take theirs (PEBBLE's 3 x 256); a given value wins
    for algorithm in ("iql", "td3bc", "cpl"):
        offline = build_config({}, [f"algorithm={algorithm}",
                                    "dataset=rewardlab/hopper/medium-replay-v1"])
        assert offline.reward_model.hidden_sizes == OFFLINE_REWARD_MODEL_DEFAULTS[
            "hidden_sizes"] == (256, 256, 256)
    given = build_config({}, ["algorithm=iql", "dataset=rewardlab/hopper/medium-replay-v1",
                              "reward_model.hidden_sizes=[64,64]"])
    assert given.reward_model.hidden_sizes == (64, 64)
