"""The figures a run logs: the forward and backward halves by layer beside what theory predicts, and the
elementwise gradient differences.

Drawn with matplotlib's object API (no pyplot: no global figure registry, no backend to pick) and fixed margins
(tight_layout measures every label's extent: half a second a run, for figures whose layout never changes).
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from backprop_lab.forward import LayerStats

MARGINS = {"left": 0.12, "right": 0.97, "bottom": 0.15, "top": 0.9}


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **margins):
    """A figure and its axes, at fixed margins."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(**(MARGINS | margins))
    return fig, fig.subplots(rows, cols)


def activation_figure(stats: list[LayerStats], predicted: list, title: str):
    """The forward half by layer: measured (solid) and what the init's variance formula predicts (dashed)."""
    fig, ax = _figure(6, 3.5)
    layers = [s.layer for s in stats]
    ax.plot(layers, [s.mean for s in stats], "o-", color="C0", label="linear output mean")
    ax.plot(layers, [s.std for s in stats], "s-", color="C1", label="linear output std")
    ax.plot(layers, [p.act_std for p in predicted], "--", color="C1", label="its std, predicted")
    hidden = [s for s in stats if s.relu_std is not None]
    if hidden:
        ax.plot([s.layer for s in hidden], [s.relu_mean for s in hidden], "^-", color="C2", label="shifted ReLU mean")
        ax.plot([p.layer for p in predicted if p.relu_mean is not None],
                [p.relu_mean for p in predicted if p.relu_mean is not None], "--", color="C2",
                label="its mean, predicted: σ/√(2π) − shift")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.5)
    ax.axhline(1, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="layer", ylabel="value", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a tick per layer, up to a readable number
    ax.legend(fontsize=7)
    return fig


def backward_figure(measured: dict[int, dict[str, float]], predicted: dict[int, float], title: str):
    """The backward half by layer: the std of the loss's gradient at each layer's output, measured and predicted."""
    fig, ax = _figure(6, 3.5)
    layers = sorted(measured)
    ax.plot(layers, [measured[i]["back/std"] for i in layers], "s-", color="C3", label="gradient std at the output")
    ax.plot(layers, [predicted[i] for i in layers], "--", color="C3", label="predicted from the output's")
    ax.set_yscale("log")  # vanishing and exploding both show as straight lines
    ax.set(xlabel="layer", ylabel="std of d loss / d z", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    return fig


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
    fig = Figure(figsize=(2.6 * cols, 2.4 * rows))
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.12, top=0.85, hspace=0.7, wspace=0.35)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(diffs) :]:
        ax.set_axis_off()
    for ax, (name, d) in zip(axes.flat, diffs.items()):
        zeros = int((d == 0).sum())
        nonzero = d[(d > 0) & torch.isfinite(d)].double()  # NaN/inf differences are counted out, not drawn
        if nonzero.numel():
            ax.hist(nonzero.log10().numpy(), bins=30)
        ax.set(title=f"{name}  ({zeros}/{d.numel()} exact)", xlabel="log10 |diff|")
        ax.title.set_fontsize(8)
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
    ax.legend(fontsize=8)
    return fig
