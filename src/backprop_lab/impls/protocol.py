"""What every implementation meets, the lab's own and yours: the one door an implementation comes through.

An implementation is Python code, named by `impl.code`: a module (`backprop_lab.impls.module`, what each
`conf/impl/*.yaml` names) or a file (`impl=user impl.code=my_backward.py`). The lab's own run in the lab's process;
a learner's runs in a process of its own (isolation/), which builds it through this same door. The code defines one
of three things:

- `Net(params, shift)`, for anything: `forward(x, targ) -> loss`, then `backward() -> {node: gradient}`, the nodes
  being `w1`, `b1`, ... (weights shaped (in, out)), `lin{i}` (a linear layer's output), `act{i}` (the shifted ReLU's
  output after it) and `x`; `node_grads()`, when defined, adds the intermediate nodes after a backward. It may take
  `input_grad` and `keep_nodes` keywords; the lab's seven do.
- the lesson's classes `Lin(w, b)`, `Relu(shift)` (or `Relu()`, the notebook's fixed 0.5) and `Mse()`, each called
  forward and walked back by `backward()`, as the notebook's Module does with `forward` and `bwd`;
- the lesson's functions `lin_grad(inp, out, w, b)`, `relu_grad(inp, out)`, `mse_grad(inp, targ)`, each setting
  `.g` on the tensors it is given the gradient of, and optionally the forward's `lin`, `relu`, `mse`.

Of the classes and functions, whichever are given are used and the lab's correct ones stand in for the rest, so a
learner who wrote only `lin_grad` gets a verdict on what `lin_grad` gives; a node their code leaves without a
gradient is "not given", filled from the lab's so that the nodes below it can still be judged.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional

import torch

from backprop_lab.core.errors import ConfigError, UserCodeError
from backprop_lab.impls import functional, module
from backprop_lab.impls.common import check_shapes, n_layers, stack

FUNCTIONS = ("lin_grad", "relu_grad", "mse_grad")  # the lesson's backward, as functions
CLASSES = ("Lin", "Relu", "Mse")  # the lesson's layers, as classes
# how the lab calls each, to tell a wrong signature before it is called: (name, the lesson's signature, arguments)
SIGNATURES = {
    "lin_grad": ("lin_grad(inp, out, w, b)", 4), "relu_grad": ("relu_grad(inp, out)", 2),
    "mse_grad": ("mse_grad(inp, targ)", 2), "lin": ("lin(x, w, b)", 3), "relu": ("relu(x) or relu(x, shift)", (1, 2)),
    "mse": ("mse(out, targ)", 2), "Lin": ("Lin(w, b)", 2), "Relu": ("Relu() or Relu(shift)", (0, 1)),
    "Mse": ("Mse()", 0),
}  # fmt: skip


@dataclass(frozen=True)
class Code:
    """An implementation's code, loaded: the lab's own (run in the lab's process) or, in a learner's own process, the
    learner's (isolation/child.py)."""

    module: ModuleType
    label: str  # the module's name, or the file's path, as messages name it

    @property
    def style(self) -> str:
        return style_of(self.module)

    @property
    def defined(self) -> set[str]:
        """Which of the lesson's functions or classes the code defines."""
        return {name for name in FUNCTIONS + CLASSES if hasattr(self.module, name)}


def style_of(module: ModuleType) -> str:
    if hasattr(module, "Net"):
        return "Net"
    return "classes" if any(hasattr(module, c) for c in CLASSES) else "functions"


def load_module(name: str) -> Code:
    """One of the lab's own implementations, by its module's name (what each `conf/impl/*.yaml` names)."""
    return Code(importlib.import_module(name), name)


def described(module: ModuleType, label: str) -> str:
    """The module's style (Net, classes or functions), after checking it defines something to check and that each of
    the lesson's names it defines takes the lab's call: ConfigError with one line otherwise, before anything runs."""
    if not (hasattr(module, "Net") or any(hasattr(module, n) for n in FUNCTIONS + CLASSES)):
        raise ConfigError(f"impl.code: {label} defines none of Net, {', '.join(CLASSES)}, {', '.join(FUNCTIONS)}; "
                          "write at least one")  # fmt: skip
    style = style_of(module)
    if style != "Net":
        _check_signatures(module, label)
    return style


def unused_model_note(module: ModuleType, style: str) -> Optional[str]:
    """The notebook's `Model` (its layers and loss, forward and backward) is not how the lab builds a net: where the
    code defines one beside the lesson's classes or functions, a line says what the lab takes instead."""
    if style == "Net" or not inspect.isclass(getattr(module, "Model", None)):
        return None
    what = "Lin, Relu and Mse" if style == "classes" else "lin_grad, relu_grad and mse_grad"
    return (f"your Model is not run: the lab stacks the lesson's layers from your {what} itself, for any depth, as "
            "Model does (define Net(params, shift) to have a whole net of your own checked)")


def _check_signatures(mod: ModuleType, label: str) -> None:
    """Each of the lesson's names the file defines, callable as the lab will call it: a wrong signature is said
    with the one expected, before anything runs."""
    for name, (expected, counts) in SIGNATURES.items():
        fn = getattr(mod, name, None)
        if fn is None:
            continue
        if not callable(fn):
            raise ConfigError(f"impl.code: {label}: {name} is a {type(fn).__name__}, not a function; "
                              f"expected {expected}")  # fmt: skip
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue  # a builtin: it will say so itself when called
        fits = [n for n in (counts if isinstance(counts, tuple) else (counts,)) if _accepts(signature, n)]
        if not fits:
            raise ConfigError(f"impl.code: {label}: {name}{signature} does not take the lab's call; "
                              f"expected {expected}")  # fmt: skip


def _accepts(signature: inspect.Signature, n: int) -> bool:
    try:
        signature.bind(*range(n))
        return True
    except TypeError:
        return False


def fresh(t: torch.Tensor) -> torch.Tensor:
    """A new tensor object over the same storage: no attribute (`.g`) that code set on `t` comes with it."""
    return t.detach().view_as(t)


def _accepted(fn, options: dict[str, Any]) -> dict[str, Any]:
    try:
        accepts = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in options.items() if k in accepts}


def build(code: Code, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False,
          keep_nodes: bool = False):  # fmt: skip
    """The implementation's Net on these params. The notebook's styles compute the input's gradient always."""
    if code.style == "Net":
        return code.module.Net(params, shift, **_accepted(code.module.Net, {"input_grad": input_grad,
                                                                             "keep_nodes": keep_nodes}))  # fmt: skip
    if code.style == "classes":
        return LessonClasses(code.module, params, shift)
    return LessonFunctions(code.module, params, shift)


def check_dtype(code: Code, name: str, params: dict[str, torch.Tensor], shift: float, input_grad: bool) -> None:
    """A tiny net of a built-in implementation (`params`: a few weights in the run's dtype, on its device) run once,
    before any run exists: some cannot run in some dtypes (the notebook's `.float()` masks promote a bfloat16
    gradient). A user's code is tried on the real problem instead, in its own process, where its errors are theirs."""
    w = params["w1"]  # (inputs, width): the input is shaped by it
    x = torch.ones(4, w.shape[0], device=w.device, dtype=w.dtype)
    y = torch.ones(4, device=w.device, dtype=w.dtype)
    try:
        net = build(code, params, shift, input_grad)
        net.forward(x, y)
        net.backward()
    except RuntimeError as e:
        why = str(e).splitlines()[0]
        dtype_name = str(w.dtype).removeprefix("torch.")
        raise ConfigError(f"dtype: impl={name} cannot run in {dtype_name} on {w.device} ({why})") from None


def computes_input_grad_optionally(code: Code) -> bool:
    return code.style == "Net" and "input_grad" in inspect.signature(code.module.Net).parameters


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


def _with_shift(relu, shift: float, first: int):
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
            self.relu = _with_shift(relu, shift, first=1)

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
        make_relu = _with_shift(relu, shift, first=0)
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


FORWARD_RTOL = 1e-3  # a correct forward differs from autograd's by rounding (1e-7 in float32), a wrong one by far more


def implied_shift(module: ModuleType, shift: float) -> Optional[float]:
    """The shift the module's own ReLU (`relu`, or `Relu`) subtracts, called as the lab calls it at the run's
    `shift`: its output at 2.0 is 2 - that shift. None where the module has no ReLU of its own."""
    probe = torch.full((1, 1), 2.0)
    if callable(getattr(module, "relu", None)):
        out = _with_shift(module.relu, shift, first=1)(probe)
    elif callable(getattr(module, "Relu", None)):
        out = _with_shift(module.Relu, shift, first=0)()(probe)
    else:
        return None
    return 2.0 - float(out.reshape(-1)[0])


def forward_agrees(label: str, loss: float, reference_loss: float, shift: float, dtype: torch.dtype,
                   implied: Optional[float] = None) -> None:  # fmt: skip
    """A user's forward (their lin, relu, mse, or Net) must give the lab's loss: the backward is judged against
    autograd on the lab's forward, so a different forward would make a correct backward look wrong. Within
    FORWARD_RTOL, or 32 of the dtype's epsilon where that is coarser (bfloat16's sums). `implied`: the shift the
    user's ReLU subtracts (implied_shift), to say what would make the two forwards one."""
    rtol = max(FORWARD_RTOL, 32 * torch.finfo(dtype).eps)
    if math.isclose(loss, reference_loss, rel_tol=rtol, abs_tol=1e-12):
        return
    said = f"{label}: your forward gives loss {loss:.6g} where the lab's gives {reference_loss:.6g}"
    if implied is not None and not math.isclose(implied, shift, rel_tol=1e-6, abs_tol=1e-9):
        raise UserCodeError(f"{said}: your relu subtracts {implied:g} where model.relu_shift={shift:g}; the backward "
                            f"is judged on the lab's forward: run with model.relu_shift={implied:g}, or give your relu "
                            "the shift as an argument")  # fmt: skip
    raise UserCodeError(f"{said} (model.relu_shift={shift:g}); the backward is judged on the lab's forward, so yours "
                        "must match it")  # fmt: skip
