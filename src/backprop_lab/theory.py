"""What each init's variance formula predicts for this net, to set beside what a run measures.

Both halves of Kaiming's argument, for a layer `z = a @ w + b` with zero-mean weights of variance `v` (per entry) and
`n_in` inputs, and the shifted ReLU `a = max(z, 0) - shift`:
- forward: Var(z) = n_in * v * E[a_prev^2] + Var(b), and for z ~ N(0, s^2) the shifted ReLU has mean
  s/sqrt(2 pi) - shift and second moment s^2/2 - 2 shift s/sqrt(2 pi) + shift^2. Fan-in scaling (v = 2/n_in) keeps
  the std of z from layer to layer when the shift is 0.
- backward: the gradient at a layer's input is `g @ w.t()`, a sum over its n_out outputs, then the ReLU's mask keeps
  half: Var(g_prev) = n_out * v * Var(g) / 2. Fan-out scaling (v = 2/n_out) keeps the gradient's std.
The notebook's weights are (in, out), so torch's `mode="fan_out"` is the one that scales by n_in (init_schemes.py).

Theory and measurement part where the assumptions fail: MNIST's pixels are not Gaussian (many are exactly the
lowest value), the shift moves each layer's mean away from 0, and a layer of 80 units is a small sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backprop_lab import init_schemes


@dataclass
class Layer:
    layer: int
    act_std: float  # of the linear output z
    relu_mean: float | None = None  # of the shifted ReLU after it (hidden layers)
    relu_std: float | None = None

    def metrics(self) -> dict[str, float]:
        out = {"theory/act_std": self.act_std}
        if self.relu_mean is not None:
            out |= {"theory/relu_mean": self.relu_mean, "theory/relu_std": self.relu_std}
        return out


def forward(widths: list[int], scheme: str, mode: str, input_second_moment: float, shift: float,
            gain: float = 1.0) -> list[Layer]:  # fmt: skip
    """The predicted statistics of every layer, from the input's E[x^2] (1 for normalized data)."""
    layers, second_moment, drawn = [], input_second_moment, init_schemes.scheme(scheme)
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        v, bias_v = drawn.variances(n_in, n_out, mode)
        v *= gain**2
        std = math.sqrt(n_in * v * second_moment + bias_v)
        layer = Layer(i, std)
        if i < len(widths) - 1:
            half_mean = std / math.sqrt(2 * math.pi)  # E[max(z, 0)] for z ~ N(0, std^2)
            second_moment = std**2 / 2 - 2 * shift * half_mean + shift**2
            layer.relu_mean = half_mean - shift
            layer.relu_std = math.sqrt(max(second_moment - layer.relu_mean**2, 0.0))
        layers.append(layer)
    return layers


def backward(widths: list[int], scheme: str, mode: str, output_grad_std: float, gain: float = 1.0) -> dict[int, float]:
    """The predicted std of the loss's gradient at every layer's output, from the measured one at the net's output."""
    n = len(widths) - 1
    stds, drawn = {n: output_grad_std}, init_schemes.scheme(scheme)
    for i in range(n - 1, 0, -1):  # the gradient at z_i comes back through w_{i+1} (n_out = widths[i + 1]) and a mask
        v, _ = drawn.variances(widths[i], widths[i + 1], mode)
        stds[i] = gain * math.sqrt(widths[i + 1] * v / 2) * stds[i + 1]
    return dict(sorted(stds.items()))
