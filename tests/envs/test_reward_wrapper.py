import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from rewardlab.algorithms.pebble import relabel_replay_buffer
from rewardlab.data.transitions import TransitionLog
from rewardlab.envs.reward_wrapper import LearnedRewardVecEnv
from tests.helpers import POINT_GOAL


def _proxy(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return (obs[:, 0] + 10 * actions[:, 1]).astype(np.float32)


def test_learner_sees_proxy_and_info_keeps_gold_across_autoreset():
    venv = make_vec_env(lambda: gym.make(POINT_GOAL), n_envs=2, seed=3)
    log = TransitionLog(200, 2, 4, 2)
    env = LearnedRewardVecEnv(venv, log, reward_fn=_proxy)
    obs = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):  # crosses the 50-step episode boundary (autoreset)
        actions = rng.uniform(-1, 1, size=(2, 2)).astype(np.float32)
        next_obs, rewards, dones, infos = env.step(actions)
        np.testing.assert_allclose(rewards, _proxy(obs, actions), rtol=1e-6)
        gold = np.array([i["true_reward"] for i in infos])
        assert np.all(gold <= 0) and not np.allclose(gold, rewards)
        obs = next_obs
    # the log holds the observation each action was taken in, never the next reset obs
    w = log.windows(np.array([48, 48]), np.array([0, 1]), 2)
    assert (w["episode_ids"] >= 0).all()
    rows, envs = log.valid_starts(50)
    assert rows.tolist() == [0, 0] and sorted(envs.tolist()) == [0, 1]
    assert len(log.finished_returns) == 2


def test_relabel_replay_buffer_uses_env_scale_actions():
    env = make_vec_env(lambda: gym.make(POINT_GOAL), n_envs=1, seed=0)
    model = SAC("MlpPolicy", env, learning_starts=10_000, buffer_size=1000,
                policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    model.learn(120)
    n = relabel_replay_buffer(model, _proxy)
    buf = model.replay_buffer
    assert n == 120
    expected = _proxy(buf.observations[:120, 0], model.policy.unscale_action(buf.actions[:120, 0]))
    np.testing.assert_allclose(buf.rewards[:120, 0], expected, rtol=1e-6)
