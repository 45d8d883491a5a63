"""Layers as classes: each keeps its input and output on `__call__`, and `backward` writes the `.g` gradients."""

from __future__ import annotations

import torch

from backprop_lab.impls.common import Model, check_mse_shapes, relu_backward, stack


class Relu:
    def __init__(self, shift, notebook=False):
        self.shift, self.notebook = shift, notebook

    def __call__(self, inp):
        self.inp = inp
        self.out = inp.clamp_min(0.0).sub_(self.shift)
        return self.out

    def backward(self):
        self.inp.g = relu_backward(self.out.g, self.inp, self.notebook)


class Lin:
    def __init__(self, w, b, input_grad=True):
        self.w, self.b, self.input_grad = w, b, input_grad

    def __call__(self, inp):
        self.inp = inp
        self.out = torch.addmm(self.b, inp, self.w)  # inp @ w + b, in one pass
        return self.out

    def backward(self):
        if self.input_grad:
            self.inp.g = self.out.g @ self.w.t()
        self.w.g = (self.out.g.t() @ self.inp).t()  # as nn.Linear's (out, in) product: MKL runs it faster
        self.b.g = self.out.g.sum(0)


class Mse:
    def __call__(self, inp, targ):
        check_mse_shapes(inp, targ)
        self.inp, self.targ = inp, targ
        self.out = (inp.squeeze(-1) - targ).pow(2).mean()
        return self.out

    def backward(self):
        self.inp.g = 2.0 * (self.inp.squeeze(-1) - self.targ).unsqueeze(-1) / self.inp.shape[0]


def Net(params: dict[str, torch.Tensor], shift: float, input_grad: bool, notebook: bool = False) -> Model:
    return Model(stack(params, shift, input_grad, notebook, Lin, Relu), Mse(), params, input_grad or notebook)
