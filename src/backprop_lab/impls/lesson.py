"""The lesson's two styles, the user's functions (`lin_grad`, ...) or classes (`Lin`, ...) wherever given and the
lab's correct ones standing in for the rest, walked as the notebook walks them: each node's gradient taken as the
user's step set it, and again as it stands at the end of the backward (a later step may change it in place)."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Optional

import torch

from backprop_lab.impls import functional, module
from backprop_lab.impls.common import check_shapes, n_layers, stack

FUNCTIONS = ("lin_grad", "relu_grad", "mse_grad")  # the lesson's backward, as functions
CLASSES = ("Lin", "Relu", "Mse")  # the lesson's layers, as classes


class _Given:
    """Which nodes the user's code gave a gradient at, and their values: as each was set (cloned at once), then, for
    one that a later step changed in place or replaced (`out.g *= 2` in lin_grad), as it stands at the end of the
    backward, with the step that changed it (`changed`)."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}
        self.not_given: list[str] = []
        self.stood_in: list[torch.Tensor] = []  # the tensors whose `.g` is the lab's, to take back before a next call
        self.held: dict[str, tuple] = {}  # node: (the tensor it is the `.g` of, that `.g`, its version when set)
        self.changed: dict[str, str] = {}  # node: the step after which its `.g` was no longer what was set

    def take(self, node: str, tensor: torch.Tensor, stand_in, *args) -> None:
        """After a user step: keep `tensor.g` as given, or mark the node not given and let the lab's,
        `stand_in(*args)`, take its place."""
        g = getattr(tensor, "g", None)
        if isinstance(g, torch.Tensor):
            self.grads[node] = g.detach().clone()
            if g.shape != tensor.shape:  # judged as given (its verdict: shape); the steps below get the lab's
                tensor.g = stand_in(*args)
                self.stood_in.append(tensor)
            else:
                self.held[node] = (tensor, g, g._version)
        else:
            self.not_given.append(node)
            tensor.g = stand_in(*args)
            self.stood_in.append(tensor)

    def after(self, step: str, node: str) -> None:
        """After `step`, which read `node`'s gradient (its `out.g`): whether it changed it, in place or by another."""
        if node in self.held and node not in self.changed:
            tensor, g, version = self.held[node]
            if getattr(tensor, "g", None) is not g or g._version != version:
                self.changed[node] = step

    def settle(self) -> None:
        """At the end of a backward: each node a later step changed, as it stands now."""
        for node in self.changed:
            g = getattr(self.held[node][0], "g", None)
            if isinstance(g, torch.Tensor):
                self.grads[node] = g.detach().clone()

    @staticmethod
    def forget_stand_ins(previous: Optional[_Given]) -> None:
        """Before a next backward: the lab's stand-ins go, so that none can pass as the user's; the user's own `.g`s
        stay, as they would in the notebook, so that code adding to a stale one shows."""
        for tensor in previous.stood_in if previous else []:
            tensor.__dict__.pop("g", None)


# the lab's gradients, standing in where the user's code gave none: the notebook's lines
def _weight(inp, out, w):
    return inp.t() @ out.g


def _bias(inp, out, w):
    return out.g.sum(0)


def _input(inp, out, w):
    return out.g @ w.t()


def _relu_input(inp, out):
    return out.g * (inp > 0).to(out.g.dtype)


def _loss_input(out, targ):
    holder = out.detach().view_as(out)  # never touching `out.g`, which the user's step may have left half set
    functional.mse_grad(holder, targ)
    return holder.g


def with_shift(relu, shift: float, first: int):
    """The user's relu (or Relu), given the run's shift where it takes one (positionally after its `first`
    arguments, or by keyword); one that takes none is the notebook's fixed 0.5, held to it by `forward_agrees`."""
    parameters = list(inspect.signature(relu).parameters.values())
    if len(parameters) <= first:
        return relu
    if parameters[first].kind is inspect.Parameter.KEYWORD_ONLY:
        return lambda *args: relu(*args, **{parameters[first].name: shift})
    return lambda *args: relu(*args, shift)


def _user(mod: ModuleType, name: str):
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


class _Lesson:
    """What the lesson's two styles share: a backward that walks the steps (`_walk`, each subclass's), taking each
    node's gradient as the user's step set it, or standing in for it; the lab's stand-ins of a previous call taken
    back first."""

    given: Optional[_Given] = None

    def backward(self):
        _Given.forget_stand_ins(self.given)
        self.given = _Given()
        self._walk(self.given)
        self.given.settle()
        return {k: v for k, v in self.given.grads.items() if k[0] in "wbx"}

    def changed(self) -> dict[str, str]:
        """The nodes a later step changed after their gradient was set, and the step."""
        return dict(self.given.changed)

    def _forward_step(self, step: str, node: str, fn, inp: torch.Tensor) -> torch.Tensor:
        """`fn(inp)`, a step of the forward, noting where it changed its input in place (the notebook's Relu's
        `clamp_min_`): the gradients are still judged, but a learner should know."""
        before = inp.detach().clone()
        out = fn(inp)
        if self.forward_note is None and not torch.equal(inp.detach(), before):
            self.forward_note = (f"your {step} changed its input in place ({node}, the output of the step before): "
                                 "an in-place op such as clamp_min_ where clamp_min is due? The gradients are judged "
                                 "all the same, against the lab's own forward")  # fmt: skip
        return out

    forward_note: Optional[str] = None

    def _walk(self, given: _Given) -> None:
        raise NotImplementedError

    def node_grads(self):
        return {k: v for k, v in self.given.grads.items() if k[0] in "la"}

    def not_given(self) -> list[str]:
        return list(self.given.not_given)


class LessonFunctions(_Lesson):
    """The lesson's functions, the user's where given: the notebook's `fwd_n_bwd` in two halves, each node's
    gradient taken as it is set."""

    def __init__(self, mod: ModuleType, params: dict[str, torch.Tensor], shift: float):
        self.mod, self.params, self.shift = mod, params, shift
        self.layers = [(params[f"w{i}"], params[f"b{i}"]) for i in range(1, n_layers(params) + 1)]
        self.lin = _user(mod, "lin") or functional.lin
        self.mse = _user(mod, "mse") or functional.mse
        relu = _user(mod, "relu")
        if relu is None:
            self.relu = lambda x: functional.relu(x, shift)
        else:
            self.relu = with_shift(relu, shift, first=1)

    def forward(self, x, targ):
        check_shapes(x, targ, self.params)
        self.x, self.trg = x, targ
        self.inps, self.lins = [], []
        for i, (w, b) in enumerate(self.layers):
            self.inps.append(x if i == 0 else self._forward_step("relu", f"lin{i}", self.relu, self.lins[-1]))
            self.lins.append(self.lin(self.inps[-1], w, b))
        return self.mse(self.lins[-1], targ)

    def _walk(self, given: _Given) -> None:
        n = len(self.layers)
        mse_grad, relu_grad, lin_grad = (_user(self.mod, name) for name in FUNCTIONS[::-1])
        if mse_grad:
            mse_grad(self.lins[-1], self.trg)
        given.take(f"lin{n}", self.lins[-1], _loss_input, self.lins[-1], self.trg)
        for i in reversed(range(n)):
            if i < n - 1:
                if relu_grad:
                    relu_grad(self.lins[i], self.inps[i + 1])
                    given.after("relu_grad", f"act{i + 1}")
                given.take(f"lin{i + 1}", self.lins[i], _relu_input, self.lins[i], self.inps[i + 1])
            step = (self.inps[i], self.lins[i], self.layers[i][0])
            if lin_grad:
                lin_grad(*step, self.layers[i][1])
                given.after("lin_grad", f"lin{i + 1}")
            given.take(f"w{i + 1}", self.layers[i][0], _weight, *step)
            given.take(f"b{i + 1}", self.layers[i][1], _bias, *step)
            given.take(f"act{i}" if i else "x", self.inps[i], _input, *step)


class LessonClasses(_Lesson):
    """The lesson's classes, the user's where given and the notebook's Module versions for the rest, called in the
    notebook's order and walked back one layer at a time, so that a layer leaving its input without a gradient is
    the user's node "not given", not a crash."""

    def __init__(self, mod: ModuleType, params: dict[str, torch.Tensor], shift: float):
        self.params = params
        lin, relu, loss = (getattr(mod, name, getattr(module, name)) for name in CLASSES)
        make_relu = with_shift(relu, shift, first=0)
        self.layers = stack(params, lin, make_relu)
        self.loss = loss()

    def forward(self, x, targ):
        check_shapes(x, targ, self.params)
        self.x, self.trg, self.outs = x, targ, []
        inp = x
        for k, layer in enumerate(self.layers):
            inp = self._forward_step(f"{type(layer).__name__}'s forward", _out_node(k - 1), layer, inp) if k else (
                layer(inp))  # fmt: skip
            self.outs.append(inp)
        return self.loss(inp, targ)

    def _walk(self, given: _Given) -> None:
        self.loss.backward()
        n = len(self.layers) // 2 + 1
        given.take(f"lin{n}", self.outs[-1], _loss_input, self.outs[-1], self.trg)
        for k in reversed(range(len(self.layers))):
            self.layers[k].backward()
            given.after(f"{type(self.layers[k]).__name__}'s bwd", _out_node(k))
            inp, out = (self.outs[k - 1] if k else self.x), self.outs[k]
            i = k // 2 + 1  # the layer's number: lin{i}, then act{i}
            if k % 2 == 0:  # a linear layer: its weight, its bias, then its input (act{i-1}, or x)
                w, b = self.params[f"w{i}"], self.params[f"b{i}"]
                given.take(f"w{i}", w, _weight, inp, out, w)
                given.take(f"b{i}", b, _bias, inp, out, w)
                given.take(f"act{i - 1}" if k else "x", inp, _input, inp, out, w)
            else:  # a ReLU: its input is lin{i}
                given.take(f"lin{i}", inp, _relu_input, inp, out)


def _out_node(k: int) -> str:
    """The node the k-th layer of a stack outputs: lin{i} for a linear layer, act{i} for the ReLU after it."""
    return f"{'lin' if k % 2 == 0 else 'act'}{k // 2 + 1}"
