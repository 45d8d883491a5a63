"""A `Module` base that keeps the arguments and output, so each layer writes only its maths: `forward` and `bwd`."""

from __future__ import annotations

import torch

from backprop_lab.impls.common import Model, check_mse_shapes, relu_backward, stack


class Module:
    def __call__(self, *args):
        self.args = args
        self.out = self.forward(*args)
        return self.out

    def forward(self, *args):
        raise NotImplementedError

    def backward(self):
        self.bwd(self.out, *self.args)


class Relu(Module):
    def __init__(self, shift, notebook=False):
        self.shift, self.notebook = shift, notebook

    def forward(self, inp):
        return inp.clamp_min(0.0).sub_(self.shift)

    def bwd(self, out, inp):
        inp.g = relu_backward(out.g, inp, self.notebook)


class Lin(Module):
    def __init__(self, w, b, input_grad=True):
        self.w, self.b, self.input_grad = w, b, input_grad

    def forward(self, inp):
        return torch.addmm(self.b, inp, self.w)  # inp @ w + b, in one pass

    def bwd(self, out, inp):
        if self.input_grad:
            inp.g = out.g @ self.w.t()
        self.w.g = (out.g.t() @ inp).t()  # as nn.Linear's (out, in) product: MKL runs it faster
        self.b.g = out.g.sum(0)


class Mse(Module):
    def forward(self, inp, targ):
        check_mse_shapes(inp, targ)
        return (inp.squeeze(-1) - targ).pow(2).mean()

    def bwd(self, out, inp, targ):
        inp.g = 2.0 * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]


def Net(params: dict[str, torch.Tensor], shift: float, input_grad: bool, notebook: bool = False, lin=Lin) -> Model:
    return Model(stack(params, shift, input_grad, notebook, lin, Relu), Mse(), params, input_grad or notebook)
