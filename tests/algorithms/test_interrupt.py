"""StopSignals: the first Ctrl-C/SIGTERM latches a flag read at safe points; a second one raises."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from rewardlab.algorithms.interrupt import StopSignals


def test_first_press_latches_and_check_raises_at_the_safe_point():
    before = signal.getsignal(signal.SIGINT)  # other tests' servers may have set their own
    signals = StopSignals().install()
    try:
        signals.check()  # nothing pressed yet
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next line
        assert signals.received == signal.SIGINT  # latched, not raised inside whatever ran
        with pytest.raises(KeyboardInterrupt):
            signals.check()
        with pytest.raises(KeyboardInterrupt):  # a second press forces the stop at once
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second SIGINT did not raise")
    finally:
        signals.uninstall()
    assert signal.getsignal(signal.SIGINT) is before


def test_callback_ends_an_agents_learn_at_the_next_step():
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=10_000, seed=0, device="cpu")
    with StopSignals() as signals:
        model.learn(20, callback=signals.callback())
        assert model.num_timesteps == 20  # no signal: learn runs its steps
        os.kill(os.getpid(), signal.SIGTERM)
        model.learn(5_000, reset_num_timesteps=False, callback=signals.callback())
        assert model.num_timesteps == 21  # stopped after the step in progress
        with pytest.raises(KeyboardInterrupt):
            signals.check()


def test_outside_the_main_thread_it_installs_nothing():
    before = signal.getsignal(signal.SIGINT)
    signals = StopSignals()
    thread = threading.Thread(target=signals.install)
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGINT) is before
    signals.check()
    signals.uninstall()


@pytest.mark.e2e
@pytest.mark.parametrize("algorithm", ["pebble", "pref_ppo"])
def test_training_restores_the_sigint_handler(tmp_path, algorithm):
    from rewardlab.cli.main import main
    from tests.helpers import fast_overrides

    before = signal.getsignal(signal.SIGINT)
    argv = ["train", "--run-dir", str(tmp_path / algorithm)]
    for o in fast_overrides(algorithm, 2048):
        argv += ["--set", o]
    assert main(argv) == 0
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_stops_like_ctrl_c():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            signals.check()
    assert signal.getsignal(signal.SIGTERM) is before
