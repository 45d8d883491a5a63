"""Where the tracking store is, and what it must be before any run starts, said in one line within seconds.

`check_store` looks first, with the standard library (sqlite_checks.py), or one or two requests to a server or a
database (store_probes.py), before MLflow creates its engine, after the URI's text is judged (config/tracking_uri.py).
Nothing here imports MLflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

from backprop_lab.config.tracking_uri import check_uri_syntax
from backprop_lab.core.errors import ConfigError, TrackingError
from backprop_lab.core.redaction import redact
from backprop_lab.tracking.sqlite_checks import check_sqlite
from backprop_lab.tracking.store_probes import DEFAULT_PORTS, check_database, check_server

# A server or database restarting between two jobs of a sweep gets this long; one that is down is then reported,
# start-up included, within the 20 s a user should wait for a one-line error.
SERVER_WAIT_S = 15.0


# --- where the store is -----------------------------------------------------------------------------------------


STORE_DIR, STORE_DB = "mlruns", "mlflow.db"  # the default store: a sqlite file in mlruns/ under the launch directory
DEFAULT_SHOWN = f"sqlite:///{STORE_DIR}/{STORE_DB}"  # as it is shown: relative to the launch directory


def default_store(launch_dir: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the project's default store."""
    store = launch_dir.resolve() / STORE_DIR
    return f"sqlite:///{store / STORE_DB}", (store / "artifacts").as_uri()


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


def sqlite_file(uri: str) -> Optional[Path]:
    """The file SQLAlchemy opens for a sqlite URI; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").split("?")[0]))


UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `ui_command` serves the UI: the loopback interface only
# MLflow 3.17's UI opens an experiment in its GenAI mode (Traces, Judges, runs under "Evaluations") unless the address
# asks for the classic runs view: it reads the mode from the address, else from the browser's last choice, and no
# longer from the experiment's `mlflow.experimentKind` tag (its switch between the two is always on)
UI_MODE = "workflowType=machine_learning"


def _command(name: str, launch_dir: Path) -> Path:
    """The environment's own console script, as a path one can paste from the launch directory."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return Path(name)
    return path.relative_to(launch_dir.resolve()) if path.is_relative_to(launch_dir.resolve()) else path


def _shown(uri: str, launch_dir: Path) -> str:
    local_default, _ = default_store(launch_dir)
    return DEFAULT_SHOWN if uri == local_default else redact(uri)


def ui_command(uri: str, launch_dir: Path) -> str:
    """The command that serves this store's UI on the loopback interface, as typed from the launch directory."""
    return f"{_command('mlflow', launch_dir)} ui --backend-store-uri {_shown(uri, launch_dir)} " \
           f"--host {UI_HOST} --port {UI_PORT}"  # fmt: skip


def ui_url(uri: str, experiment_id: str, run_id: Optional[str] = None) -> str:
    """The address of the experiment's runs table (or of one run) in the UI that serves this store, in the classic
    runs view: a tracking server's own, else the one `ui_command` starts."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):  # without its credentials: a browser asks for them itself
        base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path.rstrip('/')}"
    else:
        base = f"http://{UI_HOST}:{UI_PORT}"
    page = f"{base}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{page}?{UI_MODE}"


def report_command(uri: str, launch_dir: Path, parent_run_id: str) -> str:
    """The command that writes a sweep's report, as typed from the launch directory."""
    local_default, _ = default_store(launch_dir)
    store_flag = "" if uri == local_default else f" --tracking-uri {_shown(uri, launch_dir)}"
    return f"{_command('backprop-lab-report', launch_dir)} {parent_run_id}{store_flag}"


# --- what it must be ------------------------------------------------------------------------------------------------


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
        check_sqlite(sqlite_file(uri), uri, existing)
    elif scheme in ("http", "https"):
        check_server(uri, wait_s)
    elif scheme.split("+")[0] in DEFAULT_PORTS:
        check_database(uri, wait_s)
    # databricks: its host and token live in a profile that MLflow itself reads and checks
