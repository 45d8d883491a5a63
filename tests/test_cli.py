"""The entry script as a user runs it, in a subprocess: default store location, sweeps, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import preloaded
import pytest
from helpers import FAST, ROOT, SCRIPT, cli, runs_in, split_sweep
from mlflow.tracking import MlflowClient

from backprop_lab.cli import USER_ERROR_EXIT

pytestmark = pytest.mark.slow


def test_default_store_is_mlruns_under_the_launch_dir(tmp_path):  # and a single run stays a plain run
    done = cli(tmp_path, *FAST)
    assert done.returncode == 0, done.stderr
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and run.data.metrics["grad/all_close"] == 1.0
    assert "mlflow.parentRunId" not in run.data.tags and "backprop_lab.sweep" not in run.data.tags
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "artifacts").as_uri())
    assert run.info.run_id in done.stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1" in done.stdout
    # the UI's classic runs view, not its GenAI mode (MLflow 3.17 opens that unless the address says otherwise)
    page = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs"
    assert f"{page}?workflowType=machine_learning" in done.stdout
    assert f"{page}/{run.info.run_id}?workflowType=machine_learning" in done.stdout


def test_multirun_over_every_implementation_is_one_parent_with_six_children(tmp_path):
    impls = "functional,layers,module,module_einsum,autograd,nn"
    done = cli(tmp_path, "-m", f"impl={impls}", *FAST)
    assert done.returncode == 0, done.stderr
    runs = runs_in(tmp_path / "mlruns")
    (parent,), children = split_sweep(runs)
    assert len(runs) == 7
    assert sorted(r.data.params["impl.name"] for r in children) == sorted(impls.split(","))
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" and r.data.metrics["grad/all_close"] == 1.0 for r in children)
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/jobs"] == 6
    assert parent.data.metrics["sweep/jobs_failed"] == 0 and "impl=" in parent.data.tags["overrides"]
    *_, summary, ui, urls, report = done.stdout.splitlines()  # the sweep's, after the last job's line
    assert summary.startswith("sweep 'impl=functional,") and f"parent run {parent.info.run_id}" in summary
    assert "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db" in ui
    table = f"http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs"
    assert f"{table}?workflowType=machine_learning (the runs table)" in urls
    assert report.startswith("report: ") and report.endswith(f"backprop-lab-report {parent.info.run_id}")


def test_a_failed_job_is_a_failed_child_and_the_sweep_goes_on(tmp_path):
    done = cli(tmp_path, "-m", "model.widths=[784,8,1],[784,0,1],[784,4,1]", *FAST)
    assert done.returncode != 0
    assert "error: 1 of 3 jobs failed" in done.stderr
    assert "model.widths: must be positive integers" in done.stderr
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    statuses = sorted(r.info.status for r in children)
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]
    (failed,) = [r for r in children if r.info.status == "FAILED"]
    assert "model.widths" in failed.data.tags["error"]
    assert parent.info.status == "FAILED" and parent.data.metrics["sweep/jobs_failed"] == 1
    assert done.stderr.splitlines()[-1] == f"error: 1 of 3 jobs failed (sweep run {parent.info.run_id})"
    assert done.stdout.splitlines()[-1].endswith(f"backprop-lab-report {parent.info.run_id}")


def test_parallel_joblib_sweep_loses_nothing(parallel_sweep):
    """Four workers at once, writing to a store that did not exist: every child lands with every metric."""
    tmp_path, done = parallel_sweep
    assert done.returncode == 0, done.stderr
    assert "database is locked" not in done.stderr and "already exists" not in done.stderr
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert len(children) == 12 and parent.data.metrics["sweep/jobs_finished"] == 12
    from backprop_lab.core.names import CONTRACT

    for child in children:
        assert child.info.status == "FINISHED"
        assert not [m for m in CONTRACT if m not in child.data.metrics], child.info.run_name
        assert len(child.data.params) == len(children[0].data.params)


def test_data_error_fails_the_run_and_keeps_it(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not the course's file")
    done = cli(tmp_path, f"data.path={bad}", "timing.min_run_time=0.01")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: SHA-256 is")
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.status == "FAILED" and "SHA-256" in run.data.tags["error"]


def wait_for_timing_stage(store_dir, proc, child=True, timeout=120):
    """Until a running job has logged its last figure, the step before timing (60 s a measurement here)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        running = [r for r in runs_in(store_dir) if r.info.status == "RUNNING" and r.data.metrics]
        running = [r for r in running if ("mlflow.parentRunId" in r.data.tags) == child]
        if running and (Path(running[0].info.artifact_uri.removeprefix("file://")) / "figures/grad_diff.png").exists():
            time.sleep(1.0)  # past the figure's logging, into the timing loop
            return running[0]
        time.sleep(0.3)
    raise AssertionError("no job reached the timing stage")


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_interrupting_a_sweep_kills_child_and_parent(tmp_path, signum):
    import signal

    from backprop_lab.tracking import lifecycle, store

    # the store exists before the job starts: a reader creating it at the same moment would race the job's migrations
    uri, artifact_location = store.default_store(tmp_path)
    lifecycle.prepare_store(uri, "backprop-lab", artifact_location)
    args = [sys.executable, str(SCRIPT), "-m", "impl=functional,nn", *FAST, "timing.min_run_time=60"]
    proc = preloaded.popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_timing_stage(tmp_path / "mlruns", proc)
    proc.send_signal(getattr(signal, signum))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "interrupted" in err
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert [c.info.status for c in children] == ["KILLED"]
    assert children[0].data.metrics["grad/all_close"] == 1.0  # logged before the interrupt, kept
    assert parent.info.status == "KILLED"


@pytest.mark.parametrize("args", [["--cfg", "job"], ["--help"], ["impl=nope"]])
def test_help_config_and_errors_import_neither_torch_nor_mlflow(tmp_path, args):
    """-X importtime lists every module imported; a speed target itself is checked by scripts/bench.py."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(SCRIPT), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported and not {"torch", "mlflow"} & imported


def test_earlier_runs_are_untouched_by_a_bad_one(tmp_path):
    assert cli(tmp_path, *FAST).returncode == 0
    (before,) = runs_in(tmp_path / "mlruns")
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not the course's file")
    assert cli(tmp_path, "timing=fast", f"data.path={bad}").returncode != 0  # a data error: the run exists, FAILED
    runs = {r.info.run_id: r for r in runs_in(tmp_path / "mlruns")}
    assert runs[before.info.run_id].info.status == "FINISHED"
    assert runs[before.info.run_id].data.metrics == before.data.metrics
    assert sorted(r.info.status for r in runs.values()) == ["FAILED", "FINISHED"]


def test_sigterm_during_timing_kills_a_single_run(tmp_path):
    import signal
    import time

    from backprop_lab.tracking import lifecycle, store

    uri, artifact_location = store.default_store(tmp_path)
    lifecycle.prepare_store(uri, "backprop-lab", artifact_location)
    proc = preloaded.popen([sys.executable, str(SCRIPT), *FAST, "timing.min_run_time=60"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not [
        r for r in runs_in(tmp_path / "mlruns") if "grad/all_close" in r.data.metrics
    ]:
        assert proc.poll() is None
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    (run,) = runs_in(tmp_path / "mlruns")
    assert proc.returncode != 0 and run.info.status == "KILLED" and run.data.metrics["grad/all_close"] == 1.0


def test_a_sweep_whose_store_cannot_be_reached_stops_at_once(tmp_path):
    done = cli(tmp_path, "-m", "impl=functional,nn", *FAST, "tracking.uri=http://127.0.0.1:9")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("error: tracking server http://127.0.0.1:9 does not answer")
    assert "Launching" not in done.stdout + done.stderr  # no job started


def rerun(cwd, *args):
    return preloaded.run([sys.executable, str(ROOT / "scripts" / "rerun.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_rerun_of_a_config_that_is_not_yaml_is_one_line(tmp_path):
    assert cli(tmp_path, *FAST).returncode == 0
    (run,) = runs_in(tmp_path / "mlruns")
    (Path(run.info.artifact_uri.removeprefix("file://")) / "config" / "config.yaml").write_text("data: [unclosed\n")
    done = rerun(tmp_path, run.info.run_id)
    assert done.returncode == USER_ERROR_EXIT and len(done.stderr.strip().splitlines()) == 1
    assert "config/config.yaml: not valid YAML" in done.stderr


def test_rerun_on_a_corrupt_store_or_a_deleted_experiment_is_one_line(tmp_path):
    assert cli(tmp_path, *FAST).returncode == 0
    (run,) = runs_in(tmp_path / "mlruns")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    client.delete_experiment(run.info.experiment_id)
    done = rerun(tmp_path, run.info.run_id)
    assert done.returncode == USER_ERROR_EXIT and done.stderr.strip().splitlines() == [
        f"error: tracking.experiment: 'backprop-lab' was deleted in sqlite:///{tmp_path}/mlruns/mlflow.db; choose "
        f"another name, or restore it: MLFLOW_TRACKING_URI=... mlflow experiments restore --experiment-id "
        f"{run.info.experiment_id}"
    ]
    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"\0" * 4096)
    done = rerun(tmp_path, run.info.run_id)
    assert done.returncode == USER_ERROR_EXIT and len(done.stderr.strip().splitlines()) == 1
    assert "not a readable sqlite database" in done.stderr or "not an MLflow tracking store" in done.stderr


def test_rerun_of_a_sweep_with_a_failed_child_reruns_the_rest(tmp_path):
    done = cli(tmp_path, "-m", "model.widths=[784,8,1],[784,0,1]", *FAST)
    assert done.returncode != 0  # one job failed
    (parent,), _ = split_sweep(runs_in(tmp_path / "mlruns"))
    again = rerun(tmp_path, parent.info.run_id)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "1 of 2 children rerun" in again.stdout and "not rerun: it ended FAILED" in again.stdout
