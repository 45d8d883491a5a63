"""mlflow_client.retried: parallel jobs' collisions in the store are waited out; everything else is raised at once."""

from __future__ import annotations

import pytest

from backprop_lab.tracking import mlflow_client

# What a PostgreSQL-backed server answered when two jobs of a joblib sweep logged the same dataset at once
RACED = ('BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "dataset_pk"'
         "\nDETAIL:  Key (experiment_id, name, digest)=(1, synthetic, d5c3) already exists.")  # fmt: skip


class Flaky:
    """Fails with `message` the first `failures` calls, then answers."""

    def __init__(self, message: str, failures: int):
        self.message, self.failures, self.calls = message, failures, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(self.message)
        return "linked"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(mlflow_client.time, "sleep", lambda s: None)


def test_a_raced_insert_is_retried_where_asked():
    flaky = Flaky(RACED, failures=1)
    assert mlflow_client.retried(flaky, transient=mlflow_client.LOCKED + mlflow_client.RACED_INSERT) == "linked"
    assert flaky.calls == 2


def test_a_raced_insert_is_an_error_elsewhere():
    flaky = Flaky(RACED, failures=1)
    with pytest.raises(RuntimeError, match="UniqueViolation"):
        mlflow_client.retried(flaky)
    assert flaky.calls == 1


def test_a_lock_that_never_clears_is_raised_after_the_attempts():
    flaky = Flaky("(sqlite3.OperationalError) database is locked", failures=99)
    with pytest.raises(RuntimeError, match="database is locked"):
        mlflow_client.retried(flaky, attempts=3)
    assert flaky.calls == 3


def test_a_full_disk_is_one_line_for_the_user():
    with pytest.raises(mlflow_client.TrackingError, match=r"cannot be written \(database or disk is full\)"):
        mlflow_client.retried(Flaky("(sqlite3.OperationalError) database or disk is full", failures=1))
