"""A teacher's folder of hostile and careless submissions, swept as a teacher sweeps it: every submission gets its
own run with the lab's status, the sweep goes on past every one of them, the command's exit status is the lab's,
and nothing changes after the command has returned."""

from __future__ import annotations

import time

import pytest
from bad_input import CHEATS
from helpers import FAST, cli, runs_in, split_sweep
from mlflow.tracking import MlflowClient
from test_user_code import CORRECT

from backprop_lab.core.names import OWN_PROCESS_TAG

pytestmark = pytest.mark.slow  # sweeps in a subprocess


def in_backward(lines: str) -> str:
    return CORRECT.replace("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0)\n" + lines)


HOSTILE = {  # file: (source, the run's status, what its error says, or its verdict)
    "a_good.py": (CORRECT, "FINISHED", "ok"),
    "b_exit0.py": (in_backward("    import os; os._exit(0)"), "FAILED", "ended its own process (exit status 0"),
    "c_exit3_at_import.py": ("import os\nos._exit(3)\n" + CORRECT, "FAILED", "ended its own process (exit status 3"),
    "d_atexit.py": ("import atexit, os\natexit.register(lambda: os._exit(0))\n" + CORRECT, "FINISHED", "ok"),
    "e_forks.py": ("import os, time\nif os.fork() == 0:\n    time.sleep(30)\n" + CORRECT, "FINISHED", "ok"),
    "f_sigkill.py": (in_backward("    import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), "FAILED",
                     "was killed by SIGKILL"),
    "g_ctrl_c.py": (in_backward("    raise KeyboardInterrupt"), "FAILED", "your code raised KeyboardInterrupt"),
    "h_chdir.py": ("import os\nos.chdir('/')\n" + CORRECT, "FINISHED", "ok"),
    "i_closes_stdout.py": ("import os, sys\nsys.stdout.close()\nos.close(1)\nos.close(2)\n" + CORRECT, "FINISHED",
                           "ok"),
    "j_loops.py": (in_backward("    while True:\n        try:\n            pass\n        except:\n            pass"),
                   "FAILED", "ran past impl.time_limit_s=8 s while running your backward"),
    "k_cheats.py": (CHEATS + CORRECT.replace("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0) * 2"), "FINISHED",
                    "wrong"),
    "l_loops_at_import.py": ("while True:\n    pass\n" + CORRECT, "FAILED", "while importing your file"),
    "m_good.py": (CORRECT, "FINISHED", "ok"),
}  # fmt: skip


def test_a_folder_of_hostile_submissions_is_a_run_each_and_the_sweeps_own_exit(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name, (source, *_) in HOSTILE.items():
        (folder / name).write_text(source)
    started = time.monotonic()
    # a limit that a correct file meets even on a loaded machine (importing the lab's modules, as a cheater does,
    # takes a second or two there)
    done = cli(tmp_path, "-m", "impl=user", "impl.code=submissions/", "impl.time_limit_s=8", *FAST)
    failed = sum(status == "FAILED" for _, status, _ in HOSTILE.values())
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {failed} of {len(HOSTILE)} jobs failed"), (
        done.stderr[-3000:])  # fmt: skip
    assert time.monotonic() - started < 150
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    by_file = {r.data.params["impl.code"]: r for r in children}
    assert sorted(by_file) == [f"submissions/{n}" for n in HOSTILE]  # one run each: the fork ran nothing twice
    for name, (_, status, says) in HOSTILE.items():
        run = by_file[f"submissions/{name}"]
        assert run.info.status == status, (name, run.data.tags.get("error"))
        assert status == "FAILED" or run.data.tags[OWN_PROCESS_TAG] == "true"
        if status == "FAILED":
            assert says in run.data.tags["error"], (name, run.data.tags["error"])
        else:
            assert run.data.tags["grad.verdict"] == says, name
    assert parent.info.status == "FAILED"
    time.sleep(2)  # whatever a submission left behind is gone: the store stays as the command left it
    after = {r.info.run_id: r.info.status for r in runs_in(tmp_path / "mlruns")}
    assert after == {r.info.run_id: r.info.status for r in [parent, *children]}


def test_a_resumed_sweep_judges_again_what_was_judged_in_the_labs_own_process(tmp_path):
    """Verdicts given before the learner's code had a process of its own may have been changed by another file of
    the folder: a resumed sweep reuses only runs tagged as judged apart."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name in ("a.py", "b.py"):
        (folder / name).write_text(CORRECT)
    assert cli(tmp_path, "-m", "impl=user", "impl.code=submissions/", *FAST).returncode == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    _, children = split_sweep(runs_in(tmp_path / "mlruns"))
    old = {r.data.params["impl.code"]: r.info.run_id for r in children}
    client.delete_tag(old["submissions/a.py"], OWN_PROCESS_TAG)  # as a run of the lab before this one
    resumed = cli(tmp_path, "-m", "impl=user", "impl.code=submissions/", "sweep.resume=true", *FAST)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    parents, children = split_sweep(runs_in(tmp_path / "mlruns"))
    latest = max(parents, key=lambda r: r.info.start_time)
    fresh = [r for r in children if r.data.tags.get("mlflow.parentRunId") == latest.info.run_id]
    assert [r.data.params["impl.code"] for r in fresh] == ["submissions/a.py"]  # b.py was reused
    note = latest.data.tags["mlflow.note.content"]  # and its row says so
    assert [line for line in note.splitlines() if line.startswith("| submissions/b.py")][0].split(" | ")[1] == (
        "FINISHED (reused)")  # fmt: skip
    assert [line for line in note.splitlines() if line.startswith("| submissions/a.py")][0].split(" | ")[1] == (
        "FINISHED")  # fmt: skip


def test_an_interpolated_name_in_a_sweep_is_refused_as_typed_never_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_VALUE", "zq-never-shown-9137")
    done = cli(tmp_path, "-m", "impl=user", "impl.code=x${y}.py,${oc.env:PROBE_VALUE}.py", *FAST)
    assert done.returncode == 1
    assert "Warning" not in done.stderr and "InterpolationKeyError" not in done.stderr, done.stderr
    assert done.stderr.count("not an interpolation") == 2 and "'x${y}.py'" in done.stderr
    assert "zq-never-shown-9137" not in done.stdout + done.stderr


def test_a_file_name_that_reads_as_markup_is_printed_as_it_is(tmp_path):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "e[f].py").write_text(CORRECT)
    (tmp_path / "subs" / "l[blink red]x.py").write_text(CORRECT)
    done = cli(tmp_path, "-m", "impl=user", "impl.code=subs/", *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "e[f]·" in done.stdout and "l[blink red]x·" in done.stdout
