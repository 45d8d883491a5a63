"""What a tracking store must be before any run starts, said in one line within seconds.

Left to MLflow, an unreachable database costs minutes of SQLAlchemy retries and a long traceback, a store written
by another MLflow fails deep inside it, and an sqlite file of another program is migrated into an MLflow store
without a word. `check_store` looks first, with the standard library (and one or two HTTP requests for a server),
before MLflow creates its engine. Nothing here imports MLflow at import time; `check_uri_syntax` imports nothing
heavy at all, so config validation stays fast.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, quote, unquote, urlsplit

from backprop_lab.errors import ConfigError, TrackingError
from backprop_lab.redaction import redact

TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
# A server or database restarting between two jobs of a sweep gets this long; one that is down is then reported,
# start-up included, within the 20 s a user should wait for a one-line error.
SERVER_WAIT_S = 15.0
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# SQLAlchemy 2.1's dialect[+driver] -> (the module it imports, what pip installs). A bare dialect is its default.
DRIVERS = {
    "postgresql": ("psycopg", "'psycopg[binary]'"),
    "postgresql+psycopg": ("psycopg", "'psycopg[binary]'"),
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"),
    "postgresql+pg8000": ("pg8000", "pg8000"),
    "mysql": ("MySQLdb", "mysqlclient (or use mysql+pymysql:// and pip install pymysql)"),
    "mysql+mysqldb": ("MySQLdb", "mysqlclient"),
    "mysql+pymysql": ("pymysql", "pymysql"),
    "mysql+mysqlconnector": ("mysql.connector", "mysql-connector-python"),
    "mssql": ("pyodbc", "pyodbc"),
    "mssql+pyodbc": ("pyodbc", "pyodbc"),
    "mssql+pymssql": ("pymssql", "pymssql"),
}
MLFLOW_TABLES = {"alembic_version", "experiments"}  # what every MLflow store has, whatever its schema version
QUICK_CHECK_S = 0.5  # PRAGMA quick_check reads the whole file: a few ms for our stores, cut short for huge ones
API_PROBE = "/api/2.0/mlflow/experiments/get-by-name"  # answers JSON on any MLflow server, found or not
# MLflow creates a sqlite store in a few seconds of schema migrations; a check that finds one half made waits for
# the process making it this long (a slow disk, a busy host) before it judges the file as it is
CREATION_WAIT_S = 60.0


# --- where the store is -----------------------------------------------------------------------------------------


def default_store(launch_dir: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the project's default store."""
    store = launch_dir.resolve() / "mlruns"
    return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def resolve_store(uri: Optional[str], launch_dir: Path) -> tuple[str, Optional[str]]:
    """The configured store, or the default one; a new experiment's artifact location where we choose it. A relative
    sqlite path is the launch directory's, as the default store is, whatever the working directory (a Hydra job's
    output directory under hydra.job.chdir=true)."""
    if not uri:
        return default_store(launch_dir)
    db = sqlite_file(uri)
    if db is not None and not db.is_absolute() and str(db) not in (".", ":memory:"):  # in-memory: refused later
        return f"sqlite:///{launch_dir.resolve()}/{uri.removeprefix('sqlite:///')}", None
    return uri, None


def ui_command(uri: str, launch_dir: Path) -> str:
    """The command that serves this store's UI on the loopback interface, as typed from the launch directory."""
    local_default, _ = default_store(launch_dir)
    shown = "sqlite:///mlruns/mlflow.db" if uri == local_default else uri
    cli = Path(sys.executable).parent / "mlflow"  # the environment's own mlflow, as a path one can paste
    if not cli.exists():
        cli = Path("mlflow")
    elif cli.is_relative_to(launch_dir.resolve()):
        cli = cli.relative_to(launch_dir.resolve())
    return f"{cli} ui --backend-store-uri {redact(shown)} --host 127.0.0.1 --port 5000"


# --- what it must be ------------------------------------------------------------------------------------------------


def check_uri_syntax(uri: str) -> None:
    """A URI that MLflow can use as a tracking store, judged by its text alone (no I/O, no heavy imports)."""
    shown = redact(uri)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (it parses the port: "host:abc" raises here)
    except ValueError as e:
        raise ConfigError(f"tracking.uri: cannot parse {shown!r} ({e}); fix the URI") from None
    scheme = parts.scheme.split("+")[0]
    if scheme == "file" or (scheme == "" and "://" not in uri):
        raise ConfigError(
            f"tracking.uri: {shown!r} is a file store, which MLflow 3.13+ refuses; use sqlite:///PATH/mlflow.db"
        )
    if scheme not in TRACKING_SCHEMES or "://" not in uri:
        allowed = "null (the default store), or a URI of " + ", ".join(TRACKING_SCHEMES)
        raise ConfigError(f"tracking.uri: must be {allowed}, got {shown!r}")
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///").split("?")[0] if uri.startswith("sqlite:///") else ""
        if path in ("", ":memory:"):  # sqlite:// and sqlite:/// are in-memory too
            raise ConfigError(
                f"tracking.uri: {shown!r} is an in-memory store, which keeps nothing after the process; "
                "use sqlite:///PATH/mlflow.db"
            )


def check_store(uri: str, wait_s: Optional[float] = None, existing: bool = False) -> None:
    """Raise TrackingError with one line when the store at `uri` cannot hold runs; return quietly when it can.
    A server or database that is down gets `wait_s` (SERVER_WAIT_S, or $BACKPROP_LAB_SERVER_WAIT_S) to come back,
    so a restart between the jobs of a sweep is not a failure. With `existing` (a reader's check), a sqlite file
    that is not there is an error: opening it would create an empty store where a path was mistyped."""
    if wait_s is None:
        wait_s = float(os.environ.get("BACKPROP_LAB_SERVER_WAIT_S", SERVER_WAIT_S))
    try:
        check_uri_syntax(uri)
    except ConfigError as e:
        raise TrackingError(str(e)) from None
    scheme = urlsplit(uri).scheme
    if scheme == "sqlite":
        _check_sqlite(uri, existing)
    elif scheme in ("http", "https"):
        _check_server(uri, wait_s)
    elif scheme.split("+")[0] in DEFAULT_PORTS:
        _check_database(uri, wait_s)
    # databricks: its host and token live in a profile that MLflow itself reads and checks


# --- sqlite: a file we can read, write, and that MLflow wrote ---------------------------------------------------


def sqlite_file(uri: str) -> Optional[Path]:
    """The file SQLAlchemy opens for a sqlite URI; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").split("?")[0]))


def creation_lock(db: Path, timeout: float = -1):
    """The file lock held while a process creates the sqlite store `db` (MLflow's schema migrations, which two
    processes must not run at once), and waited for by a check that finds the store half made."""
    from filelock import FileLock

    return FileLock(f"{db}.lock", timeout=timeout)


class _MaybeUnfinished(Exception):
    """The file looks like a store another process is still creating: judge it again once that process is done."""


def _check_sqlite(uri: str, existing: bool = False) -> None:
    db = sqlite_file(uri)
    if db.is_dir():
        raise TrackingError(f"{db}: is a directory, not an sqlite file; use sqlite:///{db}/mlflow.db")
    if not db.exists():
        if existing:
            raise TrackingError(f"{db}: no tracking store there; check the path (a run creates the store)")
        ancestor = next(p for p in db.parents if p.exists())  # a new store: MLflow creates its directories and the file
        if not ancestor.is_dir():
            raise TrackingError(f"{ancestor}: is a file, not a directory; choose another sqlite:///PATH/mlflow.db")
        _check_writable_dir(ancestor, shown=db.parent)
        return
    try:
        _check_sqlite_file(db, uri, settled=False)
    except _MaybeUnfinished:
        _wait_for_creation(db)
        _check_sqlite_file(db, uri, settled=True)


def _check_sqlite_file(db: Path, uri: str, settled: bool) -> None:
    """Judge an existing file. Until `settled`, a file that another process may still be creating (busy, no
    tables yet, some of MLflow's, an older schema) raises _MaybeUnfinished instead of a verdict."""
    read = _read_sqlite(db)
    unfinished = read is None or not read[0] or not MLFLOW_TABLES <= read[0] or read[1] != [_migrations()[0]]
    if unfinished and not settled and Path(f"{db}.lock").exists():  # a store made here: by a lock holder, maybe now
        raise _MaybeUnfinished
    if read is None:  # a writer holds it right now: a store in use, so a working one
        return
    tables, revisions = read
    if tables and not MLFLOW_TABLES <= tables:  # MLflow would add its tables to it and call it a store
        listed = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise TrackingError(
            f"{db}: not an MLflow tracking store (it holds tables {listed}); use sqlite:///PATH/mlflow.db elsewhere"
        )
    _check_writable_dir(db.parent, shown=db.parent)
    _check_writable_file(db)
    if tables:
        _check_schema(db, uri, revisions)


def _wait_for_creation(db: Path) -> None:
    """Until no process holds the store's creation lock: what it leaves is then a finished store, or not one."""
    from filelock import Timeout

    try:
        with creation_lock(db, timeout=CREATION_WAIT_S):
            pass
    except Timeout:
        raise TrackingError(
            f"{db}: another process has been creating this store for {CREATION_WAIT_S:g} s (it holds {db}.lock); "
            "wait for it, or stop it"
        ) from None
    except OSError:  # a lock we cannot open (a read-only directory): judge the file as it is
        pass


def _read_sqlite(db: Path) -> Optional[tuple[set[str], list[str]]]:
    """Its table names and alembic revisions, read-only; one line when it is not a sound sqlite database.
    None when a writer holds it past our timeout: a busy store, not a broken one."""
    try:
        db.open("rb").close()
    except OSError as e:
        raise TrackingError(f"{db}: cannot read the tracking store ({e.strerror}); set tracking.uri") from None
    conn = None
    try:
        conn = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=2)
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        tables = {name for (name,) in rows if not name.startswith("sqlite_")}
        stop = time.monotonic() + QUICK_CHECK_S
        conn.set_progress_handler(lambda: time.monotonic() > stop, 10_000)
        try:
            (verdict,) = conn.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.OperationalError as e:
            if "interrupted" not in str(e):
                raise
            verdict = "ok"  # a store too big to check in time: MLflow reports what it finds later
        conn.set_progress_handler(None, 0)
        if verdict != "ok":
            detail = "; ".join(line for line in verdict.splitlines() if not line.startswith("*** in database"))[:120]
            raise TrackingError(
                f"{db}: corrupt sqlite database ({detail}); restore it from a backup, or set tracking.uri"
            )
        revisions = []
        if "alembic_version" in tables:
            revisions = [rev for (rev,) in conn.execute("SELECT version_num FROM alembic_version")]
        return tables, revisions
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            return None
        raise TrackingError(f"{db}: cannot read the tracking store ({e}); set tracking.uri") from None
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # "file is not a database", "... malformed", garbage
        raise TrackingError(f"{db}: not a readable sqlite database ({e}); move it aside or set tracking.uri") from None
    finally:
        if conn is not None:
            conn.close()


def _check_writable_dir(directory: Path, shown: Path) -> None:
    """sqlite writes its journal beside the database, and MLflow creates missing directories: try creating one.
    os.access would answer yes to root in /proc or on a read-only mount; this cannot."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".backprop-lab-probe-", dir=directory))
    except OSError as e:
        raise TrackingError(f"{shown}: cannot write the tracking store ({e.strerror}); set tracking.uri") from None


def _check_writable_file(db: Path) -> None:
    """Open it for writing, write nothing: the kernel answers for root (a read-only mount) and users alike.
    Asking sqlite is no test: it opens a file it cannot write read-only without a word, and even grants
    BEGIN IMMEDIATE there; only a page write would fail."""
    try:
        os.close(os.open(db, os.O_RDWR))
    except OSError as e:
        raise TrackingError(f"{db}: cannot write the tracking store ({e.strerror}); set tracking.uri") from None


_REVISION = re.compile(r'^(down_)?revision\s*=\s*["\']([0-9a-f]+)["\']', re.M)


@functools.cache
def _migrations() -> tuple[str, frozenset[str], str]:
    """(head revision, every known revision, version) of the installed MLflow's schema migrations: each file of
    its alembic versions folder names its revision and the one before; the head is the one no other names (MLflow
    keeps a single line). Read as text, in milliseconds: alembic's ScriptDirectory imports them all (about 1 s)."""
    from importlib.metadata import version

    package = importlib.util.find_spec("mlflow").submodule_search_locations[0]
    revisions, parents = set(), set()
    for path in Path(package, "store", "db_migrations", "versions").glob("*.py"):
        for down, revision in _REVISION.findall(path.read_text()):
            (parents if down else revisions).add(revision)
    (head,) = revisions - parents
    return head, frozenset(revisions), version("mlflow")


def _check_schema(db: Path, uri: str, revisions: list[str]) -> None:
    """MLflow refuses any schema but its own head, and its advice (`mlflow db upgrade`) cannot help a newer one."""
    head, known, mlflow_version = _migrations()
    if revisions == [head]:
        return
    unknown = [rev for rev in revisions if rev not in known]
    if unknown:
        raise TrackingError(
            f"{db}: written by a newer MLflow (schema {unknown[0]}, unknown to the installed mlflow {mlflow_version}); "
            "upgrade mlflow (pip install -U mlflow)"
        )
    found = ", ".join(revisions) or "none"
    raise TrackingError(
        f"{db}: schema {found} is older than mlflow {mlflow_version}'s {head}; back the file up, then run "
        f"mlflow db upgrade {redact(uri)}"
    )


# --- servers and databases: something must answer within wait_s -------------------------------------------------


def _bounded(timeout: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, timeout=timeout, **kwargs) in a daemon thread, given up soon after that timeout: a DNS lookup
    ignores socket and requests timeouts. A thread left behind is a daemon: it cannot keep the process alive."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args, timeout=timeout, **kwargs)
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)  # fn's own timeout error, when it comes, says more than ours
    if thread.is_alive():
        raise TimeoutError("timed out")  # as a socket says it
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _check_server(uri: str, wait_s: float) -> None:
    """/health until it answers (a restarting server gets wait_s), then one API call that only MLflow answers
    with its JSON: a proxy's or another program's page on that port is not a tracking server."""
    import requests

    base = uri.rstrip("/")
    shown = redact(uri)
    options = _request_options()
    deadline = time.monotonic() + wait_s

    def get(path: str, **params: str) -> requests.Response:
        timeout = min(3.0, max(0.5, deadline - time.monotonic()))  # so the last try ends near the deadline
        return _bounded(timeout, requests.get, f"{base}{path}", params=params, **options)

    while True:
        try:
            get("/health").raise_for_status()
            api = get(API_PROBE, experiment_name="Default")
            if api.status_code >= 500:  # up but not serving (its database down, a proxy without its backend)
                api.raise_for_status()
            break
        except (requests.RequestException, TimeoutError) as e:
            if time.monotonic() + 1 > deadline:
                raise TrackingError(
                    f"tracking server {shown} does not answer ({type(e).__name__}, {wait_s:g} s); "
                    "start it or fix the URI"
                ) from None
            time.sleep(1)
    try:
        body = api.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("experiment" in body or "error_code" in body):
        return
    if api.status_code in (401, 403):  # MLflow's basic-auth app answers these in plain text
        raise TrackingError(
            f"tracking server {shown} refuses us ({api.status_code} {api.reason}); set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
        )
    kind = api.headers.get("Content-Type", "no content type").split(";")[0]
    raise TrackingError(
        f"tracking server {shown} answers but is not an MLflow server (GET {API_PROBE}: {api.status_code} {kind}); "
        "fix the URI"
    )


def _request_options() -> dict[str, Any]:
    """The credentials and TLS settings MLflow's own client takes from the environment."""
    env = os.environ.get
    options: dict[str, Any] = {}
    if env("MLFLOW_TRACKING_TOKEN"):
        options["headers"] = {"Authorization": f"Bearer {env('MLFLOW_TRACKING_TOKEN')}"}
    elif env("MLFLOW_TRACKING_USERNAME"):
        options["auth"] = (env("MLFLOW_TRACKING_USERNAME"), env("MLFLOW_TRACKING_PASSWORD", ""))
    if env("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        options["verify"] = False
    elif env("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        options["verify"] = env("MLFLOW_TRACKING_SERVER_CERT_PATH")
    return options


def _check_database(uri: str, wait_s: float) -> None:
    """Its SQLAlchemy driver installed, and its host:port accepting TCP (within wait_s, for a restarting server).
    Credentials and schema are not checked here: that needs a login, which is MLflow's to do."""
    parts = urlsplit(uri)
    shown = redact(uri)
    driver = DRIVERS.get(parts.scheme)  # another +driver: SQLAlchemy says what it lacks
    if driver and not _importable(driver[0]):
        raise TrackingError(f"tracking store {shown} needs the {driver[0]} module; pip install {driver[1]}")
    dialect = parts.scheme.split("+")[0]
    query = parse_qs(parts.query)
    dsn = parts.scheme in ("mssql", "mssql+pyodbc") and not parts.path.strip("/")  # pyodbc: mssql://user@NAME
    if not parts.hostname or dsn or {"host", "dsn", "odbc_connect"} & query.keys():  # a unix socket, a DSN, ...
        return
    address = (parts.hostname, parts.port or DEFAULT_PORTS[dialect])
    deadline = time.monotonic() + wait_s
    while True:
        timeout = min(2.0, max(0.2, deadline - time.monotonic()))
        try:
            _bounded(timeout, socket.create_connection, address).close()
            return
        except OSError as e:  # refused, timed out, unknown host
            if time.monotonic() + 0.5 > deadline:
                reason = e.strerror or str(e) or type(e).__name__
                raise TrackingError(
                    f"tracking database {shown} does not answer at {address[0]}:{address[1]} ({reason}, {wait_s:g} s); "
                    "start it or fix the URI"
                ) from None
            time.sleep(0.5)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None  # found, not imported
    except ModuleNotFoundError:  # its parent package is missing (mysql.connector without mysql)
        return False
