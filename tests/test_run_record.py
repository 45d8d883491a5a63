"""Behaviour kept: the runs of tests/run_record.py leave in the store what they left when its record was written
(the same params, metrics, tags and artifacts; values wherever they do not measure the machine)."""

from __future__ import annotations

import json

import pytest
from run_record import CONFIGS, GOLDEN, records


@pytest.fixture(scope="module")
def today(tmp_path_factory):
    return records(tmp_path_factory.mktemp("records"))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_run_logs_what_it_logged_when_the_record_was_written(today, name):
    golden = json.loads(GOLDEN.read_text())[name]
    now = json.loads(json.dumps(today[name]))  # the same types as the file's
    for part in ("params", "tags", "artifacts", "inputs"):
        assert now[part] == golden[part], part
    assert now["metrics"].keys() == golden["metrics"].keys()
    for key, steps in golden["metrics"].items():
        assert now["metrics"][key].keys() == steps.keys(), key
        for step, value in steps.items():
            if value is not None:
                assert now["metrics"][key][step] == pytest.approx(value, rel=1e-4, abs=1e-9), (key, step)
