"""The checker: a gradient at every node judged against the truth, its verdicts, and the numbers a run logs of them.

The truth is autograd in float64 on the same inputs and weights (upcast). A gradient at the run's dtype always
carries rounding error; what tells a correct backward from a wrong one is how that error compares with autograd's
own at the same dtype: a correct backward only sums in another order, so its error against the truth stays within
a small factor (`check.factor`) of autograd's; a wrong one is off by orders of magnitude. Where autograd happens to
be exact (a float64 run, whose autograd is the truth), the same factor applies to the dtype's epsilon times the
square root of the reduction length behind the node, the typical size of a sum's rounding. No tolerance is guessed
per tensor.

That measure has a limit: where autograd's own error is large (gradients underflowing at a tiny init, a bfloat16
run), factor x that error allows so much that a wrong gradient passes too (zero where the truth is not has an error
of 1). A node whose tolerance is above `CONCLUSIVE_TOLERANCE` cannot be told right from wrong at the run's precision:
its verdict is "inconclusive", never "ok", and the run says what would make it conclusive (verdicts.py).

Nodes are walked in backward order, from the loss towards the input (`impls.common.backward_order`): the first one
not close is where the backward first goes wrong, since every later node is computed from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from backprop_lab.core.names import (
    GRAD_ALL_CLOSE,
    GRAD_ALL_FINITE,
    GRAD_INCONCLUSIVE_NODES,
    GRAD_NODES_NOT_GIVEN,
    GRAD_WORST_ERROR_RATIO,
    GRAD_WORST_MAX_REL_DIFF,
    NONE,  # first_divergent when no node is conclusively wrong
)
from backprop_lab.impls.common import n_layers

# The most error a verdict of "ok" may allow, relative to the gradient's norm. The bank's smallest mistake (the
# square's 2 forgotten) moves a gradient by 50 %: a tolerance of 10 % still tells it, with five times to spare.
CONCLUSIVE_TOLERANCE = 0.1
WRONG = ("differs", "non-finite", "shape")  # the verdicts that say the gradient is wrong
NOT_GIVEN = "not given"  # a node the implementation computed no gradient at: judged nothing, said so

@dataclass
class NodeCheck:
    node: str  # lin{i}, act{i}, w{i}, b{i}, x
    shape: tuple[int, ...]
    ref_shape: tuple[int, ...]  # autograd's; a different shape is a verdict of its own
    exact: bool  # bit-identical to autograd's at the run's dtype
    max_abs_diff: float  # max |manual - autograd| at the run's dtype
    max_rel_diff: float  # that over max |autograd|: comparable across tensors of any scale
    error: float  # ||manual - truth|| / ||truth||
    autograd_error: float  # ||autograd - truth|| / ||truth||, at the run's dtype
    ratio: float  # error / max(autograd_error, eps x sqrt(reduction length)): about 1 for a correct backward
    tolerance: float  # what `error` may be: factor x that baseline
    finite: bool  # the manual gradient and autograd's are free of NaN and Inf
    within: bool  # ratio <= factor, and finite: as close as the tolerance asks
    conclusive: bool  # tolerance <= CONCLUSIVE_TOLERANCE: a wrong gradient could not pass as within
    given: bool = True  # False: the implementation gave no gradient here (a learner's partial code)
    # autograd's own gradient at the run's dtype is free of NaN and Inf: where it is not, the dtype overflows here
    # (an exploding init), and no gradient at that dtype can be told right or wrong
    autograd_finite: bool = True
    truth_finite: bool = True  # the float64 truth is: where it is not, nothing can be judged against it

    @property
    def close(self) -> bool:
        """Close, and known to be: within a tolerance tight enough to tell a wrong gradient."""
        return self.within and self.conclusive

    @property
    def verdict(self) -> str:
        if not self.given:
            return NOT_GIVEN
        if self.shape != self.ref_shape:
            return "shape"
        if not (self.truth_finite and self.autograd_finite):
            return "inconclusive"  # the run's precision, or float64's, overflows here: see verdicts.inconclusive_note
        if not self.finite:
            return "non-finite"
        if not self.within:
            return "differs"
        return "ok" if self.conclusive else "inconclusive"

    def row(self) -> dict:
        return asdict(self) | {"shape": list(self.shape), "ref_shape": list(self.ref_shape), "close": self.close,
                               "verdict": self.verdict}  # fmt: skip


CHUNK_ROWS = 2048  # compared a block of rows at a time: a float64 copy of a 50,000 x 784 gradient is 314 MB


PLAIN_SUM_FROM = 1e-200  # a float64 sum of squares above this lost nothing that counts to underflow


@dataclass
class _SumSq:
    """A sum of squares held as scale**2 * ssq (as LAPACK's nrm2 holds it): an exploding init's gradients of 1e200
    have a norm, where their squares would overflow float64. NaN or Inf in a block makes it not finite."""

    scale: float = 0.0  # the sum is scale**2 * ssq, scale the largest |entry| or block norm so far
    ssq: float = 0.0

    def add(self, t: torch.Tensor) -> None:
        """`t` (float64) into the sum: its squares summed as they are where that neither overflows nor underflows
        (one pass, the common case), else scaled by its largest |entry|."""
        if not math.isfinite(self.scale):
            return
        flat = t.reshape(-1)
        plain = torch.dot(flat, flat).item()  # BLAS's, with no tensor of squares made
        if PLAIN_SUM_FROM < plain < math.inf:
            self._merge(math.sqrt(plain), 1.0)
            return
        top = t.abs().max().item() if t.numel() else 0.0
        if not math.isfinite(top):
            self.scale = math.inf
        elif top > 0:
            self._merge(top, (t / top).square_().sum().item())

    def _merge(self, scale: float, ssq: float) -> None:
        if scale > self.scale:
            self.ssq, self.scale = self.ssq * (self.scale / scale) ** 2 + ssq, scale
        else:
            self.ssq += ssq * (scale / self.scale) ** 2

    @property
    def finite(self) -> bool:
        return math.isfinite(self.scale)

    def over(self, other: _SumSq) -> float:
        """sqrt(self / other): a norm-wise relative error, ||a - truth|| / ||truth||: a few entries off by rounding at
        a kink weigh little, a wrong gradient weighs its whole size."""
        if not other.finite:
            return math.nan  # against a truth that is not finite, no error can be said
        if not self.finite:
            return math.inf
        if other.scale > 0:
            return self.scale / other.scale * math.sqrt(self.ssq / other.ssq)
        return 0.0 if self.scale == 0 else math.inf


@dataclass
class _Sums:
    """What the comparison of one node accumulates over its blocks of rows."""

    max_abs_diff: float = 0.0  # manual against autograd
    ref_max: float = 0.0  # max |autograd| over its finite entries
    manual_err: _SumSq = field(default_factory=_SumSq)  # of manual - truth
    autograd_err: _SumSq = field(default_factory=_SumSq)  # of autograd - truth
    truth: _SumSq = field(default_factory=_SumSq)
    manual_finite: bool = True
    autograd_finite: bool = True
    exact: bool = True


def _rows(t, start: int, stop: int) -> torch.Tensor:
    return t(start, stop) if callable(t) else t[start:stop]


def _sums(manual: torch.Tensor, ref: torch.Tensor, truth) -> _Sums:
    """`truth` is a tensor, or a function of a row range giving its rows (computed, not held whole)."""
    acc = _Sums()
    rows = manual.shape[0] if manual.ndim else 1
    for start in range(0, rows, CHUNK_ROWS):
        m, r = (t[start : start + CHUNK_ROWS] if t.ndim else t for t in (manual, ref))
        t64 = (_rows(truth, start, start + CHUNK_ROWS) if manual.ndim else truth).double()
        acc.exact &= torch.equal(m, r)
        if m.numel():  # a NaN or Inf makes its max so: finiteness told without a pass of its own, where it can be
            diff, top = (m - r).abs().max().item(), r.abs().max().item()
            acc.max_abs_diff, acc.ref_max = max(acc.max_abs_diff, diff), max(acc.ref_max, top)
            acc.autograd_finite &= math.isfinite(top)
            acc.manual_finite &= math.isfinite(diff) or bool(torch.isfinite(m).all())
        acc.manual_err.add(m.double() - t64)
        acc.autograd_err.add(r.double() - t64)
        acc.truth.add(t64)
    if not (acc.manual_finite and acc.autograd_finite):  # the finite entries' scale, for max |diff| / max |autograd|
        finite = ref[torch.isfinite(ref)].abs()
        acc.ref_max = finite.max().item() if finite.numel() else 0.0
    return acc


def check_node(node: str, manual: torch.Tensor, ref: torch.Tensor, truth, reduction: int, factor: float) -> NodeCheck:
    shape, ref_shape = tuple(manual.shape), tuple(ref.shape)
    if shape != ref_shape:
        return NodeCheck(node, shape, ref_shape, False, math.inf, math.inf, math.inf, 0.0, math.inf, 0.0, True, False,
                         True)  # fmt: skip
    acc = _sums(manual, ref, truth)
    error, autograd_error = acc.manual_err.over(acc.truth), acc.autograd_err.over(acc.truth)
    rounding = torch.finfo(manual.dtype).eps * math.sqrt(max(reduction, 1))  # a sum's typical rounding
    baseline = max(autograd_error, rounding)
    ratio = error / baseline if math.isfinite(error) else math.inf
    # a NaN matching a NaN is not agreement: a non-finite gradient is its own verdict, never "close"
    finite = acc.manual_finite and acc.autograd_finite
    within = finite and ratio <= factor
    tolerance = factor * baseline
    if acc.ref_max > 0:
        rel_diff = acc.max_abs_diff / acc.ref_max
    else:
        rel_diff = 0.0 if acc.max_abs_diff == 0 else math.inf
    return NodeCheck(node, shape, ref_shape, acc.exact, acc.max_abs_diff, rel_diff, error, autograd_error, ratio,
                     tolerance, finite, within, tolerance <= CONCLUSIVE_TOLERANCE,
                     autograd_finite=acc.autograd_finite, truth_finite=acc.truth.finite)  # fmt: skip


def reduction_lengths(widths: list[int], rows: int) -> dict[str, int]:
    """How many terms each node's gradient sums: the rows for a weight or bias, the next layer's width for an
    activation (its gradient is `g @ w.t()`), one for the output, the first layer's width for the input."""
    n = len(widths) - 1
    lengths = {f"lin{n}": 1, "x": widths[1]}
    for i in range(1, n + 1):
        lengths |= {f"w{i}": rows, f"b{i}": rows}
        if i < n:
            lengths |= {f"act{i}": widths[i + 1], f"lin{i}": widths[i + 1]}
    return lengths


def check(
    manual: dict[str, torch.Tensor],
    reference: dict[str, torch.Tensor],
    truth: dict[str, torch.Tensor],
    order: list[str],
    reductions: dict[str, int],
    factor: float,
) -> list[NodeCheck]:
    """Every node of `order`; one the manual backward gave no gradient at is "not given"."""
    return [check_node(n, manual[n], reference[n], truth[n], reductions[n], factor) if n in manual
            else not_given(n, reference[n]) for n in order]  # fmt: skip


def not_given(node: str, ref: torch.Tensor) -> NodeCheck:
    nan = math.nan
    return NodeCheck(node, (), tuple(ref.shape), False, nan, nan, nan, nan, nan, nan, True, False, True, given=False)


def first_divergent(checks: list[NodeCheck]) -> str:
    """The first node, in backward order, whose gradient is known to be wrong (an inconclusive one is not)."""
    return next((c.node for c in checks if c.verdict in WRONG), NONE)


def overall(checks: list[NodeCheck]) -> str:
    """The run's verdict: "wrong" when a node is, else "inconclusive" when a node cannot be told, else "partial"
    when some node was not given, else "ok"."""
    verdicts = {c.verdict for c in checks}
    if verdicts & set(WRONG):
        return "wrong"
    return "inconclusive" if "inconclusive" in verdicts else "partial" if NOT_GIVEN in verdicts else "ok"


def metrics(checks: list[NodeCheck]) -> dict[str, float]:
    """The few scalars a runs table sorts by; every node's numbers are the run's table (`table`)."""
    return {
        GRAD_ALL_CLOSE: float(all(c.close for c in checks)),
        GRAD_INCONCLUSIVE_NODES: float(sum(c.verdict == "inconclusive" for c in checks)),
        GRAD_NODES_NOT_GIVEN: float(sum(not c.given for c in checks)),
        GRAD_ALL_FINITE: float(all(c.finite for c in checks)),
        GRAD_WORST_ERROR_RATIO: max((c.ratio for c in checks if c.given), default=math.nan),
        GRAD_WORST_MAX_REL_DIFF: max((c.max_rel_diff for c in checks if c.given), default=math.nan),
    }


def table(checks: list[NodeCheck]) -> dict[str, list]:
    """Every node's row, as columns, the node first and its verdict second: numbers as numbers (tracking.log_table
    keeps each float whole), shapes as `784x80`."""
    rows = [c.row() | {"shape": "x".join(map(str, c.shape)), "ref_shape": "x".join(map(str, c.ref_shape))}
            for c in checks]  # fmt: skip
    keys = ["node", "verdict"] + [k for k in rows[0] if k not in ("node", "verdict")]
    return {key: [row[key] for row in rows] for key in keys}


def float64_truth(params, x, y, shift, masks) -> dict[str, torch.Tensor]:
    """The gradients in float64, from the same inputs and weights upcast: autograd from the first layer's output on,
    its ReLUs opening where the run's dtype opened them (`masks`): a pre-activation within rounding of 0 could flip
    sign in float64, and put a whole term's difference into autograd's error and the hand-written one's alike,
    hiding a real mistake under it. The first layer's two products are done here, in float64, a block of rows at a
    time: the input in float64 would be 314 MB whole (the input's own gradient is computed the same way, later)."""
    from backprop_lab.impls.functional import mse

    p64 = {k: v.double() for k, v in params.items()}
    lin1 = torch.cat([rows.double() @ p64["w1"] for rows in x.split(CHUNK_ROWS)]) + p64["b1"]
    nodes = {"lin1": lin1.requires_grad_()}
    leaves = {k: v.requires_grad_() for k, v in p64.items() if k not in ("w1", "b1")}
    z = lin1
    for i in range(2, n_layers(params) + 1):
        mask = masks[i - 2].double()
        mask = torch.where(mask.isnan(), (z > 0).double(), mask)  # where the run's own overflowed, float64's sign
        nodes[f"act{i - 1}"] = z * mask - shift
        z = nodes[f"lin{i}"] = nodes[f"act{i - 1}"] @ leaves[f"w{i}"] + leaves[f"b{i}"]
    for t in nodes.values():
        t.retain_grad()
    mse(z, y.double()).backward()
    g1 = lin1.grad
    w1 = sum(rows.double().t() @ g for rows, g in zip(x.split(CHUNK_ROWS), g1.split(CHUNK_ROWS)))
    return {"w1": w1, "b1": g1.sum(0)} | {k: v.grad for k, v in leaves.items()} | {k: t.grad for k, t in nodes.items()}
