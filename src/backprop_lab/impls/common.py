"""The lab around the lesson: what every implementation's `Net` shares and the notebook's cells leave out (the
shape guard, collecting the `.g` gradients, the layer stack for any depth, the handle on a notebook `Model`), and
autograd's backward on a retained graph."""

from __future__ import annotations

import torch

from backprop_lab.core.errors import ShapeError
from backprop_lab.core.names import RELU

Grads = dict[str, torch.Tensor]


def check_mse_shapes(out: torch.Tensor, targ: torch.Tensor) -> None:
    """(N, 1) predictions against (N,) targets only: `out - targ` on other shapes would broadcast into (N, N)."""
    n = targ.shape[0] if targ.ndim == 1 else None
    if out.ndim != 2 or out.shape[1] != 1 or targ.ndim != 1 or out.shape[0] != n:
        raise ShapeError(f"mse: expected output (N, 1) and target (N,), got {tuple(out.shape)} and {tuple(targ.shape)}")


def check_shapes(x: torch.Tensor, targ: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
    """Before a forward: the output the layers will give (N, width of the last layer), against the target."""
    last = params[f"w{n_layers(params)}"]
    check_mse_shapes(torch.empty(x.shape[0], last.shape[1], device="meta"), targ)


def n_layers(params: dict[str, torch.Tensor]) -> int:
    """A weight and a bias per layer."""
    return len(params) // 2


def layer_widths(params: dict[str, torch.Tensor]) -> list[int]:
    """[input width, each layer's output width]: the model's widths, read back from its `(in, out)` weights."""
    return [params["w1"].shape[0]] + [params[f"w{i}"].shape[1] for i in range(1, n_layers(params) + 1)]


def node_shapes(widths: list[int], rows: int, input_grad: bool) -> dict[str, tuple[int, ...]]:
    """Every node's shape, as its gradient's is due: lin{i} and act{i} (rows, width), w{i} (in, out), b{i} (out,),
    and x (rows, inputs) when `input_grad`."""
    shapes = {"x": (rows, widths[0])} if input_grad else {}
    for i in range(1, len(widths)):
        shapes |= {f"w{i}": (widths[i - 1], widths[i]), f"b{i}": (widths[i],), f"lin{i}": (rows, widths[i])}
        if i < len(widths) - 1:
            shapes[f"act{i}"] = (rows, widths[i])
    return shapes


def backward_order(n: int, input_grad: bool) -> list[str]:
    """Every node the backward computes a gradient at, in the order it does, from the loss towards the input:
    lin{L} (the output), w{L}, b{L}, act{L-1} (the shifted ReLU's output), lin{L-1}, w{L-1}, ..., b1, x."""
    order = []
    for i in range(n, 0, -1):
        order += [f"lin{i}", f"w{i}", f"b{i}"] + ([f"act{i - 1}"] if i > 1 else [])
    return order + (["x"] if input_grad else [])


def take_g(params: dict[str, torch.Tensor], inp: torch.Tensor | None) -> Grads:
    """Collect and remove each `.g`, so that a stale gradient from an earlier backward can never pass a check."""
    tensors = dict(params) | ({"x": inp} if inp is not None else {})
    grads = {}
    for name, t in tensors.items():
        if not hasattr(t, "g"):
            raise RuntimeError(f"backward did not set {name}.g")
        grads[name] = t.g
        del t.g
    return grads


class Identity:
    """model.activation=none: where the ReLU would be, the input passed on (02b's linear stack, `x = a @ x`), so
    that lin{i} and act{i} stay the nodes at every depth: act{i} is lin{i}'s values, its gradient lin{i}'s."""

    def __init__(self, shift=None):  # called as the ReLU class is: Relu(shift)
        pass

    def __call__(self, inp):
        self.inp, self.out = inp, inp.view_as(inp)
        return self.out

    def backward(self):
        self.inp.g = self.out.g


def activation_class(relu, activation: str):
    """The class between linear layers: the implementation's ReLU, or Identity for a linear stack."""
    return relu if activation == RELU else Identity


def stack(params: dict[str, torch.Tensor], lin, relu) -> list:
    """[lin(w1, b1), relu(), lin(w2, b2), ..., lin(wL, bL)]: the notebook's `self.layers`, for any depth."""
    layers = []
    for i in range(1, n_layers(params) + 1):
        layers.append(lin(params[f"w{i}"], params[f"b{i}"]))
        if i < n_layers(params):
            layers.append(relu())
    return layers


class NotebookNet:
    """The lab's handle on a notebook `Model`: the interface every implementation shares, with the input's gradient
    collected as the notebook computed it."""

    def __init__(self, model, params: dict[str, torch.Tensor]):
        self.model, self.params = model, params

    def forward(self, x: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        check_shapes(x, targ, self.params)
        self.x = x
        return self.model(x, targ)

    def backward(self) -> Grads:
        self.model.backward()
        return take_g(self.params, self.x)

    def node_grads(self) -> Grads:
        """After a backward: the gradient at each linear output and shifted ReLU output, as the layers left it."""
        names = [f"{'lin' if k % 2 == 0 else 'act'}{k // 2 + 1}" for k in range(len(self.model.layers))]
        return {name: layer.out.g for name, layer in zip(names, self.model.layers)}


def autograd_backward(loss: torch.Tensor, leaves: dict[str, torch.Tensor]) -> Grads:
    """loss.backward() on a retained graph, grads reset first, so that backward alone can be repeated and timed."""
    for t in leaves.values():
        t.grad = None
    loss.backward(retain_graph=True)
    return {name: t.grad for name, t in leaves.items()}


def all_grads(net, grads) -> dict:
    """A backward's gradients with the intermediate nodes' (`node_grads`, where the implementation has it)."""
    return dict(grads or {}) | dict(getattr(net, "node_grads", dict)() or {})
