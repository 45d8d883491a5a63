"""At the first node a backward gets wrong, what kind of mistake it is, said in words a learner can act on.

The user's gradient is set against a model of each kind of mistake, in this order: its shape (a fact, no fit
needed), whether there is anything to fit (not given, non-finite, zero), the models that need context (an earlier
call's value, the node above, the ReLU's input), then the context-free ones (a constant offset, a constant factor).
The order matters where models overlap: zero is a factor of 0, an accumulated gradient after two calls is a factor
of 2, a factor of -1 is a sign flip. A kind is said only when its model explains the given gradient to within
`tolerance` of the larger of the two norms; where none does, "differs" with the measured numbers.
"""

from __future__ import annotations

import math

import torch

from backprop_lab.impls.shapes import Diagnosis
from backprop_lab.impls.shapes import by_shape as _by_shape
from backprop_lab.impls.shapes import shape_text as _shape

# The tag logged; in about the order they are tested (a square node's transpose or wrong axis is told by its values,
# after the shape kinds and the accumulated one).
KINDS = ("not_given", "wrong_axis", "transposed", "dims", "broadcast", "non_finite", "zero", "accumulated",
         "relu_mask", "offset", "sign", "scale", "differs", "changed_after")  # fmt: skip


def tolerance(dtype: torch.dtype) -> float:
    """How far (relative to the norm) a model may be from the given gradient and still explain it.

    A correct float32 backward is 1e-7 to 1e-5 from the float64 truth (autograd's own error in grad_check.py), and so is
    a float32 gradient that a model explains exactly; two different models of a mistake differ by a tenth of the norm
    or more (the bank's closest pair, the mask taken from the shifted output and the right mask, by 0.57). 1e-3 sits a
    hundred times above the one and a hundred times below the other. It is relative to the larger norm, given's or
    the truth's, because a gradient rounds relative to its own size: × 50,000 (a 1/N missing on MNIST) carries
    rounding of 50,000 times the truth's. Half precisions round at 1e-3 (float16) and 8e-3 (bfloat16) per entry
    already, so their tolerance grows with their epsilon."""
    return max(1e-3, 8 * torch.finfo(dtype).eps) if dtype.is_floating_point else 1e-3


def diagnose(
    node: str, given: torch.Tensor | None, truth: torch.Tensor, *, rows: int,
    pre_activation: torch.Tensor | None = None, upstream: torch.Tensor | None = None, shift: float = 0.5,
    earlier: torch.Tensor | None = None, weight: torch.Tensor | None = None, step: str | None = None,
) -> Diagnosis:  # fmt: skip
    """The kind of `given`'s difference from the float64 `truth` at `node` (lin{i}, act{i}, w{i}, b{i}, x).

    `rows` is the batch size N (to name the mean's 1/N). Context, where the caller has it (`diagnose_at`):
    `pre_activation`, the ReLU's input at a lin{i} below one (its output is `pre_activation.clamp_min(0) - shift`);
    `upstream`, the truth at the node above (act{i} for lin{i}, lin{i} for b{i}, lin{i+1} for act{i}); `weight`, the
    layer's weight an input's gradient is multiplied by (w{i+1} for act{i}); `earlier`, the user's gradient here
    from the first of two backward calls on the same forward (`given` being the second's); `step`, the lesson's line
    that sets this node's gradient, to name in a shape's sentence. Two calls on one forward cannot show a stale
    gradient (it equals a fresh one), only an accumulated one."""
    if given is None:
        return Diagnosis("not_given", "not given: the backward left no gradient here")
    shaped = _by_shape(node, tuple(given.shape), tuple(truth.shape), rows, step)
    if shaped is not None:
        return shaped
    g, t = _f64(given, truth), truth.detach().double()
    n_bad = (~torch.isfinite(g)).sum().item()
    if n_bad:
        nan = torch.isnan(g).sum().item()
        why = " (the truth is finite here: an overflow or a 0/0 in the backward)" if torch.isfinite(t).all() else ""
        return Diagnosis("non_finite", f"non-finite: {nan} NaN and {n_bad - nan} ±Inf of {g.numel()} entries{why}")
    norm_g, norm_t = g.norm().item(), t.norm().item()
    measured = f"||given|| / ||truth|| = {_ratio(norm_g, norm_t)}"
    if norm_t == 0:
        return Diagnosis("differs", f"differs (no pattern found): the truth is 0 here, ||given|| = {norm_g:.3g}")
    error = (g - t).norm().item() / norm_t
    tol = tolerance(given.dtype)
    if error <= tol:  # only rounding apart: the check's verdict came from a tolerance tighter than this one
        return Diagnosis("differs", f"differs (no pattern found): {measured}, relative error {error:.3g}: past the "
                                    "check's tolerance, too close for any model to tell")  # fmt: skip
    if norm_g <= torch.finfo(given.dtype).eps * norm_t:  # zero to the dtype's resolution, not merely small: a mean
        # where the sum is due is 1/N of the truth, a scale, however large N is
        return Diagnosis("zero", f"zero where the truth is not (||truth|| = {norm_t:.3g}): the gradient stops here")

    def fits(model: torch.Tensor) -> bool:
        return (g - model).norm().item() <= tol * max(norm_g, norm_t)

    if t.numel() == 1:  # any offset, and any factor, fit a single number: only a factor with a name says anything
        return _scale(g, t, rows, fits, tol, named_only=True) or Diagnosis(
            "differs", f"differs (no pattern found): {measured}, on a node of one entry")  # fmt: skip

    found = (_accumulated(g, t, earlier, tol, measured) or _weight_not_transposed(t, upstream, weight, fits)
             or _square_transposed(node, t, fits)
             or _square_wrong_axis(node, t, upstream, fits)
             or _relu(g, t, pre_activation, upstream, shift, fits) or _offset(g, t, pre_activation, shift, fits, tol)
             or _scale(g, t, rows, fits, tol))  # fmt: skip
    return found or Diagnosis("differs", f"differs (no pattern found): {measured}, relative error {error:.3g}")


def changed_after(node: str, step: str, as_it_stands: Diagnosis) -> Diagnosis:
    """A gradient set right, then changed by a later step (in place, `out.g *= 2`, or replaced): judged as it stands
    at the end of the backward, the change named."""
    return Diagnosis("changed_after", f"{node}'s gradient was changed by {step} after it was set (an in-place op on "
                                      f"out.g?); as it stands at the end: {as_it_stands.words}")  # fmt: skip


SAMPLE_ROWS = 2048  # of the input's gradient: its float64 truth is never held whole (grad_check.CHUNK_ROWS)


def diagnose_at(
    node: str, manual: dict, earlier: dict, truth: dict, pre_activations: dict[str, torch.Tensor], *,
    due_shape: tuple[int, ...], rows: int, shift: float, params: dict[str, torch.Tensor] | None = None,
) -> Diagnosis:  # fmt: skip
    """`diagnose` at `node` with the context the check has: the user's gradients of the second and first backward
    calls (`manual`, `earlier`), the truth at every node (at "x" a function of a row range), the forward's lin{i}
    outputs, the node's due shape and the weights. The context taken: for lin{i} below a ReLU, its input and the
    truth at act{i}; for b{i}, the truth at lin{i} (what its sum runs over); for act{i} (or x), the truth at lin{i+1}
    and w{i+1}. The input's gradient is judged on its first SAMPLE_ROWS rows: every kind but a shape (told by the
    shapes alone) holds row by row."""
    given, due, before = manual.get(node), truth[node], earlier.get(node)
    step = _step(node, truth)
    if callable(due):
        if given is not None and tuple(given.shape) != tuple(due_shape):
            return _by_shape(node, tuple(given.shape), tuple(due_shape), rows, step)
        due = due(0, SAMPLE_ROWS)
        given, before = (t[:SAMPLE_ROWS] if t is not None else None for t in (given, before))
    layer = node.lstrip("linactwb") if node != "x" else "0"
    context = {}
    if node.startswith("lin") and f"act{layer}" in truth:
        context = {"pre_activation": pre_activations[node], "upstream": truth[f"act{layer}"]}
    elif node.startswith("b"):
        context = {"upstream": truth[f"lin{layer}"]}
    elif (node.startswith("act") or node == "x") and params and f"w{int(layer) + 1}" in params:
        above = int(layer) + 1  # the layer this node is the input of
        upstream = truth[f"lin{above}"][:SAMPLE_ROWS] if node == "x" else truth[f"lin{above}"]
        context = {"upstream": upstream, "weight": params[f"w{above}"]}
    return diagnose(node, given, due, rows=rows, shift=shift, earlier=before, step=step, **context)


def _step(node: str, truth: dict) -> str:
    """The lesson's line that sets the node's gradient: what a sentence about its shape points at."""
    if node.startswith("w"):
        return "lin_grad's `w.g = inp.t() @ out.g`"
    if node.startswith("b"):
        return "lin_grad's `b.g = out.g.sum(0)`"
    if node.startswith("act") or node == "x":
        return "lin_grad's `inp.g = out.g @ w.t()`"
    hidden = f"act{node.removeprefix('lin')}" in truth
    return "relu_grad's `inp.g = (inp > 0).float() * out.g`" if hidden else (
        "mse_grad's `inp.g = 2. * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]`")  # fmt: skip


def _f64(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.detach().to(like.device, torch.float64)


def _number(v: float) -> str:
    """Four significant digits, trailing zeros kept (× 2.000: exactly 2 as far as rounding tells); whole above 1000."""
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:#.4g}"


def _ratio(a: float, b: float) -> str:
    return _number(a / b) if b > 0 else "inf"


def _weight_not_transposed(t, upstream, weight, fits) -> Diagnosis | None:
    """An input's gradient multiplied by the weight where its transpose is due: on a square layer the shapes agree
    and only the values tell."""
    if upstream is None or weight is None or weight.shape[0] != weight.shape[1]:
        return None
    if not fits(_f64(upstream, t) @ _f64(weight, t)):
        return None
    return Diagnosis("transposed", f"out.g @ w where out.g @ w.t() is due: a transposed weight (the layer is square, "
                                   f"{_shape(tuple(weight.shape))}, so only the values tell)")  # fmt: skip


def _accumulated(g, t, earlier, tol, measured) -> Diagnosis | None:
    """What the second call added to the first's value is the truth. Judged on that increment, not on `g`: a wrong
    gradient the same on both calls is within `tol` of the first call's value plus the truth whenever it is a
    thousand times the truth (the mean's 1/N missing, at N > 1000)."""
    if earlier is None or earlier.shape != t.shape:
        return None
    added = g - _f64(earlier, t)
    if (added - t).norm().item() > tol * max(added.norm().item(), t.norm().item()):
        return None
    return Diagnosis("accumulated", f"the previous backward's value added in ({measured} on the second call): "
                                    "the gradient accumulated (+=, or a .g never reset), not assigned")  # fmt: skip


def _square_transposed(node, t, fits) -> Diagnosis | None:
    """On a square node the transposed result has the right shape: only its values tell."""
    if t.ndim != 2 or t.shape[0] != t.shape[1] or not fits(t.t()):
        return None
    how = "the (out, in) product g.t() @ x, where x.t() @ g is due" if node.startswith("w") else "the result"
    return Diagnosis("transposed", f"the truth transposed, on a square {_shape(tuple(t.shape))}: {how}")


def _square_wrong_axis(node, t, upstream, fits) -> Diagnosis | None:
    """Where the batch is as wide as the layer, a bias summed over the features has the right shape too."""
    if not node.startswith("b") or upstream is None or upstream.shape != (t.shape[0], t.shape[0]):
        return None
    if not fits(_f64(upstream, t).sum(1)):
        return None
    return Diagnosis("wrong_axis", "the bias gradient summed over the features (sum(1)), not the rows (sum(0))")


def _relu(g, t, pre_activation, upstream, shift, fits) -> Diagnosis | None:
    """The ReLU's backward passes the upstream where its input is > 0 and nothing elsewhere: the given gradient as
    the upstream through some other 0/1 mask, and where that mask differs from the right one."""
    if pre_activation is None or upstream is None:
        return None
    pre, up = _f64(pre_activation, t), _f64(upstream, t)
    opened, reached = pre > 0, up != 0  # where the upstream is 0 any mask fits: those entries say nothing
    if fits(up):
        kept = (~opened & reached).sum().item()
        return Diagnosis("relu_mask", f"kept where the ReLU's input is <= 0 ({kept} of {up.numel()} entries): "
                                      "the gradient passed unmasked, `* (inp > 0)` missing")  # fmt: skip
    if fits(up * (pre.clamp_min(0) - shift > 0)):
        zeroed = (opened & (pre <= shift) & reached).sum().item()
        return Diagnosis("relu_mask", f"zeroed where the ReLU's input is in (0, {shift:g}] ({zeroed} of {up.numel()} "
                                      "entries): the mask taken from the shifted output, not the input")  # fmt: skip
    used = (g - up).abs() < g.abs()  # each entry nearer the upstream than 0: the mask the backward applied
    if not fits(up * used):
        return None
    zeroed, kept = opened & ~used & reached, ~opened & used & reached
    where = f" (from {pre[zeroed].min().item():.3g} to {pre[zeroed].max().item():.3g})" if zeroed.any() else ""
    said = f"zeroed at {zeroed.sum().item()} of {up.numel()} entries where the ReLU's input is > 0{where}"
    return Diagnosis("relu_mask", f"a wrong mask: {said}, kept at {kept.sum().item()} where it is <= 0")


def _offset(g, t, pre_activation, shift, fits, tol) -> Diagnosis | None:
    """A constant added everywhere, or where the ReLU is open (the forward's shift carried into the backward)."""
    supports = [("everywhere", torch.ones_like(t, dtype=torch.bool))]
    if pre_activation is not None and pre_activation.shape == t.shape:
        supports.insert(0, ("where the ReLU's input is > 0", _f64(pre_activation, t) > 0))
    for where, support in supports:
        if not support.any():
            continue
        d = (g - t)[support].mean().item()
        if fits(t + d * support):
            shifted = where != "everywhere" and math.isclose(d, -shift, rel_tol=tol)
            why = f" (= -shift): the forward's '- {shift:g}' carried into the backward" if shifted else ""
            return Diagnosis("offset", f"{d:+#.4g} added {where}{why}")
    return None


def _scale(g, t, rows, fits, tol, named_only: bool = False) -> Diagnosis | None:
    """A constant factor, said with its name where it has one (2, 1/2, N, 1/N, N/2, -1); `named_only`: a factor
    without a name is no diagnosis (on a node of one entry, every factor fits)."""
    c = ((g * t).sum() / (t * t).sum()).item()  # the least-squares factor
    if not fits(c * t):
        return None
    if math.isclose(c, -1, rel_tol=tol):
        return Diagnosis("sign", f"× {_number(c)} everywhere: the sign flipped (a difference the wrong way round?)")
    named = [(2, "the square's 2 counted twice?"), (1 / 2, "the square's 2 missing?"),
             (rows, f"= N = {rows}: the mean's 1/N missing?"),
             (1 / rows, f"a factor of 1/N, N = {rows}: a mean where the sum is due?"),
             (rows / 2, f"= N/2, N = {rows}: the mean's 2/N missing?")]  # fmt: skip
    why = next((w for f, w in named if math.isclose(abs(c), f, rel_tol=tol)), None)
    if why is None and named_only:
        return None
    sign = "the sign flipped too; " if c < 0 else ""
    why = why or "not 2, 1/2, N, 1/N or N/2"
    return Diagnosis("scale", f"× {_number(c)} everywhere: a constant factor ({sign}{why})")
