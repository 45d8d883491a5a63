"""The check's answer in words: the verdict line a run prints and describes itself with (ok; WRONG from which node,
and what kind of mistake; PARTIAL, naming the lesson's step that left a gradient unset; INCONCLUSIVE, where and
what would decide it), from the node checks grad_check.py made."""

from __future__ import annotations

import math
from typing import Optional

import torch

from backprop_lab.study import diagnosis
from backprop_lab.study.grad_check import CONCLUSIVE_TOLERANCE, NodeCheck, first_divergent, overall


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2g}" if f"{low:.2g}" == f"{high:.2g}" else f"{low:.2g}-{high:.2g}"


def inconclusive_note(checks: list[NodeCheck], factor: float, dtype: torch.dtype) -> str:
    """Where a run's precision cannot tell, and what would make it conclusive, in one line; "" where it can."""
    nodes = [c for c in checks if c.verdict == "inconclusive"]
    overflowed = [c for c in nodes if not (c.autograd_finite and c.truth_finite)]
    loose = [c for c in nodes if c not in overflowed]
    return "; and ".join(note for note in (_overflow_note(overflowed, checks, dtype),
                                           _loose_note(loose, factor, dtype)) if note)  # fmt: skip


def _overflow_note(nodes: list[NodeCheck], checks: list[NodeCheck], dtype: torch.dtype) -> str:
    """Nodes where autograd's own gradient at the run's dtype, or the float64 truth, is not finite: an exploding
    init overflowed the forward or the backward there."""
    if not nodes:
        return ""
    dtype_name = str(dtype).removeprefix("torch.")
    beyond = next((c.node for c in checks if not c.truth_finite), None)
    truth = (f"the float64 truth itself stops being finite at node {beyond}" if beyond else
             "the float64 truth is finite at every node")  # fmt: skip
    return (f"at {len(nodes)} node{'s' if len(nodes) > 1 else ''} from {nodes[0].node} on (none known wrong), "
            f"autograd's own {dtype_name} gradient is not finite: {dtype_name} overflows there (the activations or "
            f"their gradients pass its largest value), so no {dtype_name} gradient can be told right or wrong; "
            f"{truth}; to decide: dtype=float64, or an init that keeps the activations in range")


def _loose_note(nodes: list[NodeCheck], factor: float, dtype: torch.dtype) -> str:
    """Nodes whose tolerance is too loose to tell a wrong gradient (an underflowing init, a narrow dtype)."""
    if not nodes:
        return ""
    baselines = [c.tolerance / factor for c in nodes]
    dtype_name = str(dtype).removeprefix("torch.")
    remedies = []
    if dtype != torch.float64:
        wider = "float32 or float64" if torch.finfo(dtype).eps > torch.finfo(torch.float32).eps else "float64"
        remedies.append(f"dtype={wider}")
    loosest = CONCLUSIVE_TOLERANCE / max(baselines)  # the factor that would do
    if loosest >= 1:
        remedies.append(f"check.factor at most {math.floor(loosest * 100) / 100:g}")
    if dtype != torch.float64 and any(c.autograd_error >= b for c, b in zip(nodes, baselines)):
        remedies.append(f"an init.gain that keeps the gradients well above {dtype_name}'s underflow")
    if not remedies:  # float64 at a factor of 1 already: the truth itself is zero or out of range there
        remedies.append("none at this config (the truth there is zero or beyond float64)")
    names = [c.node for c in nodes[:6]] + ([f"{len(nodes) - 6} more"] if len(nodes) > 6 else [])
    return (
        f"at {', '.join(names)} (none known wrong): the error a correct backward may have there (autograd's own "
        f"against the float64 truth, or {dtype_name}'s rounding over the node's sum where larger) is "
        f"{_span(baselines)}, so check.factor={factor:g} allows {_span([c.tolerance for c in nodes])} and a wrong "
        f"gradient could pass (a verdict needs at most {CONCLUSIVE_TOLERANCE:g}); to decide: {'; or '.join(remedies)}"
    )


def verdict_line(checks: list[NodeCheck], factor: float, dtype: torch.dtype,
                 mistake: Optional[diagnosis.Diagnosis] = None, style: Optional[str] = None,
                 defined: Optional[set[str]] = None) -> str:  # fmt: skip
    """The check's answer in a line: ok, wrong from which node and what kind of mistake, partial (which of the
    lesson's steps left which gradient unset: `style` and `defined`, the code's, name them), or inconclusive where
    and what would make it not."""
    worst = max((c.ratio for c in checks if c.given), default=0.0)
    worst_text = f"worst {'inf' if math.isinf(worst) else f'{worst:.2g}'} × autograd's own error"
    verdict = overall(checks)
    if verdict == "ok":
        return f"gradients ok at every node ({worst_text})"
    if verdict == "wrong":
        kind = f": {mistake.words}" if mistake else ""
        return f"gradients WRONG from node {first_divergent(checks)} ({worst_text}){kind}"
    if verdict == "partial":
        missing = [c.node for c in checks if not c.given]
        given = f"{len(checks) - len(missing)} of {len(checks)}"
        return (f"PARTIAL: {unset_words(checks, style, defined)}; every node given is ok ({given}; {worst_text}), the "
                f"lab's own gradient standing in for the rest; not given: {', '.join(missing)}")  # fmt: skip
    return f"gradients INCONCLUSIVE {inconclusive_note(checks, factor, dtype)}"


# the lesson's step that sets a node's gradient, and as what: (function, its class, the variable)
_SETTERS = {"w": ("lin_grad", "Lin", "w.g"), "b": ("lin_grad", "Lin", "b.g"), "act": ("lin_grad", "Lin", "inp.g"),
            "x": ("lin_grad", "Lin", "inp.g"), "relu": ("relu_grad", "Relu", "inp.g"),
            "loss": ("mse_grad", "Mse", "inp.g")}  # fmt: skip


def _setter(node: str, layers: int) -> tuple[str, str, str]:
    if node.startswith("lin"):
        return _SETTERS["loss" if node == f"lin{layers}" else "relu"]
    return _SETTERS[node.rstrip("0123456789")]


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def unset_words(checks: list[NodeCheck], style: Optional[str] = None, defined: Optional[set[str]] = None) -> str:
    """Which of the lesson's steps left which gradient unset, and where the learner's chain stops: "lin_grad set
    w.g and b.g but not inp.g: the chain stops at act2"; a step the code does not define at all (`defined`: the
    lesson's names it does) is "not given" as a whole. For a Net (or unknown code), the nodes."""
    missing = [c.node for c in checks if not c.given]
    if style not in ("functions", "classes"):
        return f"the backward gave no gradient at {', '.join(missing)}"
    layers = max(int(c.node[3:]) for c in checks if c.node.startswith("lin"))
    steps: dict[str, dict] = {}
    for c in checks:
        function, cls, variable = _setter(c.node, layers)
        name = function if style == "functions" else cls
        step = steps.setdefault(name, {"set": [], "unset": [], "stops": None})
        if not c.given:
            step["stops"] = step["stops"] or c.node
        kind = "set" if c.given else "unset"
        if variable not in step[kind]:
            step[kind].append(variable)
    absent = [name for name, step in steps.items() if defined is not None and name not in defined]
    said = [f"no {' or '.join(absent)} given"] if absent else []
    for name, step in steps.items():
        unset = step["unset"]
        if not unset or name in absent:
            continue
        done = [v for v in step["set"] if v not in unset]
        named = name if style == "functions" else f"{name}'s bwd"
        what = f"{named} set {_and(done)} but not {_and(unset)}" if done else f"{named} set no {_and(unset)}"
        said.append(f"{what}: the chain stops at {step['stops']}")
    return "; ".join(said)
