"""Stage 2, init: weights by the chosen scheme, stored (in, out) as in the notebook, so that a layer is `x @ w + b`.

torch.nn.init assumes nn.Linear's (out, in) layout: it reads fan_in from size(1) and fan_out from size(0). On our
(in, out) weights those are swapped, so `kaiming_uniform_(w, mode="fan_out")` is what scales by n_in, the notebook's
finding. `torch_default` fills an (out, in) weight exactly as nn.Linear does, then stores its transpose.
"""

from __future__ import annotations

import math

import torch
from torch.nn import init

from backprop_lab.errors import ConfigError

Params = dict[str, torch.Tensor]  # w1, b1, w2, b2, ... numbered from the input


def layer_weight(
    scheme: str, n_in: int, n_out: int, mode: str, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's (w, b): w of shape (n_in, n_out), b of shape (n_out,)."""
    w, b = torch.zeros(n_in, n_out), torch.zeros(n_out)
    if scheme == "normal":
        w.normal_(generator=g)  # unscaled: std 1, whatever the fan
    elif scheme == "xavier":
        w.normal_(generator=g).div_(math.sqrt(n_in))
    elif scheme == "kaiming_normal":
        w.normal_(generator=g).mul_(math.sqrt(2 / n_in))
    elif scheme == "kaiming_uniform":
        init.kaiming_uniform_(w, mode=mode, nonlinearity="relu", generator=g)
    elif scheme == "torch_default":
        # nn.Linear.reset_parameters on an (out, in) weight, then transposed: bound 1/sqrt(n_in) for w and b alike
        w_out_in = torch.empty(n_out, n_in)
        init.kaiming_uniform_(w_out_in, a=math.sqrt(5), generator=g)
        w = w_out_in.T.contiguous()
        bound = 1 / math.sqrt(n_in)
        init.uniform_(b, -bound, bound, generator=g)
    else:
        raise ConfigError(f"init.scheme: unknown scheme {scheme!r}")
    return w, b


def init_params(widths: list[int], scheme: str, mode: str, seed: int, gain: float = 1.0) -> Params:
    """Weights and biases for every layer, reproducible from the seed alone; every weight times `gain`."""
    g = torch.Generator().manual_seed(seed)
    params: Params = {}
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        w, b = layer_weight(scheme, n_in, n_out, mode, g)
        params[f"w{i}"], params[f"b{i}"] = w.mul_(gain), b  # times 1.0 is exact: the scheme as published
    return params


def param_stats(params: Params) -> dict[int, dict[str, float]]:
    """The init/ metrics by layer (step = layer, like act/*): mean and std of its weight and of its bias (a 1-element
    bias has std 0, not NaN)."""
    stats: dict[int, dict[str, float]] = {}
    for name, p in params.items():
        layer = stats.setdefault(int(name[1:]), {})
        layer[f"init/{name[0]}_mean"] = p.mean().item()
        layer[f"init/{name[0]}_std"] = p.std().item() if p.numel() > 1 else 0.0
    return stats
