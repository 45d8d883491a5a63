"""The fastest hand-written backward this project writes: the notebook's maths, with what costs time taken out.

- No input gradient unless asked: it is a full extra product, the largest of the pass (50,000 × 784 on MNIST),
  and nothing downstream needs it.
- `addmm` for `x @ w + b`, and the shifted ReLU as one new tensor (`clamp_min`, then `sub_` in place).
- Each ReLU mask written once, straight as a float (`torch.gt(..., out=)`), and applied in place: a boolean mask
  would be converted inside the multiply, and nothing reads the gradient it overwrites.
- The weight gradient in nn.Linear's (out, in) orientation, `(g.t() @ inp).t()`, a free view back to (in, out):
  MKL runs that product faster than `inp.t() @ g` on these skinny shapes.
The gradients are returned, not stored as `.g`: the `.g` convention is the lesson's, not needed here. The gradient
at each intermediate node is kept only when asked (`keep_nodes`, for the check): the in-place masks overwrite it.
"""

from __future__ import annotations

import torch

from backprop_lab.impls.common import Grads, check_shapes, n_layers


class Net:
    def __init__(self, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False, keep_nodes=False):
        self.params, self.shift, self.input_grad, self.keep_nodes = params, shift, input_grad, keep_nodes
        self.nodes: Grads = {}
        self.ws = [params[f"w{i}"] for i in range(1, n_layers(params) + 1)]
        self.bs = [params[f"b{i}"] for i in range(1, n_layers(params) + 1)]

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        check_shapes(x, targ, self.params)
        self.targ = targ
        self.inps, self.outs = [], []  # each layer's input, and its linear output
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            self.inps.append(x if i == 0 else self.outs[-1].clamp_min(0.0).sub_(self.shift))
            self.outs.append(torch.addmm(b, self.inps[-1], w))
        return (self.outs[-1].squeeze(-1) - targ).pow(2).mean()

    def backward(self) -> Grads:
        out = self.outs[-1]
        g = (out.squeeze(-1) - self.targ).unsqueeze(-1) * (2 / out.shape[0])  # d loss / d out
        grads: Grads = {}
        for i in reversed(range(len(self.ws))):
            self._keep(f"lin{i + 1}", g)
            grads[f"w{i + 1}"] = (g.t() @ self.inps[i]).t()
            grads[f"b{i + 1}"] = g.sum(0)
            if i == 0 and not self.input_grad:
                break
            g = g @ self.ws[i].t()
            if i > 0:  # through the ReLU before this layer: its mask, from the ReLU's input
                self._keep(f"act{i}", g)
                g.mul_(torch.gt(self.outs[i - 1], 0, out=torch.empty_like(g)))
        ordered = {name: grads[name] for name in self.params}
        return ordered | ({"x": g} if self.input_grad else {})

    def _keep(self, node: str, g: torch.Tensor) -> None:
        if self.keep_nodes:
            self.nodes[node] = g.clone()

    def node_grads(self) -> Grads:
        return self.nodes
