"""The MLflow client this project uses, and how it waits: its settings (seconds, not minutes, for a server that is
down) and `retried`, which waits out parallel writers' collisions and says a full disk in one line."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable

from backprop_lab.core import stop
from backprop_lab.core.collector_pause import collector_paused
from backprop_lab.core.errors import TrackingError

MAX_PARAMS_PER_BATCH = 100  # MLflow's limits
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_CHARS = 6000
MAX_NOTE_CHARS = 8000  # a run's description may be long (a sweep's table): MLflow's longest tag value

# MLflow's HTTP client retries for minutes by default; a server that is down should be said in seconds, and a
# server restarted between two jobs of a sweep gets about 30 s (5 retries, backoff 1) to come back.
CLIENT_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # the summary prints the run's page itself
    # with tqdm installed, every artifact read (a rerun's config) would draw a progress bar on stderr, before the
    # one line an error must be
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

# What a store says when the disk or a file-size limit (`ulimit -f`) stops a write: the user's to fix, in one line
_CANNOT_WRITE = ("disk I/O error", "database or disk is full", "File too large", "No space left on device")


# Parallel writers colliding: sqlite's lock past its busy timeout, or two jobs inserting the same row (MLflow's
# log_inputs checks for the dataset, then inserts it; the retry finds it and only links it to the run)
LOCKED = ("database is locked",)
RACED_INSERT = ("duplicate key value violates unique constraint", "UNIQUE constraint failed")


def retried(fn: Callable, *args, attempts: int = 6, transient: tuple[str, ...] = LOCKED, **kwargs):
    """Call `fn`, waiting and retrying while the store answers one of the `transient` reasons."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            message = str(e)
            if any(reason in message for reason in _CANNOT_WRITE) or isinstance(e, OSError):
                reason = next((r for r in _CANNOT_WRITE if r in message), getattr(e, "strerror", None) or message)
                raise TrackingError(f"the tracking store cannot be written ({reason}); free space or raise the "
                                    "file-size limit (ulimit -f), or set tracking.uri") from None  # fmt: skip
            if not any(reason in message for reason in transient) or attempt == attempts - 1:
                raise
            time.sleep(0.25 * 2**attempt)


# A server's store keeps its transactions on its side: a call to it may be cut by Ctrl-C (and should be: a server
# that is down is retried for about 30 s)
SERVED = ("http://", "https://", "databricks")


class WholeCalls:
    """An MlflowClient each of whose calls a signal does not cut in the middle (stop.deferred): a store in a
    database or files of this machine, whose transaction or file an interrupted call would leave half done."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        found = getattr(self._client, name)
        if name.startswith("_") or not callable(found):
            return found

        @functools.wraps(found)
        def whole(*args, **kwargs):
            with stop.deferred():
                return found(*args, **kwargs)

        return whole


def mlflow_client(uri: str):
    with collector_paused("MLflow"):  # its first client imports MLflow and its store's modules
        from mlflow.tracking import MlflowClient

        for key, value in CLIENT_SETTINGS.items():
            os.environ.setdefault(key, value)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # a fresh store's schema migrations are not news
        # it logs a database error's traceback, then raises it: the error is reported once, by whoever catches it
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        if str(uri).startswith(SERVED):
            return MlflowClient(uri)
        with stop.deferred():  # a new store's tables are created here
            return WholeCalls(MlflowClient(uri))
