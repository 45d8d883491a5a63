"""Repeats: a sweep over seeds (`seed=range(5)` beside any other choice) read as one row per non-seed choice, each
number its mean with a 95% interval, and a plain statement where two rows cannot be told apart.

The interval is Student's t on the mean of the repeats (scipy.stats): with n runs, mean ± t(0.975, n - 1) · s / √n.
It says how well the repeats pin the mean down, at the noise they show; two rows whose intervals overlap are not
distinguishable at that noise (overlap is the conservative reading: non-overlap implies a difference, overlap
does not prove sameness).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Optional

from backprop_lab import objectives

SEED = "seed"
CONFIDENCE = 0.95
# the numbers a row shows and what they are called in a sentence
COMPARED = {"time/backward_vs_autograd": "backward × autograd", "time/backward_ms": "backward ms",
            objectives.METRIC: "objective"}  # fmt: skip


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int

    def overlaps(self, other: Interval) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def format(self, fmt: str = ".3g") -> str:
        return f"{self.mean:{fmt}} [{self.lo:{fmt}}, {self.hi:{fmt}}]"


def interval(values: list[float]) -> Optional[Interval]:
    """The mean and its t interval; None with fewer than two values, or any that is not finite (the row then shows
    the mean as it is, nan or inf: a repeat that overflowed is not averaged away)."""
    from scipy import stats

    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2 or len(finite) < len(values):
        return None
    mean = statistics.fmean(finite)
    half = stats.t.ppf((1 + CONFIDENCE) / 2, len(finite) - 1) * statistics.stdev(finite) / math.sqrt(len(finite))
    return Interval(mean, mean - half, mean + half, len(finite))


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
    """One row per non-seed choice: its metrics the means over its FINISHED repeats, with their intervals in
    `intervals`, its series the mean by layer, its status the count of each status, its tags those all agree on;
    `grad/all_close` the share of all its repeats (FAILED ones included) whose check found every node close."""
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(_others(row), []).append(row)
    out = []
    for key, members in groups.items():
        finished = [r for r in members if r.status == "FINISHED"] or members
        names = sorted({k for r in finished for k in r.metrics})
        metrics = {k: statistics.fmean([r.metrics[k] for r in finished if k in r.metrics]) for k in names}
        intervals = {k: i for k in names if (i := interval([r.metrics[k] for r in finished if k in r.metrics]))}
        closes = [r.status == "FINISHED" and r.metrics.get("grad/all_close") == 1.0 for r in members]
        metrics["grad/all_close"] = sum(closes) / len(members)  # a share, counted: no interval of FINISHED ones
        intervals.pop("grad/all_close", None)
        statuses = [r.status for r in members]
        status = statuses[0] if len(set(statuses)) == 1 else ", ".join(
            f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))  # fmt: skip
        tags = {k: v for k, v in members[0].tags.items() if all(r.tags.get(k) == v for r in members)}
        series = {}
        for k in sorted({k for r in finished for k in r.series}):
            steps = _by_step([r.series[k] for r in finished if r.series.get(k)])
            series[k] = [(step, statistics.fmean(v)) for step, v in steps.items()]
            intervals |= {at_step(k, step): i for step, v in steps.items() if (i := interval(v))}
        out.append(replace(members[0], run_id=f"{len(members)} runs", choices=dict(key), status=status,
                           metrics=metrics, tags=tags, series=series, intervals=intervals,
                           runs=len(members)))  # fmt: skip
    return out


def indistinguishable(rows: list) -> list[str]:
    """For each compared number: the pairs of rows, next to each other when sorted by it, whose intervals overlap;
    and, for the ratio to autograd, the rows whose interval holds 1 (as fast as autograd, at this noise)."""
    lines = []
    for key, what in COMPARED.items():
        known = sorted((r for r in rows if key in r.intervals), key=lambda r: r.intervals[key].mean)
        for a, b in zip(known, known[1:]):
            if a.intervals[key].overlaps(b.intervals[key]):
                lines.append(f"{what}: {a.label} {a.intervals[key].format()} and {b.label} "
                             f"{b.intervals[key].format()} overlap: not distinguishable at this noise")  # fmt: skip
        if key == "time/backward_vs_autograd":  # autograd's own row is 1 by construction
            lines += [f"{what}: {r.label} {r.intervals[key].format()} holds 1: not distinguishable from autograd"
                      for r in known if r.intervals[key].lo <= 1 <= r.intervals[key].hi
                      and r.params.get("impl.name") != "autograd"]  # fmt: skip
    return lines
