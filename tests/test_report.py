"""The sweep report, from MLflow alone, on a real small sweep."""

from __future__ import annotations

import re

import preloaded
import pytest
from helpers import ROOT
from mlflow.tracking import MlflowClient

from backprop_lab import report
from backprop_lab.cli import USER_ERROR_EXIT
from backprop_lab.cli import report as report_cli
from backprop_lab.report import answers, report_figures
from backprop_lab.tracking import runs

pytestmark = pytest.mark.slow


@pytest.fixture
def sweep_store(small_sweep):
    return small_sweep


def test_report_of_the_latest_sweep(sweep_store, tmp_path, capsys):
    cwd, uri = sweep_store
    out = tmp_path / "report"
    assert report_cli.main(["--tracking-uri", uri, "--out", str(out)]) == 0
    names = {"report.md", "report.html", "backward_time.png", "backward_vs_autograd.png", "grad_check.png",
             "activation_std.png", "backward_std.png"}  # fmt: skip
    assert names <= {p.name for p in out.iterdir()}
    md = (out / "report.md").read_text()
    answer, every_run = (part.splitlines() for part in re.split(r"^# ", md, flags=re.M)[1:3])
    assert answer[0] == answers.question("init_study")  # the study's answer first: the sweep varies the init
    assert answer[2].startswith("| impl | init | last hidden std | predicted | forward log10 growth / layer")
    table = [line for line in every_run if line.startswith("| ")]
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
    assert report_cli.main(["--tracking-uri", uri, "--experiment", "backprop-lab", "--out", str(tmp_path)]) == 0
    assert report_cli.main(["--tracking-uri", uri, "no-such-run"]) == USER_ERROR_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: run no-such-run: not found in sqlite:")


def test_report_script_runs(sweep_store, tmp_path):
    import sys

    cwd, _ = sweep_store
    done = preloaded.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), "--out", str(tmp_path)], cwd=cwd, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").exists()


def test_the_report_pages_carry_their_figures(sweep_store, tmp_path):
    """The HTML embeds them (it stands alone); the markdown links them beside it, as MLflow's viewer strips data:
    URIs, and the folder is logged whole."""
    _, uri = sweep_store
    out = tmp_path / "report"
    assert report_cli.main(["--tracking-uri", uri, "--out", str(out)]) == 0
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert page.count('<img src="data:image/png;base64,') == md.count(".png)") == 5 and "data:" not in md
    parent = runs.latest_sweep(uri, "backprop-lab")
    logged = {f.path for f in MlflowClient(uri).list_artifacts(parent, "report")}
    assert {f"report/{name}" for name in re.findall(r"\]\(([^)]+\.png)\)", md)} <= logged


def _made_up_sweep(uri: str, children: list[tuple[dict, dict]]) -> str:
    """A sweep written straight into a store, as another version of the project might have: its parent's id. Each
    child is (params, metrics at step 0); every one also logs the by-layer series the figures draw."""
    from backprop_lab.core.names import PARENT_TAG, SWEEP_TAG

    client = MlflowClient(uri)
    experiment = client.create_experiment("backprop-lab")
    parent = client.create_run(experiment, tags={SWEEP_TAG: "parent", "overrides": "made up"}).info.run_id
    for i, (params, metrics) in enumerate(children):
        run = client.create_run(experiment, tags={PARENT_TAG: parent, "hydra.job.num": str(i),
                                                  "first_divergent": "none"}).info.run_id  # fmt: skip
        for key, value in params.items():
            client.log_param(run, key, value)
        for key, value in metrics.items():
            client.log_metric(run, key, value, step=0)
        for key in runs.SERIES:
            for layer in (1, 2):
                client.log_metric(run, key, 0.5 * layer, step=layer)
        client.set_terminated(run)
    client.set_terminated(parent)
    return parent


COMPLETE = {"grad/all_close": 1.0, "grad/worst_error_ratio": 2.0, "time/forward_ms": 1.0, "time/forward_iqr_ms": 0.1,
            "time/backward_ms": 2.0, "time/backward_iqr_ms": 0.2, "time/backward_vs_autograd": 1.1,
            "time/backward_gflop": 0.01}  # fmt: skip


def test_a_run_lacking_any_shown_number_is_reported_with_it_marked(tmp_path, store):
    """One child lacking each number the report reads, beside a complete one: every table cell, figure and note is
    made, the missing ones read n/a, and the figures name the runs they leave out."""
    lacking = [k for k in COMPLETE if k != "time/backward_gflop"]
    children = [({"impl.name": "complete", "check.factor": "8.0"}, COMPLETE)]
    children += [({"impl.name": f"no-{key}", "check.factor": "8.0"}, {k: v for k, v in COMPLETE.items() if k != key})
                 for key in lacking]  # fmt: skip
    parent = _made_up_sweep(store, children)
    out = tmp_path / "report"
    assert report_cli.main([parent, "--tracking-uri", store, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "n/a" not in rows["complete"]
    assert rows["no-time/backward_vs_autograd"].endswith("| n/a |")
    assert "| n/a | none |" in rows["no-grad/all_close"] and "1.00 ± n/a" in rows["no-time/forward_iqr_ms"]
    for key in ("grad/all_close", "grad/worst_error_ratio", "time/forward_ms", "time/backward_ms",
                "time/backward_vs_autograd"):  # fmt: skip
        assert f"- n/a: no-{key} logged no {key} (another version of the project?)" in md
    assert {"backward_time.png", "backward_vs_autograd.png", "grad_check.png"} <= {p.name for p in out.iterdir()}
    figures = report_figures.figures(report.to_rows(runs.sweep_records(store, parent)[1]))
    title = figures["backward_vs_autograd.png"].axes[0].get_title()
    assert title.endswith("left out, n/a: no-time/backward_vs_autograd")
    assert len(figures["backward_vs_autograd.png"].axes[0].patches) == len(children) - 1


def test_a_scaling_sweep_lacking_a_ratio_still_fits_and_says_so(tmp_path, store):
    children = [({"impl.name": impl, "data.n_train": str(n)},
                 {**COMPLETE, "time/backward_gflop": 0.01 * n, "time/backward_ms": 2.0 * n})
                for impl in ("autograd", "lean") for n in (1, 2, 4)]  # fmt: skip
    del children[3][1]["time/backward_vs_autograd"]  # lean's smallest problem
    parent = _made_up_sweep(store, children)
    assert report_cli.main([parent, "--tracking-uri", store, "--out", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "| lean | 1.00 | 0.01 | n/a | 0.04 | 1.10 |" in md  # the exponent; the missing ratio says n/a
    assert "scaling.png" in {p.name for p in tmp_path.iterdir()}


def test_factors_that_differ_draw_no_single_line():
    rows = [report.Row(str(i), {"check.factor": f}, "FINISHED", {"grad/worst_error_ratio": 2.0}, {}, {},
                       {"check.factor": f}) for i, f in enumerate(("8.0", "100.0"))]  # fmt: skip
    figure = report_figures.figures(rows)["grad_check.png"]
    assert "check.factor differs or is not logged: not drawn" in figure.axes[0].get_title()
    assert not figure.axes[0].lines


def test_ctrl_c_during_the_report_is_one_line(sweep_store, tmp_path):
    """A real SIGINT while the report works (its figures take a second or more): one line, exit 130."""
    import signal
    import subprocess
    import sys
    import time

    cwd, _ = sweep_store
    proc = preloaded.popen([sys.executable, str(ROOT / "scripts" / "report.py"), "--out", str(tmp_path)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for _ in range(600):  # its first output is the table: past the imports, into the work
        if proc.stdout.readline().strip().startswith("sweep"):
            break
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["interrupted: the report is not finished; what it wrote or logged so far may be "
                                "partial"]


def test_a_bug_hunt_row_whose_check_could_not_tell_says_inconclusive_not_caught():
    def bug_row(bug: str, close: float, verdict: str, first: str) -> report.Row:
        return report.Row(bug, {"bug.name": bug}, "FINISHED", {"grad/all_close": close, "grad/worst_error_ratio": 2.0},
                          {"first_divergent": first, "bug.expected_node": "act1", "grad.verdict": verdict}, {},
                          {"bug.name": bug})  # fmt: skip

    rows = [bug_row("caught", 0.0, "wrong", "act1"), bug_row("tiny_gain", 0.0, "inconclusive", "none"),
            bug_row("missed", 1.0, "ok", "none")]  # fmt: skip
    caught = {cells[0]: cells[1] for cells in report.report_tables(rows, "bug_hunt")[0].rows}
    assert caught == {"caught": "yes", "tiny_gain": "inconclusive", "missed": "NO, MISSED"}
    assert report._verdict(rows[1]) == "inconclusive" and report._verdict(rows[0]) == "NO"


def test_a_timing_from_a_single_block_says_it_has_no_spread():
    """An IQR of exactly 0 comes from one block (a pass slower than the timing's budget): no "± 0.00"."""
    from types import SimpleNamespace

    from backprop_lab.report import cells

    def row(iqr):
        metrics = {"time/backward_ms": 455.96, "time/backward_iqr_ms": iqr}
        return SimpleNamespace(intervals={}, m=metrics.get)

    assert cells.ms(row(0.0), "backward") == "455.96 (one block: no spread)"
    assert cells.ms(row(1.25), "backward") == "455.96 ± 1.25"
