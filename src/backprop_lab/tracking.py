"""Stage 6, tracking: the only module that talks to MLflow.

The default store is a sqlite database in `mlruns/` under the launch directory, with artifacts beside it
(MLflow 3.13+ refuses the old `./mlruns` file store). Runs end FINISHED, FAILED on an exception, KILLED on Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Optional

MAX_PARAMS_PER_BATCH = 100  # MLflow's limits
MAX_PARAM_CHARS = 6000


def default_store(launch_dir: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the project's default store."""
    store = launch_dir.resolve() / "mlruns"
    return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def ui_command(uri: str, launch_dir: Path) -> str:
    """The command that serves this store's UI on the loopback interface, as typed from the launch directory."""
    local_default, _ = default_store(launch_dir)
    shown = "sqlite:///mlruns/mlflow.db" if uri == local_default else uri
    cli = Path(sys.executable).parent / "mlflow"  # the environment's own mlflow, as a path one can paste
    if not cli.exists():
        cli = Path("mlflow")
    elif cli.is_relative_to(launch_dir.resolve()):
        cli = cli.relative_to(launch_dir.resolve())
    return f"{cli} ui --backend-store-uri {shown} --host 127.0.0.1 --port 5000"


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config to `a.b.c` params; lists as JSON; values cut to MLflow's length limit."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            text = json.dumps(value) if isinstance(value, (list, type(None), bool)) else str(value)
            flat[name] = text[:MAX_PARAM_CHARS]
    return flat


class RunRef(NamedTuple):
    run_id: str
    experiment_id: str


def _experiment_id(name: str, artifact_location: Optional[str]) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_location)


@contextmanager
def tracked_run(
    uri: str, experiment: str, run_name: str, tags: dict[str, str], artifact_location: Optional[str] = None
) -> Iterator[RunRef]:
    """Yield a new run; whatever happens inside, the run ends with an honest status and keeps its logs."""
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)  # a fresh store's schema migrations are not news
    mlflow.set_tracking_uri(uri)
    experiment_id = _experiment_id(experiment, artifact_location)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    try:
        yield RunRef(run.info.run_id, experiment_id)
    except KeyboardInterrupt:
        mlflow.set_tag("error", "interrupted")
        mlflow.end_run("KILLED")
        raise
    except BaseException as e:
        mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:MAX_PARAM_CHARS])
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


def log_params(config: dict) -> None:
    import mlflow

    items = list(flatten(config).items())
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        mlflow.log_params(dict(items[start : start + MAX_PARAMS_PER_BATCH]))


def log_metrics(metrics: dict[str, float], step: Optional[int] = None) -> None:
    import mlflow

    mlflow.log_metrics(metrics, step=step)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_json(obj: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(obj, artifact_file)


def log_figure(fig, artifact_file: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)
