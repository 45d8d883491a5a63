"""What every implementation shares: the MSE shape guard, the ReLU's masked gradient (lean or as the notebook had
it), reading the `.g` gradients, the layer stack and its runner, and autograd's backward on a retained graph."""

from __future__ import annotations

from typing import Optional

import torch

from backprop_lab.errors import ShapeError

Grads = dict[str, torch.Tensor]


def check_mse_shapes(out: torch.Tensor, targ: torch.Tensor) -> None:
    """(N, 1) predictions against (N,) targets only: `out - targ` on those shapes would broadcast into (N, N)."""
    n = targ.shape[0] if targ.ndim == 1 else None
    if out.ndim != 2 or out.shape[1] != 1 or targ.ndim != 1 or out.shape[0] != n:
        raise ShapeError(f"mse: expected output (N, 1) and target (N,), got {tuple(out.shape)} and {tuple(targ.shape)}")


def n_layers(params: dict[str, torch.Tensor]) -> int:
    return len(params) // 2


def take_g(params: dict[str, torch.Tensor], inp: Optional[torch.Tensor]) -> Grads:
    """Collect and remove each `.g`, so that a stale gradient from an earlier backward can never pass a check."""
    tensors = dict(params) | ({"x": inp} if inp is not None else {})
    grads = {}
    for name, t in tensors.items():
        if not hasattr(t, "g"):
            raise RuntimeError(f"backward did not set {name}.g")
        grads[name] = t.g
        del t.g
    return grads


def relu_backward(grad: torch.Tensor, inp: torch.Tensor, notebook: bool = False) -> torch.Tensor:
    """The gradient through a ReLU: `grad` where the ReLU's input was positive, 0 elsewhere.

    Lean: the mask `inp > 0` is written straight into a float tensor (a boolean one would be converted to float
    inside the multiply, one more full pass) and applied in place, as nothing reads `grad` again.
    `notebook=True` keeps what the notebook did, a float copy of a boolean mask and a new tensor: the bench's baseline.
    """
    if notebook:
        return grad * (inp > 0).float()
    return grad.mul_(torch.gt(inp, 0, out=torch.empty_like(grad)))


def stack(params: dict[str, torch.Tensor], shift: float, input_grad: bool, notebook: bool, lin, relu) -> list:
    """[Lin, Relu, Lin, ..., Lin]: the first Lin computes its input's gradient only when asked (nothing needs it);
    the notebook computed it always."""
    layers = []
    for i in range(1, n_layers(params) + 1):
        layers.append(lin(params[f"w{i}"], params[f"b{i}"], input_grad=i > 1 or input_grad or notebook))
        if i < n_layers(params):
            layers.append(relu(shift, notebook))
    return layers


class Model:
    """The notebook's Model: call the layers in order, then the loss; backward walks them in reverse."""

    def __init__(self, layers: list, loss, params: dict[str, torch.Tensor], input_grad: bool):
        self.layers, self.loss, self.params, self.input_grad = layers, loss, params, input_grad

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        self.inp = x
        for layer in self.layers:
            x = layer(x)
        return self.loss(x, targ)

    def backward(self) -> Grads:
        self.loss.backward()
        for layer in reversed(self.layers):
            layer.backward()
        return take_g(self.params, self.inp if self.input_grad else None)


def autograd_backward(loss: torch.Tensor, leaves: dict[str, torch.Tensor]) -> Grads:
    """loss.backward() on a retained graph, grads reset first, so that backward alone can be repeated and timed."""
    for t in leaves.values():
        t.grad = None
    loss.backward(retain_graph=True)
    return {name: t.grad for name, t in leaves.items()}
