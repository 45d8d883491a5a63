"""An sqlite tracking store: a file we can read and write, that MLflow wrote, at the schema the installed MLflow
wants; or a new one we can create. Judged with the standard library, before MLflow creates its engine: left to it,
a store written by another MLflow fails deep inside it, and an sqlite file of another program is migrated into an
MLflow store without a word.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from backprop_lab.core.errors import TrackingError
from backprop_lab.core.redaction import redact

MLFLOW_TABLES = {"alembic_version", "experiments"}  # what every MLflow store has, whatever its schema version
QUICK_CHECK_S = 0.5  # PRAGMA quick_check reads the whole file: a few ms for our stores, cut short for huge ones
# MLflow creates a sqlite store in a few seconds of schema migrations; a check that finds one half made waits for
# the process making it this long (a slow disk, a busy host) before it judges the file as it is
CREATION_WAIT_S = 60.0


def creation_lock(db: Path, timeout: float = -1):
    """The file lock held while a process creates the sqlite store `db` (MLflow's schema migrations, which two
    processes must not run at once), and waited for by a check that finds the store half made."""
    from filelock import FileLock

    return FileLock(f"{db}.lock", timeout=timeout)


class _MaybeUnfinished(Exception):
    """The file looks like a store another process is still creating: judge it again once that process is done."""


def check_sqlite(db: Path, uri: str, existing: bool = False) -> None:
    """`db`, the file of the sqlite store at `uri`: a store MLflow wrote and we can write, or a new one we can
    create; with `existing`, one that is there."""
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


def head_revision() -> str:
    """The schema revision the installed MLflow writes and accepts."""
    return _migrations()[0]


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
