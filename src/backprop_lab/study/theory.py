"""What each init's variance formula predicts for this net, to set beside what a run measures; and where the two part.

Both halves of Kaiming's argument, for a layer `z = a @ w + b` with zero-mean weights of variance `v` (per entry) and
`n_in` inputs, and the shifted ReLU `a = max(z, 0) - shift`:
- forward: Var(z) = n_in * v * E[a_prev^2] + Var(b). Fan-in scaling (v = 2/n_in) keeps the std of z from layer to
  layer when the shift is 0.
- backward: the gradient at a layer's input is `g @ w.t()`, a sum over its n_out outputs, then the ReLU's mask keeps
  half: Var(g_prev) = n_out * v * Var(g) / 2. Fan-out scaling (v = 2/n_out) keeps the gradient's std.
The notebook's weights are (in, out), so torch's `mode="fan_out"` is the one that scales by n_in (init_schemes.py).

A run measures the std of a layer's output over its units and samples together, and the forward formula predicts
that one only for a layer of many units. One unit's output `z_j = a @ w_j + b_j` is an offset the same for every
sample, `E[a] @ w_j + b_j`, plus a part that varies from sample to sample, `(a - E[a]) @ w_j`; across units the
offsets spread as much as the formula says, but a layer of few units has few offsets, and the one-unit output layer's
std is over samples only, so the offsets drop out of it. So the forward half follows both parts (Gaussian, as the
formula assumes, unit by unit: z_j ~ N(offset_j, within^2), offset_j ~ N(0, offset_std^2)) and predicts the std a
layer of `n_out` units measures: sqrt(within^2 + (1 - 1/n_out) offset_std^2). The sum of the two is the formula's
Var(z). It matters: with the shifted ReLU, nn.Linear's default init keeps the pooled std at 0.25 through the deep
model's hidden layers, while the part that tells one sample from another shrinks at every layer; the one-unit output
layer shows only that part (about 2e-4 on MNIST), and so does every later layer's gradient with respect to weights.

Theory and measurement still part where the other assumptions fail: MNIST's pixels are not Gaussian (many are exactly
the lowest value, and their means differ: the input is taken as features alike, of the data's mean and std), and a
layer of 80 units is a small sample; and the backward half starts from the output gradient's std where its second
moment is what a weight carries back (the MSE's gradient has the mean of out - y: on MNIST about 2x at the hidden
layers). `parted` names every prediction beyond FACTOR of its measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backprop_lab.config import init_schemes
from backprop_lab.core.names import (
    ACT_RELU_MEAN,
    ACT_RELU_STD,
    ACT_STD,
    BACK_STD,
    RELU,
    THEORY_ACT_STD,
    THEORY_BACK_STD,
    THEORY_RELU_MEAN,
    THEORY_RELU_STD,
)

# a prediction within this factor of its measurement (either way) agrees; past it, an assumption has failed there
FACTOR = 2.0
# the standard normal's grid for the average over the units' offsets: Simpson's rule on panels that meet at 0, where
# the ReLU's kink is, so that the rule stays exact to ~1e-9 however sharp the kink
_GRID = np.linspace(-8.0, 8.0, 4001)
_DENSITY = np.exp(-(_GRID**2) / 2) / math.sqrt(2 * math.pi)
_SIMPSON = np.ones_like(_GRID)  # 1, 4, 2, 4, ..., 2, 4, 1, times the step over 3
_SIMPSON[1:-1:2], _SIMPSON[2:-1:2] = 4.0, 2.0
_SIMPSON *= (_GRID[1] - _GRID[0]) / 3
_ERF = np.vectorize(math.erf)


@dataclass
class Layer:
    layer: int
    act_std: float  # of the linear output z, over the layer's units and samples together, as forward.py measures it
    within_std: float  # of one unit's z across samples (its offset taken out), the part that tells samples apart
    offset_std: float  # of the units' offsets (the part of z the same for every sample) across units
    units: int
    shift: float  # what the ReLU after it subtracts
    relu_mean: float | None = None  # of the shifted ReLU after it (hidden layers)
    relu_std: float | None = None

    def metrics(self) -> dict[str, float]:
        out = {THEORY_ACT_STD: self.act_std}
        if self.relu_mean is not None:
            out |= {THEORY_RELU_MEAN: self.relu_mean, THEORY_RELU_STD: self.relu_std}
        return out

    @property
    def few_units(self) -> bool:
        """Whether the layer has too few units for its offsets to show in the pooled std as they do in many: at 10
        units the measured std leaves out a tenth of the offsets' variance."""
        return self.units <= 10


def _shifted_relu(offset_std: float, within_std: float, shift: float) -> tuple[float, float, float]:
    """Over units whose z is N(offset, within_std^2), offset ~ N(0, offset_std^2): the shifted ReLU's mean, the mean
    of its units' squared means, and the mean of its units' variances across samples. The first and the sum of the
    other two are those of z ~ N(0, offset_std^2 + within_std^2), in closed form; the split is an integral."""
    total = offset_std**2 + within_std**2
    relu_mean = math.sqrt(total / (2 * math.pi))  # E[max(z, 0)]
    second = total / 2 - 2 * shift * relu_mean + shift**2  # E[(max(z, 0) - shift)^2]
    if within_std == 0:
        return relu_mean - shift, second, 0.0
    # each unit's variance, within_std^2 times that of max(t', 0) for t' ~ N(t, 1), t = offset / within_std: taken
    # so, a small variance beside a large mean loses no digits to a difference of the two
    t = offset_std * _GRID / within_std
    cdf, pdf = 0.5 * (1 + _ERF(t / math.sqrt(2))), np.exp(-(t**2) / 2) / math.sqrt(2 * math.pi)
    unit_var = (t**2 + 1) * cdf + t * pdf - (t * cdf + pdf) ** 2
    within_var = within_std**2 * float(np.sum(_SIMPSON * _DENSITY * np.maximum(unit_var, 0.0)))
    return relu_mean - shift, max(second - within_var, 0.0), within_var


def forward(widths: list[int], scheme: str, mode: str, input_mean: float, input_std: float, shift: float,
            gain: float = 1.0, activation: str = RELU) -> list[Layer]:  # fmt: skip
    """The predicted statistics of every layer, from the input's mean and std (0 and 1 for normalized data). In a
    linear stack (`activation` none) a layer's units are the next one's inputs as they are."""
    layers, drawn = [], init_schemes.scheme(scheme)
    mean_sq, within_var = input_mean**2, input_std**2  # of the previous layer's units: their means squared, variances
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        v, bias_v = drawn.variances(n_in, n_out, mode)
        v *= gain**2
        offset_var, within = n_in * v * mean_sq + bias_v, n_in * v * within_var
        std = math.sqrt(within + (1 - 1 / n_out) * offset_var)  # the offsets' spread over n_out of them
        layer = Layer(i, std, math.sqrt(within), math.sqrt(offset_var), n_out, shift)
        if i < len(widths) - 1 and activation != RELU:
            mean_sq, within_var = offset_var, within
        elif i < len(widths) - 1:
            layer.relu_mean, mean_sq, within_var = _shifted_relu(math.sqrt(offset_var), math.sqrt(within), shift)
            spread = within_var + (1 - 1 / n_out) * max(mean_sq - layer.relu_mean**2, 0.0)
            layer.relu_std = math.sqrt(spread)
        layers.append(layer)
    return layers


def backward(widths: list[int], scheme: str, mode: str, output_grad_std: float, gain: float = 1.0,
             activation: str = RELU) -> dict[int, float]:  # fmt: skip
    """The predicted std of the loss's gradient at every layer's output, from the measured one at the net's output."""
    n = len(widths) - 1
    stds, drawn = {n: output_grad_std}, init_schemes.scheme(scheme)
    kept = 0.5 if activation == RELU else 1.0  # the half a ReLU's mask keeps; a linear stack has none
    for i in range(n - 1, 0, -1):  # the gradient at z_i comes back through w_{i+1} (n_out = widths[i + 1]) and a mask
        v, _ = drawn.variances(widths[i], widths[i + 1], mode)
        stds[i] = gain * math.sqrt(widths[i + 1] * v * kept) * stds[i + 1]
    return dict(sorted(stds.items()))


# a theory/* metric -> the metric it predicts, as forward.py and backward.py log it at the same step (layer)
MEASURED = {THEORY_ACT_STD: ACT_STD, THEORY_RELU_MEAN: ACT_RELU_MEAN, THEORY_RELU_STD: ACT_RELU_STD,
            THEORY_BACK_STD: BACK_STD}  # fmt: skip


@dataclass
class Parting:
    """A prediction more than FACTOR from its measurement. A mean of the shifted ReLU is compared before the shift
    (E[max(z, 0)], a positive quantity, so that a factor means the same as for a std)."""

    metric: str  # the measured one, e.g. act/std
    layer: int
    units: int
    measured: float
    predicted: float
    ratio: float  # measured / predicted (for act/relu_mean, of both plus the shift); nan where one is not positive

    def words(self) -> str:
        unit = "1 unit" if self.units == 1 else f"{self.units} units"
        at = f"{self.metric} at layer {self.layer} ({unit})"
        if not math.isfinite(self.ratio):
            return f"{at}: measured {self.measured:.3g}, predicted {self.predicted:.3g}: not comparable"
        ratio = f"{self.ratio:#.3g} ×" + (" (before the shift)" if self.metric == ACT_RELU_MEAN else "")
        return f"{at}: measured {self.measured:.3g} = {ratio} predicted {self.predicted:.3g}"


def parted(by_layer: dict[int, dict[str, float]], predicted: list[Layer]) -> list[Parting]:
    """Every theory/* value of `by_layer` (step = layer: measured and predicted side by side, as a run logs them) more
    than FACTOR either way from its measurement, or where one of them is not a positive finite number and they
    differ (an overflow, a dead layer). `predicted`: the forward's prediction, for each layer's units and shift."""
    found = []
    for layer in predicted:
        values = by_layer[layer.layer]
        for key, metric in MEASURED.items():
            if key not in values or metric not in values:
                continue
            measured, expected = values[metric], values[key]
            offset = layer.shift if metric == ACT_RELU_MEAN else 0.0
            a, b = measured + offset, expected + offset
            if a == b:
                continue
            comparable = a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)
            ratio = a / b if comparable else math.nan
            if not comparable or not 1 / FACTOR <= ratio <= FACTOR:
                found.append(Parting(metric, layer.layer, layer.units, measured, expected, ratio))
    return found


def parted_note(partings: list[Parting]) -> str:
    """The tag's value: each prediction its measurement parts from, or that none does."""
    if not partings:
        return f"none: every theory/* within ×{FACTOR:g} of its measurement"
    return f"beyond ×{FACTOR:g}: " + "; ".join(p.words() for p in partings)
