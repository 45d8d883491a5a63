"""The same maths as `functional`, with torch.autograd writing the gradients: the reference every check uses."""

from __future__ import annotations

import torch

from backprop_lab.impls.common import Grads, autograd_backward
from backprop_lab.impls.functional import model, mse


class Net:
    def __init__(self, params: dict[str, torch.Tensor], shift: float, input_grad: bool, notebook: bool = False):
        # leaf copies: autograd's .grad must not land on (or be confused with) the shared weights
        self.leaves = {name: p.detach().clone().requires_grad_() for name, p in params.items()}
        self.shift, self.input_grad = shift, input_grad or notebook  # no notebook mode: only its x.g

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        self.inp = x.detach().requires_grad_(self.input_grad)
        self.loss = mse(model(self.inp, self.leaves, self.shift), targ)
        return self.loss

    def backward(self) -> Grads:
        leaves = self.leaves | ({"x": self.inp} if self.input_grad else {})
        return autograd_backward(self.loss, leaves)
