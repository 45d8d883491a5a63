"""A bank of real backprop mistakes, each injected into the notebook's functional backward (`bug=NAME`), and the
node where the check must first see it. The check is only as good as the bugs it catches: a mistake here that
passes is a defect of the checker, not of the bank (`+experiment=bug_hunt` runs them all).

Each is written as a learner writes it, next to the line it replaces (impls/functional.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from backprop_lab.core.errors import ConfigError
from backprop_lab.core.names import NONE
from backprop_lab.impls import functional
from backprop_lab.impls.common import layer_widths
from backprop_lab.impls.functional import lin_grad, mse_grad, relu_grad


def mse_grad_without_mean(inp, trg):
    inp.g = (inp.squeeze(-1) - trg).unsqueeze(-1) * 2  # * (2 / inp.shape[0]): the 1/N of the mean forgotten


def mse_grad_without_two(inp, trg):
    inp.g = (inp.squeeze(-1) - trg).unsqueeze(-1) / inp.shape[0]  # * (2 / inp.shape[0]): the square's 2 forgotten


def relu_grad_unmasked(inp, out):
    inp.g = out.g  # * (inp > 0).float(): the ReLU passes every gradient


def relu_grad_masked_by_output(inp, out):
    inp.g = out.g * (out > 0).float()  # (inp > 0): out = relu(inp) - 0.5 is <= 0 where inp is in (0, 0.5] too


def relu_grad_with_shift(inp, out, shift):
    inp.g = (out.g - shift) * (inp > 0).float()  # out.g: the forward's "- 0.5" carried into the backward


def lin_grad_bias_over_features(x, y, w, b):
    x.g = y.g @ w.t()
    w.g = x.t() @ y.g
    b.g = y.g.sum(1)  # sum(0): summed over the features instead of the rows


def lin_grad_weight_not_transposed(x, y, w, b):
    x.g = y.g @ w.t()
    w.g = y.g.t() @ x  # x.t() @ y.g: the (out, in) product, which fits only where the layer is square
    b.g = y.g.sum(0)


def lin_grad_accumulating(x, y, w, b):
    x.g = getattr(x, "g", 0) + y.g @ w.t()  # =: added to what a previous backward left there
    w.g = x.t() @ y.g
    b.g = y.g.sum(0)


def lin_grad_passing_zero(x, y, w, b):
    x.g = torch.zeros_like(x)  # y.g @ w.t(): the gradient stops here, silently
    w.g = x.t() @ y.g
    b.g = y.g.sum(0)


def _all(widths: list[int]) -> set[int]:
    return set(range(1, len(widths)))


def _square(widths: list[int]) -> set[int]:
    return {i for i in _all(widths) if widths[i - 1] == widths[i]}


@dataclass(frozen=True)
class Bug:
    what: str
    expected: Callable[[list[int]], str]  # the first node the check must name, on a model of these widths
    mse_grad: Callable = mse_grad
    lin_grad: Callable = lin_grad
    relu_grad: Callable = relu_grad  # takes the shift too when `shifted`
    shifted: bool = False
    layers: Callable[[list[int]], set[int]] = field(default=_all)  # where lin_grad and relu_grad are replaced


def _output(widths: list[int]) -> str:
    return f"lin{len(widths) - 1}"


def _last_hidden(widths: list[int]) -> str:
    return f"lin{len(widths) - 2}"


BUGS = {
    "mse_without_mean": Bug("the MSE gradient without its 1/N", _output, mse_grad=mse_grad_without_mean),
    "mse_without_two": Bug("the MSE gradient without its factor 2", _output, mse_grad=mse_grad_without_two),
    "relu_unmasked": Bug("the ReLU's gradient not masked", _last_hidden, relu_grad=relu_grad_unmasked),
    "relu_mask_from_output": Bug("the ReLU's mask taken from its output, not its input", _last_hidden,
                                 relu_grad=relu_grad_masked_by_output),
    "relu_shift_in_backward": Bug("the ReLU's shift applied in the backward", _last_hidden,
                                  relu_grad=relu_grad_with_shift, shifted=True),
    "bias_over_features": Bug("a bias gradient summed over the wrong axis", lambda w: f"b{len(w) - 1}",
                              lin_grad=lin_grad_bias_over_features),
    "weight_not_transposed": Bug("a weight gradient missing its transpose, on the square layers",
                                 lambda w: f"w{max(_square(w))}",  # the first square one the backward meets
                                 lin_grad=lin_grad_weight_not_transposed, layers=_square),
    "stale_accumulation": Bug("an input gradient added to what the previous backward left",
                              lambda w: f"act{len(w) - 2}", lin_grad=lin_grad_accumulating),
    "layer_passes_zero": Bug("the second layer's input gradient silently zero", lambda w: "act1",
                             lin_grad=lin_grad_passing_zero, layers=lambda widths: {2}),
}  # fmt: skip


def check(name: str, widths: list[int]) -> None:
    """A bug that exists, and a model it can be put in."""
    if name == NONE:
        return
    if name not in BUGS:
        raise ConfigError(f"bug.name: no bug {name!r}; choose one of none, {', '.join(BUGS)}")
    if not BUGS[name].layers(widths):
        raise ConfigError(f"bug.name: {name} needs a square layer (two equal widths in a row), e.g. model=deep")


def expected_node(name: str, widths: list[int]) -> str:
    return BUGS[name].expected(widths)


class Net(functional.Net):
    """functional.Net, its backward carrying the bug at the layers it names."""

    def __init__(self, params, shift, bug: str):
        super().__init__(params, shift)
        self.bug = BUGS[bug]
        self.buggy = self.bug.layers(layer_widths(params))

    def backward(self):
        bug, n = self.bug, len(self.layers)
        relu = partial(bug.relu_grad, shift=self.shift) if bug.shifted else bug.relu_grad
        bug.mse_grad(self.lins[-1], self.trg)
        for i in reversed(range(n)):
            if i < n - 1:
                (relu if i + 1 in self.buggy else relu_grad)(self.lins[i], self.inps[i + 1])
            (bug.lin_grad if i + 1 in self.buggy else lin_grad)(self.inps[i], self.lins[i], *self.layers[i])
        return functional.take_g(self.params, self.x)
