"""The study's entry point: `python scripts/run.py [group=option key=value ...]`, or a sweep with `-m impl=a,b`.

Hydra stays here (and in the sweep callback): it composes the config, this module validates it and hands a plain
config to the pipeline. It fails as every command does (cli.run): bad input, Hydra's and OmegaConf's errors included,
is one line on stderr; however the process stops, the runs it started end with an honest status first. torch and
MLflow are imported only once a job runs, so `--help`, `--cfg job` and config errors stay fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from backprop_lab import cli
from backprop_lab.config import CONF_DIR, objectives, plain, store_schema, typed_overrides
from backprop_lab.config.validation import single_run, validate
from backprop_lab.core import redaction, stop, streams
from backprop_lab.core.collector_pause import collector_paused
from backprop_lab.core.errors import ConfigError, Refused, UserError, error_line, one_line
from backprop_lab.core.names import JOB_NUM_TAG, NONE, USER_IMPL
from backprop_lab.sweeps import submissions
from backprop_lab.tracking import sweep_env

_main_pid: Optional[int] = None  # the process that ran main(); a job elsewhere is a launcher's worker


def job(cfg: DictConfig) -> Optional[float]:
    """Hydra's task function: one job, a single run or one job of a sweep. It returns the config's objective, for
    a search; nothing when there is none, or the job failed (objectives.py)."""
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    searching = objectives.chosen(cfg.objective) != NONE
    redaction.protect_process()  # again in a launcher's worker, which did not run main()
    streams.tolerate_any_encoding()
    if os.getpid() != _main_pid:  # a worker: stop honestly on a signal, and with the sweep that started it
        stop.install()
        from backprop_lab.tracking import lifecycle

        stop.end_with_parent(lifecycle.has_open_runs)
    try:
        if OmegaConf.is_missing(cfg.impl, "code"):  # impl=user without its file
            raise UserError("impl.code: impl=user runs your own code; name it: impl.code=my_backward.py (a file, "
                            "relative to where you launch, or a module)")  # fmt: skip
        cfg = plain(cfg)
        refused = _validated(cfg, in_sweep)  # here, where the config enters, before torch: bad values cost nothing
        if not in_sweep:
            single_run(cfg)
        if cfg.impl.name == USER_IMPL:  # the fork server imports torch while this process imports the pipeline
            from backprop_lab.isolation import processes

            processes.starter().warm()

        with collector_paused("the pipeline"):
            from rich.console import Console

            from backprop_lab.study import pipeline, summary
            from backprop_lab.sweeps import resume

        # the launch directory, whatever hydra.job.chdir made the working one: the default store lives there
        launch_dir = Path(hydra_cfg.runtime.cwd)
        sweep_dir = launch_dir / hydra_cfg.sweep.dir
        reused = resume.handle(cfg, sweep_env.parent_from_env(), hydra_cfg.job.num, sweep_dir, refused) if in_sweep \
            else None  # fmt: skip
        if reused is not None:  # a resumed search is told what the reused trial gave
            return objectives.for_search(reused.get(objectives.METRIC)) if searching else None
        result = pipeline.run(
            cfg,
            typed_overrides(hydra_cfg),
            launch_dir,
            parent_run_id=sweep_env.parent_from_env() if in_sweep else None,
            job_tags={JOB_NUM_TAG: str(hydra_cfg.job.num)} if in_sweep else None,
            refused=refused,
        )
        try:
            console = Console(width=None if sys.stdout.isatty() else 110)
            if in_sweep:
                summary.print_job_line(result, console)
            else:
                summary.print_summary(result, console)
        except OSError as e:  # stdout on a full device, or gone: the run is logged whole all the same
            streams.give_up(1)
            raise UserError(f"stdout: cannot print the summary ({e.strerror or e}); run {result.run.run_id} is "
                            f"logged in full, open it: {result.ui_command}") from None  # fmt: skip
        return objectives.for_search(result.objective) if searching else None
    except UserError as e:
        if not in_sweep:
            raise Refused(e) from None  # past Hydra's job wrapper, which would wrap an exception in its own
        _count_failed_job(str(e))
        print(error_line(f"job {hydra_cfg.job.num} ({' '.join(typed_overrides(hydra_cfg))}): {e}"), file=sys.stderr)
    except Exception as e:
        if not in_sweep:
            raise
        # the child run is FAILED with the error as a tag; the sweep goes on and its parent counts the failure
        _count_failed_job(f"{type(e).__name__}: {e}")
        print(error_line(f"job {hydra_cfg.job.num} failed: {type(e).__name__}: {e}"), file=sys.stderr)
    return None  # to a search: a failed trial


def _validated(cfg: DictConfig, in_sweep: bool) -> Optional[ConfigError]:
    """The config's values checked, once: bad input to a single run is raised (no run exists); a sweep's job is
    handed its refusal, raised inside its child run, which ends FAILED saying why."""
    try:
        validate(cfg)
    except ConfigError as e:
        if not in_sweep:
            raise
        return e
    return None


def _count_failed_job(why: str) -> None:
    """Recorded first, so that a job is counted failed even if printing its error fails too (sweep.job_failed)."""
    from backprop_lab.sweeps import sweep  # not imported yet when the job failed before the pipeline's imports

    sweep.job_failed(why)


def compose(overrides: list[str]) -> DictConfig:
    """The config these overrides give, composed by Hydra's compose API and validated as the entry point does:
    for the other entry points (the bench) and for Python. Bad input raises ConfigError with one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from backprop_lab.core.errors import ConfigError

    store_schema(ConfigStore.instance())
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = plain(hydra_compose(config_name="config", overrides=overrides))
    except (OmegaConfBaseException, hydra.errors.HydraException) as e:
        raise ConfigError(one_line(e)) from None
    validate(cfg)
    return cfg


def _hydra_arguments_checked() -> None:
    """Hydra's own flags (`--cfg`, `--multirun`, ...) parsed as Hydra will parse them, so that a usage error is one
    line and the user-error status, as every other command's."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.error = cli.usage_error
    parser.parse_args()


def _run_hydra() -> int:
    """Hydra's run or sweep; its errors, and a launch directory it cannot write, as a user error's one line."""
    sys.argv[1:] = submissions.expand(sys.argv[1:], Path.cwd())  # a folder of submissions is its files
    _hydra_arguments_checked()
    run_hydra = hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")(job)
    try:
        run_hydra()
    except (OmegaConfBaseException, hydra.errors.HydraException) as e:
        raise UserError(one_line(e)) from None
    except OSError as e:  # Hydra's output directory under a file, a read-only launch directory, a full disk
        where = f": {e.filename}" if e.filename else ""
        raise UserError(f"{e.strerror or e}{where}; check hydra.run.dir, hydra.sweep.dir, the launch dir") from None
    return 0


def main() -> None:
    global _main_pid
    _main_pid = os.getpid()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print them as one line
    store_schema(ConfigStore.instance())
    sys.exit(cli.run(_run_hydra, interrupted="the runs this process started are marked KILLED"))
