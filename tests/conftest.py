from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra

from backprop_lab.config import plain, store_schema

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BACKPROP_LAB_SERVER_WAIT_S", "3")  # tests of an unreachable server need not wait 20 s
CONF = ROOT / "conf"
store_schema(ConfigStore.instance())


def composed(*overrides: str, plain_config: bool = True):
    """The config the entry script would get for these overrides (Hydra's compose API)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    return plain(cfg) if plain_config else cfg


def small_problem(widths, n=9, dtype=torch.float64, seed=0):
    from backprop_lab.init import init_params

    params = {k: v.to(dtype) for k, v in init_params(widths, "kaiming_normal", "fan_out", seed).items()}
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, widths[0], generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g).to(dtype)
    return params, x, y


@pytest.fixture
def store(tmp_path):
    """A fresh sqlite tracking store of the test's own."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory):
    """A real 2 x 2 sweep through the entry script: (launch dir, tracking URI)."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("sweep")
    args = ["-m", "impl=functional,nn", "init=xavier,kaiming_uniform", "data=synthetic", "data.n_train=128",
            "data.n_valid=32", "timing.min_run_time=0.01"]  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), *args], cwd=tmp, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tmp, f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
