"""Stage 6, tracking: the only module that talks to MLflow.

The default store is a sqlite database in `mlruns/` under the launch directory, with artifacts beside it
(MLflow 3.13+ refuses the old `./mlruns` file store). Runs end FINISHED, FAILED on an exception, KILLED on Ctrl-C.
A sweep is a parent run; each job is a child run tagged `mlflow.parentRunId`, which the MLflow UI nests.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Optional

from backprop_lab import owner, stop
from backprop_lab.errors import TrackingError
from backprop_lab.loading import collector_paused
from backprop_lab.redaction import redact

MAX_PARAMS_PER_BATCH = 100  # MLflow's limits
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_CHARS = 6000
MAX_NOTE_CHARS = 8000  # a run's description may be long (a sweep's table): MLflow's longest tag value
NOTE_TAG = "mlflow.note.content"  # the run's description, rendered as markdown in the UI
PARENT_TAG = "mlflow.parentRunId"  # what MLflow's own nested runs set, so the UI nests children under the sweep
SWEEP_TAG = "backprop_lab.sweep"  # "parent" on a sweep's run
ALSO_IN = "backprop_lab.also_in."  # + a parent's id, "reused": a run of an earlier sweep that a resumed one counts
JOB_NUM_TAG = "hydra.job.num"  # on a sweep's child: the number of the job that started it
# + a parent's id, on a FINISHED child whose job failed after the run ended (printing its line, say); + "job" and
# the job's number, on the parent, for a job that failed without a run: the error, for the parent to count
JOB_FAILED = "backprop_lab.job_failed."
SWEEP_ENV = "BACKPROP_LAB_SWEEP_RUN_ID"  # hands the parent's id to jobs, in this process or a launcher's workers

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


class RunRef(NamedTuple):
    run_id: str
    experiment_id: str


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config to `a.b.c` params; lists as JSON; values cut to MLflow's length limit."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            text = json.dumps(value) if isinstance(value, (list, type(None), bool)) else str(value)
            flat[name] = redact(text)[:MAX_PARAM_CHARS]
    return flat


# What a store says when the disk or a file-size limit (`ulimit -f`) stops a write: the user's to fix, in one line
_CANNOT_WRITE = ("disk I/O error", "database or disk is full", "File too large", "No space left on device")


# Parallel writers colliding: sqlite's lock past its busy timeout, or two jobs inserting the same row (MLflow's
# log_inputs checks for the dataset, then inserts it; the retry finds it and only links it to the run)
_LOCKED = ("database is locked",)
_RACED_INSERT = ("duplicate key value violates unique constraint", "UNIQUE constraint failed")


def retried(fn: Callable, *args, attempts: int = 6, transient: tuple[str, ...] = _LOCKED, **kwargs):
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


def mlflow_client(uri: str):
    with collector_paused("MLflow"):  # its first client imports MLflow and its store's modules
        from mlflow.tracking import MlflowClient

        for key, value in CLIENT_SETTINGS.items():
            os.environ.setdefault(key, value)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # a fresh store's schema migrations are not news
        # it logs a database error's traceback, then raises it: the error is reported once, by whoever catches it
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        return MlflowClient(uri)


def prepare_store(uri: str, experiment: str, artifact_location: Optional[str] = None) -> str:
    """Check the store, create it and the experiment if missing, end the runs of dead processes, and return the
    experiment's id. Processes that each create a fresh sqlite store at the same moment race inside MLflow's schema
    migrations, so creation holds a file lock (and a sweep calls this before its jobs start)."""
    from backprop_lab.store import check_store, creation_lock, sqlite_file

    # not under the lock: a check that finds the store half made waits for that lock itself
    check_store(uri)
    db = sqlite_file(uri)
    if db is None:
        experiment_id = _experiment_id(uri, experiment, artifact_location)
    else:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with creation_lock(db):
                experiment_id = _experiment_id(uri, experiment, artifact_location)
        except OSError as e:
            why = f"cannot write the tracking store ({e.strerror})"
            raise TrackingError(f"{db.parent}: {why}; set tracking.uri") from None
    end_dead_runs(uri, experiment_id)
    return experiment_id


def _experiment_id(uri: str, experiment: str, artifact_location: Optional[str]) -> str:
    client = mlflow_client(uri)
    found = retried(client.get_experiment_by_name, experiment)
    if found is None:
        try:
            # the UI opens a "custom_model_development" experiment on its training-runs view, not the GenAI one
            tags = {"mlflow.experimentKind": "custom_model_development"}
            return retried(client.create_experiment, experiment, artifact_location=artifact_location, tags=tags)
        except Exception:  # another process created it first
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    _refuse_deleted(found, uri, experiment)
    return found.experiment_id


def _refuse_deleted(found, uri: str, experiment: str) -> None:
    if found.lifecycle_stage == "deleted":
        raise TrackingError(
            f"tracking.experiment: {experiment!r} was deleted in {redact(uri)}; choose another name, or restore it: "
            f"MLFLOW_TRACKING_URI=... mlflow experiments restore --experiment-id {found.experiment_id}"
        )


def check_experiment(uri: str, experiment: str) -> None:
    """What `prepare_store` refuses, said without creating anything (a dry run's check): a store that cannot hold
    runs, an experiment that was deleted. A store or an experiment that does not exist yet is fine."""
    from backprop_lab.store import check_store, sqlite_file

    check_store(uri)
    db = sqlite_file(uri)
    if db is not None and (not db.exists() or db.stat().st_size == 0):  # MLflow would create its tables
        return
    found = retried(mlflow_client(uri).get_experiment_by_name, experiment)
    if found is not None:
        _refuse_deleted(found, uri, experiment)


def end_dead_runs(uri: str, experiment_id: str) -> list[str]:
    """End KILLED the experiment's RUNNING runs whose process on this host is gone (a SIGKILL, the OOM killer):
    no process can end its own run then. Returns their ids."""
    client = mlflow_client(uri)
    running = retried(
        client.search_runs, [experiment_id], "attributes.status = 'RUNNING'", max_results=MAX_METRICS_PER_BATCH
    )
    ended = []
    for run in running:
        run_owner = run.data.tags.get(owner.OWNER_TAG)
        if run_owner and owner.is_dead(run_owner):
            note = f"its process ({owner.describe(run_owner)}) died without ending the run; ended KILLED later"
            retried(client.set_tag, run.info.run_id, "error", note)
            retried(client.set_terminated, run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    return ended


def end_dead_runs_in(uri: str, experiment: str) -> list[str]:
    """`end_dead_runs` for an experiment given by name (none when it does not exist)."""
    found = mlflow_client(uri).get_experiment_by_name(experiment)
    return end_dead_runs(uri, found.experiment_id) if found else []


# The runs this process started and has not yet ended: what `end_open_runs` ends when the process is stopping.
_open_runs: dict[str, str] = {}  # run id -> tracking URI
_current: list[tuple[Any, str]] = []  # (client, run id) of the run the log_* functions write to


def source_tags(tags: dict[str, str]) -> dict[str, str]:
    """MLflow's own source, user and git tags (the UI's Source and User columns), from its default context and the
    commit `tags` already hold. Not MLflow's resolve_tags: its notebook and Databricks probes import IPython and
    GitPython on every run (0.3 s), for contexts a run of this project is never in."""
    from mlflow.tracking.context.default_context import DefaultRunContext
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

    commit = tags.get("git.commit", "unknown")
    return DefaultRunContext().tags() | ({MLFLOW_GIT_COMMIT: commit} if commit != "unknown" else {})


def start_run(uri: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> tuple[Any, str]:
    """A new run, RUNNING and owned by this process, which must end it (`end_run`, or `end_open_runs`)."""
    client = mlflow_client(uri)
    tags = source_tags(tags) | tags | {owner.OWNER_TAG: owner.this_process()}
    tags = {k: redact(str(v))[:MAX_PARAM_CHARS] for k, v in tags.items()}
    run = retried(client.create_run, experiment_id, run_name=redact(run_name), tags=tags)
    _open_runs[run.info.run_id] = uri
    return client, run.info.run_id


def end_run(uri: str, run_id: str, status: str, error: Optional[str] = None, attempts: int = 6) -> None:
    client = mlflow_client(uri)
    if error:
        retried(client.set_tag, run_id, "error", redact(error)[:MAX_PARAM_CHARS], attempts=attempts)
    retried(client.set_terminated, run_id, status, attempts=attempts)
    _open_runs.pop(run_id, None)


def _end_quietly(uri: str, run_id: str, status: str, error: str, attempts: int = 6) -> None:
    """On the way out of a failure: the failure is the news; a run that cannot be ended stays in `_open_runs`."""
    try:
        end_run(uri, run_id, status, error, attempts)
    except Exception:
        pass


def end_open_runs(status: str) -> list[tuple[str, Optional[str]]]:
    """End every run this process started and did not end, newest first (a sweep's child before its parent):
    the last word of a process that is stopping. Returns (run id, None or why it could not be ended)."""
    outcome = []
    for run_id, uri in reversed(list(_open_runs.items())):
        try:
            end_run(uri, run_id, status, "interrupted" if status == "KILLED" else "the process stopped", attempts=2)
            outcome.append((run_id, None))
        except Exception as e:
            outcome.append((run_id, redact(str(e).splitlines()[0] if str(e) else type(e).__name__)))
    return outcome


@contextmanager
def tracked_run(
    uri: str,
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    artifact_location: Optional[str] = None,
    parent_run_id: Optional[str] = None,
) -> Iterator[RunRef]:
    """Yield a new run; whatever happens inside, the run ends with an honest status and keeps its logs."""
    experiment_id = prepare_store(uri, experiment, artifact_location)
    parent = {PARENT_TAG: parent_run_id} if parent_run_id else {}
    client, run_id = start_run(uri, experiment_id, run_name, tags | parent)
    _current.append((client, run_id))
    try:
        yield RunRef(run_id, experiment_id)
        stop.check()  # a signal whose KeyboardInterrupt was lost still ends the run KILLED, not FINISHED
    except KeyboardInterrupt:  # the user is waiting: try twice, not for minutes
        _end_quietly(uri, run_id, "KILLED", "interrupted", attempts=2)
        raise
    except BaseException as e:
        if stop.requested.is_set():  # a Ctrl-C that surfaced as another error (an extension's import it cut short)
            _end_quietly(uri, run_id, "KILLED", "interrupted", attempts=2)
            raise KeyboardInterrupt from e
        _end_quietly(uri, run_id, "FAILED", f"{type(e).__name__}: {e}")
        raise
    else:
        end_run(uri, run_id, "FINISHED")
    finally:
        _current.remove((client, run_id))


def _active() -> tuple[Any, str]:
    if not _current:
        raise RuntimeError("no run is being tracked: log inside tracking.tracked_run")
    return _current[-1]


def _log_points(points: list[tuple[str, float, int]]) -> None:
    from mlflow.entities import Metric

    client, run_id = _active()
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, step) for key, value, step in points]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        retried(client.log_batch, run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])


def log_metrics(metrics: dict[str, float], step: int = 0) -> None:
    _log_points([(key, value, step) for key, value in metrics.items()])


def log_steps(by_step: dict[int, dict[str, float]]) -> None:
    """Metrics logged at several steps (step = layer), in as few writes as MLflow allows."""
    _log_points([(key, value, step) for step, metrics in by_step.items() for key, value in metrics.items()])


def log_params(config: dict) -> None:
    from mlflow.entities import Param

    client, run_id = _active()
    items = [Param(k, v) for k, v in flatten(config).items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        retried(client.log_batch, run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def set_tags(tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client, run_id = _active()
    batch = [RunTag(k, redact(str(v))[:MAX_NOTE_CHARS if k == NOTE_TAG else MAX_PARAM_CHARS]) for k, v in tags.items()]
    retried(client.log_batch, run_id, tags=batch)


def log_text(text: str, artifact_file: str) -> None:
    client, run_id = _active()
    retried(client.log_text, run_id, redact(text), artifact_file)


def log_bytes(data: bytes, artifact_file: str) -> None:
    """A file's exact bytes (a user's code, whose hash a rerun checks), unless a known secret is in them: then
    redacted, which a rerun will see as a copy that no longer matches its hash, and refuse."""
    import tempfile

    text = data.decode("utf-8", errors="surrogateescape")
    redacted = redact(text)
    if redacted != text:
        data = redacted.encode("utf-8", errors="surrogateescape")
    client, run_id = _active()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        retried(client.log_artifact, run_id, str(path), str(Path(artifact_file).parent))


def log_table(columns: dict[str, list], artifact_file: str) -> None:
    """A table the UI shows as one, sortable (MLflow's log_table)."""
    client, run_id = _active()
    retried(client.log_table, run_id, columns, artifact_file)


def log_dataset(name: str, digest: str, source: str, schema: dict, profile: dict, context: str = "training") -> None:
    """The data as an MLflow dataset input: the runs table's Dataset column and filter show it. MLflow keeps 36
    characters of a digest; the whole SHA-256 is in the profile (and the `data.sha256` tag)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client, run_id = _active()
    dataset = Dataset(name, digest[:36], "local", json.dumps({"source": source}), json.dumps(schema),
                      json.dumps(profile))  # fmt: skip
    inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
    retried(client.log_inputs, run_id, inputs, transient=_LOCKED + _RACED_INSERT)


def log_json(obj: Any, artifact_file: str) -> None:
    log_text(json.dumps(obj, indent=2, default=str), artifact_file)


def log_figure(fig, artifact_file: str) -> None:
    client, run_id = _active()
    retried(client.log_figure, run_id, fig, artifact_file)


def log_params_to(uri: str, run_id: str, config: dict) -> None:
    """Params for a run other than the one being tracked (a sweep's parent)."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in flatten(config).items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        retried(mlflow_client(uri).log_batch, run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def set_tags_to(uri: str, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    batch = [RunTag(k, redact(str(v))[:MAX_NOTE_CHARS if k == NOTE_TAG else MAX_PARAM_CHARS]) for k, v in tags.items()]
    retried(mlflow_client(uri).log_batch, run_id, tags=batch)


def log_metrics_to(uri: str, run_id: str, metrics: dict[str, float]) -> None:
    """Metrics for a run other than the one being tracked (a sweep's parent), at step 0."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
    retried(mlflow_client(uri).log_batch, run_id, metrics=batch)


def log_artifacts_to(uri: str, run_id: str, local_dir: Path, artifact_path: str) -> None:
    retried(mlflow_client(uri).log_artifacts, run_id, str(local_dir), artifact_path)
