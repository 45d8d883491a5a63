"""Sweeps that resume after being killed, computing nothing twice; and dry runs that say what would run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import preloaded
import pytest
from helpers import FAST, ROOT, SCRIPT, cli, runs_in, split_sweep
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
SWEEP = ["-m", "impl=functional,lean,autograd", *FAST[:3], "timing.min_run_time=0.2"]  # a job lasts a second or two


def job_runs(tmp_path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    found = client.get_experiment_by_name("backprop-lab")
    runs = client.search_runs([found.experiment_id], max_results=1000) if found else []
    return [r for r in runs if r.data.tags.get("backprop_lab.sweep") != "parent"]


def test_a_killed_sweep_resumes_computing_only_what_is_missing(tmp_path):
    # the store is read only after the kill: a reader opening it while the sweep creates it would race the schema
    proc = preloaded.popen([sys.executable, str(SCRIPT), *SWEEP], cwd=tmp_path, stdout=subprocess.PIPE,
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


ONE_JOB = ["-m", "init=xavier", *FAST, "hydra.sweep.dir=sweep"]


def test_each_dry_run_counts_its_own_jobs_and_creates_no_store(tmp_path):
    for _ in range(3):  # one sweep dir: the list is this dry run's, not appended to the last one's
        dry = cli(tmp_path, *ONE_JOB, "sweep.dry_run=true")
        assert dry.returncode == 0, dry.stderr[-2000:]
        assert dry.stdout.strip().splitlines()[-1] == (
            "dry run: 1 jobs would run, about 0 s (+ 1 without an estimate); 0 would be reused")
    assert not (tmp_path / "mlruns").exists()  # nothing to reuse or estimate from, and nothing written


@pytest.mark.parametrize("dry_run", ["false", "true"])
def test_an_empty_sweep_is_refused_dry_or_not(tmp_path, dry_run):
    done = cli(tmp_path, "-m", "seed=range(0)", *FAST, f"sweep.dry_run={dry_run}")
    assert (done.returncode, done.stderr.strip()) == (
        1, "error: the sweep has no jobs (seed=range(0): sweeps no value; give it at least one)")
    assert not (tmp_path / "mlruns").exists()


def test_a_search_of_no_trials_is_refused(tmp_path):
    done = cli(tmp_path, "-m", "+experiment=shift_search", *FAST, "hydra.sweeper.n_trials=0")
    assert (done.returncode, done.stderr.strip()) == (
        1, "error: the sweep has no jobs (hydra.sweeper.n_trials: 0; a search needs at least 1 trial)")
    assert not (tmp_path / "mlruns").exists()


def test_a_dry_run_refuses_a_deleted_experiment_as_the_sweep_does(tmp_path):
    from backprop_lab.tracking import lifecycle

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.delete_experiment(lifecycle.prepare_store(uri, "backprop-lab"))
    sweep = cli(tmp_path, *ONE_JOB)
    dry = cli(tmp_path, *ONE_JOB, "sweep.dry_run=true")
    assert sweep.returncode == dry.returncode == 1
    assert dry.stderr.strip() == sweep.stderr.strip()
    assert dry.stderr.strip().startswith("error: tracking.experiment: 'backprop-lab' was deleted in sqlite:///")
    assert "would run" not in dry.stdout


def test_a_job_the_dry_run_finds_bad_fails_it_as_it_would_fail_the_sweep(tmp_path):
    bad = ["-m", "data.n_train=-1,128", *FAST[:1], *FAST[2:]]
    dry = cli(tmp_path, *bad, "sweep.dry_run=true")
    assert dry.returncode == 1 and "Traceback" not in dry.stderr, dry.stderr[-2000:]
    assert dry.stdout.strip().splitlines()[-1].endswith("; 0 would be reused; 1 failed")
    assert dry.stderr.strip().splitlines()[-1] == "error: 1 of 2 jobs failed in the dry run; they would in the sweep"
    sweep = cli(tmp_path, *bad)
    assert sweep.returncode == 1 and sweep.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 jobs failed (")


FAIL_AFTER_LOGGING = """
import sys
from backprop_lab.study import summary
from backprop_lab.cli.entry import main

printed = []

def print_job_line(result, console):  # the first job's line cannot be printed: its run has ended FINISHED
    printed.append(result)
    if len(printed) == 1:
        raise OSError("stdout is gone")

summary.print_job_line = print_job_line
sys.argv[0] = "run.py"
main()
"""


def test_a_job_that_fails_after_its_run_ended_fails_the_sweep(tmp_path):
    done = preloaded.run([sys.executable, "-c", FAIL_AFTER_LOGGING, "-m", "init=xavier,normal", *FAST],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 jobs failed (sweep run ")
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED"]  # what they logged is whole
    (failed,) = [c for c in children if any(k.startswith("backprop_lab.job_failed.") for k in c.data.tags)]
    why = failed.data.tags[f"backprop_lab.job_failed.{parent.info.run_id}"]
    assert why.startswith(f"stdout: cannot print the summary (stdout is gone); run {failed.info.run_id} is logged")
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["sweep/jobs_failed"] == 1 and parent.data.metrics["sweep/jobs_finished"] == 1


def test_a_resumed_sweep_reruns_a_learners_file_changed_since_and_reuses_an_unchanged_one(tmp_path):
    from test_user_code import CORRECT

    (tmp_path / "ada.py").write_text(CORRECT)
    (tmp_path / "bo.py").write_text(CORRECT)
    sweep = ["-m", "impl=user", "impl.code=ada.py,bo.py", *FAST]
    first = cli(tmp_path, *sweep)
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / "bo.py").write_text(CORRECT + "# fixed after the teacher's first sweep\n")
    dry = cli(tmp_path, *sweep, "sweep.dry_run=true")
    assert dry.returncode == 0, dry.stderr[-2000:]
    lines = dry.stdout.splitlines()
    assert any(" ada·" in line and "would reuse run" in line for line in lines), dry.stdout
    assert any(" bo·" in line and "would run (code changed since run" in line for line in lines), dry.stdout
    assert dry.stdout.strip().splitlines()[-1].startswith("dry run: 1 jobs would run")
    done = cli(tmp_path, *sweep, "sweep.resume=true")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("reused run") == 1
    finished = [r for r in job_runs(tmp_path) if r.info.status == "FINISHED"]
    assert sorted(r.info.run_name.split("·")[0] for r in finished) == ["ada", "bo", "bo"]
    hashes = {r.data.tags["impl.code_sha256"] for r in finished if r.info.run_name.startswith("bo")}
    assert len(hashes) == 2  # the fixed file ran: its run carries the new hash
