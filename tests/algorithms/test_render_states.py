"""Segments of MuJoCo runs carry the simulator states they were recorded in."""

import gymnasium as gym
import numpy as np
import pytest

from rewardlab.cli.main import main
from rewardlab.store.store import FeedbackStore

pytestmark = pytest.mark.e2e


def test_stored_states_reproduce_the_stored_observations(tmp_path):
    run = tmp_path / "reacher"
    sets = ["env.id=Reacher-v5", "total_steps=700", "pebble.unsupervised_steps=300",
            "pebble.sac.learning_starts=300", "pebble.sac.net_arch=[32, 32]",
            "reward_model.hidden_sizes=[32]", "feedback.first_round_at=600",
            "feedback.total_budget=4", "feedback.queries_per_round=4", "feedback.segment_len=10",
            "eval.every=700", "eval.episodes=1", "progress_bar=false"]
    argv = ["train", "--run-dir", str(run)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    with FeedbackStore.open(run) as store:
        segments = store.records.get_segments(list(range(1, 9)))
    env = gym.make("Reacher-v5").unwrapped
    env.reset(seed=0)
    nq = env.model.nq
    for seg in segments:
        assert seg.render_states is not None and seg.render_states.shape == (10, nq + env.model.nv)
        for t in (0, 9):
            env.set_state(seg.render_states[t, :nq], seg.render_states[t, nq:])
            obs = env._get_obs()
            # angles, target and velocities come from qpos/qvel: exact
            np.testing.assert_allclose(obs[:8], seg.obs[t][:8], atol=1e-5)
            # fingertip - target comes from body positions, which MuJoCo's mj_step leaves one
            # substep stale in the stored observation (set_state recomputes them): close
            np.testing.assert_allclose(obs[8:], seg.obs[t][8:], atol=2e-3)
