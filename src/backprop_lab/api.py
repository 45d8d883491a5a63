"""The study from Python (a notebook, a script): run it as the CLI does and read runs back as a DataFrame.

    from backprop_lab import check, run, runs_frame
    result = run(["init=xavier"])        # one logged run; a pipeline.Result
    frame = runs_frame()                 # every job run of the experiment, one row each
    check(lin_grad, relu_grad, mse_grad) # your own backward, checked node by node and logged: impl=user

Where things go: the CLI runs each job in Hydra's output dir (outputs/DATE/TIME/, with .hydra/ and run.log) and keeps
its store under the launch dir. A Python caller gets no Hydra output dir (its config and overrides are logged to the
run as artifacts, as the CLI's are); the store is the default one under `launch_dir`, the current directory unless
given (`mlruns/mlflow.db`), or `tracking.uri=` as on the command line.

torch, MLflow and pandas are imported when a function is called, so `import backprop_lab` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Optional, Union

from backprop_lab.config import TrackingConfig
from backprop_lab.core.errors import ConfigError, UserCodeError
from backprop_lab.core.names import JOB_NUM_TAG

if TYPE_CHECKING:
    import pandas

    from backprop_lab.study.pipeline import Result
    from backprop_lab.tracking.runs import RunRecord

EXPERIMENT = TrackingConfig.experiment
# The tags a frame keeps (as tags.<key>): what a run was asked, what its check found, why it failed, its sweep.
FRAME_TAGS = ("overrides", "first_divergent", "bug.expected_node", "non_finite", "error", "mlflow.parentRunId",
              JOB_NUM_TAG, "git.commit", "config.sha256")  # fmt: skip


def run(overrides: Sequence[str] = (), launch_dir: Union[str, Path, None] = None) -> Result:
    """One run of the study with these Hydra overrides, validated and logged to MLflow exactly as
    `python scripts/run.py OVERRIDES` would; returns the pipeline's Result. Nothing is printed but the CLI's progress
    spinner at a terminal (`summary.print_summary(result, Console())` prints the CLI's tables).

    Bad input raises ConfigError (a one-line message naming the key) before any run is created. Whatever stops the run
    (an exception, KeyboardInterrupt), it ends FAILED or KILLED, and the exception is re-raised."""
    from rich.console import Console

    from backprop_lab import cli
    from backprop_lab.cli import entry
    from backprop_lab.config import validation
    from backprop_lab.core import redaction
    from backprop_lab.study import pipeline

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
        cli.end_runs("KILLED")  # tracked_run has ended its run; this ends any other this call left open
        raise
    except BaseException:
        cli.end_runs("FAILED")
        raise


CELLS = Path(".backprop_lab") / "cells"  # under the launch dir: the source of code given as Python objects


def check(
    lin_grad: Optional[Callable] = None,
    relu_grad: Optional[Callable] = None,
    mse_grad: Optional[Callable] = None,
    *,
    code: Union[str, Path, object, None] = None,
    overrides: Sequence[str] = (),
    launch_dir: Union[str, Path, None] = None,
) -> Result:
    """Your backward checked node by node against autograd, as one logged run of `impl=user`: the lesson's functions
    as they are in your notebook (`check(lin_grad, relu_grad, mse_grad)`, any of them: the lab's stand in for the
    rest), or `code=` an object holding them (a module, a class, a SimpleNamespace; Lin/Relu/Mse or a Net too), or
    `code=` a file or module name as `impl.code=` takes it. Prints the node table and the verdict line (the first
    wrong node and what kind of mistake) and returns the run's Result; otherwise it is `run([*overrides])`.

    Code given as objects goes through the same door as a file, and runs in a process of its own as every learner's
    code does: their source, with what they use from the notebook (its imports, helpers and constants), is written
    to `.backprop_lab/cells/cell_<sha256>.py` under the launch dir (cell_source.py; logged with the run as
    `code/<that name>` and its hash as `impl.code_sha256`), so their tracebacks point into that file. Given
    nothing, something not callable, or something a file cannot carry, raises one line before any run exists."""
    if isinstance(overrides, str):
        raise TypeError(f"overrides: a list of strings, e.g. [{overrides!r}]")
    launch = Path(launch_dir) if launch_dir is not None else Path.cwd()
    given = {"lin_grad": lin_grad, "relu_grad": relu_grad, "mse_grad": mse_grad}
    given = {name: fn for name, fn in given.items() if fn is not None}
    if code is not None and given:
        raise TypeError("check: give the functions or code=, not both")
    if isinstance(code, (str, Path)):
        name = str(code)
    elif isinstance(code, ModuleType) and str(getattr(code, "__file__", "")).endswith(".py"):
        name = code.__file__  # a module of a file: that file, as it is
    else:
        name = str(_cell_file(_code_objects(given, code), launch).relative_to(launch))
    try:
        result = run(["impl=user", f"impl.code={name}", *overrides], launch_dir=launch)
    except UserCodeError as e:  # its text is the learner's traceback; the lab's frames above it say nothing to them
        __tracebackhide__ = True  # noqa: F841 (IPython and pytest leave a frame with it out of a traceback)
        raise e.with_traceback(None) from None
    from rich.console import Console

    from backprop_lab.study import summary

    console = Console()
    if not (console.is_terminal or console.is_jupyter):  # a pipe or a log: the table's width, not 80 columns
        console = Console(width=110)
    console.print(summary.grad_table(result))
    console.print(f"verdict: {result.verdict}", soft_wrap=True)
    console.print(f"MLflow run {result.run_name} id {result.run.run_id}", soft_wrap=True, markup=False)
    return result


def _code_objects(given: dict[str, Callable], code: object) -> dict[str, Callable]:
    """The protocol's names, from the keyword functions or from `code`, each checked callable."""
    from backprop_lab.impls.protocol import CODE_NAMES

    if code is not None:
        given = {name: getattr(code, name) for name in CODE_NAMES if getattr(code, name, None) is not None}
        if not given:
            raise ConfigError(f"code: {code!r} defines none of {', '.join(CODE_NAMES)}; give an object holding "
                              "the lesson's functions, or a file")  # fmt: skip
    elif not given:
        raise ConfigError("check: give your backward, e.g. check(lin_grad, relu_grad, mse_grad), or code= a file or "
                          "an object holding them")  # fmt: skip
    for name, fn in given.items():
        if not callable(fn):
            raise TypeError(f"{name}: {type(fn).__name__} {fn!r:.60} is not callable; give the function itself, "
                            f"e.g. check({name}={name})")  # fmt: skip
    return given


def _cell_file(objects: dict[str, Callable], launch: Path) -> Path:
    """The objects as a module of their own (cell_source.py), written to a file named by its SHA-256."""
    import hashlib

    from backprop_lab.isolation import cell_source

    text = cell_source.module_source(objects)
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = launch / CELLS / f"cell_{digest[:12]}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _existing_store(uri: Optional[str]) -> str:
    """The store to read, checked as the CLI checks it: a file of another program, a damaged or foreign schema, or
    a store that is not there is a TrackingError with one line, before MLflow opens (and would create or migrate)
    it."""
    from backprop_lab.tracking import store

    uri = store.resolve_store(uri, Path.cwd())[0]
    store.check_store(uri, existing=True)
    return uri


def _records(sweep: Optional[str] = None, experiment: str = EXPERIMENT, uri: Optional[str] = None) -> list[RunRecord]:
    """The job runs `runs_frame` tabulates, with every per-layer metric read by layer."""
    from backprop_lab.core.errors import TrackingError
    from backprop_lab.core.redaction import redact
    from backprop_lab.tracking import runs

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
    from backprop_lab.core.tables import as_logged

    row: dict[str, object] = {"run_id": record.run_id, "name": record.name, "status": record.status}
    row |= {f"params.{k}": v for k, v in sorted(record.params.items())}
    row |= {f"metrics.{k}": as_logged(v) for k, v in sorted(record.metrics.items()) if k not in record.series}
    for key, points in sorted(record.series.items()):
        row |= {f"metrics.{key}@{layer}": as_logged(value) for layer, value in points}
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
