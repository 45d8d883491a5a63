"""The suite's stand-in for a fresh interpreter (preloaded.py) behaves as one where it is used, and is not used where
it could not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import preloaded
import pytest

pytestmark = pytest.mark.slow  # the preloaded interpreter takes a few seconds to start

SHOW = """
import os, sys
print(sys.argv, __name__, repr(sys.path[0]), os.getcwd(), os.environ.get("SHOWN"), sys.stdin.read(), flush=True)
print("to stderr", file=sys.stderr)
raise SystemExit(int(sys.argv[-1]))
"""


@pytest.fixture(autouse=True)
def _forking(monkeypatch):
    """These tests are about the fork itself, even in a suite run with every script fresh."""
    monkeypatch.delenv(preloaded.FRESH, raising=False)


@pytest.fixture
def show(tmp_path):
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    return script


@pytest.mark.parametrize("how", ["script", "code"])
def test_a_fork_prints_and_exits_as_a_fresh_interpreter_does(show, tmp_path, how):
    args = [sys.executable, str(show), "a b", "3"] if how == "script" else [sys.executable, "-c", SHOW, "a b", "3"]
    given = dict(cwd=tmp_path, env=os.environ | {"SHOWN": "yes"}, input="from stdin", capture_output=True, text=True)
    forked, fresh = preloaded.run(args, **given), subprocess.run(args, **given)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.returncode == 3 and "['" in forked.stdout and "from stdin" in forked.stdout


def interrupted(popen) -> tuple[int, str]:
    code = "import sys, time; print('ready', flush=True); time.sleep(60)"
    proc = popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n" and proc.poll() is None and proc.pid != os.getpid()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.rstrip().splitlines()[-1]


def test_a_fork_is_a_process_of_its_own_that_signals_reach():
    # Python's own SIGINT handler, as in a fresh interpreter: KeyboardInterrupt, then death by SIGINT
    assert interrupted(preloaded.popen) == interrupted(subprocess.Popen) == (-signal.SIGINT, "KeyboardInterrupt")
    killed = preloaded.popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert isinstance(killed, preloaded.ForkedProcess) and killed.poll() is None
    killed.kill()
    assert killed.wait(timeout=30) == -signal.SIGKILL


def test_a_run_past_its_timeout_is_killed(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        preloaded.run([sys.executable, "-c", "import time; time.sleep(60)"], capture_output=True, timeout=1)


@pytest.mark.parametrize("args, env, kwargs", [
    (["-X", "importtime", "-c", "pass"], None, {}),  # an interpreter option
    (["-c", "pass"], {"PYTHONIOENCODING": "ascii"}, {}),  # read when the interpreter starts
    (["-c", "pass"], {"OMP_NUM_THREADS": "1"}, {}),  # read when torch loads its OpenMP
    (["-c", "pass"], None, {"preexec_fn": os.setsid}),
])  # fmt: skip
def test_what_a_fork_cannot_stand_in_for_gets_a_fresh_interpreter(args, env, kwargs):
    proc = preloaded.popen([sys.executable, *args], env=None if env is None else os.environ | env, **kwargs)
    assert isinstance(proc, subprocess.Popen) and proc.wait(timeout=60) == 0


def test_a_tracking_uri_in_the_environment_still_forks():
    """MLflow reads its tracking URI and credentials when a client is made, not when it is imported."""
    env = os.environ | {"MLFLOW_TRACKING_URI": "sqlite:///x.db", "MLFLOW_TRACKING_PASSWORD": "p"}
    proc = preloaded.popen([sys.executable, "-c", "pass"], env=env)
    assert isinstance(proc, preloaded.ForkedProcess) and proc.wait(timeout=60) == 0
