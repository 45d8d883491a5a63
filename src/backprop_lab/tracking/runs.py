"""Reading runs back from MLflow: what the report and the rerun query (the writing is tracking.py's)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from backprop_lab.config.validation import MAX_LOGGED_CONFIG_BYTES
from backprop_lab.core.errors import TrackingError
from backprop_lab.core.names import (
    ACT_STD,
    ALSO_IN,
    BACK_STD,
    JOB_NUM_TAG,
    PARENT_TAG,
    SWEEP_TAG,
    THEORY_ACT_STD,
    THEORY_BACK_STD,
)
from backprop_lab.core.redaction import redact
from backprop_lab.tracking.mlflow_client import mlflow_client

SERIES = (ACT_STD, THEORY_ACT_STD, BACK_STD, THEORY_BACK_STD)  # by layer (step), for the report's figures


@dataclass
class RunRecord:
    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(layer, value)]; see _record


def _record(client, run, by_layer: bool = False) -> RunRecord:
    """`series` holds SERIES; with `by_layer`, every metric logged by layer (at a step >= 1) instead: a one-number
    metric is logged at step 0 alone, so reading each history is the only way to tell them apart."""
    series = {}
    for key in run.data.metrics if by_layer else SERIES:
        if key in run.data.metrics:
            points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            if not by_layer or any(step >= 1 for step, _ in points):
                series[key] = points
    return RunRecord(
        run.info.run_id,
        run.info.run_name,
        run.info.status,
        dict(run.data.params),
        dict(run.data.metrics),
        dict(run.data.tags),
        series,
    )


def latest_sweep(uri: str, experiment: str) -> Optional[str]:
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id], f"tags.`{SWEEP_TAG}` = 'parent'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    return runs[0].info.run_id if runs else None


def _children(client, parent) -> list:
    """Every job run of a sweep: the runs that name it as their parent, and those of earlier sweeps it reused."""
    experiment, run_id = [parent.info.experiment_id], parent.info.run_id
    own = client.search_runs(experiment, f"tags.`{PARENT_TAG}` = '{run_id}'", max_results=10000)
    return own + client.search_runs(experiment, f"tags.`{ALSO_IN}{run_id}` = 'reused'", max_results=10000)


def child_statuses(uri: str, parent_run_id: str) -> dict[str, str]:
    """{child run id: status} for every job of the sweep."""
    client = mlflow_client(uri)
    return {r.info.run_id: r.info.status for r in _children(client, _get_run(client, uri, parent_run_id))}


def _get_run(client, uri: str, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as e:
        detail = redact(str(e).splitlines()[0])
        raise TrackingError(f"run {run_id}: not found in {redact(uri)} ({detail}); check the id") from None


def job_run(uri: str, parent_run_id: str, job_num: int) -> Optional[RunRecord]:
    """The run that job `job_num` of the sweep started, None when it started none."""
    client = mlflow_client(uri)
    parent = _get_run(client, uri, parent_run_id)
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{JOB_NUM_TAG}` = '{job_num}'"
    found = client.search_runs([parent.info.experiment_id], query, max_results=1)
    return _record(client, found[0]) if found else None


def sweep_records(uri: str, parent_run_id: str, by_layer: bool = False) -> tuple[RunRecord, list[RunRecord]]:
    client = mlflow_client(uri)
    parent = _get_run(client, uri, parent_run_id)
    return _record(client, parent), [_record(client, r, by_layer) for r in _children(client, parent)]


def finished_with_tag(uri: str, experiment: str, tag: str, value: str) -> list[RunRecord]:
    """The experiment's FINISHED runs whose `tag` is `value`, newest first (no by-layer series: not needed)."""
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'"
    found_runs = client.search_runs([found.experiment_id], query, max_results=1000,
                                    order_by=["attributes.start_time DESC"])  # fmt: skip
    return [RunRecord(r.info.run_id, r.info.run_name, r.info.status, dict(r.data.params), dict(r.data.metrics),
                      dict(r.data.tags)) for r in found_runs]  # fmt: skip


def experiment_records(uri: str, experiment: str, by_layer: bool = False) -> list[RunRecord]:
    """Every job run of the experiment (sweep parents left out)."""
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], max_results=10000)
    return [_record(client, r, by_layer) for r in runs if r.data.tags.get(SWEEP_TAG) != "parent"]


@dataclass
class LoggedRun:
    record: RunRecord
    experiment: str
    config_yaml: Optional[str]  # config/config.yaml, None for a run another program logged
    device: dict  # device.json, {} when absent
    points: dict[tuple[str, int], float]  # every metric at every step: the last value logged there


MAX_ARTIFACT_READ = MAX_LOGGED_CONFIG_BYTES + 1  # a byte past what a logged config may hold: enough to tell


def _artifact_text(client, run_id: str, path: str) -> Optional[str]:
    """The artifact's first MAX_ARTIFACT_READ bytes as text (a store is data: an artifact may be anything)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with open(client.download_artifacts(run_id, path, tmp), "rb") as f:
                return f.read(MAX_ARTIFACT_READ).decode(errors="replace")
        except Exception:  # absent: MLflow raises OSError or MlflowException depending on the store
            return None


def download_artifact(uri: str, run_id: str, path: str, dest: Path) -> Optional[Path]:
    """The run's artifact `path`, downloaded under `dest` (created); None when the run has no such file."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow_client(uri).download_artifacts(run_id, path, str(dest)))
    except Exception:  # absent: MLflow raises OSError or MlflowException depending on the store
        return None
    return local if local.is_file() else None


def local_store_dirs(uri: str, run_id: str) -> list[Path]:
    """The folders on this machine that hold the store's data: a sqlite store's folder, and the run's experiment's
    artifacts where they are local files. Code found there is the store's, not the user's."""
    from urllib.parse import unquote, urlparse

    from backprop_lab.tracking.store import sqlite_file

    dirs = [db.resolve().parent] if (db := sqlite_file(uri)) is not None else []
    try:
        artifacts = urlparse(mlflow_client(uri).get_run(run_id).info.artifact_uri)
    except Exception:  # a run the store cannot give: the rerun has already refused it
        return dirs
    if artifacts.scheme in ("", "file"):
        dirs.append(Path(unquote(artifacts.path)).resolve().parents[1])  # <experiment>/<run>/artifacts
    return dirs


def _device_info(run_id: str, text: Optional[str]) -> dict:
    if not text:
        return {}
    try:
        info = json.loads(text) if len(text) < MAX_ARTIFACT_READ else None
    except (ValueError, RecursionError):
        info = None
    if not isinstance(info, dict):
        raise TrackingError(f"run {run_id}: device.json is not the JSON object a run logs; the run cannot be compared")
    return info


def logged_run(uri: str, run_id: str) -> LoggedRun:
    """Everything a rerun compares against: config, environment and every metric point of a run."""
    client = mlflow_client(uri)
    run = _get_run(client, uri, run_id)
    points = {}
    for key in run.data.metrics:
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            points[(key, m.step)] = m.value
    device = _device_info(run_id, _artifact_text(client, run_id, "device.json"))
    return LoggedRun(
        _record(client, run),
        client.get_experiment(run.info.experiment_id).name,
        _artifact_text(client, run_id, "config/config.yaml"),
        device,
        points,
    )
