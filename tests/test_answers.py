"""Each study's answer first, ratios that name their baseline, inf as inf, full precision in logged tables, and the
report's figures and pages (issue 21): from rows made here, no sweep run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from helpers import ROOT

from backprop_lab import report
from backprop_lab.core import names, tables
from backprop_lab.report import answers, cells, pages, report_figures
from backprop_lab.study.grad_check import NodeCheck, table
from backprop_lab.tracking import runs

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def row(choices: dict, metrics: dict, params: dict | None = None, series: dict | None = None,
        tags: dict | None = None) -> report.Row:  # fmt: skip
    return report.Row("-".join(choices.values()), choices, "FINISHED", metrics, tags or {"first_divergent": "none"},
                      series or {}, {**choices, **(params or {})})  # fmt: skip


def by_layer(measured: list[float], predicted: list[float], back: list[float], back_predicted: list[float]) -> dict:
    steps = range(1, len(measured) + 1)
    return {"act/std": list(zip(steps, measured)), "theory/act_std": list(zip(steps, predicted)),
            "back/std": list(zip(steps, back)), "theory/back_std": list(zip(steps, back_predicted))}  # fmt: skip


def test_every_preset_states_its_question_and_has_a_study():
    assert {s.preset for s in answers.STUDIES} == set(PRESETS)
    for preset in PRESETS:
        assert answers.question(preset).endswith("?")


def test_the_init_study_answers_with_the_signal_scale_against_theory():
    # 4 layers: 3 hidden (steps 1-3) and the output; theory's std 1 -> 0.1 over the hidden layers: -0.5 decades a layer
    series = by_layer([1.0, 0.3, 0.1, 0.05], [1.0, 0.32, 0.1, 0.04], [0.01, 0.1, 1.0, 2.0], [0.01, 0.1, 1.0, 2.0])
    metrics = {"act/last_hidden_std": 0.1, "act/std_log10_growth": -1.0, "back/std_log10_growth": -2.0}
    rows = [row({"init.scheme": scheme}, metrics, series=series) for scheme in ("xavier", "normal")]
    first, runs_table = report.report_tables(rows, "sweep")
    assert first.title == answers.question("init_study") and runs_table.title == "sweep"
    cells_by = dict(zip(first.headers, first.rows[0]))
    assert first.headers[:2] == ["init", "last hidden std"] and cells_by["last hidden std"] == "0.1"
    assert first.rows[0][2:] == ["0.1", "-0.5", "-0.5", "-1", "-1"]  # measured, predicted; forward, backward


@pytest.mark.parametrize("input_grads, header, cell", [
    (("true", "true"), "× autograd (+x.g)", "1.50"),
    (("false", "false"), "× autograd (no x.g)", "1.50"),
    (("true", "false"), "× autograd (its baseline)", "1.50 (+x.g)"),
])  # fmt: skip
def test_every_table_and_figure_of_the_ratio_names_its_baseline(input_grads, header, cell):
    timed = {"grad/all_close": 1.0, "time/forward_ms": 1.0, "time/backward_ms": 3.0, "time/backward_autograd_ms": 2.0,
             "time/backward_vs_autograd": 1.5}  # fmt: skip
    rows = [row({"impl.name": name}, timed, {"impl.compute_input_grad": xg})
            for name, xg in zip(("module", "lean"), input_grads)]  # fmt: skip
    answer, every_run = report.report_tables(rows, "sweep")
    for shown in (answer, every_run):
        assert header in shown.headers and shown.rows[0][shown.headers.index(header)] == cell
        assert not any(h.startswith("× autograd (no x.g), every") for h in shown.headers)  # none logged: no column
    assert answer.rows[0][answer.headers.index("computes x.g")] == ("yes" if input_grads[0] == "true" else "no")
    notes = report.note_lines(rows)
    assert all(any(line.startswith(f"× autograd ({b})") for line in notes) for b in {cells.baseline(r) for r in rows})
    figure = report_figures.figures(rows)["backward_vs_autograd.png"].axes[0]
    names_baseline = figure.get_ylabel() + " ".join(t.get_text() for t in figure.get_xticklabels())
    assert all(f"({cells.baseline(r)})" in names_baseline for r in rows)


def test_the_common_baseline_is_a_column_where_the_runs_logged_it():
    rows = [row({"impl.name": n}, {"time/backward_vs_autograd": x, cells.COMMON_RATIO: y},
                {"impl.compute_input_grad": g})
            for n, x, y, g in (("module", 1.1, 3.3, "true"), ("lean", 0.9, 0.9, "false"))]  # fmt: skip
    for shown in report.report_tables(rows, "sweep"):
        column = shown.headers.index(cells.COMMON_HEADER)
        assert [r[column] for r in shown.rows] == ["3.30", "0.90"]


def test_an_infinity_shows_as_inf_never_as_the_largest_double():
    stored = 1.7976931348623157e308  # what MLflow gives back for inf
    assert tables.number(stored) == tables.number(math.inf) == "inf" and tables.number(-stored) == "-inf"
    metrics = {"grad/all_close": 0.0, "grad/worst_error_ratio": stored, "time/backward_ms": stored,
               "time/backward_vs_autograd": stored}  # fmt: skip
    bugs = [row({"bug.name": b}, metrics, tags={"first_divergent": "act1", "bug.expected_node": "act1",
                                                 "grad.verdict": "wrong", "grad.mistake_words": "the mask"})
            for b in ("relu_unmasked", "stale_accumulation")]  # fmt: skip
    text = report.tables_markdown(bugs, "bug hunt")
    assert "inf" in text and "1.79" not in text and "e+308" not in text


def test_the_bug_hunt_answers_caught_node_and_diagnosis_first():
    bug = row({"bug.name": "relu_unmasked"}, {"grad/all_close": 0.0},
              tags={"first_divergent": "act1", "bug.expected_node": "act1", "grad.verdict": "wrong",
                    "grad.mistake_words": "the ReLU's mask is missing"})  # fmt: skip
    answer = report.report_tables([bug], "bug hunt")[0]
    assert answer.title == answers.question("bug_hunt")
    assert answer.headers == ["bug", "caught", "first divergent", "expected", "where expected", "diagnosis"]
    assert answer.rows == [["relu_unmasked", "yes", "act1", "act1", "yes", "the ReLU's mask is missing"]]


def test_the_scaling_study_answers_with_exponents():
    rows = [row({"impl.name": impl, "data.n_train": str(n)},
                {"time/backward_ms": 2.0 * n ** slope, "time/backward_vs_autograd": 1.0 if impl == "autograd" else 0.5})
            for impl, slope in (("autograd", 1.0), ("lean", 0.5)) for n in (1, 4, 16)]  # fmt: skip
    for r in rows:
        r.gflop = 0.01 * float(r.choices["data.n_train"])
    answer = report.report_tables(rows, "scaling")[0]
    assert answer.title == answers.question("scaling_study")
    assert [r[:2] for r in answer.rows] == [["autograd", "1.00"], ["lean", "0.50"]]


def test_the_search_answers_with_its_best_trial():
    from backprop_lab.config.objectives import METRIC

    trials = (("0.5", "1.0", 0.2), ("0.687", "1.07", 0.003))
    rows = [row({"model.relu_shift": s, "init.gain": g}, {METRIC: o, "act/last_hidden_std": 1.0 + o},
                tags={"hydra.job.num": str(i)}) for i, (s, g, o) in enumerate(trials)]
    answer = report.report_tables(rows, "search")[0]
    assert answer.title == answers.question("shift_search")
    assert answer.rows[0][:4] == ["1", "0.003", "0.687", "1.07"]


def test_grad_check_json_keeps_every_digit(store):
    """MLflow's log_table writes 10 decimals and inf as null; the table's floats go as exact text."""
    from mlflow.tracking import MlflowClient

    from backprop_lab import tracking

    check = NodeCheck("w1", (2,), (2,), False, 1e-11, 2.91e-11, math.inf, 1e-300, 0.5, 8.0, True, True, True)
    client = MlflowClient(store)
    run_id = client.create_run(client.create_experiment("t")).info.run_id
    tracking.log_table(table([check]), "grad_check.json", run_id, store)
    logged = json.loads(Path(client.download_artifacts(run_id, "grad_check.json")).read_text())
    back = dict(zip(logged["columns"], logged["data"][0]))
    assert float(back["max_abs_diff"]) == 1e-11 and float(back["max_rel_diff"]) == 2.91e-11
    assert float(back["error"]) == math.inf and float(back["autograd_error"]) == 1e-300
    assert back["exact"] is False


def test_the_by_layer_figures_have_whole_layers_and_say_when_lines_coincide():
    series = by_layer([1.0, 0.5], [1.0, 0.5], [0.2, 1.0], [0.2, 1.0])
    rows = [row({"impl.name": n}, {"time/backward_ms": 1.0}, series=series) for n in ("module", "lean")]
    figures = report_figures.figures(rows)
    for name in ("activation_std.png", "backward_std.png"):
        ax = figures[name].axes[0]
        assert len(ax.get_lines()) == 3  # measured, predicted, the unit line: drawn once for both runs
        assert "coincide, drawn once" in ax.get_title()
        ax.figure.canvas.draw()  # ticks are placed at drawing
        assert all(float(t).is_integer() for t in ax.get_xticks())
    assert report_figures.coinciding_lines(rows) == ["forward half by layer: the 2 runs' lines coincide, drawn once",
                                                     "backward half by layer: the 2 runs' lines coincide, drawn once"]
    rows[1].series = by_layer([1.0, 0.4], [1.0, 0.5], [0.2, 1.0], [0.2, 1.0])
    assert len(report_figures.figures(rows)["activation_std.png"].axes[0].get_lines()) == 5
    for figure in report_figures.figures(rows).values():
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes if ax.axison)


def test_the_markdown_links_its_figures_and_the_html_embeds_them(tmp_path):
    series = by_layer([1.0, 0.5], [1.0, 0.5], [0.2, 1.0], [0.2, 1.0])
    rows = [row({"init.scheme": n}, {"time/backward_ms": 1.0}, series=series) for n in ("xavier", "normal")]
    written = pages.write(rows, "sweep", tmp_path)
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    pngs = sorted(p.name for p in written if p.suffix == ".png")
    assert sorted(re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)) == pngs and "data:" not in md
    assert page.count('<img src="data:image/png;base64,') == len(pngs)


def test_docs_cite_only_metrics_a_run_logs():
    logged = set(names.CONTRACT) | set(runs.SERIES) | {"time/backward_gflop"}
    cited = set(re.findall(r"\b((?:data|init|act|back|grad|time|theory)/[a-z0-9_]+)", (ROOT / "docs" / "questions.md")
                           .read_text()))  # fmt: skip
    assert cited and cited <= logged, cited - logged
