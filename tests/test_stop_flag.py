"""The one stop flag (jobs.stop_flag.StopFlag): a signal only sets it; a second Ctrl-C stops at once; the
handlers go back on exit unless told to stay. Real signals to this process, no fakes."""

from __future__ import annotations

import os
import signal

import pytest

from jobs.stop_flag import StopFlag


def test_a_signal_sets_the_flag_and_the_handlers_go_back():
    before = signal.getsignal(signal.SIGUSR2)
    with StopFlag([signal.SIGUSR2, signal.SIGTERM]) as flag:
        assert not flag()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert flag() and flag.signals == [signal.SIGUSR2]
        assert flag.exit_code == 128 + signal.SIGUSR2
    assert signal.getsignal(signal.SIGUSR2) is before


def test_a_second_ctrl_c_stops_at_once():
    with StopFlag() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        assert flag()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_restore_false_keeps_the_flag_watching():
    before = signal.getsignal(signal.SIGUSR2)
    try:
        with StopFlag([signal.SIGUSR2], restore=False) as flag:
            pass
        os.kill(os.getpid(), signal.SIGUSR2)  # after the block: still only sets the flag
        assert flag()
    finally:
        signal.signal(signal.SIGUSR2, before)
