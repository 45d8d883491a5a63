"""Each study's answer, where a researcher looks first (the report's first table, the sweep parent's description):
the question its preset asks, on the `# Question:` line of conf/experiment/<preset>.yaml, and the numbers that
answer it. The study is told by what the rows vary, so an ad-hoc sweep (`init=xavier,normal`) gets its study's
answer too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from backprop_lab.config.objectives import METRIC as OBJECTIVE
from backprop_lab.config.objectives import for_search
from backprop_lab.core import tables
from backprop_lab.core.names import (
    ACT_LAST_HIDDEN_STD,
    ACT_STD,
    ACT_STD_LOG10_GROWTH,
    BACK_STD_LOG10_GROWTH,
    JOB_NUM_TAG,
    THEORY_ACT_STD,
    THEORY_BACK_STD,
    TIME_BACKWARD_MS,
)
from backprop_lab.core.tables import MISSING, number
from backprop_lab.report import cells, deep_stack

QUESTION = "# Question:"
BUG_KEY = "bug.name"
CODE_KEY = "impl.code"  # a sweep over users' files: the teacher's table is the answer already


def question(preset: str) -> str:
    """The question the preset states, read from its file (stated there once)."""
    text = (resources.files("backprop_lab") / "conf" / "experiment" / f"{preset}.yaml").read_text()
    return next(line.removeprefix(QUESTION).strip() for line in text.splitlines() if line.startswith(QUESTION))


def _hidden(row) -> int:
    """The hidden layers of the row's model: every layer of its by-layer series but the output."""
    return max(len(row.series.get(ACT_STD, [])) - 1, 0)


def _predicted(row, key: str, layer: int) -> Optional[float]:
    return dict(row.series.get(key, [])).get(layer)


def _growth_predicted(row, key: str, backward: bool) -> str:
    """Theory's decades of growth per layer across the hidden layers, in the direction the signal travels."""
    import math

    n = _hidden(row)
    first, last = _predicted(row, key, 1), _predicted(row, key, n)
    if n < 2 or not first or not last or not all(map(math.isfinite, (first, last))):
        return MISSING
    start, end = (last, first) if backward else (first, last)
    return number(math.log10(end / start) / (n - 1))


def _growth(row, key: str) -> str:
    n = _hidden(row)
    return cells.divided(row, key, n - 1) if n >= 2 else MISSING


def init_answer(rows) -> tuple[list[str], list[list[str]]]:
    headers = ["last hidden std", "predicted", "forward log10 growth / layer", "predicted",
               "backward log10 growth / layer", "predicted"]  # fmt: skip
    out = [[cells.value(r, ACT_LAST_HIDDEN_STD), number(_predicted(r, THEORY_ACT_STD, _hidden(r))),
            _growth(r, ACT_STD_LOG10_GROWTH), _growth_predicted(r, THEORY_ACT_STD, backward=False),
            _growth(r, BACK_STD_LOG10_GROWTH), _growth_predicted(r, THEORY_BACK_STD, backward=True)]
           for r in rows]  # fmt: skip
    return headers, out


def impl_answer(rows) -> tuple[list[str], list[list[str]]]:
    ratios, ratio_cells = cells.ratio_columns(rows)
    headers = ["all close", "computes x.g", "forward ms", "backward ms", "autograd's backward ms (its baseline)",
               *ratios]  # fmt: skip
    out = [[cells.verdict(r), "yes" if cells.baseline(r) == "+x.g" else "no", cells.ms(r, "forward"),
            cells.ms(r, "backward"), cells.ms(r, "backward_autograd"), *x] for r, x in zip(rows, ratio_cells)]
    return headers, out


def bug_answer(rows) -> tuple[list[str], list[list[str]]]:
    headers = ["caught", "first divergent", "expected", "where expected", "diagnosis"]
    caught = {"NO": "yes", "yes": "NO, MISSED", "inconclusive": "inconclusive"}  # by the check's verdict
    out = [[caught.get(cells.verdict(r), MISSING), r.tags.get("first_divergent", "-"),
            r.tags.get("bug.expected_node", "-"),
            "yes" if r.tags.get("first_divergent") == r.tags.get("bug.expected_node") else "NO",
            r.tags.get("grad.mistake_words", "-")] for r in rows]  # fmt: skip
    return headers, out


def _by_impl(rows) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.choices.get("impl.name", ""), []).append(r)
    return out


def scaling_answer(rows) -> tuple[list[str], list[list[str]]]:
    """One row per implementation: the fitted exponent, and the ratio to autograd at the smallest and largest
    problem (the rows then are implementations, not runs: `choices` says so)."""
    from backprop_lab.report.report_figures import scaling_fits

    fits = scaling_fits(rows)
    headers = ["exponent: backward ms ∝ GFLOP^k", "smallest problem, GFLOP", "× autograd there",
               "largest problem, GFLOP", "× autograd there"]  # fmt: skip
    out = []
    for impl, mine in _by_impl(rows).items():
        if impl not in fits:
            continue
        sized = sorted((r for r in mine if r.gflop), key=lambda r: r.gflop)
        header, ratios = cells.ratio_column([sized[0], sized[-1]])
        out.append([impl, f"{fits[impl][0]:.2f}", f"{sized[0].gflop:.3g}", ratios[0], f"{sized[-1].gflop:.3g}",
                    ratios[1]])  # fmt: skip
        headers[2] = headers[4] = header + " there"
    return ["impl", *headers], out


def _best_trial(rows) -> tuple[Optional[object], list]:
    """The trial of least objective, and every trial that scored (finished, with a finite objective)."""
    scored = [r for r in rows if r.status == "FINISHED" and for_search(r.m(OBJECTIVE)) is not None]
    return (min(scored, key=lambda r: r.m(OBJECTIVE)) if scored else None), scored


def search_answer(rows) -> tuple[list[str], list[list[str]]]:
    best, scored = _best_trial(rows)
    if best is None:
        return ["best trial"], [[f"none of {len(rows)} trials scored"]]
    keys = list(best.choices)
    headers = ["best trial", "objective", *keys, "last hidden std", "trials scored"]
    out = [[best.tags.get(JOB_NUM_TAG, best.run_id[:8]), number(best.m(OBJECTIVE), ".4g"),
            *(best.params.get(k, best.choices[k]) for k in keys), cells.value(best, ACT_LAST_HIDDEN_STD),
            f"{len(scored)} of {len(rows)}"]]  # fmt: skip
    return headers, out


def _named(row) -> str:
    return ", ".join(f"{k}={cells.choice(v)}" for k, v in row.choices.items())


def init_lead(rows) -> str:
    """The init whose last hidden std stays nearest 1 (the scale the lesson keeps), and the one farthest from it."""
    import math

    sized = [r for r in rows if (r.m(ACT_LAST_HIDDEN_STD) or 0) > 0]
    if not sized:
        return ""
    off = sorted(sized, key=lambda r: abs(math.log10(r.m(ACT_LAST_HIDDEN_STD))))
    far = f"; farthest: {_named(off[-1])} ({cells.value(off[-1], ACT_LAST_HIDDEN_STD)})" if len(off) > 1 else ""
    return f"Last hidden std nearest 1: {_named(off[0])} ({cells.value(off[0], ACT_LAST_HIDDEN_STD)}){far}."


def impl_lead(rows) -> str:
    """The fastest backward of those the check confirmed, with its ratio to its own autograd."""
    confirmed = [r for r in rows if cells.verdict(r) == "yes"]
    if not confirmed:
        return f"None of {len(rows)} confirmed correct."
    timed = [r for r in confirmed if r.m(TIME_BACKWARD_MS) is not None]
    if not timed:
        return ""
    best = min(timed, key=lambda r: r.m(TIME_BACKWARD_MS))
    ratio = cells.value(best, cells.RATIO, ".2f")
    return (f"Fastest confirmed backward: {_named(best)}, {cells.ms(best, 'backward')} ms, {ratio}× autograd's "
            f"({cells.baseline(best)}).")  # fmt: skip


def bug_lead(rows) -> str:
    caught = [r for r in rows if cells.verdict(r) == "NO"]
    placed = [r for r in caught if r.tags.get("first_divergent") == r.tags.get("bug.expected_node")]
    return f"{len(caught)} of {len(rows)} bugs caught, {len(placed)} at the node expected."


def scaling_lead(rows) -> str:
    from backprop_lab.report.report_figures import scaling_fits

    fits = scaling_fits(rows)
    said = [f"{fits[impl][0]:.2f} for impl={impl}" for impl in _by_impl(rows) if impl in fits]
    return f"Backward ms ∝ GFLOP^k: k = {', '.join(said)}." if said else ""


def search_lead(rows) -> str:
    best, scored = _best_trial(rows)
    if best is None:
        return f"None of {len(rows)} trials scored."
    return f"Best of {len(scored)} trials scored: {_named(best)}, objective {number(best.m(OBJECTIVE), '.4g')}."


@dataclass(frozen=True)
class Study:
    preset: str  # conf/experiment/<preset>.yaml, which states the question
    applies: Callable[[list], bool]  # to these rows
    answer: Callable[[list], tuple[list[str], list[list[str]]]]  # headers and cells past the row's choices
    per_choice: bool = True  # a row per report row, led by its choices; False: the answer's rows are its own
    align: str = ""  # the answer's columns past the choices: "l" for text (tables.Table.align); numbers by default
    lead: Callable[[list], str] = lambda rows: ""  # the answer in a sentence, for the parent's first line
    beside: Callable[[list], list[tables.Table]] = lambda rows: []  # more tables after the answer's


def _varies(prefix: str) -> Callable[[list], bool]:
    return lambda rows: any(k.startswith(prefix) for k in rows[0].choices)


def _scaling(rows) -> bool:
    from backprop_lab.report.report_figures import scaling_fits

    return bool(scaling_fits(rows))


STUDIES = [  # the first that applies answers: a search varies the init's gain, a scaling sweep the implementation
    Study("shift_search", lambda rows: any(r.m(OBJECTIVE) is not None for r in rows), search_answer, False,
          lead=search_lead),
    Study("deep_stack", deep_stack.applies, deep_stack.answer, False, lead=deep_stack.lead,
          beside=lambda rows: [deep_stack.anchors_table(rows)]),
    Study("bug_hunt", lambda rows: BUG_KEY in rows[0].choices, bug_answer, align="rrrrl", lead=bug_lead),
    Study("scaling_study", _scaling, scaling_answer, False, lead=scaling_lead),
    Study("init_study", _varies("init."), init_answer, lead=init_lead),
    Study("impl_study", lambda rows: "impl.name" in rows[0].choices, impl_answer, lead=impl_lead),
]


def study_of(rows) -> Optional[Study]:
    if not rows or CODE_KEY in rows[0].choices:
        return None
    return next((s for s in STUDIES if s.applies(rows)), None)


def lead(rows) -> str:
    """The study's answer in a sentence ("" where no study asks about these rows)."""
    study = study_of(rows)
    return study.lead(rows) if study else ""


def answer_tables(rows, header: Callable[[str], str]) -> list[tables.Table]:
    """The study's answer as a table titled by its question, and any it sets beside; none for rows no study asks
    about. `header` names a choice's column (report._header)."""
    study = study_of(rows)
    if study is None:
        return []
    headers, body = study.answer(rows)
    if study.per_choice:
        choices = [header(k) for k in rows[0].choices]
        headers = [*choices, *headers]
        body = [[*map(cells.choice, r.choices.values()), *row] for r, row in zip(rows, body)]
        answer = tables.Table(question(study.preset), headers, body, align="l" * len(choices) + study.align)
    else:
        answer = tables.Table(question(study.preset), headers, body, align="l")
    return [answer, *study.beside(rows)]
