"""Hydra multirun as one MLflow parent run with a child run per job.

Hydra loads `MlflowSweep` by name from `conf/config.yaml` (`hydra.callbacks`). In the launching process, before any
job, it creates the store, the experiment and the parent run; jobs, in this process or in a launcher's workers, find
the parent's id in the environment; after the last job it closes the parent with the count of jobs that finished and
failed, and the sweep's exit status is its verdict. What it starts, it ends: `abort_active` ends the parent (and any
child still RUNNING) when the process stops early.

It also keeps what Hydra writes to disk free of credentials: Hydra saves the composed config and the overrides
(`.hydra/*.yaml`, `multirun.yaml`) before any job code runs, so each job start rewrites them redacted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from backprop_lab import tracking
from backprop_lab.config import run_params, typed_overrides
from backprop_lab.core import redaction
from backprop_lab.core.errors import Refused, UserError, one_line
from backprop_lab.core.names import JOB_FAILED, SWEEP_WALL_S
from backprop_lab.sweeps import submissions
from backprop_lab.sweeps.parent import SWEPT_PARAM, close_parent, environment_tags, open_parent, verdict_counts
from backprop_lab.tracking import lifecycle, run_names, runs, store, sweep_env


def sweep_overrides(config: DictConfig) -> list:
    """The multirun's sweep overrides, parsed: the command's (`impl=a,b`, `glob(*)`, ranges, intervals) and its
    sweeper's params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper.get("params") or {}
    given = typed_overrides(config.hydra) + [f"{key}={value}" for key, value in sweeper.items()]
    return [o for o in OverridesParser.create().parse_overrides(given) if o.is_sweep_override()]


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies, computed here once: handed to its jobs (sweep_env), whose names lead with them,
    and logged as the parent's `swept` param, which its best trial is read by."""
    return list(dict.fromkeys(o.key_or_group for o in sweep_overrides(config)))


def shared_params(config: DictConfig, swept: list[str]) -> dict:
    """The parent's params: what the sweep varies, and every value its jobs share, written as the jobs write them
    (an enum by its name, `float32`, as `config.plain` gives the jobs)."""
    from omegaconf import OmegaConf

    task = OmegaConf.to_container(config, resolve=False, enum_to_str=True)
    task.pop("hydra", None)
    varying = {key.split(".")[0] for key in swept}
    shared = {k: v for k, v in run_params.requested(task).items() if k not in varying}
    return {SWEPT_PARAM: ", ".join(swept)} | shared


# The error of this process's job that failed and went on (entry.job catches it so that the sweep goes on), for
# the callback's on_job_end, which Hydra calls next in the same process, a launcher's worker included
_job_errors: list[str] = []


def job_failed(error: str) -> None:
    """Say that the job now ending failed, however its run ended (or if it never had one): the sweep counts it."""
    _job_errors.append(redaction.redact(error))


def record_job_failure(uri: str, parent_run_id: str, job_num: int, error: str) -> None:
    """Where the parent counts it: on the job's run when that ended FINISHED, on the parent when there is none;
    nothing when the run ended FAILED or KILLED (it says so itself)."""
    own = runs.job_run(uri, parent_run_id, job_num)
    if own is None:
        tracking.set_tags({f"{JOB_FAILED}job{job_num}": error}, parent_run_id, uri)
    elif own.status == "FINISHED":
        tracking.set_tags({JOB_FAILED + parent_run_id: error}, own.run_id, uri)


def _empty_sweep(config: DictConfig) -> Optional[str]:
    """Why the sweep would launch no job, or None: a search of no trials, a swept key with no values."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    sweeper = config.hydra.sweeper
    if "optuna" in str(sweeper.get("_target_", "")):
        trials = sweeper.get("n_trials")
        if trials is not None and trials < 1:
            return f"hydra.sweeper.n_trials: {trials}; a search needs at least 1 trial"
        return None
    params = sweeper.get("params") or {}
    given = [f"{key}={value}" for key, value in params.items()] + typed_overrides(config.hydra)
    try:  # as the basic sweeper expands them: a glob needs the config groups' options
        parsed = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader()).parse_overrides(given)
        for override in parsed:
            if override.is_discrete_sweep() and not list(override.sweep_string_iterator()):
                return f"{override.input_line}: sweeps no value; give it at least one"
    except HydraException:  # the sweeper says it in its own words
        pass
    return None


def redact_hydra_files(config: DictConfig, job: bool = True) -> None:
    """Rewrite Hydra's saved configs with credentials masked (a no-op when there are none): a job's `.hydra/*.yaml`
    and, in a multirun, the sweep's `multirun.yaml`."""
    hydra_cfg = config.hydra
    redaction.learn_arguments(typed_overrides(hydra_cfg))  # a launcher's worker did not see the command line
    files = []
    if job and hydra_cfg.output_subdir is not None:
        files += (Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml")
    if hydra_cfg.mode is not None and str(hydra_cfg.mode).endswith("MULTIRUN"):
        files.append(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        redacted = redaction.redact(text)
        if redacted != text:
            path.write_text(redacted)


def check_search(config: DictConfig) -> None:
    """A search (hydra/sweeper=search) needs an objective, minimizes it, and cannot say beforehand what it would
    run."""
    from backprop_lab.config.objectives import OBJECTIVES, chosen
    from backprop_lab.core.names import NONE

    if "optuna" not in str(config.hydra.sweeper.get("_target_", "")):
        return
    if chosen(config.objective) == NONE:
        raise UserError(f"objective: none; a search minimizes one of {', '.join(OBJECTIVES)}")
    if chosen(config.hydra.sweeper.get("direction", "minimize")) != "minimize":
        raise UserError(f"hydra.sweeper.direction: {config.hydra.sweeper.direction}; every objective is a cost, "
                        "so a search minimizes (the only value allowed)")  # fmt: skip
    if config.sweep.dry_run:
        raise UserError("sweep.dry_run: a search's trials depend on its results; run it, or use a grid sweeper")
    for override in sweep_overrides(config):  # Optuna would refuse these in a 40-line traceback, mid-sweep
        space = override.value()
        if type(space).__name__ != "IntervalSweep":
            continue
        low, high = space.start, space.end
        if low > high:
            raise UserError(f"{override.input_line}: an interval runs from low to high; write interval({high}, {low})")
        if "log" in space.tags and low <= 0:
            raise UserError(f"{override.input_line}: a log interval needs low > 0")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Hydra's log already says each trial and the best


class MlflowSweep(Callback):
    def __init__(self) -> None:
        self.uri: Optional[str] = None
        self.parent_run_id: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and would run every job into the same failure:
        # anything that stops the parent from being created stops the sweep here, in one line
        try:
            sweep_dir = Path(config.hydra.sweep.dir)
            try:
                sweep_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise Refused(f"hydra.sweep.dir: cannot create {sweep_dir} ({e.strerror})") from None
            empty = _empty_sweep(config)
            if empty:
                raise UserError(f"the sweep has no jobs ({empty})")
            check_search(config)
            launch_dir = Path(config.hydra.runtime.cwd)  # the jobs' too, whatever their working dir (hydra.job.chdir)
            self.uri, artifact_location = store.resolve_store(config.tracking.uri, launch_dir)
            self.swept = swept_keys(config)
            if config.sweep.dry_run:  # nothing is logged: the jobs only say what they would do
                from backprop_lab.sweeps import resume

                lifecycle.check_experiment(self.uri, config.tracking.experiment)  # what the sweep would refuse
                resume.start_dry_run(sweep_dir)
                sweep_env.hand_to_jobs(None, self.swept)
                return
            experiment_id = lifecycle.prepare_store(self.uri, config.tracking.experiment, artifact_location)
            self.experiment_id, self.launch_dir = experiment_id, launch_dir
            overrides = typed_overrides(config.hydra)
            self.started = time.perf_counter()
            tags = {"overrides": " ".join(overrides), "launcher": config.hydra.launcher._target_.rsplit(".", 1)[-1]}
            self.name = (submissions.given or run_names.parent_name(overrides, self.swept))[:250]  # a folder by its own
            self.parent_run_id = open_parent(self.uri, experiment_id, self.name,
                                             tags | environment_tags(), shared_params(config, self.swept))  # fmt: skip
        except UserError as e:  # the store's own one line
            raise Refused(e) from None
        except Exception as e:
            raise Refused(f"the sweep's parent run cannot be created: {one_line(e)}") from None
        sweep_env.hand_to_jobs(self.parent_run_id, self.swept)  # launchers' workers are started after this
        _active.add(self)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        redaction.protect_logging()  # Hydra has just configured the job's log file
        redact_hydra_files(config)
        if self.parent_run_id:  # in a worker, the callback arrives pickled with the parent's id
            sweep_env.hand_to_jobs(self.parent_run_id, self.swept)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _job_errors:
            return
        error = _job_errors.pop()
        _job_errors.clear()
        if config.sweep.dry_run:
            from backprop_lab.sweeps import resume

            sweep_dir = Path(config.hydra.runtime.cwd) / config.hydra.sweep.dir  # the job's cwd may be its own
            resume.record(sweep_dir, {"job": config.hydra.job.num, "failed": error})
        elif self.parent_run_id:
            record_job_failure(self.uri, self.parent_run_id, config.hydra.job.num, error)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.sweep.dry_run:
            from backprop_lab.sweeps import resume

            sweep_dir = Path(config.hydra.sweep.dir)
            print(resume.summary(sweep_dir))
            failed, jobs = resume.failed_jobs(sweep_dir)
            if failed:
                raise Refused(f"{failed} of {jobs} jobs failed in the dry run; they would in the sweep")
            return
        # as at the start, an exception here would be a warning and the exit status 0: the verdict is a SystemExit
        parent_run_id = self.parent_run_id
        try:
            counts = self.finish(None)
            redact_hydra_files(config, job=False)
        except Exception as e:
            raise Refused(f"the sweep's parent run cannot be ended: {one_line(e)}") from None
        if parent_run_id:
            try:
                print("\n".join(self.closing_lines(parent_run_id, counts)), flush=True)
            except OSError:  # stdout on a full device, or gone: the sweep's verdict below still stands
                pass
        failed = counts.get("FAILED", 0) + counts.get("KILLED", 0)
        if failed:
            raise Refused(f"{failed} of {counts['jobs']} jobs failed (sweep run {parent_run_id})")

    def closing_lines(self, parent_run_id: str, counts: dict[str, int]) -> list[str]:
        """The sweep's last lines, after the last job's: what its jobs found (their verdicts counted, in the
        report's words), its parent run, where to see it, how to report it."""
        return [
            f"sweep {self.name!r}: {verdict_counts(counts)}; parent run {parent_run_id} (experiment "
            f"{self.experiment_id})",
            f"open it:  {store.ui_command(self.uri, self.launch_dir)}",
            f"          then {store.ui_url(self.uri, self.experiment_id)} (the runs table), "
            f"{store.ui_url(self.uri, self.experiment_id, parent_run_id)} (the sweep's table)",
            f"report:   {store.report_command(self.uri, self.launch_dir, parent_run_id)}",
        ]

    def finish(self, status: Optional[str]) -> dict[str, int]:
        """Close the parent run: FINISHED, FAILED if any job failed, or the status given (KILLED on Ctrl-C)."""
        if not self.parent_run_id:
            return {}
        wall = {SWEEP_WALL_S: time.perf_counter() - self.started}
        counts = close_parent(self.uri, self.parent_run_id, status, wall)
        sweep_env.withdraw()
        self.parent_run_id = None
        _active.discard(self)
        return counts


_active: set[MlflowSweep] = set()


def abort_active(status: str) -> list[str]:
    """The process is stopping early: each running sweep's parent, and its children still RUNNING, end `status`.
    Returns a line per sweep that could not be ended."""
    problems = []
    for callback in list(_active):
        parent = callback.parent_run_id
        try:
            callback.finish(status)
        except Exception as e:
            problems.append(f"the sweep's parent run {parent}: {one_line(e)}")
    return problems
