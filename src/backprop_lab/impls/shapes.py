"""A gradient of the wrong shape, told by the shapes alone: the first model of study/diagnosis.py, and the words the
learner's process (isolation/) needs before any value is there to judge (a preflight's shapes)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Diagnosis:
    kind: str  # one of KINDS
    words: str  # one line for a learner: what kind of mistake, with the measured number(s)


def shape_text(shape: tuple[int, ...]) -> str:
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"


def by_shape(node: str, shape: tuple[int, ...], due: tuple[int, ...], rows: int,
              step: str | None = None) -> Diagnosis | None:  # fmt: skip
    """A wrong shape, told by the shapes alone, in a sentence of its own naming the shape given, the shape due and
    the lesson's line that sets it (`step`): None where they agree."""
    if shape == due:
        return None
    said = f"shape {shape_text(shape)} where {shape_text(due)} is due"
    at = f" (the lesson's line: {step})" if step else ""
    if node.startswith("b") and shape == (rows,):
        return Diagnosis("wrong_axis", f"{said}: the bias gradient summed over the features (sum(1)), not the "
                                       f"rows{at}")  # fmt: skip
    if len(shape) == 2 and shape == due[::-1]:
        how = "the (out, in) product g.t() @ x, where x.t() @ g is due" if node.startswith("w") else "transposed"
        return Diagnosis("transposed", f"{said}: {how}{at}")
    if math.prod(shape) == math.prod(due) and [n for n in shape if n != 1] == [n for n in due if n != 1]:
        if len(shape) > len(due):
            how = ("a dimension of size 1 kept (sum(0, keepdim=True)? sum(0) is due)" if node.startswith("b")
                   else "a dimension of size 1 too many")  # fmt: skip
        else:
            how = ("the output's dimension of size 1 dropped (the `.unsqueeze(-1)` missing?)" if node.startswith("lin")
                   else "a dimension of size 1 missing")  # fmt: skip
        return Diagnosis("dims", f"{said}: as many entries, {how}{at}")
    try:
        broadcast = torch.broadcast_shapes(shape, due) == shape
    except RuntimeError:
        broadcast = False
    if broadcast:
        if shape == (rows, rows) and due in ((rows, 1), (rows,)):
            how = "an (N, 1) output minus an (N,) target broadcasts to (N, N): squeeze the output first"
        elif node.startswith("b") and shape == (rows, *due):
            how = "the rows not summed"
        else:
            how = "a result broadcast to more entries than the node has"
        return Diagnosis("broadcast", f"{said}: {how}{at}")
    return Diagnosis("differs", f"differs (no pattern found): {said}{at}")


def shape_words(node: str, shape: tuple[int, ...], due: tuple[int, ...], rows: int) -> str:
    """What a wrong shape says, in words (the preflight's, before the full data is touched)."""
    found = by_shape(node, shape, due, rows)
    return found.words if found else ""
