"""Stage 4, backward: the chosen implementation's backward run on the run's data and weights (the lab's own here, a
learner's in a process of its own), its gradient at every node checked against autograd's and the float64 truth
(grad_check.py says how a node is judged)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from backprop_lab.core.names import NONE, RELU
from backprop_lab.impls.common import all_grads, layer_widths, node_shapes
from backprop_lab.isolation.submission import Ran, Submission
from backprop_lab.study import diagnosis
from backprop_lab.study.grad_check import NodeCheck, check, first_divergent, float64_truth, reduction_lengths
from backprop_lab.study.grad_stats import backward_stats, elementwise_diffs

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
    name: str | protocol.Code | Submission, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
    shift: float, input_grad: bool, factor: float, bug: str = "none", base: Optional[Path] = None,
    time_limit_s: float = 60.0, activation: str = RELU,
) -> Checked:  # fmt: skip
    """The implementation's backward run twice on one forward (the timing repeats it, and a backward that
    accumulates into stale state must show), every node against autograd's at the same dtype and the float64 truth.
    `name`: an option of conf/impl/ or the lab's own code (run here, with `bug` put in it when one is named), or a
    learner's (a Submission, or a file or module that is not the lab's, opened for this check: run in a process of
    its own, within `time_limit_s`)."""
    from backprop_lab import impls, isolation

    if isinstance(name, str) and not impls.is_lab_code(name):
        with isolation.open_submission(name, base, time_limit_s) as submission:
            return run_check(submission, params, x, y, shift, input_grad, factor, bug, activation=activation)
    if isinstance(name, Submission):
        widths = layer_widths(params)
        due = node_shapes(widths, x.shape[0], input_grad=True)
        ran = name.check(params, x, y, shift, input_grad, due, diagnosis.SAMPLE_ROWS)
    else:
        ran = run_here(impls.load(name), params, x, y, shift, input_grad, bug, activation)
    return judge(ran, params, x, y, shift, factor, name.label if isinstance(name, Submission) else None, activation)


def run_here(code: protocol.Code, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, shift: float,
             input_grad: bool, bug: str, activation: str = RELU) -> Ran:  # fmt: skip
    """The lab's own implementation (with `bug` put in it, when one is named), in the lab's process."""
    from backprop_lab.impls import protocol
    from backprop_lab.study import bugs

    # fresh tensor objects over the same storage: a `.g` an earlier job's code left on the shared data or weights
    # (jobs of a sweep share one read of the data) cannot pass as this code's
    params, x, y = {k: protocol.fresh(v) for k, v in params.items()}, protocol.fresh(x), protocol.fresh(y)
    net = (protocol.build(code, params, shift, input_grad, keep_nodes=True, activation=activation) if bug == NONE
           else bugs.Net(params, shift, bug))  # fmt: skip
    loss = net.forward(x, y)
    loss = loss.item() if isinstance(loss, torch.Tensor) else float(loss)
    first = all_grads(net, net.backward())
    # cloned: a backward writing its `.g`s in place would otherwise make the first call's values the second's
    first = {k: (v[: diagnosis.SAMPLE_ROWS] if k == "x" else v).detach().clone() for k, v in first.items()
             if isinstance(v, torch.Tensor)}  # fmt: skip
    manual = {k: v for k, v in all_grads(net, net.backward()).items() if v is not None}  # None: not given
    return Ran(loss, manual, first, list(getattr(net, "not_given", list)()))


def judge(ran: Ran, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, shift: float, factor: float,
          learner: Optional[str] = None, activation: str = RELU) -> Checked:  # fmt: skip
    """What a backward gave, against autograd's at the same dtype and the float64 truth, node by node, and the kind
    of mistake at the first wrong one. `learner`: the learner's code's name, whose forward must give the lab's loss
    (the lab's own implementations are held to that by their tests)."""
    from backprop_lab.impls import autograd, protocol
    from backprop_lab.impls.common import backward_order

    manual, first = ran.manual, ran.first
    computed_x = "x" in manual or "x" in ran.not_given  # autograd is asked for what the implementation computed
    reference = autograd.Net(params, shift, computed_x, activation)
    reference_loss = reference.forward(x, y).item()
    if learner is not None:
        protocol.forward_agrees(learner, ran.loss, reference_loss, shift, x.dtype, ran.implied_shift)
    ref = reference.backward() | reference.node_grads()
    stats = backward_stats(params, ref)
    # a linear stack's masks are everywhere open, and nothing is shifted: the truth's act{i} is lin{i}
    truth = float64_truth(params, x, y, shift if activation == RELU else 0.0, reference.masks)
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
        node, manual, first, truth, pre_activations, due_shape=tuple(ref[node].shape), rows=x.shape[0], shift=shift,
        params=params)
    if mistake is not None and node in ran.changed:  # right as set, changed after: the change is the mistake
        mistake = diagnosis.changed_after(node, ran.changed[node], mistake)
    leaves = [k for k in ref if k[0] in "wb" and k in manual]  # the parameters: other nodes are too large to draw
    elementwise = elementwise_diffs({k: manual[k] for k in leaves}, {k: ref[k] for k in leaves})
    return Checked(ran.loss, checks, elementwise, computed_x, stats, mistake)

