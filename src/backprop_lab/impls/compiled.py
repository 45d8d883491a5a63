"""The lean maths and autograd's, each as one pure function of the inputs and weights, for `torch.compile` (the
bench's compiled rows). No buffers and no measured orientation, as in `lean.py`: the compiler sees the whole
forward+backward and fuses the elementwise work around the products itself. Not a `conf/impl/` option: compiling
costs tens of seconds, which the pipeline's single pass would never earn back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from backprop_lab.impls.common import n_layers

Pass = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def lean(params: dict[str, torch.Tensor], shift: float) -> Pass:
    n = n_layers(params)
    ws, bs = [params[f"w{i}"] for i in range(1, n + 1)], [params[f"b{i}"] for i in range(1, n + 1)]

    def forward_backward(x: torch.Tensor, targ: torch.Tensor) -> dict[str, torch.Tensor]:
        inps, outs = [], []
        for i, (w, b) in enumerate(zip(ws, bs)):
            inps.append(x if i == 0 else outs[-1].clamp_min(0.0) - shift)
            outs.append(torch.addmm(b, inps[-1], w))
        g = (outs[-1].squeeze(-1) - targ).unsqueeze(-1) * (2 / x.shape[0])
        grads = {}
        for i in reversed(range(n)):
            grads[f"w{i + 1}"], grads[f"b{i + 1}"] = inps[i].t() @ g, g.sum(0)
            if i > 0:
                g = (g @ ws[i].t()) * (outs[i - 1] > 0)
        return grads

    return forward_backward


def autograd(params: dict[str, torch.Tensor], shift: float) -> Pass:
    leaves = {name: p.detach().clone().requires_grad_() for name, p in params.items()}
    n = n_layers(params)

    def forward_backward(x: torch.Tensor, targ: torch.Tensor) -> dict[str, torch.Tensor]:
        z = x
        for i in range(1, n + 1):
            if i > 1:
                z = torch.relu(z) - shift
            z = z @ leaves[f"w{i}"] + leaves[f"b{i}"]
        loss = (z.squeeze(-1) - targ).pow(2).mean()
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))

    return forward_backward


PASSES = {"lean": lean, "autograd": autograd}
