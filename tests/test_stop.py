"""The first stop signal raises KeyboardInterrupt and arms a report of where the process is, should it hang."""

import signal

import pytest

from backprop_lab.core import stop


def test_the_first_signal_interrupts_and_arms_the_hang_report_the_second_is_only_noted(monkeypatch, capsys):
    armed = []
    monkeypatch.setattr(stop.faulthandler, "dump_traceback_later", lambda timeout, exit: armed.append((timeout, exit)))
    try:
        with pytest.raises(KeyboardInterrupt):
            stop._on_signal(signal.SIGINT, None)
        assert armed == [(stop.STUCK_AFTER_S, False)]  # a report, never an exit: the runs are still being ended
        stop._on_signal(signal.SIGINT, None)  # noted, not raised
        assert "SIGINT again" in capsys.readouterr().err
        assert len(armed) == 1
    finally:
        stop.requested.clear()
