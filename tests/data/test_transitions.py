import numpy as np

from rewardlab.data.transitions import TransitionLog, load_log, save_log


def _fill(log: TransitionLog, steps: int, episode_len: int) -> None:
    for t in range(steps):
        obs = np.full((log.n_envs, log.obs.shape[-1]), t, np.float32)
        act = np.zeros((log.n_envs, log.actions.shape[-1]), np.float32)
        rew = np.full(log.n_envs, float(t), np.float32)
        log.add(obs, act, rew, np.full(log.n_envs, (t + 1) % episode_len == 0))


def test_windows_never_cross_episode_boundaries():
    log = TransitionLog(100, 2, 3, 1)
    _fill(log, 35, episode_len=10)
    rows, envs = log.valid_starts(4)
    w = log.windows(rows, envs, 4)
    # within one episode steps are consecutive and obs encodes the global step
    np.testing.assert_array_equal(np.diff(w["obs"][:, :, 0], axis=1), 1)
    assert (w["start_steps"] + 4 <= 10).all()
    assert len(rows) == 2 * (3 * 7 + 2)  # 3 full episodes x 7 starts + 2 in the partial one
    assert len(log.finished_returns) == 6


def test_wraparound_keeps_only_contiguous_windows():
    log = TransitionLog(16, 1, 1, 1)
    _fill(log, 40, episode_len=1000)
    rows, envs = log.valid_starts(5)
    w = log.windows(rows, envs, 5)
    np.testing.assert_array_equal(np.diff(w["obs"][:, :, 0], axis=1), 1)
    assert w["obs"][:, 0, 0].min() >= 24  # only the 16 most recent steps remain
    assert len(rows) == 12


def test_save_load_round_trip(tmp_path):
    log = TransitionLog(20, 1, 2, 1)
    _fill(log, 25, episode_len=7)
    save_log(log, str(tmp_path / "log.npz"))
    other = TransitionLog(20, 1, 2, 1)
    load_log(other, str(tmp_path / "log.npz"))
    np.testing.assert_array_equal(other.obs, log.obs)
    assert other.written == log.written and other.finished_returns == log.finished_returns
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    np.testing.assert_array_equal(
        log.sample_windows(5, 3, rng_a)["obs"], other.sample_windows(5, 3, rng_b)["obs"]
    )


def test_states_are_logged_and_windowed_with_their_steps(tmp_path):
    log = TransitionLog(50, 2, 1, 1, state_dim=3)
    for t in range(20):
        states = np.full((2, 3), t, np.float64)
        log.add(np.full((2, 1), t, np.float32), np.zeros((2, 1), np.float32),
                np.zeros(2, np.float32), np.zeros(2, bool), states)
    w = log.sample_windows(4, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(w["states"][:, :, 0], w["obs"][:, :, 0])
    save_log(log, str(tmp_path / "log.npz"))
    other = TransitionLog(50, 2, 1, 1, state_dim=3)
    load_log(other, str(tmp_path / "log.npz"))
    np.testing.assert_array_equal(other.states, log.states)
