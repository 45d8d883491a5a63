"""Sweeps that resume after being killed, computing nothing twice; and dry runs that say what would run."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter

import pytest
from helpers import FAST, SCRIPT, cli
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
SWEEP = ["-m", "impl=functional,lean,autograd", *FAST[:3], "timing.min_run_time=1"]


def job_runs(tmp_path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    found = client.get_experiment_by_name("backprop-lab")
    runs = client.search_runs([found.experiment_id], max_results=1000) if found else []
    return [r for r in runs if r.data.tags.get("backprop_lab.sweep") != "parent"]


def test_a_killed_sweep_resumes_computing_only_what_is_missing(tmp_path):
    # the store is read only after the kill: a reader opening it while the sweep creates it would race the schema
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *SWEEP], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    finished = 0
    while finished < 2:  # a job's line is printed once its run has ended FINISHED
        line = proc.stdout.readline()
        assert line, "the sweep ended before two jobs finished"
        finished += " grads ok " in line
    proc.send_signal(signal.SIGKILL)  # preempted: no handler runs
    proc.wait()
    before = {r.info.run_id for r in job_runs(tmp_path) if r.info.status == "FINISHED"}
    assert len(before) == 2

    dry = cli(tmp_path, *SWEEP, "sweep.dry_run=true")
    assert dry.returncode == 0 and "dry run: 1 jobs would run" in dry.stdout and "2 would be reused" in dry.stdout

    done = cli(tmp_path, *SWEEP, "sweep.resume=true")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("reused run") == 2
    runs = job_runs(tmp_path)
    finished = Counter(r.data.tags["config.sha256"] for r in runs if r.info.status == "FINISHED")
    assert len(finished) == 3 and set(finished.values()) == {1}  # every config once, nothing computed twice
    assert before <= {r.info.run_id for r in runs if r.info.status == "FINISHED"}  # the earlier ones, reused
    assert "RUNNING" not in {r.info.status for r in runs}  # the killed sweep's job, ended KILLED
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (parent,) = [p for p in client.search_runs(["1"], "tags.`backprop_lab.sweep` = 'parent'")
                 if p.info.status == "FINISHED"]  # fmt: skip
    assert parent.data.metrics["sweep/jobs"] == 3 and parent.data.metrics["sweep/jobs_finished"] == 3

    estimate = cli(tmp_path, *SWEEP, "seed=1", "sweep.dry_run=true")  # new configs, shapes seen before
    assert "dry run: 3 jobs would run, about" in estimate.stdout and "without an estimate" not in estimate.stdout
