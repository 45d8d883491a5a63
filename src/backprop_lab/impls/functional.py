"""The notebook's first backward: plain functions, each storing the gradient as `.g` on the tensor it belongs to."""

from __future__ import annotations

import torch

from backprop_lab.impls.common import Grads, check_mse_shapes, n_layers, relu_backward, take_g


def lin(x, w, b):
    return torch.addmm(b, x, w)  # x @ w + b, in one pass


def relu(x, shift):
    # the notebook's x.clamp_min(0.) - shift, as torch.relu: the same values, and autograd's slope at exactly 0 is
    # then 0, as relu_grad's `inp > 0` (clamp_min's autograd passes the gradient at 0: one exact zero among
    # millions of pre-activations, which happens, would make the reference disagree with every manual backward)
    return torch.relu(x) - shift  # shifted so that the mean after a ReLU sits nearer zero


def mse(out, targ):
    check_mse_shapes(out, targ)
    return (out.squeeze(-1) - targ).pow(2).mean()


def model(x, params, shift):
    """The forward pass alone: what autograd differentiates."""
    for i in range(1, n_layers(params) + 1):
        if i > 1:
            x = relu(x, shift)
        x = lin(x, params[f"w{i}"], params[f"b{i}"])
    return x


def mse_grad(out, targ):
    out.g = 2.0 * (out.squeeze(-1) - targ).unsqueeze(-1) / out.shape[0]


def lin_grad(inp, out, w, b, input_grad=True):
    if input_grad:
        inp.g = out.g @ w.t()
    w.g = (out.g.t() @ inp).t()  # as nn.Linear's (out, in) product, then a view: MKL runs that one faster
    b.g = out.g.sum(0)


def relu_grad(inp, out, notebook=False):
    inp.g = relu_backward(out.g, inp, notebook)


class Net:
    """fwd_n_bwd, split in two so that the forward and the backward can each be timed alone."""

    def __init__(self, params: dict[str, torch.Tensor], shift: float, input_grad: bool, notebook: bool = False):
        self.params, self.shift, self.notebook = params, shift, notebook
        self.input_grad = input_grad or notebook

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        self.targ = targ
        self.inps, self.outs = [], []  # each layer's input and its linear output
        for i in range(1, n_layers(self.params) + 1):
            if i > 1:
                x = relu(self.outs[-1], self.shift)
            self.inps.append(x)
            self.outs.append(lin(x, self.params[f"w{i}"], self.params[f"b{i}"]))
        return mse(self.outs[-1], targ)

    def backward(self) -> Grads:
        mse_grad(self.outs[-1], self.targ)
        for i in reversed(range(n_layers(self.params))):
            if i < n_layers(self.params) - 1:
                relu_grad(self.outs[i], self.inps[i + 1], self.notebook)
            w, b = self.params[f"w{i + 1}"], self.params[f"b{i + 1}"]
            lin_grad(self.inps[i], self.outs[i], w, b, input_grad=i > 0 or self.input_grad)
        return take_g(self.params, self.inps[0] if self.input_grad else None)
