"""A new sqlite store starts as a copy of an empty one. MLflow makes a store by running its schema migrations, about
two seconds of CPU each time, and the empty store they leave is the same for every store of one MLflow version: so
it is made once, kept in the user's cache, and copied. The copy holds no experiment: MLflow adds its Default
experiment when it first opens the store, with this store's artifact location, as it does after migrating.

The cached file is checked before each copy: MLflow's head revision, and no rows but the migrations' own (the
revision and the default workspace), so that an edited or foreign file is rebuilt, never copied into a store."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

from backprop_lab.datasets.course_file import default_cache_dir

SEEDED_TABLES = {"alembic_version", "workspaces"}  # what MLflow's migrations write rows into
_UNUSABLE = (OSError, sqlite3.Error)  # a cache that cannot be written or read: MLflow migrates, as without one


def template_path() -> Path:
    from importlib.metadata import version

    return default_cache_dir() / "stores" / f"empty-mlflow-{version('mlflow')}.db"


def _empty_of_runs(db: Path, head: str) -> bool:
    """At MLflow's `head` revision, and no rows but those its migrations write."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if "alembic_version" not in tables:
            return False
        revisions = con.execute("SELECT version_num FROM alembic_version").fetchall()
        workspaces = con.execute("SELECT name FROM workspaces").fetchall() if "workspaces" in tables else []
        rows = sum(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables if t not in SEEDED_TABLES)
    return revisions == [(head,)] and rows == 0 and workspaces in ([], [("default",)])


def _build(template: Path) -> None:
    """MLflow's migrations into a file of this process, its Default experiment taken out, then moved into place
    whole (a process copying the template meanwhile reads the old one or this one, never half of one)."""
    from backprop_lab.tracking.mlflow_client import mlflow_client

    template.parent.mkdir(parents=True, exist_ok=True)
    # a name never used before: MLflow keeps an engine per URI for the life of the process
    building = template.with_name(f".{template.name}.{uuid.uuid4().hex}")
    client = mlflow_client(f"sqlite:///{building}")
    client.search_experiments()  # creates the tables, and the Default experiment
    with sqlite3.connect(building) as con:
        con.execute("DELETE FROM experiments")
    os.replace(building, template)


def place(db: Path) -> bool:
    """Make the store `db` (which does not exist) a copy of the empty store; False where there is no template to
    copy (an unwritable cache), and MLflow is left to migrate as it would."""
    from backprop_lab.tracking.sqlite_checks import head_revision

    template, head = template_path(), head_revision()
    copying = db.with_name(f".{db.name}.{uuid.uuid4().hex}")
    try:
        if not (template.is_file() and _empty_of_runs(template, head)):
            _build(template)
        shutil.copyfile(template, copying)
        if not _empty_of_runs(copying, head):  # replaced between the check and the copy by something else
            copying.unlink()
            return False
        os.replace(copying, db)
    except _UNUSABLE:
        with contextlib.suppress(OSError):
            copying.unlink(missing_ok=True)
        return False
    return True
