"""What a run records: its params, metrics, tags and artifacts, written to MLflow.

Each write goes to the run being tracked (`lifecycle.tracked_run`), or to the run whose id it is given, in the store
at `uri` (a sweep's parent, an earlier run a resumed sweep reuses). What is written is redacted first.

The tracking floor (above config/): the only package that talks to MLflow. Here, the writes; the store (store.py,
store_probes.py, sqlite_checks.py, store_template.py), the client (mlflow_client.py), run lifecycle (lifecycle.py,
owner.py), a job as one tracked run with its bookkeeping (job.py), reads (runs.py), run names, the environment's
tags and sweep_env.py beside them.

Add here what talks to MLflow, and nothing else: no stage computes here.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Optional

from backprop_lab.core.names import NOTE_TAG
from backprop_lab.core.redaction import redact
from backprop_lab.tracking.lifecycle import client_for
from backprop_lab.tracking.mlflow_client import (
    LOCKED,
    MAX_METRICS_PER_BATCH,
    MAX_NOTE_CHARS,
    MAX_PARAM_CHARS,
    MAX_PARAMS_PER_BATCH,
    RACED_INSERT,
    retried,
)


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


def _log_points(points: list[tuple[str, float, int]], run_id: Optional[str], uri: Optional[str]) -> None:
    from mlflow.entities import Metric

    client, run_id = client_for(run_id, uri)
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, step) for key, value, step in points]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        retried(client.log_batch, run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])


def log_metrics(metrics: dict[str, float], step: int = 0, run_id: Optional[str] = None,
                uri: Optional[str] = None) -> None:  # fmt: skip
    _log_points([(key, value, step) for key, value in metrics.items()], run_id, uri)


def log_steps(by_step: dict[int, dict[str, float]], run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    """Metrics logged at several steps (step = layer), in as few writes as MLflow allows."""
    points = [(key, value, step) for step, metrics in by_step.items() for key, value in metrics.items()]
    _log_points(points, run_id, uri)


def log_params(config: dict, run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    from mlflow.entities import Param

    client, run_id = client_for(run_id, uri)
    items = [Param(k, v) for k, v in flatten(config).items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        retried(client.log_batch, run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def set_tags(tags: dict[str, str], run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    from mlflow.entities import RunTag

    client, run_id = client_for(run_id, uri)
    batch = [RunTag(k, redact(str(v))[:MAX_NOTE_CHARS if k == NOTE_TAG else MAX_PARAM_CHARS]) for k, v in tags.items()]
    retried(client.log_batch, run_id, tags=batch)


def log_text(text: str, artifact_file: str, run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    client, run_id = client_for(run_id, uri)
    retried(client.log_text, run_id, redact(text), artifact_file)


def log_json(obj: Any, artifact_file: str, run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    log_text(json.dumps(obj, indent=2, default=str), artifact_file, run_id, uri)


def log_bytes(data: bytes, artifact_file: str, run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    """A file's exact bytes (a user's code, whose hash a rerun checks), unless a known secret is in them: then
    redacted, which a rerun will see as a copy that no longer matches its hash, and refuse."""
    import tempfile

    text = data.decode("utf-8", errors="surrogateescape")
    redacted = redact(text)
    if redacted != text:
        data = redacted.encode("utf-8", errors="surrogateescape")
    client, run_id = client_for(run_id, uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        retried(client.log_artifact, run_id, str(path), str(Path(artifact_file).parent))


def log_table(columns: dict[str, list], artifact_file: str, run_id: Optional[str] = None,
              uri: Optional[str] = None) -> None:  # fmt: skip
    """A table the UI shows as one, sortable (MLflow's log_table, which registers it), its file then written again in
    the same format with every float whole: MLflow's writer keeps ten decimals (2.91e-11 would read 0.0) and writes
    an infinity as null. A float that is not finite is its name, `inf` or `nan` (JSON has no number for it)."""
    client, run_id = client_for(run_id, uri)
    retried(client.log_table, run_id, columns, artifact_file)

    def cell(v):
        return v if not isinstance(v, float) or math.isfinite(v) else repr(v)

    data = [[cell(v) for v in row] for row in zip(*columns.values())]
    retried(client.log_text, run_id, json.dumps({"columns": list(columns), "data": data}), artifact_file)


def log_dataset(name: str, digest: str, source: str, schema: dict, profile: dict, context: str = "training",
                run_id: Optional[str] = None, uri: Optional[str] = None) -> None:  # fmt: skip
    """The data as an MLflow dataset input: the runs table's Dataset column and filter show it. MLflow keeps 36
    characters of a digest; the whole SHA-256 is in the profile (and the `data.sha256` tag)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client, run_id = client_for(run_id, uri)
    dataset = Dataset(name, digest[:36], "local", json.dumps({"source": source}), json.dumps(schema),
                      json.dumps(profile))  # fmt: skip
    inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
    retried(client.log_inputs, run_id, inputs, transient=LOCKED + RACED_INSERT)


def log_figure(fig, artifact_file: str, run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    client, run_id = client_for(run_id, uri)
    retried(client.log_figure, run_id, fig, artifact_file)


def log_artifacts(local_dir: Path, artifact_path: str, run_id: Optional[str] = None, uri: Optional[str] = None) -> None:
    """A folder's files, under `artifact_path` (a report, on its sweep's parent)."""
    client, run_id = client_for(run_id, uri)
    retried(client.log_artifacts, run_id, str(local_dir), artifact_path)
