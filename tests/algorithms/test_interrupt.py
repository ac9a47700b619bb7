"""StopSignals: Ctrl-C raises at once and is remembered if the first raise is swallowed."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from rewardlab.algorithms.interrupt import StopSignals


def test_press_swallowed_by_a_finaliser_is_raised_again_by_check():
    before = signal.getsignal(signal.SIGINT)  # other tests' servers may have set their own
    signals = StopSignals().install()
    try:
        signals.check()  # nothing pressed yet
        # the first raise, which a finaliser's "Exception ignored" would swallow
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("SIGINT did not raise")  # the handler runs before this line
        with pytest.raises(KeyboardInterrupt):
            signals.check()
    finally:
        signals.uninstall()
    assert signal.getsignal(signal.SIGINT) is before


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
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("SIGTERM did not raise")
        assert signals.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            signals.check()
    assert signal.getsignal(signal.SIGTERM) is before
