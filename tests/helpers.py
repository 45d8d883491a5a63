"""What several test modules share: paths, the small problem every run test uses,
the entry script in a subprocess, tiny data files, a stub HTTP server and a real MLflow server."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import numpy as np
import preloaded
import pytest
import requests
import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

from backprop_lab.config import plain, store_schema

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SCRIPT = ROOT / "scripts" / "run.py"
FAST = ["data=synthetic", "data.n_train=128", "data.n_valid=32", "timing.min_run_time=0.01"]  # seconds, not minutes
store_schema(ConfigStore.instance())


def composed(*overrides: str, plain_config: bool = True):
    """The config the entry script would get for these overrides (Hydra's compose API)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    return plain(cfg) if plain_config else cfg


def small_problem(widths, n=9, dtype=torch.float64, seed=0):
    from backprop_lab.study.init import init_params

    params = {k: v.to(dtype) for k, v in init_params(widths, "kaiming_normal", "fan_out", seed).items()}
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, widths[0], generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g).to(dtype)
    return params, x, y


def cli(cwd, *args, timeout=300):
    return preloaded.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder that `make` fills once per test session, however many xdist workers ask: the first to ask makes it
    while the others wait, then each reads it (pytest-xdist's recipe for a session fixture made once). Only for what
    the tests that share it read and never write."""
    from filelock import FileLock

    if "PYTEST_XDIST_WORKER" not in os.environ:  # a single process: a folder of its own
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent  # the session's folder, above each worker's
    folder, made = root / name, root / f"{name}.made"
    with FileLock(root / f"{name}.lock"):
        if not made.exists():  # a worker whose make failed left no mark: the next one tries again, and fails alike
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


def cli_once(tmp_path_factory, name: str, *args: str) -> tuple[Path, subprocess.CompletedProcess]:
    """`cli(folder, *args)` run once per session (made_once): its launch folder, and what it returned."""

    def make(folder: Path) -> None:
        done = cli(folder, *args)
        (folder / "done.json").write_text(json.dumps([done.returncode, done.stdout, done.stderr]))

    folder = made_once(tmp_path_factory, name, make)
    returncode, stdout, stderr = json.loads((folder / "done.json").read_text())
    return folder, subprocess.CompletedProcess([sys.executable, str(SCRIPT), *args], returncode, stdout, stderr)


def runs_in(store_dir):
    client = MlflowClient(f"sqlite:///{store_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("backprop-lab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def split_sweep(runs):
    parents = [r for r in runs if r.data.tags.get("backprop_lab.sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def require(available: bool, what: str, install: str) -> None:
    """For a test that needs something pip cannot install: where it is missing the test skips and says how to get
    it; under CI=true, whose `.ci/run` installs it, its absence fails the test instead."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must provide {what} ({install}); see .ci/run")
    pytest.skip(f"needs {what} ({install})")


def write_idx(path, array, magic=None):
    header = struct.pack(">I", magic if magic is not None else 0x800 + array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fashion_dir(tmp_path, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 over a backend store, artifacts proxied to a local folder."""

    def __init__(self, backend: str, artifacts: Path, workers: int = 1, cwd: Optional[Path] = None):
        self.backend, self.artifacts, self.workers, self.cwd = backend, artifacts, workers, cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        mlflow_cli = Path(sys.executable).parent / "mlflow"
        args = [str(mlflow_cli), "server", "--backend-store-uri", self.backend, "--artifacts-destination",
                str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers)]  # fmt: skip
        # MLflow 3's job runner (huey consumers, a process each, for GenAI jobs) is nothing these tests use
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(args, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=env)  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()[-2000:]
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return
            except requests.RequestException:  # refused while it starts, or a read timed out under load
                time.sleep(0.5)
        self.proc.kill()
        raise AssertionError("mlflow server did not answer within 120 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def write_pkl_gz(path, obj, protocol=2):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_mnist(rows=(20, 6, 4), seed=0):
    rng = np.random.default_rng(seed)
    return tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)) for n in rows)


def serve(status: int, body: bytes, content_type: str, health: int = 200, need_auth: bool = False):
    """A stub HTTP server on loopback: /health answers `health`, everything else `status` with `body`, or
    401 without credentials when `need_auth` (MLflow's basic-auth app leaves /health open, as here)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                code, text, kind = health, b"OK", "text/plain"
            elif need_auth and self.headers.get("Authorization") is None:
                code, text, kind = 401, b"You are not authenticated.", "text/plain"
            else:
                code, text, kind = status, body, content_type
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
