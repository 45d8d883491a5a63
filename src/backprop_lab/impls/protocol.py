"""What every implementation meets, the lab's own and yours: the one door an implementation comes through.

An implementation is Python code, named by `impl.code`: a module (`backprop_lab.impls.module`, what each
`conf/impl/*.yaml` names) or a file (`impl=user impl.code=my_backward.py`). The code defines one of three things:

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

import hashlib
import importlib
import importlib.util
import inspect
import math
import signal
import sys
import threading
import traceback
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import torch

from backprop_lab.code_files import file_path, is_file
from backprop_lab.errors import ConfigError, UserCodeError
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
MAX_PRINTED_LINES = 200  # of a user's own prints during the check: enough to debug, never a flood


@dataclass(frozen=True)
class Code:
    """Where an implementation's code is, and what it is: for a file, its SHA-256 (logged, and checked by rerun)."""

    module: ModuleType
    path: Optional[Path]  # None for a module of an installed package
    sha256: Optional[str]
    source: Optional[bytes] = None  # the bytes hashed and run: what the run logs

    @property
    def style(self) -> str:
        if hasattr(self.module, "Net"):
            return "Net"
        return "classes" if any(hasattr(self.module, c) for c in CLASSES) else "functions"




_loaded: dict[tuple[str, str], ModuleType] = {}  # (path, sha256): a file is executed once per process


def load(code: str, base: Optional[Path] = None) -> Code:
    """The implementation `code` names: a file (relative to `base`, the launch directory) or an importable module.
    A file's own errors (a syntax error, an exception at import) are the user's: UserCodeError, their traceback."""
    if not is_file(code):
        try:
            return Code(importlib.import_module(code), None, None)
        except ModuleNotFoundError as e:
            raise ConfigError(f"impl.code: no module {code!r} ({e}); give a file (my_backward.py) or a module"
                              ) from None  # fmt: skip
    path = file_path(code, base)
    if not path.is_file():
        raise ConfigError(f"impl.code: no file {str(path)!r}; write the lesson's lin_grad, relu_grad and mse_grad "
                          "(or Lin, Relu, Mse, or a Net) in it")  # fmt: skip
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    key = (str(path.resolve()), digest)
    if key not in _loaded:
        name = f"backprop_lab_user_{path.stem}_{digest[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # as an import would: dataclasses and pickling look their module up there
        try:
            with _beside(path):  # the user's own code, as pytest runs theirs: its folder's modules importable
                exec(compile(source, str(path), "exec"), mod.__dict__)
        except (Exception, SystemExit) as e:  # a script's sys.exit() at import is theirs too, never the lab's exit
            del sys.modules[name]
            raise UserCodeError.from_exception(e, path) from None
        _loaded[key] = mod
    code_ = Code(_loaded[key], path, digest, source)
    if not (hasattr(code_.module, "Net") or any(hasattr(code_.module, n) for n in FUNCTIONS + CLASSES)):
        raise ConfigError(f"impl.code: {path} defines none of Net, {', '.join(CLASSES)}, {', '.join(FUNCTIONS)}; "
                          "write at least one")  # fmt: skip
    if code_.style != "Net":
        _check_signatures(code_.module, path)
    return code_


@contextmanager
def _beside(path: Path):
    """The file's folder first on sys.path while it runs, as `python FILE` would have it (`from my_utils import`)."""
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def _check_signatures(mod: ModuleType, path: Path) -> None:
    """Each of the lesson's names the file defines, callable as the lab will call it: a wrong signature is said
    with the one expected, before anything runs."""
    for name, (expected, counts) in SIGNATURES.items():
        fn = getattr(mod, name, None)
        if fn is None:
            continue
        if not callable(fn):
            raise ConfigError(f"impl.code: {path}: {name} is a {type(fn).__name__}, not a function; "
                              f"expected {expected}")  # fmt: skip
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue  # a builtin: it will say so itself when called
        fits = [n for n in (counts if isinstance(counts, tuple) else (counts,)) if _accepts(signature, n)]
        if not fits:
            raise ConfigError(f"impl.code: {path}: {name}{signature} does not take the lab's call; expected {expected}")


def _accepts(signature: inspect.Signature, n: int) -> bool:
    try:
        signature.bind(*range(n))
        return True
    except TypeError:
        return False


def fresh(t: torch.Tensor) -> torch.Tensor:
    """A new tensor object over the same storage: no attribute (`.g`) that code set on `t` comes with it."""
    return t.detach().view_as(t)


def adopt(path: Path, mod: ModuleType) -> None:
    """Loading `path` gives `mod` rather than executing the file: for code that already runs in this process (a
    notebook's functions, api.check), whose file records the source that the run logs and hashes."""
    _loaded[(str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest())] = mod


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


def check_dtype(
    code: Code, name: str, device: torch.device, dtype: torch.dtype, shift: float, input_grad: bool
) -> None:
    """A tiny net of a built-in implementation run in `dtype` on `device`, before any run exists: some cannot run in
    some dtypes (the notebook's `.float()` masks promote a bfloat16 gradient). A user's code is tried on the real
    problem instead, by the check, where its errors are theirs."""
    if code.path is not None:
        return
    from backprop_lab import init

    params = {k: p.to(device, dtype) for k, p in init.init_params([3, 2, 1], "xavier", "fan_in", 0).items()}
    x, y = torch.ones(4, 3, device=device, dtype=dtype), torch.ones(4, device=device, dtype=dtype)
    try:
        net = build(code, params, shift, input_grad)
        net.forward(x, y)
        net.backward()
    except RuntimeError as e:
        why = str(e).splitlines()[0]
        dtype_name = str(dtype).removeprefix("torch.")
        raise ConfigError(f"dtype: impl={name} cannot run in {dtype_name} on {device} ({why})") from None


def computes_input_grad_optionally(code: Code) -> bool:
    return code.style == "Net" and "input_grad" in inspect.signature(code.module.Net).parameters


class _Given:
    """Which nodes the user's code gave a gradient at, and their values as given (cloned at once: a later step
    that changes a tensor in place cannot change what is judged)."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}
        self.not_given: list[str] = []
        self.stood_in: list[torch.Tensor] = []  # the tensors whose `.g` is the lab's, to take back before a next call

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
            self.not_given.append(node)
            tensor.g = stand_in(*args)
            self.stood_in.append(tensor)

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
        return {k: v for k, v in self.given.grads.items() if k[0] in "wbx"}

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
            self.inps.append(x if i == 0 else self.relu(self.lins[-1]))
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
                given.take(f"lin{i + 1}", self.lins[i], _relu_input, self.lins[i], self.inps[i + 1])
            step = (self.inps[i], self.lins[i], self.layers[i][0])
            if lin_grad:
                lin_grad(*step, self.layers[i][1])
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
        for layer in self.layers:
            inp = layer(inp)
            self.outs.append(inp)
        return self.loss(inp, targ)

    def _walk(self, given: _Given) -> None:
        self.loss.backward()
        n = len(self.layers) // 2 + 1
        given.take(f"lin{n}", self.outs[-1], _loss_input, self.outs[-1], self.trg)
        for k in reversed(range(len(self.layers))):
            self.layers[k].backward()
            inp, out = (self.outs[k - 1] if k else self.x), self.outs[k]
            i = k // 2 + 1  # the layer's number: lin{i}, then act{i}
            if k % 2 == 0:  # a linear layer: its weight, its bias, then its input (act{i-1}, or x)
                w, b = self.params[f"w{i}"], self.params[f"b{i}"]
                given.take(f"w{i}", w, _weight, inp, out, w)
                given.take(f"b{i}", b, _bias, inp, out, w)
                given.take(f"act{i - 1}" if k else "x", inp, _input, inp, out, w)
            else:  # a ReLU: its input is lin{i}
                given.take(f"lin{i}", inp, _relu_input, inp, out)


class TimeLimit(BaseException):  # not an Exception: a learner's `except Exception` must not swallow it
    """A user's call that ran past `impl.time_limit_s`."""


@contextmanager
def users_code(code: Code, time_limit_s: float = 0.0, what: str = "backward"):
    """Around a call into an implementation: for a user's file, an error raised in their code becomes their
    traceback (UserCodeError), and a call past `time_limit_s` (an endless loop) is stopped. The lab's own code is
    left alone: its errors are the lab's bugs."""
    if code.path is None:
        yield
        return
    limited = time_limit_s > 0 and threading.current_thread() is threading.main_thread()
    printed = _BoundedPrints(sys.stdout)
    if limited:
        def on_alarm(signum, frame):
            raise TimeLimit

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, time_limit_s)
    try:
        with redirect_stdout(printed), _beside(code.path):
            yield
    except TimeLimit:
        raise UserCodeError(f"{code.path}: your {what} ran past impl.time_limit_s={time_limit_s:g} s (an endless "
                            "loop?); stopped") from None  # fmt: skip
    except UserCodeError:
        raise
    except (Exception, SystemExit) as e:  # sys.exit() in their backward is theirs, never the lab's exit
        if any(f.filename == str(code.path) for f in traceback.extract_tb(e.__traceback__)):
            raise UserCodeError.from_exception(e, code.path) from None
        raise UserCodeError(f"{code.path}: your code led to {type(e).__name__} in the lab's part: {e}") from None
    finally:
        if limited:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        printed.close()


class _BoundedPrints:
    """A user's prints passed through, up to MAX_PRINTED_LINES, then counted: a loop that prints cannot flood the
    console or the launcher's log."""

    def __init__(self, stream):
        self.stream, self.lines, self.dropped = stream, 0, 0

    def write(self, text: str) -> int:
        if self.lines < MAX_PRINTED_LINES:
            self.stream.write(text)
        else:
            self.dropped += text.count("\n")
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        if self.dropped:
            self.stream.write(f"(your code printed {self.lines} lines; the {self.dropped} after the first "
                              f"{MAX_PRINTED_LINES} are not shown)\n")  # fmt: skip


FORWARD_RTOL = 1e-3  # a correct forward differs from autograd's by rounding (1e-7 in float32), a wrong one by far more


def forward_agrees(code: Code, loss: float, reference_loss: float, shift: float, dtype: torch.dtype) -> None:
    """A user's forward (their lin, relu, mse, or Net) must give the lab's loss: the backward is judged against
    autograd on the lab's forward, so a different forward would make a correct backward look wrong. Within
    FORWARD_RTOL, or 32 of the dtype's epsilon where that is coarser (bfloat16's sums)."""
    rtol = max(FORWARD_RTOL, 32 * torch.finfo(dtype).eps)
    if code.path is None or math.isclose(loss, reference_loss, rel_tol=rtol, abs_tol=1e-12):
        return
    raise UserCodeError(f"{code.path}: your forward gives loss {loss:.6g} where the lab's gives {reference_loss:.6g} "
                        f"(model.relu_shift={shift:g}); the backward is judged on the lab's forward, so yours must "
                        "match it: a relu or Relu without a shift argument is the notebook's fixed 0.5")  # fmt: skip


def check_given(code: Code, grads: dict[str, Any], reference: dict[str, torch.Tensor]) -> None:
    """What a user's backward handed back, before it is judged: tensors, of the run's dtype, on its device (a shape
    that differs is a verdict of its own, not an error)."""
    if code.path is None:
        return
    for node, g in grads.items():
        ref = reference.get(node)
        if ref is None:
            raise UserCodeError(f"{code.path}: your backward gave a gradient at {node!r}, which is no node of this "
                                f"model; the nodes are {', '.join(reference)}")  # fmt: skip
        if not isinstance(g, torch.Tensor):
            raise UserCodeError(f"{code.path}: your backward gave {node} = {type(g).__name__}, not a tensor "
                                f"(expected shape {tuple(ref.shape)})")  # fmt: skip
        if g.dtype != ref.dtype:
            raise UserCodeError(f"{code.path}: your gradient at {node} is {g.dtype}; the run's dtype is {ref.dtype} "
                                "(a .double() or .float() too many?)")  # fmt: skip
        if g.device != ref.device:
            raise UserCodeError(f"{code.path}: your gradient at {node} is on {g.device}; the run's tensors are on "
                                f"{ref.device}")  # fmt: skip


class Untouched:
    """The inputs and weights a user's code is handed, checked afterwards: changed in place, they would corrupt the
    check of every node after (and the truth computed from them)."""

    def __init__(self, code: Code, tensors: dict[str, torch.Tensor]):
        self.code = code
        self.copies = {} if code.path is None else {k: t.detach().clone() for k, t in tensors.items()}
        self.tensors = tensors

    def check(self) -> None:
        changed = [k for k, copy in self.copies.items() if not torch.equal(self.tensors[k], copy)]
        if changed:
            for k in changed:  # put back, so that what follows (a report of the error) sees the real values
                self.tensors[k].data.copy_(self.copies[k])
            raise UserCodeError(f"{self.code.path}: your code changed {', '.join(changed)} in place (an in-place "
                                "op such as +=, clamp_ or .data on an input or weight); the check needs them as "
                                "they were: compute into new tensors")  # fmt: skip
