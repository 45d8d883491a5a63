"""The figures a run logs: activation statistics across layers, and the elementwise gradient differences."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from backprop_lab.forward import LayerStats  # noqa: E402


def activation_figure(stats: list[LayerStats], title: str):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    layers = [s.layer for s in stats]
    ax.plot(layers, [s.mean for s in stats], "o-", label="linear output mean")
    ax.plot(layers, [s.std for s in stats], "s-", label="linear output std")
    hidden = [s for s in stats if s.relu_std is not None]
    if hidden:
        ax.plot([s.layer for s in hidden], [s.relu_std for s in hidden], "^--", label="shifted ReLU std")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axhline(1, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="layer", ylabel="value", title=title, xticks=layers)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def grad_diff_figure(diffs: dict[str, torch.Tensor], title: str):
    """One histogram per tensor of log10 |manual - autograd|; exact zeros are counted in the legend."""
    fig, axes = plt.subplots(1, len(diffs), figsize=(2.6 * len(diffs), 2.8), squeeze=False)
    for ax, (name, d) in zip(axes[0], diffs.items()):
        zeros = int((d == 0).sum())
        nonzero = d[(d > 0) & torch.isfinite(d)].double()  # NaN/inf differences are counted out, not drawn
        if nonzero.numel():
            ax.hist(nonzero.log10().numpy(), bins=30)
        ax.set(title=f"{name}  ({zeros}/{d.numel()} exact)", xlabel="log10 |diff|")
        ax.title.set_fontsize(8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
