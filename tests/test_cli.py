"""The entry script as a user runs it, in a subprocess: default store location, sweeps, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "scripts" / "run.py"
FAST = ["data=synthetic", "data.n_train=128", "data.n_valid=32", "timing.min_run_time=0.01"]


def cli(cwd, *args, timeout=300):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def runs_in(store_dir):
    client = MlflowClient(f"sqlite:///{store_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("backprop-lab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_default_store_is_mlruns_under_the_launch_dir(tmp_path):
    done = cli(tmp_path, *FAST)
    assert done.returncode == 0, done.stderr
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and run.data.metrics["grad/all_close"] == 1.0
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "artifacts").as_uri())
    assert run.info.run_id in done.stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1" in done.stdout


def test_multirun_over_every_implementation(tmp_path):
    impls = "functional,layers,module,module_einsum,autograd,nn"
    done = cli(tmp_path, "-m", f"impl={impls}", *FAST)
    assert done.returncode == 0, done.stderr
    runs = runs_in(tmp_path / "mlruns")
    assert sorted(r.data.params["impl.name"] for r in runs) == sorted(impls.split(","))
    assert all(r.info.status == "FINISHED" and r.data.metrics["grad/all_close"] == 1.0 for r in runs)


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["impl=foo"],
            "error: impl: no option 'foo'; choose one of autograd, functional, layers, module, module_einsum, nn",
        ),
        (["device=gpu"], "error: device: Invalid value 'gpu', expected one of [auto, cpu, cuda]"),
        (["data.n_trian=3"], "error: data.n_trian: unknown key; MnistConfig allows"),
        (["model.widths=[784,0,1]"], "error: model.widths: must be positive integers, got [784, 0, 1]"),
        (["model.widths=[100,80,1]"], "error: model.widths[0]: must be 784 (the features of data=mnist), got 100"),
        (["check.atol=0"], "error: check.atol: must be > 0, got 0.0"),
        (["model.widths=[784,1.5,1]"], "error: model.widths[1]: Value '1.5' of type 'float' could not be converted"),
    ],
)
def test_bad_config_is_one_line_and_creates_no_run(tmp_path, args, expected):
    done = cli(tmp_path, *args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert not (tmp_path / "mlruns").exists()


def test_data_error_fails_the_run_and_keeps_it(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not the course's file")
    done = cli(tmp_path, f"data.path={bad}", "timing.min_run_time=0.01")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: SHA-256 is")
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.status == "FAILED" and "SHA-256" in run.data.tags["error"]
