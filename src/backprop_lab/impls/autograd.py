"""The same maths with torch.autograd writing the gradients: the reference every check uses."""

from __future__ import annotations

import torch

from backprop_lab.core.names import RELU
from backprop_lab.impls.common import Grads, autograd_backward, check_shapes, n_layers
from backprop_lab.impls.functional import lin, mse


def relu(x: torch.Tensor, shift: float) -> torch.Tensor:
    # the notebook's x.clamp_min(0.) - shift has the same values, but autograd passes clamp_min's gradient at exactly
    # 0, where every hand-written backward (`inp > 0`) passes none; torch.relu's slope at 0 is 0, as theirs
    return torch.relu(x) - shift


def model(x: torch.Tensor, params: dict[str, torch.Tensor], shift: float, nodes: dict | None = None,
          activation: str = RELU) -> torch.Tensor:  # fmt: skip
    """The forward pass alone: what autograd differentiates. With `nodes`, each linear output (lin{i}) and shifted
    ReLU output (act{i}; for a linear stack, lin{i} passed on) is put there, its gradient retained."""
    for i in range(1, n_layers(params) + 1):
        if i > 1:
            x = _node(nodes, f"act{i - 1}", relu(x, shift) if activation == RELU else x.view_as(x))
        x = _node(nodes, f"lin{i}", lin(x, params[f"w{i}"], params[f"b{i}"]))
    return x


def _node(nodes: dict | None, name: str, t: torch.Tensor) -> torch.Tensor:
    if nodes is not None and t.requires_grad:
        t.retain_grad()
        nodes[name] = t
    return t


class Net:
    def __init__(self, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False,
                 activation: str = RELU):  # fmt: skip
        # leaf copies: autograd's .grad must not land on (or be confused with) the shared weights
        self.leaves = {name: p.detach().clone().requires_grad_() for name, p in params.items()}
        self.shift, self.input_grad, self.activation = shift, input_grad, activation

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        check_shapes(x, targ, self.leaves)
        self.inp = x.detach().requires_grad_(self.input_grad)
        self.nodes: dict[str, torch.Tensor] = {}
        self.loss = mse(model(self.inp, self.leaves, self.shift, self.nodes, self.activation), targ)
        return self.loss

    @property
    def masks(self) -> list[torch.Tensor]:
        """Where each hidden ReLU of the last forward was open: 1 where its pre-activation > 0, 0 where not, NaN
        where that pre-activation is not finite (the run's dtype overflowed: it cannot say); 1 everywhere in a
        linear stack."""
        hidden = [t.detach() for name, t in self.nodes.items() if name.startswith("lin")][:-1]
        if self.activation != RELU:
            return [torch.ones_like(t) for t in hidden]
        return [torch.where(torch.isfinite(t), (t > 0).to(t.dtype), torch.nan) for t in hidden]

    def backward(self) -> Grads:
        for t in self.nodes.values():
            t.grad = None
        leaves = self.leaves | ({"x": self.inp} if self.input_grad else {})
        return autograd_backward(self.loss, leaves)

    def node_grads(self) -> Grads:
        return {name: t.grad for name, t in self.nodes.items()}
