"""The study from Python (a notebook, a script): run it as the CLI does and read runs back as a DataFrame.

    from backprop_lab import run, runs_frame
    result = run(["init=xavier"])        # one logged run; a pipeline.Result
    frame = runs_frame()                 # every job run of the experiment, one row each

Where things go: the CLI runs each job in Hydra's output dir (outputs/DATE/TIME/, with .hydra/ and run.log) and keeps
its store under the launch dir. A Python caller gets no Hydra output dir (its config and overrides are logged to the
run as artifacts, as the CLI's are); the store is the default one under `launch_dir`, the current directory unless
given (`mlruns/mlflow.db`), or `tracking.uri=` as on the command line.

torch, MLflow and pandas are imported when a function is called, so `import backprop_lab` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from backprop_lab.config import TrackingConfig

if TYPE_CHECKING:
    import pandas

    from backprop_lab.pipeline import Result
    from backprop_lab.runs import RunRecord

EXPERIMENT = TrackingConfig.experiment
# The tags a frame keeps (as tags.<key>): what a run was asked, what its check found, why it failed, its sweep.
FRAME_TAGS = ("overrides", "first_divergent", "bug.expected_node", "non_finite", "error", "mlflow.parentRunId",
              "hydra.job.num", "git.commit", "config.sha256")  # fmt: skip


def run(overrides: Sequence[str] = (), launch_dir: Union[str, Path, None] = None) -> Result:
    """One run of the study with these Hydra overrides, validated and logged to MLflow exactly as
    `python scripts/run.py OVERRIDES` would; returns the pipeline's Result. Nothing is printed but the CLI's progress
    spinner at a terminal (`summary.print_summary(result, Console())` prints the CLI's tables).

    Bad input raises ConfigError (a one-line message naming the key) before any run is created. Whatever stops the run
    (an exception, KeyboardInterrupt), it ends FAILED or KILLED, and the exception is re-raised."""
    from rich.console import Console

    from backprop_lab import entry, pipeline, redaction, validation

    if isinstance(overrides, str):  # list("init=xavier") would be eleven overrides of one character
        raise TypeError(f"overrides: a list of strings, e.g. [{overrides!r}]")
    overrides = list(overrides)
    redaction.learn_environment()  # as the CLI does: secrets in the environment or overrides never reach MLflow
    redaction.learn_arguments(overrides)
    redaction.protect_logging()
    cfg = entry.compose(overrides)
    validation.single_run(cfg)
    launch = Path(launch_dir) if launch_dir is not None else Path.cwd()
    # in a notebook the CLI's spinner would be a line of output per frame: there, stages pass silently
    in_notebook = Console().is_jupyter
    console = Console(stderr=True, force_terminal=False if in_notebook else None, force_jupyter=False)
    try:
        return pipeline.run(cfg, overrides, launch, console=console)
    except KeyboardInterrupt:
        entry.end_runs("KILLED")  # tracked_run has ended its run; this ends any other this call left open
        raise
    except BaseException:
        entry.end_runs("FAILED")
        raise


def _existing_store(uri: Optional[str]) -> str:
    """The store to read, checked as the CLI checks it: a file of another program, a damaged or foreign schema, or
    a store that is not there is a TrackingError with one line, before MLflow opens (and would create or migrate)
    it."""
    from backprop_lab import store

    uri = store.resolve_store(uri, Path.cwd())[0]
    store.check_store(uri, existing=True)
    return uri


def _records(sweep: Optional[str] = None, experiment: str = EXPERIMENT, uri: Optional[str] = None) -> list[RunRecord]:
    """The job runs `runs_frame` tabulates, with every per-layer metric read by layer."""
    from backprop_lab import runs
    from backprop_lab.errors import TrackingError
    from backprop_lab.redaction import redact

    uri = _existing_store(uri)
    if sweep is None:
        return runs.experiment_records(uri, experiment, by_layer=True)
    if sweep == "latest":
        found = runs.latest_sweep(uri, experiment)
        if found is None:
            raise TrackingError(f"no sweep in experiment {experiment!r} of {redact(uri)}; run one with -m")
        sweep = found
    return runs.sweep_records(uri, sweep, by_layer=True)[1]


def flat_row(record: RunRecord) -> dict[str, object]:
    """One run as flat columns: run_id, name, status, params.<key>, metrics.<key> for one-number metrics,
    metrics.<key>@<layer> for each layer of a metric logged by layer (step = layer), tags.<key> of FRAME_TAGS."""
    row: dict[str, object] = {"run_id": record.run_id, "name": record.name, "status": record.status}
    row |= {f"params.{k}": v for k, v in sorted(record.params.items())}
    row |= {f"metrics.{k}": v for k, v in sorted(record.metrics.items()) if k not in record.series}
    for key, points in sorted(record.series.items()):
        row |= {f"metrics.{key}@{layer}": value for layer, value in points}
    row |= {f"tags.{k}": record.tags[k] for k in FRAME_TAGS if k in record.tags}
    return row


def runs_frame(
    sweep: Optional[str] = None, experiment: str = EXPERIMENT, uri: Optional[str] = None
) -> pandas.DataFrame:
    """One row per job run, flat columns (see `flat_row`): of the sweep whose parent run id is `sweep`, of the
    latest sweep for "latest", or of the whole experiment (sweep parents left out) for None. The store is `uri`, or
    the default one under the current directory; one that is not an MLflow store, or not there, raises TrackingError
    with one line. Rows come newest first (a resumed sweep's reused runs after its
    own); a column a run lacks (a layer of a deeper net) is NaN there."""
    import pandas as pd

    rows = [flat_row(r) for r in _records(sweep, experiment, uri)]
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "name", "status"])
