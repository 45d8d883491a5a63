"""A real tracking server under parallel load: PostgreSQL (Debian's, in a temporary data directory) behind
`mlflow server` on 127.0.0.1 with proxied artifacts; an 8-job sweep at 4 joblib workers must land whole, and a
sweep must survive the server's restart between jobs. The counts are written to ci-artifacts/parallel-sweeps.json.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import preloaded
import pytest
from helpers import ROOT, SCRIPT, MlflowServer, free_port, require, split_sweep
from mlflow.tracking import MlflowClient

from backprop_lab.core.names import CONTRACT

pytestmark = pytest.mark.slow
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
ARTIFACTS = {"config/config.yaml", "config/overrides.json", "device.json", "grad_check.json"}
SUMMARY = ROOT / "ci-artifacts" / "parallel-sweeps.json"


def as_postgres(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user the Debian package creates."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=True, **kwargs)


@pytest.fixture(scope="module")
def postgres():
    require(bool(POSTGRES_BIN) and bool(shutil.which("runuser")), "Debian's postgresql", "apt-get install postgresql")
    bin_dir = Path(POSTGRES_BIN[-1])
    data = Path(tempfile.mkdtemp(prefix="backprop-lab-pg-"))  # pytest's tmp folders are root's alone
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    # a scratch database, gone with the test: nothing in it need survive the machine's crash, so no fsync
    as_postgres(str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust", "--no-sync")
    port = free_port()
    log = data / "postgres.log"
    as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(log), "-w", "start",
                "-o", f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off")  # fmt: skip
    as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
    yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop")
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    srv = MlflowServer(postgres, tmp_path_factory.mktemp("artifacts"), workers=2)
    yield srv
    srv.stop()


def landed(uri: str, experiment: str) -> tuple:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=1000) if found else []
    parents, children = split_sweep(runs)
    complete = [
        c for c in children
        if c.info.status == "FINISHED" and not [m for m in CONTRACT if m not in c.data.metrics]
        and ARTIFACTS <= {f.path for f in client.list_artifacts(c.info.run_id)} | _nested(client, c.info.run_id)
    ]  # fmt: skip
    return parents, children, complete


def _nested(client, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, "config")}


def record(name: str, **counts) -> None:
    SUMMARY.parent.mkdir(exist_ok=True)
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    summary[name] = counts
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")


SWEEP = [
    "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "impl=functional,layers,module,nn",
    "init=xavier,kaiming_uniform", "data=synthetic", "data.n_train=256", "data.n_valid=64", "timing=fast",
]  # fmt: skip


def test_parallel_sweep_against_postgres_server_loses_nothing(server, tmp_path):
    done = preloaded.run([sys.executable, str(SCRIPT), *SWEEP, f"tracking.uri={server.url}",
                           "tracking.experiment=pg-parallel"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    parents, children, complete = landed(server.url, "pg-parallel")
    record("postgresql, joblib 4 workers", jobs=8, landed=len(complete), lost=8 - len(complete))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 8 and len(complete) == 8


def test_parallel_sweep_against_default_sqlite_store_loses_nothing(parallel_sweep):
    launch_dir, done = parallel_sweep  # 12 jobs at 4 workers, test_cli's too
    assert done.returncode == 0, done.stderr[-3000:]
    assert "database is locked" not in done.stderr
    parents, children, complete = landed(f"sqlite:///{launch_dir / 'mlruns' / 'mlflow.db'}", "backprop-lab")
    record("sqlite (default store), joblib 4 workers", jobs=12, landed=len(complete), lost=12 - len(complete))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 12 and len(complete) == 12


def test_a_server_restart_between_jobs_loses_nothing(server, tmp_path):
    """Three jobs in one process; after the first lands, the server goes down and comes back: the rest land."""
    args = [sys.executable, str(SCRIPT), "-m", "impl=functional,layers,module", "data=synthetic", "data.n_train=256",
            "timing.min_run_time=0.3", f"tracking.uri={server.url}", "tracking.experiment=pg-restart"]  # fmt: skip
    env = os.environ | {"BACKPROP_LAB_SERVER_WAIT_S": "60"}
    proc = preloaded.popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        _, children, _ = landed(server.url, "pg-restart")
        if any(c.info.status == "FINISHED" for c in children):
            break
        time.sleep(0.3)
    server.stop()
    assert proc.poll() is None, "the sweep ended before the server went down: nothing was restarted between jobs"
    time.sleep(2)
    server.start()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    parents, children, complete = landed(server.url, "pg-restart")
    record("postgresql, server restarted between jobs", jobs=3, landed=len(complete), lost=3 - len(complete))
    assert len(complete) == 3 and parents[0].info.status == "FINISHED"
