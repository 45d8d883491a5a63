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
from backprop_lab.core.names import RELU
from backprop_lab.impls import lesson
from backprop_lab.impls.lesson import CLASSES, FUNCTIONS

# how the lab calls each, to tell a wrong signature before it is called: (name, the lesson's signature, arguments)
SIGNATURES = {
    "lin_grad": ("lin_grad(inp, out, w, b)", 4), "relu_grad": ("relu_grad(inp, out)", 2),
    "mse_grad": ("mse_grad(inp, targ)", 2), "lin": ("lin(x, w, b)", 3), "relu": ("relu(x) or relu(x, shift)", (1, 2)),
    "mse": ("mse(out, targ)", 2), "Lin": ("Lin(w, b)", 2), "Relu": ("Relu() or Relu(shift)", (0, 1)),
    "Mse": ("Mse()", 0),
}  # fmt: skip
CODE_NAMES = (*SIGNATURES, "Net")  # every name the door reads from a learner's code (check() takes them from an object)


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
          keep_nodes: bool = False, activation: str = RELU):  # fmt: skip
    """The implementation's Net on these params. The notebook's styles compute the input's gradient always. Only
    a Net that takes `activation` builds a linear stack (`knows_linear_stacks`)."""
    if activation != RELU and not knows_linear_stacks(code):  # refused where the config entered (check_activation)
        raise ValueError(f"{code.label} builds no net without its ReLU")
    if code.style == "Net":
        options = {"input_grad": input_grad, "keep_nodes": keep_nodes}
        options |= {"activation": activation} if activation != RELU else {}
        return code.module.Net(params, shift, **_accepted(code.module.Net, options))
    if code.style == "classes":
        return lesson.LessonClasses(code.module, params, shift)
    return lesson.LessonFunctions(code.module, params, shift)


def knows_linear_stacks(code: Code) -> bool:
    """Whether the implementation builds a net without its ReLU (model.activation=none): its Net takes
    `activation`."""
    return code.style == "Net" and "activation" in _accepted(code.module.Net, {"activation": None})


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


FORWARD_RTOL = 1e-3  # a correct forward differs from autograd's by rounding (1e-7 in float32), a wrong one by far more


def implied_shift(module: ModuleType, shift: float) -> Optional[float]:
    """The shift the module's own ReLU (`relu`, or `Relu`) subtracts, called as the lab calls it at the run's
    `shift`: its output at 2.0 is 2 - that shift. None where the module has no ReLU of its own."""
    probe = torch.full((1, 1), 2.0)
    if callable(getattr(module, "relu", None)):
        out = lesson.with_shift(module.relu, shift, first=1)(probe)
    elif callable(getattr(module, "Relu", None)):
        out = lesson.with_shift(module.Relu, shift, first=0)()(probe)
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
