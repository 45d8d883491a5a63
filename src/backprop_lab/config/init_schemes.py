"""The init schemes, one entry each: the variance of a weight entry, `gain**2 / fan`, and how torch.nn.init draws it.
init.py draws from this table, theory.py predicts from it, and the config's options (init.scheme) are its names.

Plain Python, no torch, so that the config (and its errors) stays fast. Our weights are (in, out), as in the notebook,
while torch.nn.init reads nn.Linear's (out, in): its `mode="fan_out"` is size(0) of ours, n_in. So init.mode=fan_out
is what scales kaiming_uniform by n_in, the notebook's finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backprop_lab.core.errors import ConfigError

# torch.nn.init.calculate_gain's values, computed as it computes them, so that a draw is torch's to the bit
RELU_GAIN = math.sqrt(2.0)
NN_LINEAR_GAIN = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))  # leaky_relu with a=sqrt(5): nn.Linear's 1/sqrt(3)


@dataclass(frozen=True)
class Scheme:
    """A weight entry has variance gain**2 / fan, drawn by torch.nn.init.normal_ (std gain/sqrt(fan)) or uniform_
    (bound sqrt(3) * std, as kaiming_uniform_ computes it). `gain` is the scheme's own, not the config's init.gain,
    which multiplies every weight afterwards."""

    name: str
    distribution: str  # "normal" or "uniform"
    gain: float
    fan: str  # "one": unscaled; "n_in": always the layer's inputs; "mode": init.mode, read as torch reads it
    like_nn_linear: bool = False  # drawn on an (out, in) weight then transposed, bias uniform(+-1/sqrt(n_in))
    summary: str = ""

    def fan_of(self, n_in: int, n_out: int, mode: str) -> int:
        if self.fan == "one":
            return 1
        if self.fan == "n_in":
            return n_in
        return n_in if mode == "fan_out" else n_out  # torch's fan_out of an (in, out) weight is its size(0), n_in

    def std(self, n_in: int, n_out: int, mode: str) -> float:
        return self.gain / math.sqrt(self.fan_of(n_in, n_out, mode))

    def bias_bound(self, n_in: int) -> float:
        return 1 / math.sqrt(n_in) if self.like_nn_linear else 0.0

    def variances(self, n_in: int, n_out: int, mode: str) -> tuple[float, float]:
        """(variance of a weight entry, variance of a bias entry) that the draw has."""
        return self.gain**2 / self.fan_of(n_in, n_out, mode), self.bias_bound(n_in) ** 2 / 3


SCHEMES = {
    scheme.name: scheme
    for scheme in (
        Scheme("normal", "normal", 1.0, "one", summary="unscaled randn, std 1: activations grow with every layer"),
        Scheme("xavier", "normal", 1.0, "n_in", summary="randn / sqrt(n_in): a linear layer keeps its input's std"),
        Scheme("kaiming_normal", "normal", RELU_GAIN, "n_in",
                   summary="randn * sqrt(2 / n_in): makes up for the half that ReLU zeroes"),
        Scheme("kaiming_uniform", "uniform", RELU_GAIN, "mode",
                   summary="torch.nn.init.kaiming_uniform_, scaled by the fan init.mode names (fan_out: n_in)"),
        Scheme("torch_default", "uniform", NN_LINEAR_GAIN, "n_in", like_nn_linear=True,
                   summary="nn.Linear's own: kaiming_uniform_(a=sqrt(5)) on (out, in), bias uniform(+-1/sqrt(n_in))"),
    )
}  # fmt: skip


def scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise ConfigError(f"init.scheme: must be one of {', '.join(SCHEMES)}, got {name!r}") from None
