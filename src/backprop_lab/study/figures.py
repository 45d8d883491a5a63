"""The figures a run logs: the forward and backward halves by layer beside what theory predicts, and the
elementwise gradient differences.

Drawn with matplotlib's object API (no pyplot: no global figure registry, no backend to pick) and fixed margins
(tight_layout measures every label's extent: half a second a run, for figures whose layout never changes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from backprop_lab.core.names import ACT_RELU_MEAN, ACT_RELU_STD, ACT_STD, BACK_STD, THEORY_TAG
from backprop_lab.study import theory
from backprop_lab.study.forward import LayerStats

MARGINS = {"left": 0.12, "right": 0.97, "bottom": 0.15, "top": 0.9}


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **margins):
    """A figure and its axes, at fixed margins."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(**(MARGINS | margins))
    return fig, fig.subplots(rows, cols)


def activation_figure(stats: list[LayerStats], predicted: list[theory.Layer], title: str,
                      parted: Sequence[theory.Parting] = ()):  # fmt: skip
    """The forward half by layer: measured (solid) and what the init's variance formula predicts (dashed), each
    prediction `parted` from its measurement ringed, a layer of few units said to be measured across samples only."""
    fig, ax = _figure(6, 3.5, bottom=0.22)
    layers = [s.layer for s in stats]
    ax.plot(layers, [s.mean for s in stats], "o-", color="C0", label="linear output mean")
    ax.plot(layers, [s.std for s in stats], "s-", color="C1", label="linear output std")
    ax.plot(layers, [p.act_std for p in predicted], "--", color="C1", label="its std, predicted")
    hidden = [s for s in stats if s.relu_std is not None]
    if hidden:
        ax.plot([s.layer for s in hidden], [s.relu_mean for s in hidden], "^-", color="C2", label="shifted ReLU mean")
        ax.plot([p.layer for p in predicted if p.relu_mean is not None],
                [p.relu_mean for p in predicted if p.relu_mean is not None], "--", color="C2",
                label="its mean, predicted")  # fmt: skip
    for p in predicted:
        if p.few_units:  # the prediction is of another quantity there: say which, at the point
            unit = "1 unit" if p.units == 1 else f"{p.units} units"
            ax.annotate(f"{unit}: std across samples,\nunits' offsets left out", (p.layer, p.act_std), fontsize=6,
                        xytext=(-6, -26), textcoords="offset points", ha="right", color="C1")  # fmt: skip
    drawn = (ACT_STD, ACT_RELU_MEAN)
    _ring(ax, parted, drawn)
    _say_parted(fig, parted, drawn, undrawn=(ACT_RELU_STD,))
    ax.axhline(0, color="grey", lw=0.5)
    ax.axhline(1, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="layer", ylabel="value", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a tick per layer, up to a readable number
    ax.legend(fontsize=7)
    return fig


def backward_figure(measured: dict[int, dict[str, float]], predicted: dict[int, float], title: str,
                    parted: Sequence[theory.Parting] = ()):  # fmt: skip
    """The backward half by layer: the std of the loss's gradient at each layer's output, measured and predicted,
    each prediction `parted` from its measurement ringed."""
    fig, ax = _figure(6, 3.5, left=0.16, bottom=0.22)  # a log axis's tick labels (6×10⁻⁴) are wide
    layers = sorted(measured)
    ax.plot(layers, [measured[i][BACK_STD] for i in layers], "s-", color="C3", label="gradient std at the output")
    ax.plot(layers, [predicted[i] for i in layers], "--", color="C3", label="predicted from the output's")
    _ring(ax, parted, (BACK_STD,))
    _say_parted(fig, parted, (BACK_STD,))
    ax.set_yscale("log")  # vanishing and exploding both show as straight lines
    ax.set(xlabel="layer", ylabel="std of d loss / d z", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    return fig


def _ring(ax, parted: Sequence[theory.Parting], drawn: tuple[str, ...]) -> None:
    """Rings the measurements of `drawn` metrics that part from their predictions, and a legend entry for them."""
    points = [(p.layer, p.measured) for p in parted if p.metric in drawn]
    if points:
        ax.plot(*zip(*points), "o", ms=11, mfc="none", mec="red", mew=1.2,
                label=f"beyond ×{theory.FACTOR:g} of its prediction")  # fmt: skip


def _say_parted(fig, parted: Sequence[theory.Parting], drawn: tuple[str, ...], undrawn: tuple[str, ...] = ()) -> None:
    """A footnote where this figure's metrics part from theory: the rule and the tag, and the partings of `undrawn`
    metrics of the same half (by metric, their layers)."""
    mine = [p for p in parted if p.metric in drawn + undrawn]
    if not mine:
        return
    note = f"ringed: measured beyond ×{theory.FACTOR:g} of its prediction (tag {THEORY_TAG})"
    elsewhere: dict[str, list[str]] = {}
    for p in mine:
        if p.metric in undrawn:
            elsewhere.setdefault(p.metric, []).append(str(p.layer))
    if elsewhere:
        note += "; not drawn: " + ", ".join(f"{metric} at layer {', '.join(ls)}" for metric, ls in elsewhere.items())
    fig.text(0.01, 0.01, note, fontsize=6, color="red")


MAX_PANELS = 24  # past this many tensors (a deep model), one panel per tensor is unreadable and slow to lay out


def grad_diff_figure(diffs: dict[str, torch.Tensor], title: str):
    """One histogram per tensor of log10 |manual - autograd|, in a grid (exact zeros counted in each title);
    for a model with more tensors than MAX_PANELS, the largest and median difference per tensor instead."""
    if len(diffs) > MAX_PANELS:
        return _grad_diff_by_tensor(diffs, title)
    if not diffs:  # a learner's code that gave no parameter's gradient: nothing to draw, and the figure says so
        fig, ax = _figure(5, 2)
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no parameter gradient given", ha="center", va="center")
        fig.suptitle(title, fontsize=9)
        return fig
    cols = min(6, len(diffs))
    rows = -(-len(diffs) // cols)
    width, height = 2.6 * cols, 2.4 * rows
    fig = Figure(figsize=(width, height))
    # margins in inches, whatever the grid's size: the axis labels and the title stay inside the figure
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.55 / height,
                        hspace=0.75, wspace=0.4)  # fmt: skip
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(diffs) :]:
        ax.set_axis_off()
    for ax, (name, d) in zip(axes.flat, diffs.items()):
        zeros = int((d == 0).sum())
        nonzero = d[(d > 0) & torch.isfinite(d)].double()  # NaN/inf differences are counted out, not drawn
        if nonzero.numel():
            ax.hist(nonzero.log10().numpy(), bins=30)
        else:  # no difference to draw: say why rather than show empty axes
            ax.text(0.5, 0.5, "all exact" if zeros == d.numel() else "none finite", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set(title=f"{name}  ({zeros}/{d.numel()} exact)", xlabel="log10 |manual − autograd|", ylabel="entries")
        ax.title.set_fontsize(8)
        ax.xaxis.label.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)
    fig.suptitle(title, fontsize=9)
    return fig


def _grad_diff_by_tensor(diffs: dict[str, torch.Tensor], title: str):
    fig, ax = _figure(8, 3.5)
    for kind, marker in (("w", "."), ("b", "x")):
        names = [n for n in diffs if n.startswith(kind)]
        layers = [int(n[1:]) for n in names]
        finite = [diffs[n][torch.isfinite(diffs[n])].double() for n in names]
        ax.plot(layers, [f.max().item() if f.numel() else float("nan") for f in finite], marker, label=f"{kind}: max")
        ax.plot(layers, [f.median().item() if f.numel() else float("nan") for f in finite], marker, alpha=0.4,
                label=f"{kind}: median")  # fmt: skip
    ax.set_yscale("symlog", linthresh=1e-12)  # exact agreement (0) stays on the plot
    ax.set(xlabel="layer", ylabel="|manual − autograd|", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return fig
