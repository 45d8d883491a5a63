"""A new sqlite store is a copy of the empty store MLflow's migrations make, made once and kept in the cache; a
cached file that is not that empty store is rebuilt, never copied."""

from __future__ import annotations

import sqlite3

import pytest
from mlflow.tracking import MlflowClient

from backprop_lab.tracking import lifecycle, store_template


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return store_template.template_path()


def rows(db, table):
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT * FROM {table}").fetchall()


def test_a_new_store_is_a_copy_of_the_cached_empty_store_and_opens_as_migrated(tmp_path, cache):
    db = tmp_path / "a" / "mlflow.db"
    lifecycle.prepare_store(f"sqlite:///{db}", "exp", str(tmp_path / "a" / "artifacts"))
    assert cache.is_file() and rows(cache, "experiments") == []
    second = tmp_path / "b" / "mlflow.db"
    lifecycle.prepare_store(f"sqlite:///{second}", "exp", str(tmp_path / "b" / "artifacts"))
    names = {e.name: e.artifact_location for e in MlflowClient(f"sqlite:///{second}").search_experiments()}
    assert names["exp"] == str(tmp_path / "b" / "artifacts")
    assert "Default" in names  # made by MLflow when it opened the copy, as after its migrations


@pytest.mark.parametrize("edit", ["INSERT INTO experiments (experiment_id, name, lifecycle_stage) "
                                  "VALUES (7, 'planted', 'active')", "UPDATE alembic_version SET version_num = 'x'"])
def test_a_cached_file_that_is_not_the_empty_store_is_rebuilt_not_copied(tmp_path, cache, edit):
    lifecycle.prepare_store(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", "exp")
    with sqlite3.connect(cache) as con:
        con.execute(edit)
    db = tmp_path / "b" / "mlflow.db"
    lifecycle.prepare_store(f"sqlite:///{db}", "exp")
    assert "planted" not in {e.name for e in MlflowClient(f"sqlite:///{db}").search_experiments()}
    assert rows(cache, "experiments") == [] and rows(cache, "alembic_version") != [("x",)]


def test_an_unwritable_cache_leaves_mlflow_to_migrate(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache's folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    db = tmp_path / "a" / "mlflow.db"
    assert not store_template.place(db)
    lifecycle.prepare_store(f"sqlite:///{db}", "exp")
    assert "exp" in {e.name for e in MlflowClient(f"sqlite:///{db}").search_experiments()}
