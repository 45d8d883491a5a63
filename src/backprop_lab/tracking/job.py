"""One job as one tracked run, the bookkeeping around the study's stages: where it is logged, its name and the tags
that identify it, what it was asked (its params, config and overrides, logged first so that a job failing its checks
can still be read and rerun), and its wall clock by stage, the overhead before it included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from backprop_lab import tracking
from backprop_lab.config import run_params
from backprop_lab.core import names
from backprop_lab.tracking import environment, lifecycle, owner, run_names, store, sweep_env

_previous_job_end: Optional[float] = None  # perf_counter() when this process's last job ended


@dataclass
class Job:
    ref: lifecycle.RunRef
    name: str
    uri: str
    launch_dir: Path
    tags: dict[str, str]
    started: float  # perf_counter() at the job's start
    wall: dict[str, float] = field(default_factory=dict)  # seconds, by stage
    git_diff: Optional[environment.GitDiff] = None  # the uncommitted changes, as tracking.git_diff asks, if dirty

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.wall[stage] = time.perf_counter() - start

    def clock_stopped(self) -> dict[str, float]:
        """The wall clock by stage, the run's whole, and what was neither a stage nor the start (the logging)."""
        self.wall["run_s"] = time.perf_counter() - self.started
        stages = sum(self.wall.get(k, 0.0) for k in ("data_s", "check_s", "timing_s"))
        self.wall["logging_s"] = self.wall["run_s"] - stages
        return self.wall

    def addresses(self) -> tuple[str, str, str]:
        """The command that serves the UI, the experiment's runs table there, and this run's page."""
        return (store.ui_command(self.uri, self.launch_dir), store.ui_url(self.uri, self.ref.experiment_id),
                store.ui_url(self.uri, self.ref.experiment_id, self.ref.run_id))  # fmt: skip


def tracked_job(cfg: DictConfig, overrides: list[str], launch_dir: Path, parent_run_id: Optional[str] = None,
                job_tags: Optional[dict[str, str]] = None) -> AbstractContextManager[Job]:  # fmt: skip
    """The job's run, open while the stages run: ended FINISHED, or FAILED (KILLED on a signal) with the reason. The
    config is read here, once, before the run starts."""
    where = cfg.tracking  # where the run is logged, and what of the checkout it keeps
    uri, artifact_location = store.resolve_store(where.uri, launch_dir)
    experiment, diff = where.experiment, (where.git_diff, where.git_diff_max_bytes)
    name = run_names.run_name(cfg, sweep_env.swept_from_env() if parent_run_id else None)
    config = OmegaConf.to_container(cfg)
    identity = {names.CONFIG_TAG: run_params.config_digest(config), names.SHAPE_TAG: run_params.shape_digest(config)}
    tags = environment.git_state() | {"overrides": " ".join(overrides) or "(none)"} | identity | (job_tags or {})
    asked = (config, OmegaConf.to_yaml(cfg), overrides)
    return _tracked(uri, artifact_location, experiment, name, tags, asked, diff, launch_dir, parent_run_id)


@contextmanager
def _tracked(uri: str, artifact_location: Optional[str], experiment: str, name: str, tags: dict[str, str],
             asked: tuple[dict, str, list[str]], diff: tuple[str, int], launch_dir: Path,
             parent_run_id: Optional[str]) -> Iterator[Job]:  # fmt: skip
    global _previous_job_end
    started = time.perf_counter()
    # the overhead before this job: imports and setup for a process's first job, Hydra's work between jobs after
    startup = started - _previous_job_end if _previous_job_end else owner.process_age_s() or 0.0
    config, config_yaml, overrides = asked
    try:
        with lifecycle.tracked_run(uri, experiment, name, tags, artifact_location, parent_run_id) as ref:
            tracking.log_params(run_params.requested(config))
            tracking.log_text(config_yaml, "config/config.yaml")
            tracking.log_json({"overrides": list(overrides)}, "config/overrides.json")
            git_diff = environment.git_diff_record(*diff) if tags.get("git.dirty") == "true" else None
            yield Job(ref, name, uri, launch_dir, tags, started, {"startup_s": startup}, git_diff)
    finally:  # failed or not: the next job in this process tells its overhead from here
        _previous_job_end = time.perf_counter()
