"""Every console script works from a plain (not editable) install: the config groups ship inside the package."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project built as a wheel and installed, without its dependencies (the test's own provide them), into a
    folder of its own; run from another folder, so that nothing of the checkout is found."""
    tmp = tmp_path_factory.mktemp("installed")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                            "-w", str(tmp / "wheel")], capture_output=True, text=True, cwd=tmp)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp / "wheel").glob("*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                              str(tmp / "site"), str(wheel)], capture_output=True, text=True)  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    return tmp


def run_installed(installed, *command):
    env = os.environ | {"PYTHONPATH": str(installed / "site")}
    return subprocess.run(command, cwd=installed, env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_package_is_the_one_that_runs(installed):
    done = run_installed(installed, sys.executable, "-c", "import backprop_lab.config as c; print(c.CONF_DIR)")
    assert done.stdout.strip() == str(installed / "site" / "backprop_lab" / "conf"), done.stderr


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("backprop-lab", ["--cfg", "job"], "impl:\n  name: module"),
        ("backprop-lab", ["impl=nope"], "error: impl: no option 'nope'; choose one of autograd, functional, layers"),
        ("backprop-lab-bench", ["impl=nope"], "error: impl: no option 'nope'"),
        ("backprop-lab-report", ["--help"], "usage: backprop-lab-report"),
        ("backprop-lab-rerun", ["--help"], "usage: backprop-lab-rerun"),
    ],
)
def test_console_scripts(installed, script, args, expected):
    done = run_installed(installed, str(installed / "site" / "bin" / script), *args)
    assert expected in done.stdout + done.stderr, done.stdout + done.stderr


def test_python_dash_m(installed):
    done = run_installed(installed, sys.executable, "-m", "backprop_lab", "--cfg", "job")
    assert done.returncode == 0 and "relu_shift: 0.5" in done.stdout, done.stderr
