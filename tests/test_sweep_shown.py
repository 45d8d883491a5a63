"""What a researcher sees of a sweep before opening a run: the parent's and the jobs' names tell two studies apart, and
an infinity reads `inf` wherever the project shows it (MLflow stores it as the largest double)."""

from __future__ import annotations

import math
import sys

from helpers import composed

from backprop_lab import api
from backprop_lab.sweeps import parent as sweep_parent
from backprop_lab.tracking import run_names
from backprop_lab.tracking.runs import RunRecord

STORED_INF = sys.float_info.max  # what MLflow gives back for a metric logged as inf


def test_two_sweeps_of_one_preset_have_different_parent_names():
    swept = ["init", "seed"]
    default = run_names.parent_name(["+experiment=init_study"], swept)
    smaller = run_names.parent_name(["+experiment=init_study", "data.n_train=500"], swept)
    assert default == "init_study"
    assert smaller == "init_study data.n_train=500"


def test_a_parent_name_leaves_out_where_runs_go_and_leads_with_what_is_swept():
    overrides = ["data.n_train=500", "impl=functional,nn", "tracking.uri=sqlite:///elsewhere.db", "sweep.resume=true"]
    assert run_names.parent_name(overrides, ["impl"]) == "impl=functional,nn data.n_train=500"
    assert run_names.parent_name(["+experiment=bug_hunt", "tracking.experiment=mine"], ["bug"]) == "bug_hunt"


def test_a_run_name_says_its_training_rows_when_not_the_datasets_default():
    assert run_names.run_name(composed("data=synthetic")) == "module·kaiming_uniform·synthetic"
    assert run_names.run_name(composed("data=synthetic", "data.n_train=500")) == \
        "module·kaiming_uniform·synthetic·n_train=500"  # fmt: skip
    assert run_names.run_name(composed("data=mnist", "data.n_train=500"), ["init"]) == \
        "kaiming_uniform·module·mnist·n_train=500"  # fmt: skip
    swept = run_names.run_name(composed("data=synthetic", "data.n_train=500"), ["data.n_train"])
    assert swept == "n_train=500·module·kaiming_uniform·synthetic"  # once, first, as a swept key is


def _child(run_id: str, impl: str, worst_ratio: float) -> RunRecord:
    metrics = {"grad/worst_error_ratio": worst_ratio, "grad/worst_max_rel_diff": worst_ratio,
               "grad/all_close": float(math.isfinite(worst_ratio) and worst_ratio < 1e3)}  # fmt: skip
    return RunRecord(run_id, f"{impl}·xavier", "FINISHED", {"impl.name": impl, "bug.name": "relu_unmasked"}, metrics,
                     {"first_divergent": "relu1" if worst_ratio > 1e3 else "none"})  # fmt: skip


def test_an_infinite_check_reads_inf_in_the_parents_description():
    parent = RunRecord("p" * 32, "bug_hunt", "RUNNING", {}, {}, {})
    children = [_child("a" * 32, "functional", STORED_INF), _child("b" * 32, "nn", 3.0)]
    text = sweep_parent.description(parent, children, {"jobs": 2, "verdict.ok": 1, "verdict.wrong": 1})
    assert text.startswith("**2 jobs: 1 ok, 1 WRONG**\n\n")  # an impl study whose runs logged no times: no winner
    assert "| inf |" in text
    assert "1.797" not in text and "e+308" not in text


def test_a_runs_frame_reads_an_infinity_as_inf():
    row = api.flat_row(RunRecord("id1", "x", "FINISHED", {}, {"grad/worst_error_ratio": STORED_INF, "loss": 2.0},
                                 {}, {"act/std": [(1, -STORED_INF)]}))  # fmt: skip
    assert row["metrics.grad/worst_error_ratio"] == math.inf and row["metrics.act/std@1"] == -math.inf
    assert row["metrics.loss"] == 2.0


def test_an_infinite_aggregate_is_logged_under_a_name_that_says_so():
    children = [_child("a" * 32, "functional", STORED_INF), _child("b" * 32, "nn", 3.0)]
    children[0].metrics["time/backward_vs_autograd"], children[1].metrics["time/backward_vs_autograd"] = 1.5, 0.9
    out = sweep_parent.aggregates(children)
    assert out == {"sweep/worst_error_ratio_is_inf": 1.0, "sweep/worst_max_rel_diff_is_inf": 1.0,
                   "sweep/best_backward_vs_autograd": 0.9, "sweep/worst_backward_vs_autograd": 1.5}  # fmt: skip
    assert sweep_parent.aggregates(children[1:])["sweep/worst_error_ratio"] == 3.0


def _timed(run_id: str, impl: str, backward_ms: float, ok: bool) -> RunRecord:
    metrics = {"grad/all_close": float(ok), "time/backward_ms": backward_ms, "time/backward_iqr_ms": 0.1,
               "time/backward_vs_autograd": backward_ms / 4.0}  # fmt: skip
    return RunRecord(run_id, impl, "FINISHED", {"impl.name": impl, "impl.compute_input_grad": "true"}, metrics, {})


def test_a_parents_first_line_gives_the_studys_winner_in_a_sentence():
    """The UI shows a description's first two rows: the fastest backward the check confirmed is named there (a
    faster one that is WRONG is not the winner), with its ratio and the autograd it is against."""
    parent = RunRecord("p" * 32, "impl_study", "RUNNING", {}, {}, {})
    children = [_timed("a" * 32, "functional", 3.0, True), _timed("b" * 32, "lean", 2.0, True),
                _timed("c" * 32, "broken", 1.0, False)]  # fmt: skip
    first = sweep_parent.description(parent, children, {"jobs": 3, "verdict.ok": 2, "verdict.wrong": 1}).splitlines()[0]
    assert first.startswith("**3 jobs: 2 ok, 1 WRONG** Fastest confirmed backward: impl.name=lean, 2.00")
    assert first.endswith("0.50× autograd's (+x.g).")


def test_an_init_studys_first_line_names_the_std_nearest_one_and_the_farthest():
    def run(init: str, std: float) -> RunRecord:
        return RunRecord(init, init, "FINISHED", {"init.scheme": init}, {"act/last_hidden_std": std}, {})

    parent = RunRecord("p" * 32, "init_study", "RUNNING", {}, {}, {})
    children = [run("normal", 1e-8), run("kaiming", 0.8), run("xavier", 0.3)]
    first = sweep_parent.description(parent, children, {"jobs": 3}).splitlines()[0]
    assert "Last hidden std nearest 1: init.scheme=kaiming (0.8); farthest: init.scheme=normal (1e-08)." in first
