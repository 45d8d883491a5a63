"""store.check_store: every store that cannot hold runs is one line, said within wait_s (a couple of seconds here),
before MLflow's engine exists. Servers here are tiny stubs on loopback, not `mlflow server`."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import preloaded
import pytest
from helpers import FAST, cli, runs_in, serve

from backprop_lab.core.errors import ConfigError, TrackingError
from backprop_lab.tracking import sqlite_checks, store

WAIT_S = 2.0
BOUND_S = WAIT_S + 5  # "does not hang for minutes", not a speed target


def refusal(uri: str, wait_s: float = WAIT_S) -> str:
    """check_store's one-line message for a store it must refuse, checked to come within the bound."""
    start = time.monotonic()
    with pytest.raises(TrackingError) as caught:
        store.check_store(uri, wait_s=wait_s)
    assert time.monotonic() - start < wait_s + 5
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory) -> Path:
    """A fresh MLflow store, at the installed MLflow's head schema; tests copy it."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def copy_of(db: Path, directory: Path, name: str = "mlflow.db") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(db, directory / name))


# --- 1-6: sqlite ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["sqlite:///:memory:", "sqlite://", "sqlite:///"])
def test_in_memory_sqlite_is_refused(uri):
    assert refusal(uri) == (
        f"tracking.uri: {uri!r} is an in-memory store, which keeps nothing after the process; "
        "use sqlite:///PATH/mlflow.db"
    )


def test_a_healthy_store_passes_and_is_left_as_it_was(mlflow_db, tmp_path):
    db = copy_of(mlflow_db, tmp_path / "store")
    before = (db.read_bytes(), db.stat().st_mtime_ns, sorted(os.listdir(db.parent)))
    store.check_store(f"sqlite:///{db}", wait_s=WAIT_S)
    assert (db.read_bytes(), db.stat().st_mtime_ns, sorted(os.listdir(db.parent))) == before


def test_a_new_store_passes_and_nothing_is_created(tmp_path):
    store.check_store(f"sqlite:///{tmp_path}/new/deeper/mlflow.db", wait_s=WAIT_S)
    assert os.listdir(tmp_path) == []


def test_sqlite_path_that_is_a_directory(tmp_path):
    assert refusal(f"sqlite:///{tmp_path}") == (
        f"{tmp_path}: is a directory, not an sqlite file; use sqlite:///{tmp_path}/mlflow.db"
    )


def test_sqlite_path_below_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert refusal(f"sqlite:///{tmp_path}/notes.txt/mlflow.db") == (
        f"{tmp_path}/notes.txt: is a file, not a directory; choose another sqlite:///PATH/mlflow.db"
    )


def test_random_bytes_are_not_a_database(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(8192))
    assert refusal(f"sqlite:///{db}") == (
        f"{db}: not a readable sqlite database (file is not a database); move it aside or set tracking.uri"
    )


def test_a_truncated_mlflow_store_is_refused(mlflow_db, tmp_path):
    db = copy_of(mlflow_db, tmp_path)
    os.truncate(db, db.stat().st_size // 2)
    assert refusal(f"sqlite:///{db}") == (
        f"{db}: not a readable sqlite database (database disk image is malformed); move it aside or set tracking.uri"
    )


def test_a_damaged_page_is_found_by_quick_check(tmp_path):
    """sqlite_master reads fine; only PRAGMA quick_check walks the index whose page was zeroed."""
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE metrics (key TEXT, value REAL)")
        conn.execute("CREATE INDEX by_key ON metrics (key)")
        conn.executemany("INSERT INTO metrics VALUES (?, ?)", ((f"m{i}", i) for i in range(5000)))
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'by_key'").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(bytes(page_size))
    message = refusal(f"sqlite:///{db}")
    assert message.startswith(f"{db}: corrupt sqlite database (")
    assert message.endswith("); restore it from a backup, or set tracking.uri")


def as_nobody(fn) -> str:
    """fn() in a forked child that dropped to uid/gid 65534, where file modes bind as they do for a user (root
    ignores them): "OK" or the TrackingError's message. Modules the check needs are loaded before the fork."""
    sqlite_checks._migrations()
    import backprop_lab.tracking  # noqa: F401 (store redacts with it)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                fn()
                answer = "OK"
            except TrackingError as e:
                answer = str(e)
            os.write(write, answer.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return answer


@pytest.fixture
def shared_dir():
    """A directory under /tmp that uid 65534 can reach (pytest's tmp_path sits in a 0700 folder)."""
    if os.geteuid() != 0:
        pytest.skip("dropping to uid 65534 needs root")
    path = Path(tempfile.mkdtemp(prefix="backprop-lab-store-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_store_that_nobody_can_write(mlflow_db, shared_dir):
    db = copy_of(mlflow_db, shared_dir / "store")  # root's 0644 file in root's 0755 directory
    db.parent.chmod(0o755)
    assert as_nobody(lambda: store.check_store(f"sqlite:///{db}", wait_s=WAIT_S)) == (
        f"{db.parent}: cannot write the tracking store (Permission denied); set tracking.uri"
    )


def test_a_read_only_file_in_a_writable_directory(mlflow_db, shared_dir):
    db = copy_of(mlflow_db, shared_dir / "store")
    db.parent.chmod(0o777)
    db.chmod(0o644)
    assert as_nobody(lambda: store.check_store(f"sqlite:///{db}", wait_s=WAIT_S)) == (
        f"{db}: cannot write the tracking store (Permission denied); set tracking.uri"
    )


def test_a_new_store_in_a_directory_nobody_can_write(shared_dir):
    uri = f"sqlite:///{shared_dir}/mlruns/mlflow.db"
    assert as_nobody(lambda: store.check_store(uri, wait_s=WAIT_S)) == (
        f"{shared_dir}/mlruns: cannot write the tracking store (Permission denied); set tracking.uri"
    )


def test_a_store_that_nobody_can_write_to_passes_when_it_can(mlflow_db, shared_dir):
    """The same checks, honest the other way: a user's writable store passes, and is left as it was."""
    db = copy_of(mlflow_db, shared_dir / "store")
    db.parent.chmod(0o777)
    db.chmod(0o666)
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    assert as_nobody(lambda: store.check_store(f"sqlite:///{db}", wait_s=WAIT_S)) == "OK"
    assert (db.read_bytes(), db.stat().st_mtime_ns, os.listdir(db.parent)) == (*before, ["mlflow.db"])


def set_revision(db: Path, revision: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def installed_head():
    """The head and its parent, as MLflow itself finds them (mlflow.store.db.utils)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    head = _get_latest_schema_revision()
    return head, script.get_revision(head).down_revision


def test_a_store_of_an_older_mlflow_names_the_upgrade_command(mlflow_db, tmp_path):
    import mlflow

    head, older = installed_head()
    db = copy_of(mlflow_db, tmp_path)
    set_revision(db, older)
    assert refusal(f"sqlite:///{db}") == (
        f"{db}: schema {older} is older than mlflow {mlflow.__version__}'s {head}; back the file up, then run "
        f"mlflow db upgrade sqlite:///{db}"
    )


def test_a_store_of_a_newer_mlflow_says_upgrade_mlflow(mlflow_db, tmp_path):
    import mlflow

    db = copy_of(mlflow_db, tmp_path)
    set_revision(db, "f00dfeedbeef")
    assert refusal(f"sqlite:///{db}") == (
        f"{db}: written by a newer MLflow (schema f00dfeedbeef, unknown to the installed mlflow "
        f"{mlflow.__version__}); upgrade mlflow (pip install -U mlflow)"
    )


def test_another_programs_sqlite_file_is_never_migrated(tmp_path):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        for table in ("users", "orders", "invoices", "items", "payments", "sessions"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER)")
    conn.close()
    before = db.read_bytes()
    assert refusal(f"sqlite:///{db}") == (
        f"{db}: not an MLflow tracking store (it holds tables invoices, items, orders, payments, sessions, …); "
        "use sqlite:///PATH/mlflow.db elsewhere"
    )
    assert db.read_bytes() == before


def test_an_empty_sqlite_file_is_a_new_store(tmp_path):
    db = tmp_path / "mlflow.db"
    db.touch()
    store.check_store(f"sqlite:///{db}", wait_s=WAIT_S)



def test_a_missing_store_is_refused_to_a_reader_and_not_created(tmp_path):
    db = tmp_path / "typo" / "mlflow.db"
    expected = f"{db}: no tracking store there; check the path (a run creates the store)"
    assert refusal_existing(f"sqlite:///{db}") == expected
    assert os.listdir(tmp_path) == []


def refusal_existing(uri: str) -> str:
    with pytest.raises(TrackingError) as caught:
        store.check_store(uri, wait_s=WAIT_S, existing=True)
    return str(caught.value)


def half_made(mlflow_db: Path, db: Path, revision) -> None:
    """What another process's MLflow leaves mid-creation: every table, alembic_version at an earlier migration (or
    empty: None)."""
    copy_of(mlflow_db, db.parent, db.name)
    with sqlite3.connect(db) as conn:
        if revision is None:
            conn.execute("DELETE FROM alembic_version")
        else:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


@pytest.mark.parametrize("revision", ["older", None])
def test_a_store_another_process_is_creating_is_waited_for(mlflow_db, tmp_path, revision):
    """The check must not race a creation: a half-made store under its creation lock is judged once the lock is
    released (the creator finishing), not called older than MLflow."""
    db = tmp_path / "mlruns" / "mlflow.db"
    half_made(mlflow_db, db, installed_head()[1] if revision == "older" else None)
    locked, release = threading.Event(), threading.Event()

    def creator():
        with sqlite_checks.creation_lock(db):  # a separate lock: flock excludes another descriptor, in one process too
            locked.set()
            release.wait(10)
            copy_of(mlflow_db, db.parent)  # its migrations done

    thread = threading.Thread(target=creator)
    thread.start()
    locked.wait(10)
    threading.Timer(1.0, release.set).start()
    start = time.monotonic()
    store.check_store(f"sqlite:///{db}", wait_s=WAIT_S)
    assert time.monotonic() - start >= 0.9  # it waited for the creator instead of judging the half-made file
    thread.join()


def test_a_half_made_store_whose_creator_is_gone_is_judged_as_it_is(mlflow_db, tmp_path):
    db = tmp_path / "mlflow.db"
    head, older = installed_head()
    half_made(mlflow_db, db, older)
    sqlite_checks.creation_lock(db).acquire()
    sqlite_checks.creation_lock(db).release()  # the lock file stays, no one holds it: a creator that died mid-way
    assert refusal(f"sqlite:///{db}").startswith(f"{db}: schema {older} is older than mlflow")


def test_a_creation_that_never_ends_is_one_line(mlflow_db, tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_checks, "CREATION_WAIT_S", 0.5)
    db = tmp_path / "mlflow.db"
    half_made(mlflow_db, db, None)
    held = threading.Event()
    done = threading.Event()

    def creator():
        with sqlite_checks.creation_lock(db):
            held.set()
            done.wait(10)

    thread = threading.Thread(target=creator)
    thread.start()
    held.wait(10)
    try:
        assert refusal(f"sqlite:///{db}") == (
            f"{db}: another process has been creating this store for 0.5 s (it holds {db}.lock); "
            "wait for it, or stop it"
        )
    finally:
        done.set()
        thread.join()


OPEN_AS_A_RUN_DOES = """
import sys, time
import mlflow.store.tracking.sqlalchemy_store  # imported before the start, as a run has by the time it logs
from backprop_lab.tracking import lifecycle
from backprop_lab.core.errors import UserError
print("imported", flush=True)
time.sleep(max(0.0, float(sys.stdin.readline()) + float(sys.argv[2]) - time.time()))
try:
    lifecycle.prepare_store(sys.argv[1], "backprop-lab")
except UserError as e:
    print(e)
"""


@pytest.mark.slow
def test_processes_starting_together_on_a_fresh_store_all_open_it(tmp_path):
    """8 processes 50-100 ms apart on one fresh store: before the check waited for the creation lock, 5 of 8 were
    told the store was "older ... run mlflow db upgrade" (MLflow's migrations seen half done)."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    procs = [preloaded.popen([sys.executable, "-c", OPEN_AS_A_RUN_DOES, uri, str(0.075 * i)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(8)]  # fmt: skip
    assert [p.stdout.readline() for p in procs] == ["imported\n"] * 8  # each has imported MLflow: now they start
    at = time.time() + 0.5
    for p in procs:
        p.stdin.write(f"{at}\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=180)[0].strip() for p in procs]
    assert outputs == [""] * 8


@pytest.mark.parametrize("uri, expected", [
    (None, "sqlite:///{launch}/mlruns/mlflow.db"),
    ("sqlite:///stores/mlflow.db?timeout=5", "sqlite:///{launch}/stores/mlflow.db?timeout=5"),
    ("sqlite:////elsewhere/mlflow.db", "sqlite:////elsewhere/mlflow.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),  # refused by check_store, not turned into a file
])  # fmt: skip
def test_a_store_is_the_launch_dirs_whatever_the_working_dir(tmp_path, monkeypatch, uri, expected):
    launch = tmp_path / "launch"
    monkeypatch.chdir(tmp_path)
    assert store.resolve_store(uri, launch)[0] == expected.format(launch=launch)


@pytest.mark.slow
def test_runs_that_change_directory_keep_the_launch_dirs_store(tmp_path):
    """hydra.job.chdir=true runs each job in its output dir: the store, the printed UI command and a dry run's
    reading all stay the launch dir's."""
    single = cli(tmp_path, *FAST, "hydra.job.chdir=true")
    assert single.returncode == 0, single.stderr[-2000:]
    assert "--backend-store-uri sqlite:///mlruns/mlflow.db " in single.stdout
    swept = cli(tmp_path, "-m", "init=xavier,normal", *FAST, "hydra.job.chdir=true")
    assert swept.returncode == 0, swept.stderr[-2000:]
    dry = cli(tmp_path, "-m", "init=xavier,normal", *FAST, "hydra.job.chdir=true", "sweep.dry_run=true")
    assert dry.stdout.strip().splitlines()[-1] == "dry run: 0 jobs would run, about 0 s; 2 would be reused"
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*.db")] == [Path("mlruns/mlflow.db")]
    assert len(runs_in(tmp_path / "mlruns")) == 4  # the run, the sweep's parent and its 2 jobs

# --- 7: databases -----------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_database_that_does_not_accept_connections():
    port = closed_port()
    assert refusal(f"postgresql://alice:secret@127.0.0.1:{port}/mlflow") == (
        f"tracking database postgresql://alice:***@127.0.0.1:{port}/mlflow does not answer at 127.0.0.1:{port} "
        f"(Connection refused, {WAIT_S:g} s); start it or fix the URI"
    )


def test_wait_s_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("BACKPROP_LAB_SERVER_WAIT_S", "1")
    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"\(Connection refused, 1 s\)"):
        store.check_store(f"postgresql://u@127.0.0.1:{closed_port()}/mlflow")
    assert time.monotonic() - start < 1 + 5


def test_a_database_that_comes_back_within_wait_s_passes():
    """A restarting server gets its chance: the port opens a second after the check starts."""
    port = closed_port()
    listener = socket.socket()

    def start():
        time.sleep(1)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Thread(target=start, daemon=True).start()
    try:
        store.check_store(f"postgresql://u@127.0.0.1:{port}/mlflow", wait_s=5)
    finally:
        listener.close()


def test_a_host_whose_name_never_resolves_is_bounded_too(monkeypatch):
    """A DNS lookup ignores socket timeouts: the check gives up on it at the deadline anyway."""

    def hanging_lookup(*args, **kwargs):
        time.sleep(60)

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    assert refusal("postgresql://u@db.example/mlflow") == (
        f"tracking database postgresql://***@db.example/mlflow does not answer at db.example:5432 "
        f"(timed out, {WAIT_S:g} s); start it or fix the URI"
    )  # a user name alone reads as a token to redact()


def test_a_database_on_a_unix_socket_skips_the_tcp_check():
    store.check_store("postgresql://u@/mlflow?host=/var/run/postgresql", wait_s=WAIT_S)
    store.check_store("postgresql:///mlflow", wait_s=WAIT_S)


@pytest.mark.parametrize(
    ("uri", "missing", "expected"),
    [
        ("mysql://u:pw@127.0.0.1/db", "MySQLdb",
         "needs the MySQLdb module; pip install mysqlclient (or use mysql+pymysql:// and pip install pymysql)"),
        ("mysql+pymysql://u:pw@127.0.0.1/db", "pymysql", "needs the pymysql module; pip install pymysql"),
        ("mssql://u:pw@127.0.0.1/db", "pyodbc", "needs the pyodbc module; pip install pyodbc"),
        ("postgresql://u:pw@127.0.0.1/db", "psycopg", "needs the psycopg module; pip install 'psycopg[binary]'"),
    ],
)  # fmt: skip
def test_a_database_driver_that_is_not_installed(monkeypatch, uri, missing, expected):
    monkeypatch.setitem(sys.modules, missing, None)  # what find_spec reads as "not installed", wherever we run
    assert refusal(uri) == f"tracking store {uri.replace(':pw@', ':***@')} {expected}"


# --- 8: servers -------------------------------------------------------------------------------------------------


@pytest.fixture
def stub():
    servers = []

    def start(*args, **kwargs):
        server, uri = serve(*args, **kwargs)
        servers.append(server)
        return uri

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_server_that_does_not_answer():
    port = closed_port()
    assert refusal(f"http://bob:secret@127.0.0.1:{port}") == (
        f"tracking server http://bob:***@127.0.0.1:{port} does not answer (ConnectionError, {WAIT_S:g} s); "
        "start it or fix the URI"
    )


def test_a_server_that_accepts_but_never_answers():
    """A listening socket nobody reads: each request runs into its timeout, the check into its deadline."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert refusal(uri) == (
            f"tracking server {uri} does not answer (ReadTimeout, {WAIT_S:g} s); start it or fix the URI"
        )


@pytest.mark.parametrize(
    ("status", "body", "content_type", "shown"),
    [
        (200, b"OK", "text/plain", "200 text/plain"),  # says OK to everything
        (404, b"<html><body>Not Found</body></html>", "text/html; charset=utf-8", "404 text/html"),
        (200, b'{"status": "ok"}', "application/json", "200 application/json"),  # JSON, but not MLflow's
    ],
)
def test_a_server_that_is_not_mlflow(stub, status, body, content_type, shown):
    uri = stub(status, body, content_type)
    assert refusal(uri) == (
        f"tracking server {uri} answers but is not an MLflow server "
        f"(GET /api/2.0/mlflow/experiments/get-by-name: {shown}); fix the URI"
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b'{"experiment": {"experiment_id": "0", "name": "Default", "lifecycle_stage": "active"}}'),
        (404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Could not find experiment Default"}'),
    ],
)
def test_an_mlflow_server_passes(stub, status, body):
    store.check_store(stub(status, body, "application/json"), wait_s=WAIT_S)


def test_a_server_whose_api_fails_is_retried_then_refused(stub):
    uri = stub(500, b'{"error_code": "INTERNAL_ERROR", "message": "database is down"}', "application/json")
    assert refusal(uri).startswith(f"tracking server {uri} does not answer (HTTPError, {WAIT_S:g} s);")


def test_a_server_that_wants_credentials(stub, monkeypatch):
    uri = stub(200, b'{"experiment": {"experiment_id": "0"}}', "application/json", need_auth=True)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert refusal(uri) == (
        f"tracking server {uri} refuses us (401 Unauthorized); set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    store.check_store(uri, wait_s=WAIT_S)  # sent the way MLflow's client sends them


# --- 9: syntax --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://[::1", "tracking.uri: cannot parse 'http://[::1' (Invalid IPv6 URL); fix the URI"),
        ("http://host:port", "tracking.uri: cannot parse 'http://host:port' (Port could not be cast to integer "
                             "value as 'port'); fix the URI"),
        ("foo://u:pw@bar", "tracking.uri: must be null (the default store), or a URI of sqlite, postgresql, mysql, "
                           "mssql, http, https, databricks, got 'foo://u:***@bar'"),
        ("file:///tmp/mlruns", "tracking.uri: 'file:///tmp/mlruns' is a file store, which MLflow 3.13+ refuses; "
                               "use sqlite:///PATH/mlflow.db"),
        ("./mlruns", "tracking.uri: './mlruns' is a file store, which MLflow 3.13+ refuses; use sqlite:///PATH/mlflow.db"),
    ],
)  # fmt: skip
def test_a_uri_that_is_not_a_store(uri, expected):
    with pytest.raises(ConfigError) as caught:
        store.check_uri_syntax(uri)
    assert str(caught.value) == expected
    assert refusal(uri) == expected


def test_uri_syntax_imports_nothing_heavy():
    code = (
        "import sys; from backprop_lab.tracking import store; store.check_uri_syntax('sqlite:///x/mlflow.db'); "
        "heavy = {'mlflow', 'requests', 'sqlalchemy', 'alembic', 'torch'} & set(sys.modules); print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_every_ui_address_asks_for_the_classic_runs_view():
    """MLflow 3.17 opens an experiment in its GenAI mode unless the address carries the workflow type."""
    assert store.ui_url("sqlite:////x/mlflow.db", "3") == \
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"  # fmt: skip
    assert store.ui_url("sqlite:////x/mlflow.db", "3", "abc") == \
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"  # fmt: skip
    # a tracking server serves its own UI; the browser asks for credentials itself, the address carries none
    assert store.ui_url("https://bob:pw@tracking.example:8443/mlflow/", "3") == \
        "https://tracking.example:8443/mlflow/#/experiments/3/runs?workflowType=machine_learning"  # fmt: skip


def test_the_report_command_names_the_sweep_and_a_store_that_is_not_the_default(tmp_path):
    default, _ = store.default_store(tmp_path)
    assert store.report_command(default, tmp_path, "abc").endswith("backprop-lab-report abc")
    elsewhere = store.report_command("http://bob:pw@h:5000", tmp_path, "abc")
    assert elsewhere.endswith("backprop-lab-report abc --tracking-uri http://bob:***@h:5000")
