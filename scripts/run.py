"""Run the study: `python scripts/run.py [group=option key=value ...]`, or sweep with `-m impl=a,b init=c,d`.

Only this script knows Hydra: it composes and validates the config, hands a plain config to the pipeline, and turns
bad input into one line on stderr and a non-zero exit. torch and MLflow are imported only once a job runs.
"""

from __future__ import annotations

import time

_last_job_end = time.perf_counter()  # process start, then the end of each job: what lies between is overhead

import os  # noqa: E402
import sys  # noqa: E402
from dataclasses import fields, is_dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.errors import MissingConfigException  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException  # noqa: E402

from backprop_lab.config import plain, store_schema, validate  # noqa: E402
from backprop_lab.errors import UserError  # noqa: E402

store_schema(ConfigStore.instance())


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        cfg = plain(cfg)
        validate(cfg)  # before torch is imported: bad values cost nothing

        from rich.console import Console

        from backprop_lab import pipeline, summary

        global _last_job_end
        overrides = list(HydraConfig.get().overrides.task)
        result = pipeline.run(cfg, overrides, Path.cwd(), startup_s=time.perf_counter() - _last_job_end)
        summary.print_summary(result, Console(width=None if sys.stdout.isatty() else 110))
        _last_job_end = time.perf_counter()
    except UserError as e:
        sys.exit(f"error: {e}")  # SystemExit passes Hydra's job wrapper untouched: one line, no traceback


def one_line(e: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut to the key and what it allows."""
    if isinstance(e.__cause__, OmegaConfBaseException):
        e = e.__cause__  # "Error merging override ..." wraps the error that names the key
    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}: no option {option!r}; choose one of {', '.join(sorted(e.options))}"
    if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
        if isinstance(e, (ConfigAttributeError, ConfigKeyError)) and is_dataclass(e.object_type):
            allowed = ", ".join(f.name for f in fields(e.object_type))
            return f"{e.full_key}: unknown key; {e.object_type.__name__} allows {allowed}"
        return f"{e.full_key}: {str(e.msg).splitlines()[0]}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return "; ".join(lines[:2]) or type(e).__name__


if __name__ == "__main__":
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print them as one line
    try:
        main()
    except (OmegaConfBaseException, hydra.errors.HydraException) as e:
        sys.exit(f"error: {one_line(e)}")
    except KeyboardInterrupt:
        sys.exit("interrupted: the MLflow run is marked KILLED")
