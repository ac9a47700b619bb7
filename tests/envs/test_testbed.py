"""The misspecification testbed: dynamics, gold reward, biased teacher views, config hook."""

import gymnasium as gym
import numpy as np
import pytest

from rewardlab.config import build_config
from rewardlab.envs.testbed import (
    DECOY,
    GOAL,
    GOLD_REWARDS,
    HAZARD_COST,
    HAZARD_RADIUS,
    SETTINGS,
    STEP_SIZE,
    gold_reward,
    teacher_view,
)
from rewardlab.errors import ConfigError


@pytest.mark.parametrize("name", ["PointHazard-v0", "PointNarrow-v0", "PointDecoy-v0"])
def test_env_steps_and_rewards_match_gold_function(name):
    env_id = f"rewardlab.envs.testbed:{name}"
    env = gym.make(env_id)
    obs, _ = env.reset(seed=3)
    assert -1.0 <= obs[0] <= -0.8 and abs(obs[1]) <= 0.2
    rng = np.random.default_rng(0)
    steps, truncated = 0, False
    while not truncated:
        action = rng.uniform(-1, 1, size=2).astype(np.float32)
        nxt, reward, terminated, truncated, _ = env.step(action)
        assert not terminated
        np.testing.assert_allclose(nxt, np.clip(obs + STEP_SIZE * action, -1, 1), atol=1e-6)
        assert reward == pytest.approx(float(GOLD_REWARDS[env_id](obs, action)), abs=1e-6)
        obs, steps = nxt, steps + 1
    assert steps == 50


def test_hazard_cost_applies_only_inside_the_disk():
    stay = np.zeros(2)
    inside = GOAL + np.array([HAZARD_RADIUS / 2, 0.0])
    outside = GOAL + np.array([HAZARD_RADIUS * 1.5, 0.0])
    assert gold_reward(inside, stay, hazard=True) == pytest.approx(
        -HAZARD_RADIUS / 2 - HAZARD_COST)
    assert gold_reward(outside, stay, hazard=True) == pytest.approx(-HAZARD_RADIUS * 1.5)
    # the biased teacher ignores the cost: it prefers the goal, the truth prefers the edge
    view = teacher_view("ignore_hazard")
    assert view(inside, stay) > view(outside, stay)
    assert gold_reward(inside, stay, True) < gold_reward(outside, stay, True)


def test_decoy_teacher_prefers_the_landmark_over_the_goal():
    view = teacher_view("decoy")
    stay = np.zeros((2, 2))
    at = np.stack([GOAL, DECOY])
    judged = view(at, stay)
    assert judged[1] > judged[0]
    assert gold_reward(at, stay)[0] > gold_reward(at, stay)[1]
    # batched over (N, 2, T, 2) query arrays
    assert view(np.zeros((3, 2, 5, 2)), np.zeros((3, 2, 5, 2))).shape == (3, 2, 5)


def test_teacher_bias_is_validated_at_config_time():
    with pytest.raises(ConfigError, match="teacher_bias: unknown view 'nope'"):
        build_config({}, ["teacher_bias=nope"])
    for setting in SETTINGS.values():
        build_config({}, ["algorithm=pref_ppo", *setting.overrides])
    with pytest.raises(ValueError, match="allowed: ignore_hazard, decoy"):
        teacher_view("nope")
