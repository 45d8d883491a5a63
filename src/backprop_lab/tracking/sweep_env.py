"""What a sweep hands its jobs, in this process or a launcher's workers (started after it is set): the parent run's
id and the keys the sweep varies (sweep.swept_keys, computed once, in the launching process)."""

from __future__ import annotations

import os
from typing import Optional

PARENT_ENV = "BACKPROP_LAB_SWEEP_RUN_ID"
SWEPT_ENV = "BACKPROP_LAB_SWEPT"  # comma-separated


def hand_to_jobs(parent_run_id: Optional[str], swept: list[str]) -> None:
    """Set for the jobs to come; a dry run has no parent, only the keys its jobs' names lead with."""
    if parent_run_id:
        os.environ[PARENT_ENV] = parent_run_id
    os.environ[SWEPT_ENV] = ",".join(swept)


def withdraw() -> None:
    os.environ.pop(PARENT_ENV, None)
    os.environ.pop(SWEPT_ENV, None)


def parent_from_env() -> Optional[str]:
    return os.environ.get(PARENT_ENV) or None


def swept_from_env() -> list[str]:
    return [k for k in os.environ.get(SWEPT_ENV, "").split(",") if k]
