"""Hydra multirun as one MLflow parent run with a child run per job.

Hydra loads `MlflowSweep` by name from `conf/config.yaml` (`hydra.callbacks`), so this is the one library module
that knows Hydra. In the launching process, before any job, it creates the store, the experiment and the parent
run; jobs, in this process or in a launcher's workers, find the parent's id in the environment; after the last job
it closes the parent with the count of jobs that finished and failed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from backprop_lab import tracking
from backprop_lab.errors import UserError

# The outcome of the last sweep this process ran, for the entry script's exit code.
last_outcome: dict[str, int] = {}


class MlflowSweep(Callback):
    def __init__(self) -> None:
        self.uri: Optional[str] = None
        self.parent_run_id: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.uri, artifact_location = tracking.resolve_store(config.tracking.uri, Path.cwd())
        try:
            experiment_id = tracking.prepare_store(self.uri, config.tracking.experiment, artifact_location)
        except UserError as e:  # Hydra turns a callback's exception into a warning: stop the sweep here instead
            raise SystemExit(f"error: {tracking.redact(str(e))}") from None
        overrides = list(config.hydra.overrides.task)
        self.started = time.perf_counter()
        self.parent_run_id = tracking.start_sweep(
            self.uri,
            experiment_id,
            run_name=f"sweep {' '.join(overrides) or '(defaults)'}"[:250],
            tags={"overrides": " ".join(overrides), "launcher": config.hydra.launcher._target_.rsplit(".", 1)[-1]},
        )
        os.environ[tracking.SWEEP_ENV] = self.parent_run_id  # launchers' workers are started after this
        _active.add(self)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_run_id:  # in a worker, the callback arrives pickled with the parent's id
            os.environ[tracking.SWEEP_ENV] = self.parent_run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.finish(None)

    def finish(self, status: Optional[str]) -> None:
        """Close the parent run: FINISHED, FAILED if any job failed, or the status given (KILLED on Ctrl-C)."""
        if not self.parent_run_id:
            return
        wall = {"sweep/wall_s": time.perf_counter() - self.started}
        counts = tracking.end_sweep(self.uri, self.parent_run_id, status, wall)
        last_outcome.clear()
        last_outcome.update(counts)
        os.environ.pop(tracking.SWEEP_ENV, None)
        self.parent_run_id = None
        _active.discard(self)


_active: set[MlflowSweep] = set()


def abort_active(status: str = "KILLED") -> None:
    """Ctrl-C during a sweep: the running children and the parent end KILLED instead of RUNNING forever."""
    for callback in list(_active):
        callback.finish(status)
