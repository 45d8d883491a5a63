"""Stage 6, tracking: the only module that talks to MLflow.

The default store is a sqlite database in `mlruns/` under the launch directory, with artifacts beside it
(MLflow 3.13+ refuses the old `./mlruns` file store). Runs end FINISHED, FAILED on an exception, KILLED on Ctrl-C.
A sweep is a parent run; each job is a child run tagged `mlflow.parentRunId`, which the MLflow UI nests.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

from backprop_lab.errors import TrackingError

MAX_PARAMS_PER_BATCH = 100  # MLflow's limits
MAX_PARAM_CHARS = 6000
PARENT_TAG = "mlflow.parentRunId"  # what MLflow's own nested runs set, so the UI nests children under the sweep
SWEEP_TAG = "backprop_lab.sweep"  # "parent" on a sweep's run
SWEEP_ENV = "BACKPROP_LAB_SWEEP_RUN_ID"  # hands the parent's id to jobs, in this process or a launcher's workers

# MLflow's HTTP client retries for minutes by default; a server that is down should be said in seconds.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")  # with backoff 1: about 30 s, enough for a restart
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


# scheme://user:secret@host -> scheme://user:***@host, and scheme://token@host -> scheme://***@host
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]+)(?::(?P<secret>[^/@\s]*))?@")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|token|secret|access_token|api_key)=)[^&\s]*")


def redact(text: Any) -> Any:
    """Credentials in URIs (a tracking URI's password or token) replaced by ***, wherever the text is going."""
    if not isinstance(text, str):
        return text

    def userinfo(m: re.Match) -> str:
        if m.group("secret") is None:
            return f"{m.group('scheme')}***@"
        return f"{m.group('scheme')}{m.group('user')}:***@"

    return _SECRET_QUERY.sub(r"\1***", _CREDENTIALS.sub(userinfo, text))


class RunRef(NamedTuple):
    run_id: str
    experiment_id: str


def default_store(launch_dir: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the project's default store."""
    store = launch_dir.resolve() / "mlruns"
    return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def resolve_store(uri: Optional[str], launch_dir: Path) -> tuple[str, Optional[str]]:
    """The configured store, or the default one; a new experiment's artifact location where we choose it."""
    if uri:
        return uri, None
    return default_store(launch_dir)


def ui_command(uri: str, launch_dir: Path) -> str:
    """The command that serves this store's UI on the loopback interface, as typed from the launch directory."""
    local_default, _ = default_store(launch_dir)
    shown = "sqlite:///mlruns/mlflow.db" if uri == local_default else uri
    cli = Path(sys.executable).parent / "mlflow"  # the environment's own mlflow, as a path one can paste
    if not cli.exists():
        cli = Path("mlflow")
    elif cli.is_relative_to(launch_dir.resolve()):
        cli = cli.relative_to(launch_dir.resolve())
    return f"{cli} ui --backend-store-uri {redact(shown)} --host 127.0.0.1 --port 5000"


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


def _retry_locked(fn: Callable, *args, attempts: int = 6, **kwargs):
    """sqlite answers "database is locked" when parallel writers collide past its busy timeout: wait and retry."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if "database is locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.25 * 2**attempt)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)  # a fresh store's schema migrations are not news
    return MlflowClient(uri)


def prepare_store(uri: str, experiment: str, artifact_location: Optional[str] = None) -> str:
    """Create the store and the experiment if missing, and return its id. Processes that each create a fresh
    sqlite store at the same moment race inside MLflow's schema migrations, so creation holds a file lock
    (and a sweep calls this before its jobs start)."""
    from filelock import FileLock

    check_reachable(uri)
    if not uri.startswith("sqlite:///"):
        return _experiment_id(uri, experiment, artifact_location)
    db = Path(uri.removeprefix("sqlite:///"))
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{db}.lock"):
            return _experiment_id(uri, experiment, artifact_location)
    except OSError as e:
        raise TrackingError(f"{db.parent}: cannot write the tracking store ({e.strerror}); set tracking.uri") from None
    except Exception as e:
        if "readonly" in str(e) or "unable to open database" in str(e):
            raise TrackingError(
                f"{db}: cannot write the tracking store ({str(e).splitlines()[0]}); set tracking.uri"
            ) from None
        raise


def _experiment_id(uri: str, experiment: str, artifact_location: Optional[str]) -> str:
    client = _client(uri)
    found = _retry_locked(client.get_experiment_by_name, experiment)
    if found is not None:
        return found.experiment_id
    try:
        # the UI opens a "custom_model_development" experiment on its training-runs view, not the GenAI one
        tags = {"mlflow.experimentKind": "custom_model_development"}
        return _retry_locked(client.create_experiment, experiment, artifact_location=artifact_location, tags=tags)
    except Exception:  # another process created it first
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


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
    import mlflow

    experiment_id = prepare_store(uri, experiment, artifact_location)
    mlflow.set_tracking_uri(uri)
    tags = {k: redact(v) for k, v in tags.items()} | ({PARENT_TAG: parent_run_id} if parent_run_id else {})
    run = _retry_locked(mlflow.start_run, experiment_id=experiment_id, run_name=redact(run_name), tags=tags)
    try:
        yield RunRef(run.info.run_id, experiment_id)
    except KeyboardInterrupt:  # the user is waiting: try twice, not for minutes
        _retry_locked(mlflow.set_tag, "error", "interrupted", attempts=2)
        _retry_locked(mlflow.end_run, "KILLED", attempts=2)
        raise
    except BaseException as e:
        _retry_locked(mlflow.set_tag, "error", redact(f"{type(e).__name__}: {e}")[:MAX_PARAM_CHARS])
        _retry_locked(mlflow.end_run, "FAILED")
        raise
    else:
        _retry_locked(mlflow.end_run, "FINISHED")


def log_params(config: dict) -> None:
    import mlflow

    items = list(flatten(config).items())
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        _retry_locked(mlflow.log_params, dict(items[start : start + MAX_PARAMS_PER_BATCH]))


def log_metrics(metrics: dict[str, float], step: Optional[int] = None) -> None:
    import mlflow

    _retry_locked(mlflow.log_metrics, metrics, step=step)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    _retry_locked(mlflow.set_tags, {k: redact(v) for k, v in tags.items()})


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(redact(text), artifact_file)


def log_json(obj: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(redact(json.dumps(obj, indent=2, default=str)), artifact_file)


def log_figure(fig, artifact_file: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


# --- sweeps: a parent run per multirun, created before the jobs and closed after them -----------------------------


def start_sweep(uri: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    client = _client(uri)
    tags = {k: redact(v) for k, v in tags.items()} | {SWEEP_TAG: "parent"}
    run = _retry_locked(client.create_run, experiment_id, run_name=redact(run_name), tags=tags)
    return run.info.run_id


def _children(client, parent) -> list:
    """Every job run of a sweep: the runs that name it as their parent."""
    return client.search_runs(
        [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'", max_results=10000
    )


def sweep_child_statuses(uri: str, parent_run_id: str) -> dict[str, str]:
    """{child run id: status} for every job of the sweep."""
    client = _client(uri)
    return {r.info.run_id: r.info.status for r in _children(client, client.get_run(parent_run_id))}


def end_sweep(
    uri: str, parent_run_id: str, status: Optional[str] = None, metrics: Optional[dict[str, float]] = None
) -> dict[str, int]:
    """Close the parent: count its children by status, mark any still RUNNING as KILLED when the sweep is
    interrupted, and end FAILED when a job failed (unless a status is given)."""
    client = _client(uri)
    statuses = sweep_child_statuses(uri, parent_run_id)
    if status == "KILLED":
        for run_id, s in statuses.items():
            if s == "RUNNING":
                _retry_locked(client.set_terminated, run_id, "KILLED")
                statuses[run_id] = "KILLED"
    counts = {s: list(statuses.values()).count(s) for s in ("FINISHED", "FAILED", "KILLED", "RUNNING")}
    failed = counts["FAILED"] + counts["KILLED"]
    now = int(time.time() * 1000)
    metrics = (metrics or {}) | {
        "sweep/jobs": len(statuses),
        "sweep/jobs_failed": failed,
        "sweep/jobs_finished": counts["FINISHED"],
    }
    for key, value in metrics.items():
        _retry_locked(client.log_metric, parent_run_id, key, value, timestamp=now)
    status = status or ("FAILED" if failed else "FINISHED")
    _retry_locked(client.set_terminated, parent_run_id, status)
    return counts | {"jobs": len(statuses)}


# --- reading runs back, for the report --------------------------------------------------------------------------


@dataclass
class RunRecord:
    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    act_std: list[tuple[int, float]] = field(default_factory=list)  # (layer, std) from the act/std history


def _record(client, run) -> RunRecord:
    history = client.get_metric_history(run.info.run_id, "act/std")
    return RunRecord(
        run.info.run_id,
        run.info.run_name,
        run.info.status,
        dict(run.data.params),
        dict(run.data.metrics),
        dict(run.data.tags),
        sorted((m.step, m.value) for m in history),
    )


def latest_sweep(uri: str, experiment: str) -> Optional[str]:
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id], f"tags.`{SWEEP_TAG}` = 'parent'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    return runs[0].info.run_id if runs else None


def sweep_records(uri: str, parent_run_id: str) -> tuple[RunRecord, list[RunRecord]]:
    client = _client(uri)
    parent = client.get_run(parent_run_id)
    return _record(client, parent), [_record(client, r) for r in _children(client, parent)]


def experiment_records(uri: str, experiment: str) -> list[RunRecord]:
    """Every job run of the experiment (sweep parents left out)."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], max_results=10000)
    return [_record(client, r) for r in runs if r.data.tags.get(SWEEP_TAG) != "parent"]


def log_artifacts_to(uri: str, run_id: str, local_dir: Path, artifact_path: str) -> None:
    _client(uri).log_artifacts(run_id, str(local_dir), artifact_path)


def check_reachable(uri: str, wait_s: Optional[float] = None) -> None:
    """Fail within `wait_s` (default 20, or $BACKPROP_LAB_SERVER_WAIT_S), before any work, when a tracking server
    does not answer; a server that is restarting (between the jobs of a sweep, say) gets that long to come back."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    if wait_s is None:
        wait_s = float(os.environ.get("BACKPROP_LAB_SERVER_WAIT_S", "20"))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=3).raise_for_status()
            return
        except requests.RequestException as e:
            if time.monotonic() + 1 > deadline:
                reason = type(e).__name__
                raise TrackingError(
                    f"tracking server {redact(uri)} does not answer ({reason}, {wait_s:g} s); start it or fix the URI"
                ) from None
            time.sleep(1)


@dataclass
class LoggedRun:
    record: RunRecord
    experiment: str
    config_yaml: Optional[str]  # config/config.yaml, None for a run another program logged
    device: dict  # device.json, {} when absent
    points: dict[tuple[str, int], float]  # every metric at every step: the last value logged there


def _artifact_text(client, run_id: str, path: str) -> Optional[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(client.download_artifacts(run_id, path, tmp)).read_text()
        except Exception:  # absent: MLflow raises OSError or MlflowException depending on the store
            return None


def logged_run(uri: str, run_id: str) -> LoggedRun:
    """Everything a rerun compares against: config, environment and every metric point of a run."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        detail = redact(str(e).splitlines()[0])
        raise TrackingError(f"run {run_id}: not found in {redact(uri)} ({detail}); check the id") from None
    points = {}
    for key in run.data.metrics:
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            points[(key, m.step)] = m.value
    device = _artifact_text(client, run_id, "device.json")
    return LoggedRun(
        _record(client, run),
        client.get_experiment(run.info.experiment_id).name,
        _artifact_text(client, run_id, "config/config.yaml"),
        json.loads(device) if device else {},
        points,
    )


def sweep_parent_from_env() -> Optional[str]:
    return os.environ.get(SWEEP_ENV) or None
