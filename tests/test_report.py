"""The sweep report, from MLflow alone, on a real small sweep."""

from __future__ import annotations

import pytest
from helpers import ROOT
from mlflow.tracking import MlflowClient

from backprop_lab import report, runs

pytestmark = pytest.mark.slow


@pytest.fixture
def sweep_store(small_sweep):
    return small_sweep


def test_report_of_the_latest_sweep(sweep_store, tmp_path, capsys):
    cwd, uri = sweep_store
    out = tmp_path / "report"
    assert report.main(["--tracking-uri", uri, "--out", str(out)]) == 0
    names = {"report.md", "report.html", "backward_time.png", "backward_vs_autograd.png", "grad_check.png",
             "activation_std.png", "backward_std.png"}  # fmt: skip
    assert names <= {p.name for p in out.iterdir()}
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| impl | init | status | all close")
    assert len(table) == 1 + 4  # the header and one row per job
    assert all("| FINISHED | yes |" in row for row in table[1:])
    parent_id = runs.latest_sweep(uri, "backprop-lab")
    logged = {f.path for f in MlflowClient(uri).list_artifacts(parent_id, "report")}
    assert {f"report/{n}" for n in names} <= logged
    assert "functional" in capsys.readouterr().out


def test_report_rows_carry_the_swept_choices(sweep_store):
    _, uri = sweep_store
    parent, records = runs.sweep_records(uri, runs.latest_sweep(uri, "backprop-lab"))
    rows = report.to_rows(records)
    assert [tuple(r.choices.values()) for r in rows] == [
        ("functional", "kaiming_uniform"), ("functional", "xavier"), ("nn", "kaiming_uniform"), ("nn", "xavier"),
    ]  # fmt: skip
    assert all(r.m("grad/worst_error_ratio") < 8 and r.tags["first_divergent"] == "none" for r in rows)
    assert all(len(r.series['act/std']) == 2 and len(r.series['back/std']) == 2 for r in rows)


def test_report_by_experiment_and_bad_run_id(sweep_store, tmp_path, capsys):
    _, uri = sweep_store
    assert report.main(["--tracking-uri", uri, "--experiment", "backprop-lab", "--out", str(tmp_path)]) == 0
    assert report.main(["--tracking-uri", uri, "no-such-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: run no-such-run: not found in sqlite:")


def test_report_script_runs(sweep_store, tmp_path):
    import subprocess
    import sys

    cwd, _ = sweep_store
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), "--out", str(tmp_path)], cwd=cwd, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").exists()


def test_the_report_pages_carry_their_figures(sweep_store, tmp_path):
    """Embedded, so that MLflow's artifact viewer shows them: no path relative to a folder it does not serve."""
    _, uri = sweep_store
    out = tmp_path / "report"
    assert report.main(["--tracking-uri", uri, "--out", str(out)]) == 0
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert page.count('<img src="data:image/png;base64,') == md.count("](data:image/png;base64,") == 5
