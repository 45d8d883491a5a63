"""torch.nn: `nn.Linear` layers handed the same weights, transposed to nn's (out, in) layout; autograd does the rest."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from backprop_lab.impls.common import Grads, autograd_backward, check_shapes, n_layers
from backprop_lab.impls.functional import mse


class ShiftedReLU(nn.Module):
    def __init__(self, shift: float):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return F.relu(x) - self.shift


class Net:
    def __init__(self, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False):
        layers: list[nn.Module] = []
        self.linears: list[nn.Linear] = []
        for i in range(1, n_layers(params) + 1):
            w, b = params[f"w{i}"], params[f"b{i}"]
            linear = nn.Linear(*w.shape, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                linear.weight.copy_(w.T)  # nn.Linear computes x @ weight.T, weight is (out, in)
                linear.bias.copy_(b)
            self.linears.append(linear)
            layers += [linear, ShiftedReLU(shift)] if i < n_layers(params) else [linear]
        self.model = nn.Sequential(*layers)
        self.params, self.input_grad = params, input_grad

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        check_shapes(x, targ, self.params)
        self.inp = x.detach().requires_grad_(self.input_grad)
        self.nodes = []
        out = self.inp
        for layer in self.model:  # nn.Sequential's loop, keeping each output for its gradient
            out = layer(out)
            out.retain_grad()
            self.nodes.append(out)
        self.loss = mse(out, targ)
        return self.loss

    def node_grads(self) -> Grads:
        names = [f"{'lin' if k % 2 == 0 else 'act'}{k // 2 + 1}" for k in range(len(self.nodes))]
        return {name: t.grad for name, t in zip(names, self.nodes)}

    def backward(self) -> Grads:
        for t in self.nodes:
            t.grad = None
        leaves = {}
        for i, linear in enumerate(self.linears, start=1):
            leaves[f"w{i}"], leaves[f"b{i}"] = linear.weight, linear.bias
        grads = autograd_backward(self.loss, leaves | ({"x": self.inp} if self.input_grad else {}))
        return {name: g.T if name.startswith("w") else g for name, g in grads.items()}  # back to (in, out)
