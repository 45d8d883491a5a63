"""Exit codes and run statuses that never lie: whatever stops a process (a store that cannot hold the sweep, a
double Ctrl-C, a launcher's worker killed, Hydra's output under a file, SIGTERM to a rerun, SIGKILL), no run is left
RUNNING for good, the console says what is true, and the exit code is non-zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import preloaded
import pytest
from helpers import FAST, ROOT
from mlflow.tracking import MlflowClient

from backprop_lab.core import stop
from backprop_lab.core.names import PARENT_TAG, SWEEP_TAG
from backprop_lab.tracking import lifecycle, store

pytestmark = pytest.mark.slow
SLOW_TIMING = [*FAST[:3], "timing.min_run_time=60"]


def start(cwd: Path, *args: str, name: str = "run", **kwargs) -> subprocess.Popen:
    return preloaded.popen([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # fmt: skip


def run(cwd: Path, *args: str, name: str = "run", timeout: float = 300) -> subprocess.CompletedProcess:
    return preloaded.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)  # fmt: skip


def store_of(cwd: Path) -> str:
    return store.default_store(cwd)[0]


def prepared(cwd: Path) -> str:
    """A store and experiment made before the process under test starts, so that a reader never races its
    schema migrations."""
    uri, artifacts = store.default_store(cwd)
    lifecycle.prepare_store(uri, "backprop-lab", artifacts)
    return uri


def runs(uri: str, experiment: str = "backprop-lab") -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []


def statuses(uri: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"parent": [], "child": [], "single": []}
    for r in runs(uri):
        kind = "parent" if r.data.tags.get(SWEEP_TAG) == "parent" else "child" if PARENT_TAG in (
            r.data.tags) else "single"  # fmt: skip
        out[kind].append(r.info.status)
    return {k: sorted(v) for k, v in out.items()}


def wait_until(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("timed out")


def in_timing(uri: str) -> bool:
    """A running job has logged its gradient check and the figures after it: it is in the timing stage (60 s a
    measurement here), not drawing its first figure (where matplotlib imports its parsers)."""
    client = MlflowClient(uri)
    return any(r.info.status == "RUNNING" and "grad/all_close" in r.data.metrics
               and "figures/grad_diff.png" in {f.path for f in client.list_artifacts(r.info.run_id, "figures")}
               for r in runs(uri))  # fmt: skip


def one_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# --- a sweep that cannot have a parent stops before any job -------------------------------------------------------


def test_a_sweep_in_a_deleted_experiment_stops_before_any_job(tmp_path):
    uri = prepared(tmp_path)
    client = MlflowClient(uri)
    client.delete_experiment(client.get_experiment_by_name("backprop-lab").experiment_id)
    started = time.time()
    done = run(tmp_path, "-m", "impl=functional,nn", *FAST)
    assert done.returncode != 0 and time.time() - started < 20
    assert one_line(done).startswith("error: tracking.experiment: 'backprop-lab' was deleted in")
    assert "Launching" not in done.stdout and not client.search_runs(["1"], run_view_type=3)


def test_a_sweep_on_a_corrupt_store_stops_before_any_job(tmp_path):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(os.urandom(4096))
    done = run(tmp_path, "-m", "impl=functional,nn", *FAST)
    assert done.returncode != 0
    assert "not a readable sqlite database" in one_line(done) and "Launching" not in done.stdout


def test_an_in_memory_store_is_refused(tmp_path):
    done = run(tmp_path, *FAST, "tracking.uri=sqlite:///:memory:")
    assert done.returncode != 0
    assert one_line(done).startswith("error: tracking.uri: 'sqlite:///:memory:' is an in-memory store")


@pytest.mark.parametrize("mode", [["hydra.run.dir=afile/run"], ["-m", "impl=functional,nn", "hydra.sweep.dir=afile/m"]])
def test_hydra_output_under_a_file_is_one_line_and_no_run(tmp_path, mode):
    (tmp_path / "afile").write_text("not a directory")
    done = run(tmp_path, *mode, *FAST)
    assert done.returncode != 0
    assert "afile" in one_line(done) and ("Not a directory" in done.stderr or "File exists" in done.stderr)
    assert runs(store_of(tmp_path)) == []


def test_launching_from_a_read_only_directory_is_one_line(tmp_path):
    source, mount = tmp_path / "source", tmp_path / "read-only"
    source.mkdir()
    mount.mkdir()
    bound = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip("a read-only directory needs a bind mount, which this machine refuses (a root user ignores chmod)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], check=True)
        done = run(mount, *FAST)
        assert done.returncode != 0
        assert "Read-only file system" in one_line(done)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# --- signals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap_s", [0.0, 0.02, 0.2])
def test_a_double_ctrl_c_leaves_a_single_run_killed(tmp_path, gap_s):
    uri = prepared(tmp_path)
    proc = start(tmp_path, *SLOW_TIMING)
    wait_until(lambda: in_timing(uri), proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert statuses(uri)["single"] == ["KILLED"]
    assert "marked KILLED" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("gap_s", [0.0, 0.05])
def test_a_double_ctrl_c_leaves_a_sweep_killed(tmp_path, gap_s):
    uri = prepared(tmp_path)
    proc = start(tmp_path, "-m", "impl=functional,nn", *SLOW_TIMING)
    wait_until(lambda: in_timing(uri), proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap_s)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert statuses(uri) == {"parent": ["KILLED"], "child": ["KILLED"], "single": []}


def test_a_joblib_worker_killed_by_sigkill_ends_its_sweep(tmp_path):
    uri = prepared(tmp_path)
    proc = start(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "impl=functional,nn",
                 *SLOW_TIMING)  # fmt: skip
    wait_until(lambda: in_timing(uri), proc)
    (worker,) = [r for r in runs(uri) if r.info.status == "RUNNING" and "grad/all_close" in r.data.metrics][:1]
    pid = int(worker.data.tags["backprop_lab.owner"].split("/")[2])
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    found = statuses(uri)
    assert found["parent"] == ["FAILED"] and "RUNNING" not in found["child"] and "KILLED" in found["child"], found


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_the_joblib_workers_of_a_sweep_killed_by_sigkill_end_with_it(tmp_path):
    """A SIGKILLed sweep cannot stop its loky workers: each notices it was orphaned and stops as on SIGTERM, its run
    KILLED, within seconds (they used to run on for minutes)."""
    uri = prepared(tmp_path)
    proc = start(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "impl=functional,nn",
                 *SLOW_TIMING)  # fmt: skip
    wait_until(lambda: sum(r.info.status == "RUNNING" and "grad/all_close" in r.data.metrics for r in runs(uri)) == 2,
               proc)  # fmt: skip
    workers = {int(r.data.tags["backprop_lab.owner"].split("/")[2]) for r in runs(uri) if r.info.status == "RUNNING"
               and "grad/all_close" in r.data.metrics}  # fmt: skip
    assert workers <= _children(proc.pid)
    killed = time.time()
    proc.kill()
    proc.communicate()  # until the workers, which hold its stdout and stderr, have left too
    deadline = time.time() + 60  # PARENT_POLL_S, then the stop (or stop.STUCK_AFTER_S at the most)
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert time.time() - killed < stop.STUCK_AFTER_S  # they left once their runs were ended, not at the last resort
    assert statuses(uri)["child"] == ["KILLED", "KILLED"]


def test_sigterm_to_a_rerun_ends_it_killed(tmp_path):
    done = run(tmp_path, *FAST)
    assert done.returncode == 0, done.stderr
    uri = store_of(tmp_path)
    (original,) = runs(uri)
    config = Path(original.info.artifact_uri.removeprefix("file://")) / "config" / "config.yaml"
    config.write_text(config.read_text().replace("min_run_time: 0.01", "min_run_time: 60.0"))
    proc = start(tmp_path, original.info.run_id, "--accept-edited-config", name="rerun")  # edited to time long
    wait_until(lambda: in_timing(uri), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "the rerun is marked KILLED" in err
    assert sorted(r.info.status for r in runs(uri)) == ["FINISHED", "KILLED"]


def test_runs_of_a_process_killed_by_sigkill_are_ended_by_the_next_run_and_the_report_says_so(tmp_path):
    uri = prepared(tmp_path)
    proc = start(tmp_path, "-m", "impl=functional,nn", *SLOW_TIMING)
    wait_until(lambda: in_timing(uri), proc)
    proc.kill()
    proc.communicate()
    assert statuses(uri) == {"parent": ["RUNNING"], "child": ["RUNNING"], "single": []}  # nobody could end them

    report = run(tmp_path, "--out", str(tmp_path / "report"), name="report")
    assert report.returncode == 0, report.stderr
    assert report.stdout.count("was left RUNNING by a process that died; it is now marked KILLED") == 2
    assert "note: this sweep ended KILLED (its process" in report.stdout
    assert statuses(uri) == {"parent": ["KILLED"], "child": ["KILLED"], "single": []}

    proc = start(tmp_path, *SLOW_TIMING)
    wait_until(lambda: in_timing(uri), proc)
    proc.kill()
    proc.communicate()
    assert run(tmp_path, *FAST).returncode == 0  # the next run ends the dead one
    assert statuses(uri)["single"] == ["FINISHED", "KILLED"]


DEEP_300 = "model.widths=[" + ",".join(["784"] + ["20"] * 300 + ["1"]) + "]"  # 1,200 metric rows to write


@pytest.mark.parametrize("limit_kib, expected", [(16, {"single": []}), (None, {"single": ["FAILED"]})])
def test_a_file_size_limit_hit_while_logging_is_one_line_and_an_honest_status(tmp_path, limit_kib, expected):
    """`ulimit -f`: the kernel's SIGXFSZ would kill the process and leave the run RUNNING. Under 16 KiB the store
    takes nothing; at the store's own size, the run starts and the writes that grow the file fail."""
    import resource

    uri = prepared(tmp_path)
    limit = limit_kib * 1024 if limit_kib else (tmp_path / "mlruns" / "mlflow.db").stat().st_size

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), *FAST, "model=deep", DEEP_300],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=limited)  # fmt: skip
    assert done.returncode != 0, done.stdout
    assert one_line(done).startswith("error: the tracking store cannot be written (disk I/O error)")
    assert statuses(uri) == {"parent": [], "child": []} | expected


def test_a_failed_runs_whole_error_is_kept_and_its_first_line_is_its_description(tmp_path):
    """A traceback longer than a tag holds: the tag is cut at a line and says where the rest is, the whole of it is
    an artifact, and the description (what the UI shows first) is the reason in a line."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    error = "UserCodeError: f.py: your code raised RecursionError\n" + "".join(
        f'  File "f.py", line {i}, in down\n    return down(n + 1)\n' for i in range(400))  # fmt: skip
    with pytest.raises(RuntimeError):
        with lifecycle.tracked_run(uri, "e", "r", {}, (tmp_path / "artifacts").as_uri()) as ref:
            raise RuntimeError(error)
    run = MlflowClient(uri).get_run(ref.run_id)
    tag = run.data.tags["error"]
    assert len(tag) <= 6000 and tag.endswith(f"\n... (the whole error: {lifecycle.ERROR_ARTIFACT})")
    assert tag.splitlines()[-2].startswith("    return down") or tag.splitlines()[-2].startswith("  File")
    whole = MlflowClient(uri).download_artifacts(ref.run_id, lifecycle.ERROR_ARTIFACT, str(tmp_path))
    assert open(whole).read() == f"RuntimeError: {error}"
    assert run.data.tags["mlflow.note.content"] == (
        "**FAILED**: RuntimeError: UserCodeError: f.py: your code raised RecursionError")  # fmt: skip
