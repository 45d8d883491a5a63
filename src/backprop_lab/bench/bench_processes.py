"""The pipeline around the compute, each measured in a fresh process as a user starts it: a default run's memory and
its time outside the timing stage, the start-up of `--help`, `--cfg job` and a config error, and a sweep's per-job
overhead. The bench (bench_cli.py) runs them in a temporary launch directory."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backprop_lab import impls
from backprop_lab.core.errors import UserError
from backprop_lab.core.names import WALL_CHECK_S, WALL_RUN_S, WALL_STARTUP_S, WALL_TIMING_S
from backprop_lab.tracking import runs, store

SWEEP_INITS = ("xavier", "kaiming_uniform")  # with every implementation: the sweep whose per-job overhead is timed
SWEEP_EXPERIMENT = "bench-sweep"  # in a store of its own, in a temporary directory
DEFAULT_RUN_EXPERIMENT = "bench-default-run"  # the same
STARTUPS = {"help": ["--help"], "cfg_job": ["--cfg", "job"], "config_error": ["impl=nope"]}
FAILS = {"config_error"}  # the start-ups that must end in an error


class ChildFailed(UserError):
    """A measured process did not end as it should: its time or memory would measure something else. Said in one
    line, as bad input is: the child's own last line says why (a bad override, no memory left)."""


def _entry(*args: str) -> list[str]:
    """The entry point as a user starts it (scripts/run.py is this), from a checkout or an installed copy."""
    return [sys.executable, "-m", "backprop_lab", *args]


def _last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else "(nothing on stderr)"


def peak_rss_gib(args: list[str], cwd: Path) -> float:
    """The peak RSS of one run of the entry point: wait4 reports that child's alone, whatever ran before it."""
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(_entry(*args), cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if child.returncode is None:
                child.kill()
                child.wait()
        if child.returncode != 0:
            err.seek(0)
            raise ChildFailed(f"{' '.join(args)}: exit {child.returncode}: {_last_line(err.read())}")
    return usage.ru_maxrss / 2**20  # Linux reports KiB


def startup_s(args: list[str], cwd: Path, fails: bool, repeat: int = 3) -> float:
    """The best of a few wall times: start-up is what is measured, not the machine's hiccups."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(_entry(*args), cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if (done.returncode != 0) != fails:
            raise ChildFailed(f"{' '.join(args)}: exit {done.returncode}: {_last_line(done.stderr)}")
    return min(times)


def outside_timing_s(metrics: dict[str, float]) -> float:
    """A run's wall time outside its timing stage: start-up, data, check and logging (its `wall/*` metrics)."""
    return metrics[WALL_STARTUP_S] + metrics[WALL_RUN_S] - metrics[WALL_TIMING_S]


def default_runs(cwd: Path, overrides: tuple[str, ...] = ("timing=fast",)) -> dict[str, float]:
    """The default run twice in one launch directory, as a user's first and second: the larger peak RSS, and the
    time outside the timing stage on an empty store (the first) and on a warm one (the second); the data cache is
    the user's, warm from this bench."""
    uri, _ = store.resolve_store(None, cwd)
    rss, outside, seen = [], [], set()
    for _ in range(2):
        rss.append(peak_rss_gib([*overrides, f"tracking.experiment={DEFAULT_RUN_EXPERIMENT}"], cwd))
        (new,) = [r for r in runs.experiment_records(uri, DEFAULT_RUN_EXPERIMENT) if r.run_id not in seen]
        seen.add(new.run_id)
        outside.append(outside_timing_s(new.metrics))
    return {"default_run_peak_rss_gib": max(rss), "default_run_first_outside_timing_s": outside[0],
            "default_run_outside_timing_s": outside[1]}  # fmt: skip


def sweep_overhead(cwd: Path, overrides: list[str]) -> dict[str, float]:
    """Median per-job time outside the checked compute and its timing, over a sweep of every implementation."""

    sweep = [f"impl={','.join(impls.built_in())}", f"init={','.join(SWEEP_INITS)}", "timing=fast"]
    where = ["tracking.uri=null", f"tracking.experiment={SWEEP_EXPERIMENT}"]  # the default store, under cwd
    started = time.perf_counter()
    done = subprocess.run(_entry("-m", *overrides, *sweep, *where), cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise ChildFailed(f"the sweep: exit {done.returncode}: {_last_line(done.stderr)}")
    uri, _ = store.resolve_store(None, cwd)
    _, children = runs.sweep_records(uri, runs.latest_sweep(uri, SWEEP_EXPERIMENT))
    overhead = [outside_timing_s(c.metrics) - c.metrics[WALL_CHECK_S] for c in children]
    return {"sweep_jobs": len(children), "sweep_wall_s": wall, "overhead_median_s": statistics.median(overhead),
            "overhead_max_s": max(overhead)}  # fmt: skip


def around_the_compute(overrides: list[str], with_sweep: bool, console) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        with console.status("the default run, twice: its memory and its time outside the timing stage"):
            extra = default_runs(Path(tmp))
        extra |= {f"{name}_s": startup_s(args, Path(tmp), name in FAILS) for name, args in STARTUPS.items()}
        if with_sweep:
            with console.status("a sweep of every implementation, for the per-job overhead"):
                extra |= sweep_overhead(Path(tmp), overrides)
    return extra
