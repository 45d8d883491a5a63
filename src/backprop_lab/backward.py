"""Stage 4, backward: the chosen implementation's backward run on the run's data and weights, its gradient at every
node checked against autograd's and the float64 truth (grad_check.py says how a node is judged)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from backprop_lab import diagnosis
from backprop_lab.grad_check import NodeCheck, check, first_divergent, float64_truth, reduction_lengths
from backprop_lab.grad_stats import backward_stats, elementwise_diffs
from backprop_lab.impls.common import layer_widths
from backprop_lab.names import NONE

if TYPE_CHECKING:
    from backprop_lab.impls import protocol


@dataclass
class Checked:
    loss: float  # the implementation's, at the run's dtype
    checks: list[NodeCheck]  # every node, in backward order
    elementwise: dict[str, torch.Tensor]  # |manual - autograd| of each parameter's every entry, for the figure
    input_grad: bool  # whether the implementation computed the input's gradient (autograd was asked for it too)
    layer_stats: dict[int, dict[str, float]]  # the backward half by layer (step = layer), from autograd's gradients
    mistake: Optional[diagnosis.Diagnosis] = None  # what kind of mistake, at the first divergent node

    @property
    def all_close(self) -> bool:
        return all(c.close for c in self.checks)


def run_check(
    name: str | protocol.Code, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, shift: float,
    input_grad: bool, factor: float, bug: str = "none", base: Optional[Path] = None, time_limit_s: float = 0.0,
) -> Checked:  # fmt: skip
    """The implementation (an option of conf/impl/, or code: impls.load) with `bug` put in it, when one is named,
    its backward run twice on one forward (the timing repeats it, and a backward that accumulates into stale state
    must show), against autograd's at the same dtype and the float64 truth. A user's file is run as theirs
    (protocol.users_code): its errors are their traceback, its calls bounded by `time_limit_s`, its inputs and
    weights checked untouched."""
    from backprop_lab import bugs, impls
    from backprop_lab.impls import autograd, protocol
    from backprop_lab.impls.common import backward_order

    code = impls.load(name, base)
    # fresh tensor objects over the same storage: a `.g` an earlier job's code left on the shared data or weights
    # (jobs of a sweep share one read of the data) cannot pass as this code's
    params, x, y = {k: protocol.fresh(v) for k, v in params.items()}, protocol.fresh(x), protocol.fresh(y)
    untouched = protocol.Untouched(code, dict(params) | {"x": x, "y": y})
    with protocol.users_code(code, time_limit_s, "forward and backward"):
        net = protocol.build(code, params, shift, input_grad, keep_nodes=True) if bug == NONE else (
            bugs.Net(params, shift, bug))  # fmt: skip
        loss = net.forward(x, y)
        loss = loss.item() if isinstance(loss, torch.Tensor) else float(loss)
        first = _all_grads(net, net.backward())
        # cloned: a backward writing its `.g`s in place would otherwise make the first call's values the second's
        first = {k: (v[: diagnosis.SAMPLE_ROWS] if k == "x" else v).detach().clone() for k, v in first.items()
                 if isinstance(v, torch.Tensor)}  # fmt: skip
        manual = {k: v for k, v in _all_grads(net, net.backward()).items() if v is not None}  # None: not given
    untouched.check()
    not_given = getattr(net, "not_given", list)()
    computed_x = "x" in manual or "x" in not_given  # autograd is asked for what the implementation computed
    reference = autograd.Net(params, shift, computed_x)
    protocol.forward_agrees(code, loss, reference.forward(x, y).item(), shift, x.dtype)
    ref = reference.backward() | reference.node_grads()
    protocol.check_given(code, manual, ref)
    stats = backward_stats(params, ref)
    truth = float64_truth(params, x, y, shift, reference.masks)
    pre_activations = {k: t.detach() for k, t in reference.nodes.items() if k.startswith("lin")}
    if computed_x:  # x.g = lin1.g @ w1.t(), in float64 a block of rows at a time: never 314 MB whole
        lin1, w1 = truth["lin1"], params["w1"].double()
        truth["x"] = lambda start, stop: lin1[start:stop] @ w1.t()
    del reference
    widths = layer_widths(params)
    order = backward_order(len(widths) - 1, computed_x)
    checks = check(manual, ref, truth, order, reduction_lengths(widths, x.shape[0]), factor)
    node = first_divergent(checks)
    mistake = None if node == NONE else diagnosis.diagnose_at(
        node, manual, first, truth, pre_activations, due_shape=tuple(ref[node].shape), rows=x.shape[0], shift=shift)
    leaves = [k for k in ref if k[0] in "wb" and k in manual]  # the parameters: other nodes are too large to draw
    elementwise = elementwise_diffs({k: manual[k] for k in leaves}, {k: ref[k] for k in leaves})
    return Checked(loss, checks, elementwise, computed_x, stats, mistake)


def _all_grads(net, grads) -> dict:
    """A backward's gradients with the intermediate nodes' (`node_grads`, where the implementation has it)."""
    return dict(grads or {}) | dict(getattr(net, "node_grads", dict)() or {})


