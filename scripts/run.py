"""Run the study: `python scripts/run.py [group=option key=value ...]`, or sweep with `-m impl=a,b init=c,d`.

Only this script knows Hydra: it composes and validates the config, hands a plain config to the pipeline, and turns
bad input into one line on stderr and a non-zero exit. torch and MLflow are imported only once a job runs.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()
_MAIN_PID = None  # set below in the process that runs this script; a launcher's worker sees None

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.errors import MissingConfigException  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from backprop_lab import stop  # noqa: E402
from backprop_lab.config import describe, plain, store_schema, validate  # noqa: E402
from backprop_lab.errors import UserError  # noqa: E402
from backprop_lab.tracking import redact  # noqa: E402  (no MLflow import until a run starts)

store_schema(ConfigStore.instance())


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        cfg = plain(cfg)
        if not in_sweep:
            validate(cfg)  # before torch is imported: bad values cost nothing

        from rich.console import Console

        from backprop_lab import pipeline, summary, tracking

        result = pipeline.run(
            cfg,
            list(hydra_cfg.overrides.task),
            Path.cwd(),
            process_start=_STARTED if os.getpid() == _MAIN_PID else None,
            parent_run_id=tracking.sweep_parent_from_env() if in_sweep else None,
            job_tags={"hydra.job.num": str(hydra_cfg.job.num)} if in_sweep else None,
        )
        console = Console(width=None if sys.stdout.isatty() else 110)
        if in_sweep:
            summary.print_job_line(result, console)
        else:
            summary.print_summary(result, console)
    except UserError as e:
        if not in_sweep:
            sys.exit(f"error: {redact(str(e))}")  # SystemExit passes Hydra's job wrapper untouched: one line
        print(redact(f"error: job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): {e}"), file=sys.stderr)
    except Exception as e:
        if not in_sweep:
            raise
        # the child run is FAILED with the error as a tag; the sweep goes on and its parent counts the failure
        print(redact(f"error: job {hydra_cfg.job.num} failed: {type(e).__name__}: {e}"), file=sys.stderr)


def one_line(e: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut to the key and what it allows."""
    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}: no option {option!r}; choose one of {', '.join(sorted(e.options))}"
    return describe(e)


def _interrupt(signum, frame):
    """Ctrl-C and SIGTERM end a run KILLED, with what was logged kept. The flag is for the timing loop: Python
    drops a KeyboardInterrupt raised inside a weakref callback, where a signal can land."""
    stop.requested.set()
    raise KeyboardInterrupt


def sweep_module():
    """The sweep callback's module, if Hydra loaded it (a multirun); None for a single run."""
    return sys.modules.get("backprop_lab.sweep")


if __name__ == "__main__":
    _MAIN_PID = os.getpid()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print them as one line
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        main()
    except (OmegaConfBaseException, hydra.errors.HydraException) as e:
        sys.exit(f"error: {redact(one_line(e))}")
    except KeyboardInterrupt:
        if sweep_module():
            sweep_module().abort_active("KILLED")
        sys.exit("interrupted: the MLflow run is marked KILLED")
    outcome = sweep_module().last_outcome if sweep_module() else {}
    if outcome.get("FAILED") or outcome.get("KILLED"):
        sys.exit(f"error: {outcome['FAILED'] + outcome['KILLED']} of {outcome['jobs']} jobs failed")
