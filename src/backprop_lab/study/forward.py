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
)
from backprop_lab.impls.common import n_layers
from backprop_lab.impls.functional import lin, relu


@dataclass
class LayerStats:
    layer: int  # 1 = first linear layer
    mean: float  # of the linear output (the pre-activation), act/mean at step=layer
    std: float
    relu_mean: Optional[float] = None  # of the shifted ReLU after it (hidden layers only)
    relu_std: Optional[float] = None

    def metrics(self) -> dict[str, float]:
        """act/* at step = layer."""
        out = {ACT_MEAN: self.mean, ACT_STD: self.std}
        if self.relu_std is not None:
            out |= {ACT_RELU_MEAN: self.relu_mean, ACT_RELU_STD: self.relu_std}
        return out


def activation_stats(x: torch.Tensor, params: dict[str, torch.Tensor], shift: float) -> list[LayerStats]:
    """Exploding or vanishing values are a result, not an error: they come back as inf/nan statistics."""
    stats = []
    with torch.no_grad():
        for i in range(1, n_layers(params) + 1):
            x = lin(x, params[f"w{i}"], params[f"b{i}"])
            layer = LayerStats(i, x.mean().item(), x.std().item())
            if i < n_layers(params):
                x = relu(x, shift)
                layer.relu_mean, layer.relu_std = x.mean().item(), x.std().item()
            stats.append(layer)
    return stats


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
