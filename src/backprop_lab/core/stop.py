"""Stopping on a signal, honestly: Ctrl-C and SIGTERM end the running MLflow run KILLED, whatever their timing.

- The first SIGINT or SIGTERM raises KeyboardInterrupt and sets `requested`. Python drops an exception raised
  inside a weakref callback or a `__del__` ("Exception ignored in ..."), and a signal can land there: the timing
  loop checks the flag between blocks, and a run that reaches its end with the flag set ends KILLED, not FINISHED.
- A second signal while the first is being handled (a fast double Ctrl-C) must not interrupt the handler that is
  recording the KILLED status: it is noted, not raised. Python runs a signal's handler inside the code it lands
  in, the first signal's handler too: one that landed while the first was setting `requested` would wait forever
  on the lock the first one holds, so the first says it is handling before it takes any lock.
- A signal must not cut a call into the store in the middle (`deferred`): an interrupted call can leave its
  database connection inside a transaction, holding sqlite's lock, and ending the run then waits on that lock (20 s,
  MLflow's busy timeout, a try) and fails, leaving it RUNNING. Inside such a section the signal is noted, and raised
  where the section ends.
- A stop takes a second or two. A process still alive STUCK_AFTER_S after the first signal prints where each of
  its threads is (faulthandler: code locations only, no values), so that a stop that hangs says where.
- A launcher's worker (joblib's loky processes) outlives a sweep killed by SIGKILL: it is re-parented and would go
  on for minutes. `end_with_parent` watches for that and stops the worker as SIGTERM would, its run ending KILLED.
- SIGXFSZ (a file-size limit, `ulimit -f`) would kill the process outright, leaving the run RUNNING: ignored, the
  write fails with an OSError instead and the run ends FAILED.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

requested = threading.Event()
STUCK_AFTER_S = 20
PARENT_POLL_S = 1.0  # how soon a worker notices that the process that started it is gone
_watching = threading.Event()
_deferring = 0  # how many `deferred` sections the main thread is in
_handling = False  # the first signal's handler is setting `requested`


def check() -> None:
    if requested.is_set():
        raise KeyboardInterrupt


def _on_signal(signum, frame) -> None:
    global _handling
    if _handling or requested.is_set():
        # straight to the descriptor: the signal may have landed inside a write to sys.stderr
        os.write(2, f"{signal.Signals(signum).name} again: still ending the run as KILLED, please wait\n".encode())
        return
    _handling = True  # before the Event's lock: a second signal's handler can run inside this one's set()
    try:
        requested.set()
        faulthandler.dump_traceback_later(STUCK_AFTER_S, exit=False)
    finally:
        _handling = False
    if not _deferring:  # else raised where the section ends
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """A section that a signal does not cut: one that arrives inside it is raised as it ends (when it ends without
    an error of its own; else `requested` tells). Signals reach the main thread only: elsewhere this does nothing."""
    global _deferring
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = requested.is_set()  # a stop already under way (ending the runs) is not raised again
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and not before and requested.is_set():
        raise KeyboardInterrupt


def install() -> None:
    """For an entry point's main thread, and a launcher's worker's (where it is a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def ignore_further() -> None:
    """Once the runs are ended and the process is leaving: a late signal changes nothing, and says nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def end_with_parent(open_runs: Callable[[], bool], grace_s: float = STUCK_AFTER_S) -> None:
    """For a launcher's worker: once the process that started it is gone (killed, crashed), stop as on SIGTERM, and
    leave once the stop has ended the runs the worker had open (`open_runs()` says whether any is left: nothing
    else is left to do for a sweep that is gone, its launcher would keep the worker waiting for the next job), or
    `grace_s` later if they are not all ended. Started once per process."""
    if _watching.is_set():
        return
    _watching.set()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)
        leave_by = time.monotonic() + grace_s
        time.sleep(PARENT_POLL_S)  # for the interrupt to reach the job before its open runs are counted
        while open_runs() and time.monotonic() < leave_by:
            time.sleep(0.1)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
