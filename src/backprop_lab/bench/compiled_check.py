"""The bench's check of a compiled pass: its parameter gradients, computed outside any implementation, judged as
the run's check judges an implementation's."""

from __future__ import annotations

import torch

from backprop_lab.impls import autograd
from backprop_lab.impls.common import layer_widths
from backprop_lab.study.grad_check import check_node, float64_truth, reduction_lengths


def params_agree(grads: dict[str, torch.Tensor], params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 shift: float, factor: float) -> bool:  # fmt: skip
    """Parameter gradients computed outside an implementation (a compiled pass), judged as the check judges them."""
    reference = autograd.Net(params, shift)
    reference.forward(x, y)
    ref = reference.backward()
    truth = float64_truth(params, x, y, shift, reference.masks)
    lengths = reduction_lengths(layer_widths(params), x.shape[0])
    return all(check_node(k, grads[k], ref[k], truth[k], lengths[k], factor).close for k in params)


