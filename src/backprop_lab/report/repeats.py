"""Repeats: a sweep over seeds (`seed=range(5)` beside any other choice) read as one row per non-seed choice, each
number its mean with a 95% interval, and a plain statement where two rows cannot be told apart.

The interval is Student's t (scipy.stats) with n - 1 degrees of freedom, on the scale the quantity lives on:
- a positive, multiplicative quantity (a time, a std, a ratio: `positive`) on the log scale: the geometric mean
  exp(m) with exp(m ± t · s / √n), m and s the mean and std of the logs. It cannot reach zero or below, and a
  repeat twice as slow weighs as much as one twice as fast;
- any other (a mean, a log-growth, a count) as the plain mean ± t · s / √n.
It says how well the repeats pin the centre down, at the noise they show; two rows whose intervals overlap are not
distinguishable at that noise (overlap is the conservative reading: non-overlap implies a difference, overlap
does not prove sameness). With 2 or 3 repeats t is 12.7 or 4.3: the interval is wide by nature, and says so.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass, replace
from typing import Optional

from backprop_lab.config import objectives
from backprop_lab.core.names import (
    ACT_STD_LOG10_GROWTH,
    GRAD_ALL_CLOSE,
    REFERENCE_IMPL,
    TIME_BACKWARD_MS,
    TIME_BACKWARD_VS_AUTOGRAD,
    TIME_BACKWARD_VS_AUTOGRAD_NO_XG,
)

SEED = "seed"
CONFIDENCE = 0.95
FEW = 3  # an interval from this many repeats or fewer says it is wide by nature
# the numbers a row shows and what they are called in a sentence
COMPARED = {TIME_BACKWARD_VS_AUTOGRAD: "backward × autograd (same x.g)",
            TIME_BACKWARD_VS_AUTOGRAD_NO_XG: "backward × autograd (no x.g)", TIME_BACKWARD_MS: "backward ms",
            objectives.METRIC: "objective"}  # fmt: skip
# how a positive quantity's metric name ends: times, spreads, ratios, sizes (a log-growth or a mean can be negative)
POSITIVE_ENDINGS = ("_ms", "_s", "_mb", "_gflop", "std", "std_raw", "ratio", "rel_diff", "vs_autograd",
                    "vs_autograd_no_xg", "loss", "mean_sq")  # fmt: skip


def positive(key: str) -> bool:
    """Whether the metric `key` (or a series' `key@step`) is a positive quantity, whose interval is on the log
    scale."""
    return key.split("@")[0].endswith(POSITIVE_ENDINGS)


def describe(key: str) -> str:
    """What a row of repeats shows for `key`, for a table's header."""
    return "geometric mean [95% interval] (on the log scale)" if positive(key) else "mean [95% interval]"


@dataclass(frozen=True)
class Interval:
    center: float  # the mean; the geometric mean where `log`
    lo: float
    hi: float
    n: int
    log: bool = False  # computed on the logs

    def overlaps(self, other: Interval) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def format(self, fmt: str = ".3g", say_few: bool = True) -> str:
        """`centre [lo, hi]`, and `(n=3, wide by nature)` from FEW repeats unless `say_few` is False (a table whose
        header says it). A bound that `fmt` would round to 0 gets two significant digits: it is not 0."""
        def shown(x: float) -> str:
            text = format(x, fmt)
            return format(x, ".2g") if x != 0 and float(text) == 0 else text

        few = f" (n={self.n}, wide by nature)" if say_few and self.n <= FEW else ""
        return f"{shown(self.center)} [{shown(self.lo)}, {shown(self.hi)}]{few}"

    def errorbar(self) -> tuple[float, float]:
        """(below, above) the centre: matplotlib's asymmetric error bar, as the table states the interval."""
        return self.center - self.lo, self.hi - self.center


def few_lines(rows: list) -> list[str]:
    """Lines under a table whose rows are repeats: what each kind of number is (every column that shows an
    interval, the answer's too), and, from FEW repeats or fewer, that the intervals are wide by nature."""
    intervals = [i for row in rows for i in getattr(row, "intervals", {}).values()]
    if not intervals:
        return []
    kinds = [f"{describe(key)} for {what}" for key, what in ((TIME_BACKWARD_MS, "times, stds and ratios"),
                                                             (ACT_STD_LOG10_GROWTH, "log-growths and means"))]
    lines = [f"a row of repeats shows the {kinds[0]}, the {kinds[1]}"]
    few = sorted({i.n for i in intervals if i.n <= FEW})
    if few:
        counts = " or ".join(str(n) for n in few)
        factors = ", ".join(f"{_t(n):.1f} at n={n}" for n in few)
        lines.append(f"intervals from {counts} repeats: wide by nature (Student's t is {factors}); more seeds narrow "
                     "them")  # fmt: skip
    return lines


def _t(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1))


def interval(values: list[float], log: bool = False, one_more: bool = False) -> Optional[Interval]:
    """The mean and its t interval, of the logs where `log` (then exp of each); with `one_more`, where one more
    repeat's value would fall instead, mean ± t · s · √(1 + 1/n): the interval to set a single run elsewhere beside
    (a course's printed number, from one seed). None with fewer than two values, any that is not finite (the row
    then shows the mean as it is, nan or inf: a repeat that overflowed is not averaged away), or, where `log`, any
    that is not positive (a zero has no log)."""
    if len(values) < 2 or not all(map(_finite, values)) or (log and min(values) <= 0):
        return None
    scaled = [math.log(v) for v in values] if log else values
    try:
        centre, sd = statistics.fmean(scaled), statistics.stdev(scaled)
    except OverflowError:  # values near the largest double: no interval, the row shows their mean
        return None
    spread = math.sqrt(1 + 1 / len(scaled)) if one_more else 1 / math.sqrt(len(scaled))
    half = _t(len(scaled)) * sd * spread
    if log:
        return Interval(math.exp(centre), math.exp(centre - half), math.exp(centre + half), len(values), log=True)
    return Interval(centre, centre - half, centre + half, len(values))


def summarized(key: str, values: list[float]) -> tuple[float, Optional[Interval]]:
    """The centre a row of repeats shows for `key` (its interval's, so the table and the figures agree; the plain
    mean where there is no interval), and the interval."""
    found = interval(values, positive(key))
    return (found.center if found else mean(values)), found


def _finite(value: float) -> bool:
    """Finite, and not MLflow's stand-in for an infinity (it stores one as the largest double)."""
    return math.isfinite(value) and abs(value) < sys.float_info.max


def mean(values: list[float]) -> float:
    """The plain mean, each value divided first: values near the largest double (an overflowed repeat, which MLflow
    stores as that double) give a mean near it, or inf, not an error."""
    return sum(v / len(values) for v in values)


def repeated(rows: list) -> bool:
    """The rows are repeats: the seed is among the swept choices, and some choice has more than one seed."""
    if not rows or SEED not in rows[0].choices:
        return False
    keys = [_others(r) for r in rows]
    return len(set(keys)) < len(keys)


def _others(row) -> tuple:
    return tuple((k, v) for k, v in row.choices.items() if k != SEED)


def _by_step(points: list[list[tuple[int, float]]]) -> dict[int, list[float]]:
    by_step: dict[int, list[float]] = {}
    for series in points:
        for step, value in series:
            by_step.setdefault(step, []).append(value)
    return dict(sorted(by_step.items()))


def at_step(key: str, step: int) -> str:
    """Where a grouped row keeps the interval of a series at one layer, beside its metrics' intervals."""
    return f"{key}@{step}"


def grouped(rows: list) -> list:
    """One row per non-seed choice: its metrics the centres (`summarized`) over its FINISHED repeats, with their
    intervals in `intervals`, its series the centre by layer, its status the count of each status, its tags those
    all agree on; `grad/all_close` the share of all its repeats (FAILED ones included) whose check found every node
    close."""
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(_others(row), []).append(row)
    out = []
    for key, members in groups.items():
        finished = [r for r in members if r.status == "FINISHED"] or members
        names = sorted({k for r in finished for k in r.metrics})
        summaries = {k: summarized(k, [r.metrics[k] for r in finished if k in r.metrics]) for k in names}
        metrics = {k: center for k, (center, _) in summaries.items()}
        intervals = {k: i for k, (_, i) in summaries.items() if i}
        closes = [r.status == "FINISHED" and r.metrics.get(GRAD_ALL_CLOSE) == 1.0 for r in members]
        metrics[GRAD_ALL_CLOSE] = sum(closes) / len(members)  # a share, counted: no interval of FINISHED ones
        intervals.pop(GRAD_ALL_CLOSE, None)
        statuses = [r.status for r in members]
        status = statuses[0] if len(set(statuses)) == 1 else ", ".join(
            f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))  # fmt: skip
        tags = {k: v for k, v in members[0].tags.items() if all(r.tags.get(k) == v for r in members)}
        series = {}
        for k in sorted({k for r in finished for k in r.series}):
            steps = {step: summarized(at_step(k, step), v)
                     for step, v in _by_step([r.series[k] for r in finished if r.series.get(k)]).items()}  # fmt: skip
            series[k] = [(step, center) for step, (center, _) in steps.items()]
            intervals |= {at_step(k, step): i for step, (_, i) in steps.items() if i}
        values = {k: [r.metrics[k] for r in finished if k in r.metrics] for k in names}
        out.append(replace(members[0], run_id=f"{len(members)} runs", choices=dict(key), status=status,
                           metrics=metrics, tags=tags, series=series, intervals=intervals, values=values,
                           runs=len(members)))  # fmt: skip
    return out


def indistinguishable(rows: list) -> list[str]:
    """For each compared number: the pairs of rows, next to each other when sorted by it, whose intervals overlap;
    and, for the ratio to autograd, the rows whose interval holds 1 (as fast as autograd, at this noise)."""
    lines = []
    for key, what in COMPARED.items():
        known = sorted((r for r in rows if key in r.intervals), key=lambda r: r.intervals[key].center)
        for a, b in zip(known, known[1:]):
            if a.intervals[key].overlaps(b.intervals[key]):
                lines.append(f"{what}: {a.label} {a.intervals[key].format()} and {b.label} "
                             f"{b.intervals[key].format()} overlap: not distinguishable at this noise")  # fmt: skip
        if key == TIME_BACKWARD_VS_AUTOGRAD:  # autograd's own row is 1 by construction (both baselines are its)
            lines += [f"{what}: {r.label} {r.intervals[key].format()} holds 1: not distinguishable from autograd"
                      for r in known if r.intervals[key].lo <= 1 <= r.intervals[key].hi
                      and r.params.get("impl.name") != REFERENCE_IMPL]  # fmt: skip
    return lines
