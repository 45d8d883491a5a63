"""The deep stack's answer (`+experiment=deep_stack`, the course's 02b_initializing): for each weight scale, where
the activations stop being finite and where they underflow to exactly 0, the std after the last square layer and the
first layer's mean square, each beside theory; then the course's printed numbers beside the lab's repeats.

A printed number came from one seed on one machine, so it is set beside where one more seed's value would fall
(repeats.interval with one_more: 95%, on the log scale for a positive quantity), with the range the seeds gave;
seeds that all gave one value say so, and are compared as that value. One outside is explained, not tuned away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from backprop_lab.core import tables
from backprop_lab.core.names import (
    STACK_FIRST_MEAN_SQ,
    STACK_FIRST_NONFINITE,
    STACK_FIRST_RELU_MEAN_SQ,
    STACK_FIRST_ZERO,
    STACK_LAST_STD,
    STACK_THEORY_FIRST_MEAN_SQ,
    STACK_THEORY_FIRST_RELU_MEAN_SQ,
    STACK_THEORY_LAST_STD,
)
from backprop_lab.core.tables import MISSING
from backprop_lab.report import repeats

SCALE = "scale"  # the param that names a run's weight scale (conf/scale/)
NOTEBOOK = "course-v3's nbs/dl2/02b_initializing.ipynb"
# The notebook multiplies one matrix 100 times (`for i in range(100): x = a @ x`); the lab's stack draws each layer
# its own, as a net does. Said under the anchors, and where a printed number falls outside.
ONE_MATRIX = ("the notebook multiplies one matrix `a` 100 times; the lab's stack draws a matrix per layer, as a net "
              "does: after 100 layers a std is a product of 100 independent factors here, of one matrix's largest "
              "eigenvalues there (another version of the notebook printed 5.5337 for the same cell)")  # fmt: skip


@dataclass(frozen=True)
class Anchor:
    scale: str  # the option of conf/scale/
    key: str  # the metric set beside it
    course: float  # what the notebook printed, as the lab measures it
    what: str
    theory: Optional[str] = None  # the metric theory's value is logged as
    root: bool = False  # the notebook printed the square root of the mean square (`math.sqrt(sqr/100)`)
    why_outside: str = ""  # what differs between the notebook's computation and the lab's, where that matters
    printed: str = ""  # as the notebook printed it, where that differs from `course`


# Where the first entry overflows: at 22.6x a layer the typical entry reaches float32's largest (3.4e38) near layer
# 28.4, so the largest of the entries decides on which side of a layer's boundary the overflow falls.
MORE_ENTRIES = ("the notebook's one vector holds 512 entries, the lab's 100 rows 51,200: the largest of 51,200 normal "
                "draws is about 4.4 stds, of 512 about 3.3; at 22.6x a layer that moves the first overflow by a tenth "
                "of a layer (near 28.0 against 28.1), enough to tip it across a layer's boundary")  # fmt: skip

ANCHORS = (
    Anchor("randn", STACK_FIRST_NONFINITE, 29, "first layer not finite (the notebook counts from 0: layer i + 1)",
           why_outside=MORE_ENTRIES, printed="i = 28"),
    Anchor("hundredth", STACK_LAST_STD, 0.0, "std after the last layer (the notebook: mean and std exactly 0)",
           STACK_THEORY_LAST_STD),
    Anchor("magic", STACK_LAST_STD, 0.9270, "std after the last layer", STACK_THEORY_LAST_STD, why_outside=ONE_MATRIX),
    Anchor("randn", STACK_FIRST_MEAN_SQ, 516.79, "mean square of a @ x (100 draws)", STACK_THEORY_FIRST_MEAN_SQ,
           why_outside="the notebook's 100 draws each had a matrix of its own; the lab's 100 rows share one"),
    Anchor("randn_relu", STACK_FIRST_RELU_MEAN_SQ, 257.37, "mean square after the ReLU",
           STACK_THEORY_FIRST_RELU_MEAN_SQ),
    Anchor("kaiming_relu", STACK_FIRST_RELU_MEAN_SQ, 1.0055, "root mean square after the ReLU",
           STACK_THEORY_FIRST_RELU_MEAN_SQ, root=True),
)  # fmt: skip


def applies(rows) -> bool:
    """Rows of the deep stack's weight scales (the runs' `scale` param is set)."""
    return any(r.params.get(SCALE, "null") != "null" and r.m(STACK_LAST_STD) is not None for r in rows)


def _scale(row) -> str:
    return row.params.get(SCALE, "")


def _values(row, key: str, root: bool = False) -> list[float]:
    """The row's finite values of `key`, repeat by repeat (as square roots where `root`)."""
    values = [v for v in row.each(key) if math.isfinite(v)]
    return [math.sqrt(v) for v in values] if root else values


def _spread(values: list[float], key: str) -> Optional[repeats.Interval]:
    """Where one more seed would fall; None for fewer than two values, or values all alike (said as such)."""
    if len(set(values)) < 2:
        return None
    return repeats.interval(values, repeats.positive(key), one_more=True)


def _cell(row, key: str, root: bool = False, fmt: str = ".4g") -> str:
    """`centre [where one more seed would fall] (range lo-hi)`, or `value (all n alike)`; a layer not reached in
    some repeat says in how many it was reached; a positive quantity that is 0 in some repeat has no interval on
    the log scale, and shows its range."""
    values, runs = _values(row, key, root), len(row.each(key))
    if not values:
        return f"none in {runs}" if runs else MISSING
    reached = f", in {len(values)} of {runs}" if len(values) < runs else ""
    if len(values) == 1:
        return tables.number(values[0], fmt) + reached
    if len(set(values)) == 1:
        return f"{tables.number(values[0], fmt)} (all {len(values)} alike{reached})"
    span = f"range {min(values):{fmt}}-{max(values):{fmt}}{reached}"
    found = _spread(values, key)
    return f"{found.format(fmt, say_few=False)} ({span})" if found else span


def _theory(row, key: Optional[str], root: bool = False) -> str:
    value = row.m(key) if key else None
    if value is None:
        return MISSING
    return tables.number(math.sqrt(value) if root else value, ".4g")


def answer(rows) -> tuple[list[str], list[list[str]]]:
    """A row per scale: the layers where the activations first overflow and first vanish, the std after the last
    square layer and the first layer's mean square before and after the ReLU, each beside theory."""
    headers = ["scale", "first layer not finite", "first layer all 0", "std after the last layer", "theory",
               "mean square of a @ x", "theory", "after the ReLU", "theory"]  # fmt: skip
    body = [[_scale(r), _cell(r, STACK_FIRST_NONFINITE, fmt=".3g"), _cell(r, STACK_FIRST_ZERO, fmt=".3g"),
             _cell(r, STACK_LAST_STD), _theory(r, STACK_THEORY_LAST_STD), _cell(r, STACK_FIRST_MEAN_SQ),
             _theory(r, STACK_THEORY_FIRST_MEAN_SQ),
             _cell(r, STACK_FIRST_RELU_MEAN_SQ) if r.m(STACK_FIRST_RELU_MEAN_SQ) is not None else "(no ReLU)",
             _theory(r, STACK_THEORY_FIRST_RELU_MEAN_SQ)] for r in rows]  # fmt: skip
    return headers, body


def _row(rows, scale: str):
    return next((r for r in rows if _scale(r) == scale), None)


def inside(anchor: Anchor, rows) -> Optional[bool]:
    """The printed number within where one more seed would fall, or equal to the value every seed gave; None where
    the seeds cannot say (fewer than two, or a positive quantity 0 in some)."""
    row = _row(rows, anchor.scale)
    values = _values(row, anchor.key, anchor.root) if row else []
    if len(values) >= 2 and len(set(values)) == 1:
        return anchor.course == values[0]
    found = _spread(values, anchor.key)
    return None if found is None else found.lo <= anchor.course <= found.hi


def anchors_table(rows) -> tables.Table:
    """The course's printed numbers, each beside theory and where one more of the lab's seeds would fall."""
    body = []
    for anchor in ANCHORS:
        row, judged = _row(rows, anchor.scale), inside(anchor, rows)
        verdict = {True: "inside", False: "OUTSIDE", None: "n/a (the seeds cannot say: too few, or 0 in some)"}[judged]
        if judged is False and anchor.why_outside:
            verdict += f": {anchor.why_outside}"
        lab = _cell(row, anchor.key, anchor.root) if row else f"{MISSING} (no {anchor.scale} runs)"
        body.append([anchor.scale, anchor.what, anchor.printed or f"{anchor.course:g}",
                     _theory(row, anchor.theory, anchor.root) if row else MISSING, lab, verdict])  # fmt: skip
    headers = ["scale", "the number", f"{NOTEBOOK} printed", "theory", "the lab's seeds: 95% for one more [range]",
               "the course's number"]  # fmt: skip
    return tables.Table("the course's printed numbers beside the lab's repeats", headers, body, align="llrrll")


def note_lines(rows) -> list[str]:
    return [f"where one more seed would fall: {repeats.CONFIDENCE:.0%}, Student's t over the seeds (of the logs for a "
            "std or a mean square); a layer the activations never reach counts as none",
            f"the lab's stack against the notebook's: {ONE_MATRIX}"] if applies(rows) else []  # fmt: skip


def lead(rows) -> str:
    """The answer in a sentence: where randn overflows, ×0.01 vanishes, the magic number's last std, and how many
    printed numbers the repeats bracket."""
    said = []
    for scale, key, words in (("randn", STACK_FIRST_NONFINITE, "randn overflows at layer"),
                              ("hundredth", STACK_FIRST_ZERO, "×0.01 is all 0 from layer"),
                              ("magic", STACK_LAST_STD, "/√512 ends at std")):  # fmt: skip
        row = _row(rows, scale)
        values = _values(row, key) if row else []
        if values:
            low, high = min(values), max(values)
            said.append(f"{words} {low:.3g}" + (f"-{high:.3g}" if high != low else ""))
    judged = [inside(a, rows) for a in ANCHORS]
    bracketed = f"{sum(j is True for j in judged)} of {sum(j is not None for j in judged)} course numbers inside"
    return f"{'; '.join(said)}; {bracketed} the lab's 95% for one more seed." if said else ""
