"""The fastest hand-written backward this project writes: the notebook's maths, with what costs time taken out.

- No input gradient unless asked: it is a full extra product, the largest of the pass (50,000 × 784 on MNIST),
  and nothing downstream needs it.
- `addmm` for `x @ w + b`, and the shifted ReLU as one new tensor (`clamp_min`, then `sub_` in place).
- The ReLU's mask applied in one fused pass, `threshold_backward` (what autograd runs for a ReLU): `g` where the
  ReLU's input was positive, 0 elsewhere, written over `g`, which nothing reads again.
- Buffers kept from call to call for the activation and input gradients: a fresh 16 MB (or 157 MB) tensor costs its
  page faults on every call. So the gradients returned are the net's buffers, overwritten by its next backward.
- The weight gradient's product in whichever orientation this machine runs faster, `inp.t() @ g` or
  `(g.t() @ inp).t()`: measured once per shape on the first backward (MKL on one CPU prefers one, on another the
  other; the difference is 5 to 10 %).
- Each bias's gradient summed before the weight's product, while the gradient is still in the cache; and a layer
  with one output takes its input's gradient, an outer product, as one broadcast multiply instead of a GEMM.
The gradient at each intermediate node is kept only when asked (`keep_nodes`, for the check): the masks overwrite it.
"""

from __future__ import annotations

import time

import torch

from backprop_lab.impls.common import Grads, check_shapes, n_layers

_orientation: dict[tuple, bool] = {}  # (rows, n_in, n_out, dtype, device) -> whether (g.t() @ inp).t() is faster


def _transposed_is_faster(inp: torch.Tensor, g: torch.Tensor) -> bool:
    key = (*inp.shape, g.shape[1], inp.dtype, inp.device.type)
    if key not in _orientation:
        best = {}
        for transposed, product in ((False, lambda: inp.t() @ g), (True, lambda: (g.t() @ inp).t())):
            times = []
            for _ in range(3):
                started = time.perf_counter()
                product()
                times.append(time.perf_counter() - started)
            best[transposed] = min(times)
        _orientation[key] = best[True] < best[False]
    return _orientation[key]


class Net:
    def __init__(self, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False, keep_nodes=False):
        self.params, self.shift, self.input_grad, self.keep_nodes = params, shift, input_grad, keep_nodes
        self.ws = [params[f"w{i}"] for i in range(1, n_layers(params) + 1)]
        self.bs = [params[f"b{i}"] for i in range(1, n_layers(params) + 1)]
        self.nodes: Grads = {}
        self.buffers: dict[int, torch.Tensor] = {}  # layer index -> the gradient at its input, reused

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
            inp = self.inps[i]
            grads[f"b{i + 1}"] = g.sum(0)
            grads[f"w{i + 1}"] = (g.t() @ inp).t() if _transposed_is_faster(inp, g) else inp.t() @ g
            if i == 0 and not self.input_grad:
                break
            w, out = self.ws[i], self._buffer(i, inp)
            g = torch.mul(g, w.t(), out=out) if w.shape[1] == 1 else torch.mm(g, w.t(), out=out)
            if i > 0:  # through the ReLU before this layer, whose input was outs[i - 1]
                self._keep(f"act{i}", g)
                g = torch.ops.aten.threshold_backward.grad_input(g, self.outs[i - 1], 0, grad_input=g)
        ordered = {name: grads[name] for name in self.params}
        return ordered | ({"x": g} if self.input_grad else {})

    def _buffer(self, i: int, like: torch.Tensor) -> torch.Tensor:
        buffer = self.buffers.get(i)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            buffer = self.buffers[i] = torch.empty_like(like)
        return buffer

    def _keep(self, node: str, g: torch.Tensor) -> None:
        if self.keep_nodes:
            self.nodes[node] = g.clone()

    def node_grads(self) -> Grads:
        return self.nodes
