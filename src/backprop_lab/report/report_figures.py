"""The report's figures, from its rows: times, the check's verdict, both halves of the init argument by layer (with
what theory predicts, dashed), and time against work for a sweep over problem sizes."""

from __future__ import annotations

import math
from typing import Optional

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from backprop_lab.config.objectives import METRIC as OBJECTIVE
from backprop_lab.config.objectives import for_search
from backprop_lab.core.names import (
    ACT_STD,
    BACK_STD,
    GRAD_WORST_ERROR_RATIO,
    JOB_NUM_TAG,
    STACK_FIRST_NONFINITE,
    STACK_FIRST_ZERO,
    STACK_LAST_STD,
    THEORY_ACT_STD,
    THEORY_BACK_STD,
    TIME_BACKWARD_MS,
)
from backprop_lab.report import cells, deep_stack
from backprop_lab.report.repeats import at_step, describe

FACTOR_PARAM = "check.factor"
THEORY = {ACT_STD: THEORY_ACT_STD, BACK_STD: THEORY_BACK_STD}  # a measured series -> what theory predicts
SAME = 1e-9  # two runs' lines coincide when every point agrees to this relative difference (the last bits)


def _logged(rows, key: str) -> tuple[list, str]:
    """The rows that logged `key`, and a line naming those left out (n/a), for the figure's title."""
    have = [r for r in rows if r.m(key) is not None]
    lacking = [r.label for r in rows if r.m(key) is None]
    if not lacking:
        return have, ""
    more = f" and {len(lacking) - 4} more" if len(lacking) > 4 else ""
    return have, f"\nleft out, n/a: {', '.join(lacking[:4])}{more}"


def _errors(rows, key: str) -> Optional[list[list[float]]]:
    """Rows of repeats: each bar's 95% interval as matplotlib's (below, above) error bars, on the scale the table
    states it (a positive quantity's from its logs: never below zero); None for single runs."""
    if not any(key in r.intervals for r in rows):
        return None
    spans = [r.intervals[key].errorbar() if key in r.intervals else (0.0, 0.0) for r in rows]
    return [[lo for lo, _ in spans], [hi for _, hi in spans]]


def _bars(rows, values, ylabel: str, title: str, log: bool = False, line: Optional[float] = None,
          key: Optional[str] = None, labels: Optional[list[str]] = None) -> Figure:  # fmt: skip
    """A bar per row (named by `labels`, else the row's label); with `key`, rows of repeats get their interval as an
    error bar."""
    fig = Figure(figsize=(max(5, 0.75 * len(rows) + 1.5), 4.2), layout="constrained")  # no label clipped
    ax = fig.subplots()
    errors = _errors(rows, key) if key else None
    ax.bar(labels or [r.label for r in rows], values, yerr=errors, capsize=3 if errors else 0)
    if errors:
        title += f"\nbars: {describe(key)} of the repeats"
    if line is not None:
        ax.axhline(line, color="k", lw=0.8, ls="--")
    if log:
        ax.set_yscale("log")
    ax.set(ylabel=ylabel, title=title, xlabel=" · ".join(k.split(".")[0] for k in rows[0].choices) or "run")
    ax.tick_params(axis="x", labelrotation=35, labelsize=7)
    return fig


def _same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    return len(a) == len(b) and all(s == t and math.isclose(x, y, rel_tol=SAME) for (s, x), (t, y) in zip(a, b))


def coincide(rows, key: str) -> bool:
    """Every row's line of `key`, and of what theory predicts for it, is the same: one line stands for all (an
    impl study's forward half, where every implementation starts from the same weights)."""
    return len(rows) > 1 and all(_same(r.series.get(k, []), rows[0].series.get(k, []))
                                 for r in rows[1:] for k in (key, THEORY[key]))  # fmt: skip


BY_LAYER = {ACT_STD: "forward half", BACK_STD: "backward half"}  # the by-layer figures, by their series


def coinciding_lines(rows) -> list[str]:
    """A note for each by-layer figure drawn once because every run's line is the same."""
    return [f"{what} by layer: the {len(rows)} runs' lines coincide, drawn once" for key, what in BY_LAYER.items()
            if any(r.series.get(key) for r in rows) and coincide(rows, key)]  # fmt: skip


def _by_layer(rows, key: str, ylabel: str, title: str) -> Figure:
    """One line per run, solid as measured, dashed as the init's variance formula predicts, in the same colour; a
    single line, said so, where every run's is the same."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    drawn = [(r, r.label) for r in rows]
    if coincide(rows, key):
        title += f": the {len(rows)} runs' lines coincide, drawn once"
        drawn = [(rows[0], "every run")]
    for i, (r, label) in enumerate(drawn):
        if r.series.get(key):
            ax.plot(*zip(*r.series[key]), "o-", color=f"C{i % 10}", label=label, ms=3)
            band = [(s, r.intervals[at_step(key, s)]) for s, _ in r.series[key] if at_step(key, s) in r.intervals]
            if band:  # rows of repeats: the 95% interval at each layer, from the logs (never at or below zero)
                ax.fill_between([s for s, _ in band], [ci.lo for _, ci in band], [ci.hi for _, ci in band],
                                color=f"C{i % 10}", alpha=0.2, lw=0)  # fmt: skip
        predicted = r.series.get(THEORY[key])
        if predicted:
            ax.plot(*zip(*predicted), "--", color=f"C{i % 10}", lw=0.9)
    ax.axhline(1, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")  # vanishing and exploding both show as straight lines
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole: no tick at 1.5
    ax.set(xlabel="layer", ylabel=ylabel, title=f"{title} (dashed: predicted)")
    ax.legend(fontsize=7)
    return fig


def _stack(rows) -> Figure:
    """A deep stack's std by layer, a line per weight scale on the log scale, dashed as theory predicts; where a
    scale's activations stop being finite or fall to exactly 0 (which a log scale cannot draw), a dotted line says
    from which layer."""
    import numpy as np

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    low, high = float(np.finfo(np.float32).smallest_subnormal), float(np.finfo(np.float32).max)
    for i, r in enumerate(rows):
        colour, name = f"C{i % 10}", r.params.get(deep_stack.SCALE, r.label)
        drawn = [(s, v) for s, v in r.series.get(ACT_STD, []) if math.isfinite(v) and v > 0]
        if drawn:
            ax.plot(*zip(*drawn), "-", color=colour, label=name, lw=1.2)
        predicted = [(s, v) for s, v in r.series.get(THEORY_ACT_STD, []) if low <= v <= high]
        if predicted:
            ax.plot(*zip(*predicted), "--", color=colour, lw=0.8)
        for key, words in ((STACK_FIRST_NONFINITE, "not finite"), (STACK_FIRST_ZERO, "all 0")):
            layer = r.m(key)
            if layer is not None and math.isfinite(layer):
                ax.axvline(layer, color=colour, ls=":", lw=1)
                ax.annotate(f" {words} from {layer:.3g}", (layer, 0.02), xycoords=("data", "axes fraction"),
                            color=colour, fontsize=7, rotation=90, va="bottom")  # fmt: skip
    for bound in (low, 1.0, high):  # float32's smallest and largest values, and the unit scale
        ax.axhline(bound, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_ylim(low / 10, high * 10)  # float32's whole range: both walls in view
    ax.set(xlabel="layer", ylabel="std of a @ x (the linear output)",
           title="std by layer, per weight scale (dashed: theory; dotted: float32's limits)")
    ax.legend(fontsize=7)
    return fig


def scaling_fits(rows) -> dict[str, tuple[float, float]]:
    """Per implementation with at least three problem sizes: (exponent, log-intercept) of ms ~ GFLOP^exponent."""
    import numpy as np

    fits = {}
    for impl in sorted({r.choices.get("impl.name", "") for r in rows}):
        points = [(r.gflop, r.m(TIME_BACKWARD_MS)) for r in rows
                  if r.choices.get("impl.name", "") == impl and r.gflop and r.m(TIME_BACKWARD_MS)]  # fmt: skip
        if len({g for g, _ in points}) >= 3:
            slope, intercept = np.polyfit(np.log10([g for g, _ in points]), np.log10([t for _, t in points]), 1)
            fits[impl] = (float(slope), float(intercept))
    return fits


def _scaling(rows, peak_gflops: Optional[float]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    fits = scaling_fits(rows)
    gflops = sorted({r.gflop for r in rows if r.gflop})
    for i, (impl, (slope, intercept)) in enumerate(fits.items()):
        mine = [r for r in rows if r.choices.get("impl.name", "") == impl and r.gflop and r.m(TIME_BACKWARD_MS)]
        ax.plot([r.gflop for r in mine], [r.m(TIME_BACKWARD_MS) for r in mine], "o", color=f"C{i}", ms=4)
        ax.plot(gflops, [10 ** (intercept + slope * math.log10(g)) for g in gflops], "-", color=f"C{i}", lw=0.8,
                label=f"{impl}: ms ∝ GFLOP^{slope:.2f}")  # fmt: skip
    if peak_gflops:
        ax.plot(gflops, [g / peak_gflops * 1e3 for g in gflops], "k--", lw=0.9,
                label=f"roofline: the products at {peak_gflops:.0f} GFLOP/s")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="GFLOP of the backward's matrix products", ylabel="backward, median ms",
           title="time against work, every problem size of the sweep")  # fmt: skip
    ax.legend(fontsize=7)
    return fig


def _is_number(text: Optional[str]) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _trials(rows) -> Figure:
    """A search: each trial's objective in the order tried, with the best so far; and where the trials fell in the
    first two searched numbers (a categorical choice is not drawn), coloured by objective, the best starred."""
    trials = sorted(rows, key=lambda r: float(r.tags[JOB_NUM_TAG]) if _is_number(r.tags.get(JOB_NUM_TAG))
                    else math.inf)  # a trial without its number (not a search's) last  # fmt: skip
    scored = [(i, r) for i, r in enumerate(trials) if for_search(r.m(OBJECTIVE)) is not None]
    finite = [r.m(OBJECTIVE) for _, r in scored]
    best = [min(finite[: i + 1]) for i in range(len(finite))]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    by_trial, space = fig.subplots(1, 2)
    by_trial.plot([i for i, _ in scored], finite, "o", ms=4, label="trial (failed ones left out)")
    by_trial.step([i for i, _ in scored], best, where="post", color="k", lw=1, label="best so far")
    by_trial.set(xlabel="trial", ylabel="objective (lower is better)", title="the search, trial by trial")
    by_trial.legend(fontsize=7)
    numeric = [k for k in trials[0].choices if all(_is_number(r.params.get(k)) for r in trials)]
    keys, scored = numeric[:2], [r for _, r in scored]
    if len(keys) == 2 and scored:
        xs, ys = ([float(r.params[k]) for r in scored] for k in keys)
        dots = space.scatter(xs, ys, c=[r.m(OBJECTIVE) for r in scored], cmap="viridis_r", s=28)
        top = min(scored, key=lambda r: r.m(OBJECTIVE))
        space.plot(float(top.params[keys[0]]), float(top.params[keys[1]]), "r*", ms=16, label="best")
        fig.colorbar(dots, ax=space, label="objective")
        space.set(xlabel=keys[0], ylabel=keys[1], title="where the trials fell")
        space.legend(fontsize=7)
    else:
        space.set_axis_off()
    fig.suptitle(f"{len(trials)} trials, " + (f"best objective {best[-1]:.3g}" if best else "none scored"))
    return fig


def figures(rows, peak_gflops: Optional[float] = None) -> dict[str, Figure]:
    """The figures these rows can show, by file name."""
    out = {}
    timed, left_out = _logged(rows, TIME_BACKWARD_MS)
    if timed:
        out["backward_time.png"] = _bars(timed, [r.m(TIME_BACKWARD_MS) for r in timed], "median ms",
                                         "backward time per run" + left_out, key=TIME_BACKWARD_MS)  # fmt: skip
    ratios, left_out = _logged(rows, cells.RATIO)
    if ratios:
        shared = cells.shared_baseline(ratios)  # named on the axis, or in each bar's name where they differ
        labels = None if shared else [f"{r.label} ({cells.baseline(r)})" for r in ratios]
        out["backward_vs_autograd.png"] = _bars(ratios, [r.m(cells.RATIO) for r in ratios],
                                                f"backward / autograd's ({shared or 'its baseline'})",
                                                "backward against autograd (below 1: faster)" + left_out,
                                                line=1.0, key=cells.RATIO, labels=labels)  # fmt: skip
    checked, left_out = _logged(rows, GRAD_WORST_ERROR_RATIO)
    if checked:
        factors = {r.params.get(FACTOR_PARAM) for r in checked}
        (only,) = factors if len(factors) == 1 else (None,)
        factor = float(only) if _is_number(only) and math.isfinite(float(only)) else None
        shown = [min(max(r.m(GRAD_WORST_ERROR_RATIO), 1e-3), 1e15) for r in checked]  # inf drawn at the top
        dashed = "dashed: check.factor" if factor is not None else "check.factor differs or is not logged: not drawn"
        out["grad_check.png"] = _bars(checked, shown, "worst error, in units of autograd's",
                                      f"the check ({dashed})" + left_out, log=True, line=factor)  # fmt: skip
    if any(r.series.get(ACT_STD) for r in rows):
        out["activation_std.png"] = _by_layer(rows, ACT_STD, "std of the linear output", "forward half")
    if any(r.series.get(BACK_STD) for r in rows):
        out["backward_std.png"] = _by_layer(rows, BACK_STD, "std of d loss / d output", "backward half")
    if any(r.m(STACK_LAST_STD) is not None for r in rows):
        out["stack_std.png"] = _stack(rows)
    if scaling_fits(rows):
        out["scaling.png"] = _scaling(rows, peak_gflops)
    if any(r.m(OBJECTIVE) is not None for r in rows):
        out["search_trials.png"] = _trials(rows)
    return out
