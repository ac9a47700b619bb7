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
        try:
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("SIGINT did not raise")  # the handler runs before this line
        except KeyboardInterrupt:
            pass  # what a finaliser's "Exception ignored" does to it
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
