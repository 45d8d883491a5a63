"""The sweep report, from MLflow alone: one row per job, its figures, written to a folder and logged on the parent.

python scripts/report.py                    # the latest sweep in the default store
python scripts/report.py RUN_ID --out DIR   # a given sweep's parent run
python scripts/report.py --experiment NAME  # every job run of an experiment

The report floor (above study/, below sweeps/): the rows and tables here; answers.py (each study's answer; the deep
stack's, beside the course's printed numbers, in deep_stack.py), cells.py, repeats.py (intervals),
report_figures.py, pages.py (the files). Its command line is cli/report.py.

Add a study's answer to answers.py, a figure to report_figures.py; nothing here computes a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from backprop_lab.config.objectives import METRIC as OBJECTIVE
from backprop_lab.config.objectives import for_search
from backprop_lab.core import tables
from backprop_lab.core.names import (
    GRAD_ALL_CLOSE,
    GRAD_WORST_ERROR_RATIO,
    NONE,
    PARENT_TAG,
    TIME_BACKWARD_GFLOP,
    TIME_BACKWARD_MS,
    TIME_BACKWARD_VS_AUTOGRAD,
    TIME_FORWARD_MS,
    USER_IMPL,
    VERDICT_WORDS,
)
from backprop_lab.core.tables import MISSING
from backprop_lab.report import answers, cells, deep_stack, repeats, report_figures
from backprop_lab.report.cells import verdict as _verdict
from backprop_lab.tracking import run_names
from backprop_lab.tracking.runs import RunRecord

CODE_KEY = answers.CODE_KEY  # a sweep over users' files
# the numbers every row shows: a FINISHED run lacking one is named under the table
SHOWN = (GRAD_ALL_CLOSE, GRAD_WORST_ERROR_RATIO, TIME_FORWARD_MS, TIME_BACKWARD_MS, TIME_BACKWARD_VS_AUTOGRAD)


@dataclass
class Row:
    run_id: str
    choices: dict[str, str]  # the swept params, e.g. {"impl.name": "nn", "init.scheme": "xavier"}
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]
    series: dict[str, list[tuple[int, float]]]  # by layer: act/std, back/std and their theory/ predictions
    params: dict[str, str]
    gflop: Optional[float] = None  # the backward pass's matrix products, for the scaling figure
    intervals: dict[str, repeats.Interval] = field(default_factory=dict)  # a row of repeats: each mean's interval
    values: dict[str, list[float]] = field(default_factory=dict)  # a row of repeats: each metric's, repeat by repeat
    runs: int = 1  # the repeats this row stands for
    reused: bool = False  # a run of an earlier sweep that this (resumed) one counts, not one it ran

    @property
    def status_cell(self) -> str:
        return f"{self.status} (reused)" if self.reused else self.status

    @property
    def label(self) -> str:
        return "·".join(self.choices.values()) or self.run_id[:8]

    def m(self, key: str) -> Optional[float]:
        return self.metrics.get(key)

    def each(self, key: str) -> list[float]:
        """The metric's value in each run the row stands for ([] where none logged it)."""
        return self.values.get(key, []) if self.runs > 1 else [self.metrics[key]] if key in self.metrics else []


MEMORY_KEY = "impl.memory_limit_gib"


def varying_params(records: list[RunRecord]) -> list[str]:
    """Params whose value differs between the runs that logged them, read from the runs (an experiment's runs need
    not be one sweep's, so not from sweep.swept_keys): the row's choices (the name's parts when nothing differs).
    A run that failed before logging one (the device, resolved once the job runs) varies nothing."""
    keys = sorted({k for r in records for k in r.params})
    varying = [k for k in keys if len({r.params[k] for r in records if k in r.params}) > 1]
    if CODE_KEY in varying and not any(r.params.get("impl.name") == USER_IMPL for r in records):
        varying.remove(CODE_KEY)  # a built-in's code follows its name: a choice only where it is a user's file
    if cells.INPUT_GRAD_PARAM in varying and _follows_impl(records, cells.INPUT_GRAD_PARAM):
        varying.remove(cells.INPUT_GRAD_PARAM)  # the notebook's four compute x.g whatever the option: their name says
    if MEMORY_KEY in varying and not any(MEMORY_KEY in r.tags.get("overrides", "") for r in records):
        varying.remove(MEMORY_KEY)  # the memory each process had to spare, where no run chose one: not a choice
    named = run_names.NAME_KEYS.values()  # what a run name is made of: its parts (a bug only where there is one)
    return varying or [k for k in named if any(r.params.get(k, NONE) != NONE for r in records)]


def _follows_impl(records: list[RunRecord], key: str) -> bool:
    """Every implementation of the runs logged one value of `key`: it says nothing their names do not."""
    values: dict[str, set] = {}
    for r in records:
        values.setdefault(r.params.get("impl.name", ""), set()).add(r.params.get(key))
    return all(len(v) == 1 for v in values.values())


def to_rows(records: list[RunRecord], sweep_id: Optional[str] = None) -> list[Row]:
    """A row per run; for a sweep over seeds beside other choices, a row per non-seed choice (repeats.py). With the
    sweep's id, a run another sweep ran (reused by this one, resumed) is marked so."""
    keys = varying_params(records)
    rows = [Row(r.run_id, {k: r.params.get(k, "-") for k in keys}, r.status, r.metrics, r.tags, r.series, r.params,
                r.metrics.get(TIME_BACKWARD_GFLOP), reused=bool(sweep_id) and r.tags.get(PARENT_TAG) != sweep_id)
            for r in records]  # fmt: skip
    if repeats.repeated(rows):
        rows = repeats.grouped(rows)
    return sorted(rows, key=lambda row: list(row.choices.values()))


def _header(key: str) -> str:
    """A group's choice by the group (`impl`), a user's file as the submission, any other swept value by its key
    (`init.gain`)."""
    if key == CODE_KEY:
        return "submission"
    return key.split(".")[0] if key in run_names.NAME_KEYS.values() else key


def _best_first(row: Row) -> tuple[int, float]:
    value = for_search(row.m(OBJECTIVE))
    return (0, value) if value is not None else (1, 0.0)


def _divergent(row: Row) -> str:
    """The first node not close; a row of repeats whose runs disagree on it says so."""
    return row.tags.get("first_divergent", "varies" if row.runs > 1 else "-")


def is_submissions(rows: list[Row]) -> bool:
    """A sweep over users' files (impl=user impl.code=a.py,b.py, or a folder): a row per submission."""
    return any(CODE_KEY in row.choices for row in rows)


def _graded(row: Row) -> str:
    """The check's verdict in a word, as the run's verdict line says it."""
    verdict = row.tags.get("grad.verdict")
    return VERDICT_WORDS.get(verdict, verdict or MISSING)


def _diagnosis(row: Row) -> str:
    """What is wrong at the first divergent node, in words; for a run that failed, why, in a line."""
    if row.status != "FINISHED" and "error" in row.tags:
        return failure_line(row.tags["error"], row.choices.get(CODE_KEY, ""))
    return row.tags.get("grad.mistake_words", "-")


def failure_line(error: str, code: str) -> str:
    """A run's `error` tag in one line: its first, less the error's type and the file's path when it is the user's
    (the row names the file); a syntax error's first line says only that, so its last (the error) and its line too."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()] or ["-"]
    first = lines[0].removeprefix("UserCodeError: ")
    name = Path(code).name
    if name and f"{name}: " in first:
        first = first.split(f"{name}: ", 1)[1]
    if first.endswith(":") and len(lines) > 1:
        where = re.search(r'line (\d+)', error)
        first = f"{first} {lines[-1]}" + (f" (line {where.group(1)})" if where else "")
    return first


def table(rows: list[Row], title: str) -> tables.Table:
    """Every run: one column per swept choice (`impl`, `init`, ...), left-aligned, then the results; a sweep over
    users' files, each submission's verdict and what is wrong or why it failed."""
    choices = [_header(key) for key in rows[0].choices]
    if is_submissions(rows):
        ratio, ratios = cells.ratio_column(rows)
        headers = [*choices, "status", "verdict", "first divergent", "diagnosis (or why it failed)", ratio]
        body = [[*r.choices.values(), r.status_cell, _graded(r), r.tags.get("first_divergent", "-"), _diagnosis(r), x]
                for r, x in zip(rows, ratios)]  # fmt: skip
        return tables.Table(title, headers, body, align="l" * len(choices) + "rrrl")  # the diagnosis is text
    searched = any(r.m(OBJECTIVE) is not None for r in rows)
    if searched:  # best trial first
        rows = sorted(rows, key=_best_first)
    ratios, ratio_cells = cells.ratio_columns(rows)
    repeated = any(r.runs > 1 for r in rows)
    timing = f"({repeats.describe(TIME_BACKWARD_MS)})" if repeated else "(median ± IQR)"
    headers = [*choices, *(["runs"] if repeated else []), "status", *(["objective"] if searched else []),
               "all close", "first divergent", "worst ratio", f"forward ms {timing}", f"backward ms {timing}",
               *ratios]  # fmt: skip
    body = [[*map(cells.choice, r.choices.values()), *([str(r.runs)] if repeated else []), r.status_cell,
             *([cells.value(r, OBJECTIVE, ".4g")] if searched else []), _verdict(r), _divergent(r),
             cells.value(r, GRAD_WORST_ERROR_RATIO), cells.ms(r, "forward"), cells.ms(r, "backward"), *x]
            for r, x in zip(rows, ratio_cells)]  # fmt: skip
    return tables.Table(title, headers, body, align="l" * len(choices))


def report_tables(rows: list[Row], title: str) -> list[tables.Table]:
    """The study's answer first, titled by its question (where there is a study: answers.py), then every run."""
    return [*answers.answer_tables(rows, _header), table(rows, title)]


def tables_markdown(rows: list[Row], title: str, level: int = 1) -> str:
    """The tables as markdown, each under a heading of `level`: the report's page, and a sweep's description."""
    return "\n\n".join(tables.to_markdown(t, level) for t in report_tables(rows, title))


def with_notes_markdown(rows: list[Row], title: str, level: int = 1) -> str:
    """The tables, then the sentences that say what their numbers are (note_lines): the report's page, a sweep's
    description."""
    notes = [f"- {line}" for line in note_lines(rows)]
    return "\n".join([tables_markdown(rows, title, level), "", *notes])


def note_lines(rows: list[Row]) -> list[str]:
    """The sentences under the tables: what finished runs did not log, what each ratio is against, which figures'
    lines coincide, and which rows of repeats cannot be told apart."""
    return (missing_lines(rows) + cells.baseline_lines(rows) + report_figures.coinciding_lines(rows)
            + repeats.few_lines(rows) + repeats.indistinguishable(rows) + deep_stack.note_lines(rows))  # fmt: skip


def missing_lines(rows: list[Row]) -> list[str]:
    """Each FINISHED row lacking a number the report shows (its table cell reads n/a; its figures leave it out). A run
    that failed lacks them for the reason its status gives."""
    lines = []
    for row in rows:
        lacking = [key for key in SHOWN if row.status == "FINISHED" and row.m(key) is None]
        if lacking:
            lines.append(f"{MISSING}: {row.label} logged no {', '.join(lacking)} (another version of the project?)")
    return lines
