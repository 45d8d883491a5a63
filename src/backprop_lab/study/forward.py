"""Stage 3, forward: the statistics of every layer's output, to see what an init does to them across depth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from backprop_lab.core.names import (
    ACT_LAST_HIDDEN_STD,
    ACT_MEAN,
    ACT_RELU_MEAN,
    ACT_RELU_STD,
    ACT_STD,
    ACT_STD_LOG10_GROWTH,
    BACK_STD,
    BACK_STD_LOG10_GROWTH,
    RELU,
    STACK_FIRST_MEAN_SQ,
    STACK_FIRST_NONFINITE,
    STACK_FIRST_RELU_MEAN_SQ,
    STACK_FIRST_ZERO,
    STACK_LAST_STD,
    STACK_THEORY_FIRST_MEAN_SQ,
    STACK_THEORY_FIRST_RELU_MEAN_SQ,
    STACK_THEORY_LAST_STD,
)
from backprop_lab.impls.common import n_layers
from backprop_lab.impls.functional import lin, relu
from backprop_lab.study import theory


@dataclass
class LayerStats:
    layer: int  # 1 = first linear layer
    mean: float  # of the linear output (the pre-activation), act/mean at step=layer
    std: float
    relu_mean: Optional[float] = None  # of the shifted ReLU after it (hidden layers only)
    relu_std: Optional[float] = None
    # of what the layer hands on (after its activation): every entry finite; every entry exactly 0
    finite: bool = True
    zero: bool = False
    mean_sq: float = math.nan  # of the linear output, E[z^2]
    relu_mean_sq: Optional[float] = None  # of the ReLU's output

    def metrics(self) -> dict[str, float]:
        """act/* at step = layer."""
        out = {ACT_MEAN: self.mean, ACT_STD: self.std}
        if self.relu_std is not None:
            out |= {ACT_RELU_MEAN: self.relu_mean, ACT_RELU_STD: self.relu_std}
        return out


def activation_stats(x: torch.Tensor, params: dict[str, torch.Tensor], shift: float,
                     activation: str = RELU) -> list[LayerStats]:  # fmt: skip
    """Exploding or vanishing values are a result, not an error: they come back as inf/nan statistics. A linear
    stack (`activation` none) has no ReLU statistics."""
    stats = []
    with torch.no_grad():
        for i in range(1, n_layers(params) + 1):
            x = lin(x, params[f"w{i}"], params[f"b{i}"])
            layer = LayerStats(i, x.mean().item(), x.std().item(), mean_sq=_mean_sq(x))
            if i < n_layers(params) and activation == RELU:
                x = relu(x, shift)
                layer.relu_mean, layer.relu_std, layer.relu_mean_sq = x.mean().item(), x.std().item(), _mean_sq(x)
            layer.finite, layer.zero = bool(torch.isfinite(x).all()), not bool(x.any())
            stats.append(layer)
    return stats


def _mean_sq(x: torch.Tensor) -> float:
    return x.double().square().mean().item()  # in float64: the square of a float32 past 1.8e19 would overflow


def is_stack(widths: list[int]) -> bool:
    """Square layers from the input on, then the output: what model.depth makes (`[512] * 101 + [1]`)."""
    return len(widths) >= 3 and all(w == widths[0] for w in widths[:-1])


def stack_summaries(layers: list[LayerStats], predicted: list[theory.Layer]) -> dict[str, float]:
    """02b_initializing's questions of a stack, beside theory's answers: where the activations first stop being
    finite (the notebook's `if x.std() != x.std(): break`) and first underflow to exactly 0 (NaN: nowhere in the
    stack), the std after the last square layer, and the first layer's mean square before and after its ReLU."""
    square, first = layers[:-1], layers[0]  # the last layer is the output the MSE needs, not the stack's
    last, last_predicted = square[-1], predicted[len(square) - 1]
    relu = last.relu_std is not None

    def where(flag) -> float:
        return float(next((s.layer for s in square if flag(s)), math.nan))

    out = {STACK_FIRST_NONFINITE: where(lambda s: not s.finite), STACK_FIRST_ZERO: where(lambda s: s.zero),
           STACK_LAST_STD: last.relu_std if relu else last.std,
           STACK_THEORY_LAST_STD: last_predicted.relu_std if relu else last_predicted.act_std,
           STACK_FIRST_MEAN_SQ: first.mean_sq, STACK_THEORY_FIRST_MEAN_SQ: predicted[0].act_std**2}  # fmt: skip
    if relu:  # E[a^2] = Var(a) + E[a]^2: half of a zero-mean z's square when the ReLU is not shifted
        after = predicted[0].relu_std ** 2 + predicted[0].relu_mean ** 2
        out |= {STACK_FIRST_RELU_MEAN_SQ: first.relu_mean_sq, STACK_THEORY_FIRST_RELU_MEAN_SQ: after}
    return out


def all_finite(stats: list[LayerStats]) -> bool:
    values = [v for s in stats for v in (s.mean, s.std, s.relu_mean, s.relu_std) if v is not None]
    return all(math.isfinite(v) for v in values)


def depth_summaries(layers: list[LayerStats], back: dict[int, dict[str, float]]) -> dict[str, float]:
    """One number each for a runs table to sort by (it shows a stepped metric's last step only, the 1-unit output
    layer's): the last hidden layer's std, and how many decades the std grows across the hidden layers, forward
    (first to last) and backward (last to first, from `back`, the backward's statistics by layer)."""
    hidden = layers[:-1] or layers
    first, last = hidden[0].layer, hidden[-1].layer

    def decades(a: float, b: float) -> float:
        return math.log10(b / a) if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan

    return {
        ACT_LAST_HIDDEN_STD: hidden[-1].std,
        ACT_STD_LOG10_GROWTH: decades(hidden[0].std, hidden[-1].std),
        BACK_STD_LOG10_GROWTH: decades(back[last][BACK_STD], back[first][BACK_STD]),
    }
