"""The Module version with `torch.einsum` spelling out the two products of `Lin.bwd` by their indices."""

from __future__ import annotations

import torch

from backprop_lab.impls import module
from backprop_lab.impls.common import Model


class Lin(module.Lin):
    def bwd(self, out, inp):
        if self.input_grad:
            inp.g = torch.einsum("bj,ij->bi", out.g, self.w)  # out.g @ w.t()
        self.w.g = torch.einsum("bj,bi->ji", out.g, inp).t()  # (out.g.t() @ inp).t(): (out, in), as module.Lin
        self.b.g = out.g.sum(0)


def Net(params: dict[str, torch.Tensor], shift: float, input_grad: bool, notebook: bool = False) -> Model:
    return module.Net(params, shift, input_grad, notebook, lin=Lin)
