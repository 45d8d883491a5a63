"""A run's life in the store: the store and experiment made ready, a run started, ended with an honest status
(FINISHED, FAILED on an exception, KILLED on Ctrl-C), and the runs of dead processes reaped.

The default store is a sqlite database in `mlruns/` under the launch directory, with artifacts beside it
(MLflow 3.13+ refuses the old `./mlruns` file store). A sweep is a parent run; each job is a child run tagged
`mlflow.parentRunId`, which the MLflow UI nests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, Optional

from backprop_lab.core import stop
from backprop_lab.core.errors import TrackingError
from backprop_lab.core.names import ERROR_TAG, NOTE_TAG, OWNER_TAG, PARENT_TAG
from backprop_lab.core.redaction import redact
from backprop_lab.tracking import owner
from backprop_lab.tracking.mlflow_client import MAX_METRICS_PER_BATCH, MAX_PARAM_CHARS, mlflow_client, retried


class RunRef(NamedTuple):
    run_id: str
    experiment_id: str


def prepare_store(uri: str, experiment: str, artifact_location: Optional[str] = None) -> str:
    """Check the store, create it and the experiment if missing, end the runs of dead processes, and return the
    experiment's id. Processes that each create a fresh sqlite store at the same moment race inside MLflow's schema
    migrations, so creation holds a file lock (and a sweep calls this before its jobs start)."""
    from backprop_lab.tracking import store_template
    from backprop_lab.tracking.sqlite_checks import creation_lock
    from backprop_lab.tracking.store import check_store, sqlite_file

    # not under the lock: a check that finds the store half made waits for that lock itself
    check_store(uri)
    db = sqlite_file(uri)
    if db is None:
        experiment_id = _experiment_id(uri, experiment, artifact_location)
    else:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with creation_lock(db):
                if not db.exists():
                    store_template.place(db)
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
            # what the experiment is, for MLflow's readers; 3.17's UI reads its mode from the address (store.UI_MODE)
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
    from backprop_lab.tracking.store import check_store, sqlite_file

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
        run_owner = run.data.tags.get(OWNER_TAG)
        if run_owner and owner.is_dead(run_owner):
            note = f"its process ({owner.describe(run_owner)}) died without ending the run; ended KILLED later"
            retried(client.set_tag, run.info.run_id, ERROR_TAG, note)
            retried(client.set_terminated, run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    return ended


def end_dead_runs_in(uri: str, experiment: str) -> list[str]:
    """`end_dead_runs` for an experiment given by name (none when it does not exist)."""
    found = mlflow_client(uri).get_experiment_by_name(experiment)
    return end_dead_runs(uri, found.experiment_id) if found else []


# The runs this process started and has not yet ended: what `end_open_runs` ends when the process is stopping.
_open_runs: dict[str, str] = {}  # run id -> tracking URI
_current: list[tuple[Any, str]] = []  # (client, run id) of the run the writes go to when given no run id


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
    tags = source_tags(tags) | tags | {OWNER_TAG: owner.this_process()}
    tags = {k: redact(str(v))[:MAX_PARAM_CHARS] for k, v in tags.items()}
    with stop.deferred():  # a run the store has made is one this process knows to end, whenever Ctrl-C comes
        run = retried(client.create_run, experiment_id, run_name=redact(run_name), tags=tags)
        _open_runs[run.info.run_id] = uri
    return client, run.info.run_id


ERROR_ARTIFACT = "error.txt"  # a failed run's whole error, where the tag holds less


def end_run(uri: str, run_id: str, status: str, error: Optional[str] = None, attempts: int = 6,
            described: bool = False) -> None:  # fmt: skip
    """End the run with `status`, and `error` as its tag (cut at a line where the tag cannot hold it, the whole of it
    then logged as ERROR_ARTIFACT); `described`: its first line is also the run's description, which the UI shows."""
    client = mlflow_client(uri)
    if error:
        error = redact(error)
        tag = error
        if len(error) > MAX_PARAM_CHARS:
            retried(client.log_text, run_id, error, ERROR_ARTIFACT, attempts=attempts)
            cut = error.rfind("\n", 0, MAX_PARAM_CHARS - 100)
            tag = error[: cut if cut > 0 else MAX_PARAM_CHARS - 100] + f"\n... (the whole error: {ERROR_ARTIFACT})"
        retried(client.set_tag, run_id, ERROR_TAG, tag, attempts=attempts)
        if described:
            first = error.splitlines()[0] if error.strip() else error
            retried(client.set_tag, run_id, NOTE_TAG, f"**{status}**: {first[:MAX_PARAM_CHARS]}", attempts=attempts)
    retried(client.set_terminated, run_id, status, attempts=attempts)
    _open_runs.pop(run_id, None)


def _end_quietly(uri: str, run_id: str, status: str, error: str, attempts: int = 6, described: bool = False) -> None:
    """On the way out of a failure: the failure is the news; a run that cannot be ended stays in `_open_runs`."""
    try:
        end_run(uri, run_id, status, error, attempts, described)
    except Exception:
        pass


def has_open_runs() -> bool:
    return bool(_open_runs)


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
    """Yield a new run, the one writes go to until it ends; whatever happens inside, the run ends with an honest
    status and keeps its logs."""
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
        _end_quietly(uri, run_id, "FAILED", f"{type(e).__name__}: {e}", described=True)
        raise
    else:
        end_run(uri, run_id, "FINISHED")
    finally:
        _current.remove((client, run_id))


def client_for(run_id: Optional[str], uri: Optional[str]) -> tuple[Any, str]:
    """The client and run a write goes to: the run given (in the store at `uri`), else the one being tracked."""
    if run_id is not None:
        if uri is None:
            raise ValueError("a run given by its id needs its store's uri")
        return mlflow_client(uri), run_id
    if not _current:
        raise RuntimeError("no run is being tracked: log inside lifecycle.tracked_run")
    return _current[-1]
