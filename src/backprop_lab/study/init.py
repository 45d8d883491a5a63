"""Stage 2, init: weights by the chosen scheme (init_schemes.py), stored (in, out) as in the notebook, so that a
layer is `x @ w + b`."""

from __future__ import annotations

import math

import torch
from torch.nn import init

from backprop_lab.config import init_schemes

Params = dict[str, torch.Tensor]  # w1, b1, w2, b2, ... numbered from the input


def layer_weight(
    drawn: init_schemes.Scheme, n_in: int, n_out: int, mode: str, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's (w, b): w of shape (n_in, n_out), b of shape (n_out,)."""
    # nn.Linear's draw fills an (out, in) weight: the generator's numbers land in that order, then it is transposed
    shape = (n_out, n_in) if drawn.like_nn_linear else (n_in, n_out)
    w, b = torch.zeros(shape), torch.zeros(n_out)
    std = drawn.std(n_in, n_out, mode)
    if drawn.distribution == "normal":
        init.normal_(w, 0.0, std, generator=g)
    else:
        bound = math.sqrt(3.0) * std
        init.uniform_(w, -bound, bound, generator=g)
    if drawn.like_nn_linear:
        w = w.T.contiguous()
        bound = drawn.bias_bound(n_in)
        init.uniform_(b, -bound, bound, generator=g)
    return w, b


def init_params(widths: list[int], scheme: str, mode: str, seed: int, gain: float = 1.0) -> Params:
    """Weights and biases for every layer, reproducible from the seed alone; every weight times `gain`."""
    g, drawn = torch.Generator().manual_seed(seed), init_schemes.scheme(scheme)
    params: Params = {}
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        w, b = layer_weight(drawn, n_in, n_out, mode, g)
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
