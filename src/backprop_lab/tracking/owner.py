"""Which process owns a run, and whether that process is still alive.

A process killed by SIGKILL (or the OOM killer, or a power cut) cannot end its MLflow run: the run would show
RUNNING for good. Each run is tagged with its owner (host, boot, pid and the pid's start time, so that a reused pid
is not mistaken for the owner); the next run, report or rerun that finds a RUNNING run whose owner is gone from this
host ends it KILLED. A run owned by another host is left alone: its process cannot be seen from here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None: no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # after the command name, which may hold spaces


def process_age_s() -> Optional[float]:
    """Seconds since this process started (its interpreter's start-up included); None without /proc."""
    ticks = _start_ticks(os.getpid())
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if ticks is None else max(0.0, uptime - int(ticks) / os.sysconf("SC_CLK_TCK"))


def this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_ticks(pid) or 'unknown'}"


def is_dead(owner: str) -> bool:
    """True only when the owner surely is gone: on this host, another boot, or a pid that no longer runs (or runs
    another program). False when alive or when it cannot be told (another host, no /proc)."""
    try:
        host, boot, pid, start = owner.split("/")
    except ValueError:
        return False
    if host != socket.gethostname() or "unknown" in (boot, start) or _boot_id() == "unknown":
        return False
    if boot != _boot_id():
        return True
    return _start_ticks(int(pid)) != start


def describe(owner: str) -> str:
    host, _, pid, _ = (owner.split("/") + ["?"] * 4)[:4]
    return f"pid {pid} on {host}"
