"""A report row's numbers as table cells, the same in every table of the report and in a sweep's description: one
run's value, or a row of repeats' with its interval; an infinity as `inf`; a ratio to autograd with its baseline."""

from __future__ import annotations

from typing import Optional

from backprop_lab.core.names import GRAD_ALL_CLOSE, TIME_BACKWARD_VS_AUTOGRAD, TIME_BACKWARD_VS_AUTOGRAD_NO_XG
from backprop_lab.core.tables import MISSING, number

RATIO = TIME_BACKWARD_VS_AUTOGRAD  # the backward over autograd's run as it was: with the input's gradient or not
# the backward over autograd without the input's gradient, one baseline for every row: rows compare with each other
COMMON_RATIO = TIME_BACKWARD_VS_AUTOGRAD_NO_XG
COMMON_HEADER = "× autograd (no x.g), every row"
INPUT_GRAD_PARAM = "impl.compute_input_grad"  # what the run computed (the notebook's four always do)
# what each baseline is, in the report's notes: a ratio's header or cell names it in short
BASELINES = {"+x.g": "autograd computing the input's gradient (x.g) too, as the row's backward did",
             "no x.g": "autograd without the input's gradient, as the row's backward"}  # fmt: skip


def value(row, key: str, fmt: str = ".3g") -> str:
    """A run's number, or a row of repeats' central value with its 95% interval."""
    # how few repeats make each interval is said once, under the table (repeats.few_lines), not in every cell
    return row.intervals[key].format(fmt, say_few=False) if key in row.intervals else number(row.m(key), fmt)


def ms(row, name: str) -> str:
    """A run's median ± IQR; a row of repeats' central median with its interval."""
    if f"time/{name}_ms" in row.intervals:
        return value(row, f"time/{name}_ms", ".2f")
    median, iqr = row.m(f"time/{name}_ms"), row.m(f"time/{name}_iqr_ms")
    if median is None:
        return MISSING
    return f"{number(median, '.2f')} {spread(iqr)}"


def spread(iqr_ms) -> str:
    """A timing's IQR beside its median; an IQR of exactly 0 comes from a single block (a pass slower than the
    timing's budget), which has no spread to show, and says so rather than show a zero."""
    return NO_SPREAD if iqr_ms == 0 else f"± {number(iqr_ms, '.2f')}"


NO_SPREAD = "(one block: no spread)"


def verdict(row) -> str:
    if row.runs > 1 and row.m(GRAD_ALL_CLOSE) is not None:
        return f"{round(row.m(GRAD_ALL_CLOSE) * row.runs)}/{row.runs}"
    if row.m(GRAD_ALL_CLOSE) == 0.0 and row.tags.get("grad.verdict") == "inconclusive":
        return "inconclusive"  # no node known wrong, some beyond the run's precision: never a yes or a NO
    return {1.0: "yes", 0.0: "NO"}.get(row.m(GRAD_ALL_CLOSE), MISSING)


def baseline(row) -> str:
    """The autograd a row's `time/backward_vs_autograd` is against: the one computing what its backward computed."""
    return "+x.g" if row.params.get(INPUT_GRAD_PARAM) == "true" else "no x.g"


def shared_baseline(rows) -> Optional[str]:
    """The baseline every row's ratio is against (a row without a ratio, a failed run's, has none), or None where
    they differ."""
    baselines = {baseline(r) for r in rows if r.m(RATIO) is not None}
    return baselines.pop() if len(baselines) == 1 else None


def ratio_column(rows) -> tuple[str, list[str]]:
    """The header and cells of `× autograd`: the baseline in the header when the rows share it, in each cell when
    they do not (their ratios then compare each row with a different autograd)."""
    cells = [value(r, RATIO, ".2f") for r in rows]
    shared = shared_baseline(rows)
    if shared:
        return f"× autograd ({shared})", cells
    return "× autograd (its baseline)", [c if c == MISSING else f"{c} ({baseline(r)})" for c, r in zip(cells, rows)]


def ratio_columns(rows) -> tuple[list[str], list[list[str]]]:
    """The headers and each row's cells of the ratios to autograd: against the row's own baseline, and against the
    common one where the runs logged it."""
    header, own = ratio_column(rows)
    if not any(r.m(COMMON_RATIO) is not None for r in rows):
        return [header], [[x] for x in own]
    return [header, COMMON_HEADER], [[x, value(r, COMMON_RATIO, ".2f")] for x, r in zip(own, rows)]


def baseline_lines(rows) -> list[str]:
    """What each baseline a table names is, for the notes under it."""
    shown = sorted({baseline(r) for r in rows if r.m(RATIO) is not None})
    lines = [f"× autograd ({b}): the backward's median time over {BASELINES[b]}" for b in shown]
    if any(r.m(COMMON_RATIO) is not None for r in rows):
        lines.append(f"{COMMON_HEADER}: over autograd without the input's gradient, for every row alike (the "
                     "notebook's four compute it, so theirs include its cost)")
    return lines


def choice(text: str) -> str:
    """A searched number as 4 significant digits (its param keeps every digit); anything else as it is."""
    try:
        return text if float(text).is_integer() else f"{float(text):.4g}"
    except ValueError:
        return text


def divided(row, key: str, by: int, fmt: str = ".3g") -> str:
    """`key` over `by` (a total over layers as a rate per layer), with its interval for a row of repeats."""
    if key in row.intervals:
        i = row.intervals[key]
        return f"{i.center / by:{fmt}} [{i.lo / by:{fmt}}, {i.hi / by:{fmt}}]"
    x = row.m(key)
    return number(None if x is None else x / by, fmt)
