"""The fixtures several test modules share (plain helpers are in helpers.py)."""

from __future__ import annotations

import gc
import os

import pytest

os.environ.setdefault("BACKPROP_LAB_SERVER_WAIT_S", "3")  # tests of an unreachable server need not wait 15 s


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """The tests' data caches (MNIST arrays) in a folder of their own, never the user's ~/.cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture
def store(tmp_path):
    """A fresh sqlite tracking store of the test's own."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory):
    """A real 2 x 2 sweep through the entry script: (launch dir, tracking URI); what it printed is in sweep.out."""
    from helpers import FAST, cli

    tmp = tmp_path_factory.mktemp("sweep")
    done = cli(tmp, "-m", "impl=functional,nn", "init=xavier,kaiming_uniform", *FAST)
    assert done.returncode == 0, done.stderr
    (tmp / "sweep.out").write_text(done.stdout)
    return tmp, f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def parallel_sweep(tmp_path_factory):
    """Four joblib workers at once, 12 jobs writing to a store that did not exist: (launch dir, what the command
    returned). Made once per session (test_cli and test_postgres_server read it; neither writes to it)."""
    from helpers import FAST, cli_once

    return cli_once(tmp_path_factory, "parallel-sweep", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
                    "impl=functional,layers,module,module_einsum,autograd,nn", "init=xavier,kaiming_uniform",
                    *FAST)  # fmt: skip


def pytest_configure(config):
    """Under pytest-xdist, one preloaded interpreter (tests/preloaded.py) for every worker's scripts, started before
    the workers are, so that its imports are paid once and run while the workers collect. Only the tests marked slow
    run scripts: a session that leaves them out (make check) starts none."""
    workers, deselected = config.getoption("numprocesses", None), "not slow" in (config.option.markexpr or "")
    if workers and not deselected and not hasattr(config, "workerinput"):
        import preloaded

        preloaded.share()


def pytest_collection_finish(session):
    """What collection imported (torch, MLflow, pandas: a few million objects) is left out of every later garbage
    collection, which would otherwise walk it all each time the tests' own objects fill the oldest generation."""
    gc.freeze()
