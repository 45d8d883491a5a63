"""The backward half of the statistics by layer, and the elementwise differences the figure draws: what a run
records of autograd's gradients beside the check's verdicts."""

from __future__ import annotations

import math

import torch

from backprop_lab.core.names import BACK_STD, BACK_W_GRAD_STD, BACK_W_GRAD_TO_W_STD
from backprop_lab.impls.common import n_layers


def backward_stats(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> dict[int, dict[str, float]]:
    """By layer: the std of the loss's gradient at its output (the quantity fan-out scaling keeps), of its weight's
    gradient, and that over the weight's std (how far one step of plain SGD would move it, relatively)."""
    stats = {}
    for i in range(1, n_layers(params) + 1):
        w, w_grad = params[f"w{i}"].double(), grads[f"w{i}"].double()
        w_std = w.std().item() if w.numel() > 1 else abs(w).max().item()
        stats[i] = {BACK_STD: grads[f"lin{i}"].double().std().item(), BACK_W_GRAD_STD: w_grad.std().item(),
                    BACK_W_GRAD_TO_W_STD: w_grad.std().item() / w_std if w_std > 0 else math.inf}  # fmt: skip
    return stats



def elementwise_diffs(manual: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|manual - autograd| for every entry of every parameter (and x), on the CPU, for the difference figure."""
    return {
        name: (manual[name].double() - reference[name].double()).abs().flatten().cpu()
        for name in reference
        if manual[name].shape == reference[name].shape
    }


