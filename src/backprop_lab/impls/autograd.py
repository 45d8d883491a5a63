"""The same maths with torch.autograd writing the gradients: the reference every check uses."""

from __future__ import annotations

import torch

from backprop_lab.impls.common import Grads, autograd_backward, check_shapes, n_layers
from backprop_lab.impls.functional import lin, mse


def relu(x: torch.Tensor, shift: float) -> torch.Tensor:
    # the notebook's x.clamp_min(0.) - shift has the same values, but autograd passes clamp_min's gradient at exactly
    # 0, where every hand-written backward (`inp > 0`) passes none; torch.relu's slope at 0 is 0, as theirs
    return torch.relu(x) - shift


def model(x: torch.Tensor, params: dict[str, torch.Tensor], shift: float) -> torch.Tensor:
    """The forward pass alone: what autograd differentiates."""
    for i in range(1, n_layers(params) + 1):
        if i > 1:
            x = relu(x, shift)
        x = lin(x, params[f"w{i}"], params[f"b{i}"])
    return x


class Net:
    def __init__(self, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False):
        # leaf copies: autograd's .grad must not land on (or be confused with) the shared weights
        self.leaves = {name: p.detach().clone().requires_grad_() for name, p in params.items()}
        self.shift, self.input_grad = shift, input_grad

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        check_shapes(x, targ, self.leaves)
        self.inp = x.detach().requires_grad_(self.input_grad)
        self.loss = mse(model(self.inp, self.leaves, self.shift), targ)
        return self.loss

    def backward(self) -> Grads:
        leaves = self.leaves | ({"x": self.inp} if self.input_grad else {})
        return autograd_backward(self.loss, leaves)
