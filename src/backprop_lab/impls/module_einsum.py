"""The `Module` version with `torch.einsum` in `Lin.bwd` (the notebook's "Module.forward()" cell): the two products
spelled by their indices. The rest is `module`'s."""

import torch

from backprop_lab.core.names import RELU
from backprop_lab.impls import module
from backprop_lab.impls.common import NotebookNet, activation_class


class Lin(module.Lin):
    def bwd(self, out, inp):
        inp.g = torch.einsum("ia, ka -> ik", out.g, self.w)
        self.w.g = torch.einsum("bi, bj ->ij", inp, out.g)
        self.b.g = out.g.sum(0)


def Net(params, shift, activation=RELU):
    return NotebookNet(module.Model(params, shift, lin=Lin, relu=activation_class(module.Relu, activation)), params)
