"""SigintLatch: Ctrl-C raises at once and is remembered if the first raise is swallowed."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from rewardlab.algorithms.interrupt import SigintLatch


def test_press_swallowed_by_a_finaliser_is_raised_again_by_check():
    before = signal.getsignal(signal.SIGINT)  # other tests' servers may have set their own
    latch = SigintLatch().install()
    try:
        latch.check()  # nothing pressed yet
        # the first raise, which a finaliser's "Exception ignored" would swallow
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("SIGINT did not raise")  # the handler runs before this line
        with pytest.raises(KeyboardInterrupt):
            latch.check()
    finally:
        latch.uninstall()
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_it_installs_nothing():
    before = signal.getsignal(signal.SIGINT)
    latch = SigintLatch()
    thread = threading.Thread(target=latch.install)
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGINT) is before
    latch.check()
    latch.uninstall()


@pytest.mark.e2e
@pytest.mark.parametrize("algorithm", ["pebble", "pref_ppo"])
def test_training_restores_the_sigint_handler(tmp_path, algorithm):
    from rewardlab.cli.main import main
    from tests.helpers import fast_overrides

    before = signal.getsignal(signal.SIGINT)
    argv = ["train", "--run-dir", str(tmp_path / algorithm)]
    for o in fast_overrides(algorithm, 1000):
        argv += ["--set", o]
    assert main(argv) == 0
    assert signal.getsignal(signal.SIGINT) is before
