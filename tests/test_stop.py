"""The first stop signal raises KeyboardInterrupt and arms a report of where the process is, should it hang."""

import signal
import threading

import pytest

from backprop_lab.core import stop


def test_the_first_signal_interrupts_and_arms_the_hang_report_the_second_is_only_noted(monkeypatch, capfd):
    armed = []
    monkeypatch.setattr(stop.faulthandler, "dump_traceback_later", lambda timeout, exit: armed.append((timeout, exit)))
    try:
        with pytest.raises(KeyboardInterrupt):
            stop._on_signal(signal.SIGINT, None)
        assert armed == [(stop.STUCK_AFTER_S, False)]  # a report, never an exit: the runs are still being ended
        stop._on_signal(signal.SIGINT, None)  # noted, not raised
        assert "SIGINT again" in capfd.readouterr().err
        assert len(armed) == 1
    finally:
        stop.requested.clear()


def test_a_signal_inside_a_deferred_section_is_raised_where_it_ends(monkeypatch):
    monkeypatch.setattr(stop.faulthandler, "dump_traceback_later", lambda timeout, exit: None)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with stop.deferred():
                with stop.deferred():
                    stop._on_signal(signal.SIGINT, None)  # noted, not raised: the section goes on
                    done.append("inner")
                done.append("outer")  # an inner section's end does not raise: the outer one is not done
        assert done == ["inner", "outer"]
        with stop.deferred():  # a stop under way (the runs being ended) is not raised again
            done.append("ending")
        with pytest.raises(ValueError), stop.deferred():  # its own error goes first; `requested` tells the rest
            raise ValueError("the section's own")
    finally:
        stop.requested.clear()


def test_ctrl_c_inside_a_store_write_lets_the_write_finish_then_ends_the_run_killed(tmp_path):
    """A signal that cut a store's call in the middle could leave its connection inside a transaction, holding
    sqlite's lock: ending the run then waited 20 s a try, and left it RUNNING. Here the signal comes while the write's
    statement has run and its transaction is open."""
    import os
    import time

    from sqlalchemy import event

    from backprop_lab import tracking
    from backprop_lab.tracking import lifecycle, mlflow_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client.mlflow_client(uri)
    engine = client._tracking_client.store.engine
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop.install()

    def interrupt(conn, cursor, statement, *args):
        if "tags" in statement.lower() and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            os.kill(os.getpid(), signal.SIGINT)

    try:
        with pytest.raises(KeyboardInterrupt):
            with lifecycle.tracked_run(uri, "e", "r", {}, (tmp_path / "artifacts").as_uri()) as ref:
                event.listen(engine, "after_cursor_execute", interrupt)
                started = time.monotonic()
                tracking.set_tags({"written": "yes"})
        event.remove(engine, "after_cursor_execute", interrupt)
        run = client.get_run(ref.run_id)
        assert run.data.tags.get("written") == "yes"  # the write the signal came in finished
        assert run.info.status == "KILLED" and time.monotonic() - started < 10  # not a lock's 20 s timeout
        assert not lifecycle.has_open_runs()
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
        stop.requested.clear()


def test_a_second_signal_landing_while_the_first_sets_the_flag_is_noted_not_a_deadlock(monkeypatch, capfd):
    """Python runs a handler inside the code the signal lands in, another handler too. A double Ctrl-C whose second
    signal landed inside the first handler's requested.set() used to wait forever on the lock that set() holds (1
    in about 600 runs stopped at random moments; no output, no dump)."""

    class SecondSignalMidSet(threading.Event):
        landed = False

        def set(self) -> None:
            if not self._cond.acquire(timeout=5):
                raise AssertionError("the second signal's handler waited on the lock the first one holds")
            try:
                if not self.landed:
                    self.landed = True
                    stop._on_signal(signal.SIGINT, None)  # the second Ctrl-C, while the first holds the lock
                self._flag = True
                self._cond.notify_all()
            finally:
                self._cond.release()

    monkeypatch.setattr(stop, "requested", SecondSignalMidSet())
    monkeypatch.setattr(stop.faulthandler, "dump_traceback_later", lambda timeout, exit: None)
    with pytest.raises(KeyboardInterrupt):  # the first, once
        stop._on_signal(signal.SIGINT, None)
    assert stop.requested.landed and stop.requested.is_set()
    assert "SIGINT again" in capfd.readouterr().err
