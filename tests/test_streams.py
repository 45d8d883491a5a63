"""Wherever a user points the output, the run is logged whole and the console says what is true: an ASCII-only
stdout, stdout on a full device, and Hydra's old habit of changing the working directory (hydra.job.chdir=true)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import preloaded
import pytest
from helpers import FAST, SCRIPT, runs_in

pytestmark = pytest.mark.slow


def _run(cwd, *args, env=None, stdout=subprocess.PIPE):
    return preloaded.run([sys.executable, str(SCRIPT), *args, *FAST], cwd=cwd, text=True, stdout=stdout,
                          stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, timeout=300)  # fmt: skip


def test_an_ascii_only_stdout_gets_the_whole_summary(tmp_path):
    done = _run(tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "verdict: gradients ok" in done.stdout
    assert re.search(r"MLflow run module\\xb7", done.stdout)  # the run name's middle dot, escaped, not a crash
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.status == "FINISHED"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_stdout_on_a_full_device_is_one_line_that_blames_stdout(tmp_path):
    with open("/dev/full", "w") as full:
        done = _run(tmp_path, stdout=full)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: stdout: cannot print the summary (No space left on device); run ")
    assert "hydra.run.dir" not in lines[0] and done.returncode == 1
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and lines[0].split("; run ")[1].startswith(run.info.run_id)


@pytest.mark.parametrize("multirun", [False, True])
def test_hydra_job_chdir_keeps_the_default_store_in_the_launch_directory(tmp_path, multirun):
    done = _run(tmp_path, *(["-m", "seed=0,1"] if multirun else []), "hydra.job.chdir=true")
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob("outputs/**/mlruns")) and not list(tmp_path.glob("multirun/**/mlruns"))
    assert len(runs_in(tmp_path / "mlruns")) == (3 if multirun else 1)
    if not multirun:  # the printed command opens that store, from the launch directory
        assert "--backend-store-uri sqlite:///mlruns/mlflow.db" in done.stdout


@pytest.mark.parametrize("sweep", [[], ["-m", "seed=0,1"]])
def test_a_reader_that_goes_away_costs_the_output_not_the_run(tmp_path, sweep):
    """`run.py | head -1`: the rest of the summary goes nowhere, no traceback, the runs FINISHED, exit 0."""
    command = " ".join([sys.executable, str(SCRIPT), *sweep, *FAST, "| true"])
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
    assert [r.info.status for r in runs_in(tmp_path / "mlruns")] == ["FINISHED"] * (3 if sweep else 1)
