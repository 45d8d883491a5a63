"""Repeats with confidence: a seed sweep read as one row per non-seed choice, means with 95% t intervals (of the logs
for positive quantities), and a statement where rows cannot be told apart; on made-up rows (fast) and on a real seed
sweep (slow)."""

from __future__ import annotations

import math
import re
import statistics

import pytest
from helpers import FAST, cli

from backprop_lab import report
from backprop_lab.cli import report as report_cli
from backprop_lab.report import Row, cells, repeats
from backprop_lab.tracking import runs


def row(impl: str, seed: int, ratio: float, ms: float, close: float = 1.0, status: str = "FINISHED") -> Row:
    metrics = {"time/backward_vs_autograd": ratio, "time/backward_ms": ms, "grad/all_close": close}
    series = {"act/std": [(1, ms), (2, 2 * ms)]}
    return Row(f"{impl}{seed}", {"impl.name": impl, "seed": str(seed)}, status, metrics,
               {"first_divergent": "none"}, series, {"impl.name": impl, "seed": str(seed)})  # fmt: skip


def test_the_interval_is_students_t_on_the_mean():
    found = repeats.interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert (found.center, found.n, found.log) == (2.0, 3, False)
    assert found.lo == pytest.approx(2 - half) and found.hi == pytest.approx(2 + half)
    assert repeats.interval([1.0]) is None and repeats.interval([1.0, math.nan]) is None  # one value: no interval


def test_a_positive_quantity_s_interval_is_the_t_interval_of_its_logs():
    times = [22.8, 5.0, 60.0]  # the spread seen across seeds: the plain t interval reaches far below zero
    assert repeats.interval(times).lo < 0
    found = repeats.interval(times, log=True)
    logs = [math.log(t) for t in times]
    half = 4.302652729911275 * statistics.stdev(logs) / math.sqrt(3)
    assert found.log and found.center == pytest.approx(math.exp(statistics.fmean(logs)))  # the geometric mean
    assert found.lo == pytest.approx(found.center / math.exp(half))
    assert found.hi == pytest.approx(found.center * math.exp(half))
    assert 0 < found.lo < min(times) and found.errorbar() == (found.center - found.lo, found.hi - found.center)
    assert repeats.interval([1.0, 0.0], log=True) is None  # a zero has no log: the row shows the plain mean
    assert found.format().endswith("(n=3, wide by nature)")  # 2 or 3 repeats: said next to it, or under the table
    assert "wide" not in repeats.interval([1.0, 2.0, 3.0, 4.0], log=True).format()
    seen = repeats.Interval(0.99, 0.000434, 2243.04, 3, log=True)  # a loaded machine's 0.01 s timings
    assert seen.format(".2f") == "0.99 [0.00043, 2243.04] (n=3, wide by nature)"  # its bound is not 0.00
    assert seen.format(".2f", say_few=False) == "0.99 [0.00043, 2243.04]"  # for a table whose header says it


def test_times_stds_and_ratios_are_positive_means_and_log_growths_are_not():
    assert all(map(repeats.positive, ["time/backward_ms", "time/forward_iqr_ms", "time/backward_vs_autograd",
                                      "time/backward_vs_autograd_no_xg", "act/std", "back/std@3", "init/w_std",
                                      "act/last_hidden_std", "grad/worst_error_ratio", "wall/run_s", "loss"]))
    assert not any(map(repeats.positive, ["act/mean", "act/std_log10_growth", "back/std_log10_growth@2",
                                          "init/b_mean", "search/objective", "grad/inconclusive_nodes"]))
    assert repeats.describe("time/backward_ms") == "geometric mean [95% interval] (on the log scale)"
    assert repeats.describe("act/std_log10_growth") == "mean [95% interval]"


def test_a_repeat_study_s_intervals_are_positive_for_positive_quantities():
    """Records with the spread seen in issue 21 (backward 142 [-218, 502] ms before): every interval of a positive
    quantity stays above zero, the table's centre is its interval's, and a log-growth keeps its plain mean."""
    rows = [row("normal", s, r, ms) for s, (r, ms) in enumerate(((0.4, 30.0), (3.0, 90.0), (1.1, 400.0)))]
    growths = (-2.0, 0.5, 3.0)
    for r, growth, std in zip(rows, growths, (1e-9, 1.0, 1e6)):
        r.metrics |= {"act/std_log10_growth": growth, "act/last_hidden_std": std, "time/forward_ms": std * 10}
        r.series["back/std"] = [(1, std), (2, std / 1e3)]
    (grouped,) = repeats.grouped(rows)
    positive = {k: i for k, i in grouped.intervals.items() if repeats.positive(k)}
    assert {"time/backward_ms", "time/backward_vs_autograd", "act/last_hidden_std", "back/std@2"} <= set(positive)
    assert all(0 < i.lo < i.center < i.hi and i.log for i in positive.values()), positive
    assert all(grouped.m(k) == i.center for k, i in positive.items() if "@" not in k)
    assert dict(grouped.series["back/std"])[2] == grouped.intervals["back/std@2"].center
    growth = grouped.intervals["act/std_log10_growth"]
    assert not growth.log and growth.center == pytest.approx(statistics.fmean(growths)) and growth.lo < 0


def test_rows_of_repeats_are_grouped_by_their_other_choices():
    rows = [row("lean", s, r, 1.0 + s / 10) for s, r in enumerate((0.90, 0.92, 0.91))]
    rows += [row("module", s, r, 3.0, close=c) for s, (r, c) in enumerate(((2.9, 1.0), (3.1, 0.0), (3.0, 1.0)))]
    assert repeats.repeated(rows) and not repeats.repeated(rows[::3])  # one seed per choice: nothing to group
    lean, module = repeats.grouped(rows)
    assert lean.choices == {"impl.name": "lean"} and lean.runs == 3
    assert lean.m("time/backward_vs_autograd") == pytest.approx(statistics.geometric_mean([0.90, 0.92, 0.91]))
    assert lean.intervals["time/backward_vs_autograd"] == repeats.interval([0.90, 0.92, 0.91], log=True)
    means = [statistics.geometric_mean([1.0, 1.1, 1.2]), statistics.geometric_mean([2.0, 2.2, 2.4])]
    assert lean.series["act/std"] == [(1, pytest.approx(means[0])), (2, pytest.approx(means[1]))]
    assert repeats.at_step("act/std", 2) in lean.intervals  # the figure's band
    assert report._verdict(module) == "2/3"  # one repeat's check failed: said, not averaged away


def test_overlapping_intervals_are_said_to_be_indistinguishable():
    rows = [row("lean", s, r, 1.0 + s / 10) for s, r in enumerate((0.90, 0.92, 0.91))]
    rows += [row("layers", s, r, 1.1 + s / 10) for s, r in enumerate((0.95, 0.85, 0.93))]
    rows += [row("module", s, r, 9.0 + s / 10) for s, r in enumerate((2.9, 3.1, 3.0))]
    lines = repeats.indistinguishable(repeats.grouped(rows))
    assert any(line.startswith("backward × autograd (same x.g):") and "lean" in line and "layers" in line
               and line.endswith("not distinguishable at this noise") for line in lines)  # fmt: skip
    assert not any("module" in line and "× autograd" in line for line in lines)  # 3x is 3x at this noise
    assert any(line.startswith("backward ms: lean") and "layers" in line for line in lines)


def test_a_status_that_differs_between_repeats_is_counted():
    rows = [row("lean", 0, 0.9, 1.0), row("lean", 1, 0.9, 1.0, status="FAILED")]
    (grouped,) = repeats.grouped(rows)
    assert grouped.status == "1 FAILED, 1 FINISHED"
    assert report._verdict(grouped) == "1/2"  # a FAILED repeat is not a close one


def test_a_repeat_that_is_not_finite_is_not_averaged_away():
    rows = [row("lean", 0, 0.9, 1.0), row("lean", 1, 0.91, 1.0), row("lean", 2, math.nan, 1.0)]
    (grouped,) = repeats.grouped(rows)
    assert "time/backward_vs_autograd" not in grouped.intervals
    assert cells.value(grouped, "time/backward_vs_autograd") == "nan"


def test_one_run_without_a_divergent_tag_shows_a_dash():
    single = row("lean", 0, 0.9, 1.0)
    single.tags = {}
    assert report._divergent(single) == "-"


@pytest.mark.slow
def test_a_seed_sweep_reports_means_intervals_and_error_bars(tmp_path):
    """The report's tables (their layout is the report's) show each repeated number as its interval, every one of a
    positive quantity above zero, and name the interval's kind; the parent's description the same."""
    done = cli(tmp_path, "-m", "impl=lean,module", "seed=range(3)", *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert report_cli.main(["--tracking-uri", uri, "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert repeats.describe("time/backward_ms") in text  # geometric mean [95% interval] (on the log scale)
    shown = text.replace("\\[", "[").replace("\\]", "]")  # a cell's brackets escaped: markdown shows them as they are
    rows = [line for line in shown.splitlines() if line.startswith(("| lean |", "| module |"))]
    bounds = [float(b) for line in rows for b in re.findall(r"\[(\S+), (\S+)\]", line) for b in b]
    assert rows and bounds and min(bounds) > 0  # every interval shown is of a positive quantity: none reaches 0
    _, records = runs.sweep_records(uri, runs.latest_sweep(uri, "backprop-lab"))
    lean = [r.metrics["time/backward_vs_autograd"] for r in records if r.params["impl.name"] == "lean"]
    expected = repeats.interval(lean, log=True).format(".2f", say_few=False)  # how few: said once, under the table
    assert any(expected in line for line in rows if line.startswith("| lean |"))
    assert "- intervals from 3 repeats: wide by nature" in text
    parent = runs.sweep_records(uri, runs.latest_sweep(uri, "backprop-lab"))[0]
    assert "[95% interval]" in parent.tags["mlflow.note.content"]  # the parent's description: the same table


def test_repeats_lacking_a_number_are_shown_with_it_marked():
    """A choice whose repeats never logged the ratio (another version of the project) reads n/a in the table and
    its note, and its bar is left out of that figure; one repeat lacking it leaves the mean of the others."""
    from backprop_lab.report import report_figures

    rows = [row("lean", s, r, 1.0) for s, r in enumerate((0.90, 0.92, 0.91))]
    rows += [row("module", s, 3.0, 2.0) for s in range(3)]
    for r in rows:
        r.metrics |= {"grad/worst_error_ratio": 1.0, "time/forward_ms": 1.0}
    for r in rows[3:]:
        del r.metrics["time/backward_vs_autograd"]
    del rows[0].metrics["time/backward_vs_autograd"]
    lean, module = repeats.grouped(rows)
    assert lean.intervals["time/backward_vs_autograd"].n == 2 and "time/backward_vs_autograd" not in module.metrics
    (cells,) = [c for c in report.table([lean, module], "t").rows if c[0] == "module"]
    assert cells[-1] == "n/a"
    assert report.missing_lines([lean, module]) == [
        "n/a: module logged no time/backward_vs_autograd (another version of the project?)"]
    figure = report_figures.figures([lean, module])["backward_vs_autograd.png"]
    assert len(figure.axes[0].patches) == 1 and "\nleft out, n/a: module\n" in figure.axes[0].get_title()


def test_a_table_of_few_repeats_says_once_under_it_that_its_intervals_are_wide():
    from types import SimpleNamespace

    few = repeats.interval([1.0, 2.0, 4.0], log=True)
    rows = [SimpleNamespace(intervals={"time/backward_ms": few}), SimpleNamespace(intervals={})]
    kinds, line = repeats.few_lines(rows)
    assert "geometric mean [95% interval] (on the log scale) for times" in kinds and "mean [95% interval] for" in kinds
    assert line.startswith("intervals from 3 repeats: wide by nature") and "4.3 at n=3" in line
    four = repeats.interval([1.0, 2.0, 3.0, 4.0], log=True)
    assert len(repeats.few_lines([SimpleNamespace(intervals={"t": four})])) == 1  # what they are, not how few
    assert repeats.few_lines([SimpleNamespace(intervals={})]) == []
