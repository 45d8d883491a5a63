"""A tracking server or database: something must answer within `wait_s`, said in one line. Left to MLflow, an
unreachable one costs minutes of SQLAlchemy retries and a long traceback; here one or two HTTP requests (a server)
or a TCP connection (a database) answer first.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from backprop_lab.core.errors import TrackingError
from backprop_lab.core.redaction import redact

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
API_PROBE = "/api/2.0/mlflow/experiments/get-by-name"  # answers JSON on any MLflow server, found or not


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


def check_server(uri: str, wait_s: float) -> None:
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


def check_database(uri: str, wait_s: float) -> None:
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
