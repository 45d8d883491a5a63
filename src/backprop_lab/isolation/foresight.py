"""What a learner's steps would make on the full data, foreseen from a few rows. Every tensor their code makes on a
preflight slice is seen (a dispatch mode, in the learner's process), its rows put back to the full N; the largest
one that grows faster than the data is kept, with the line of theirs that made it. A gradient summed over the
examples from a per-example product (course22p2's `(inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)`) has the
right shape and a (N, 784, 80) temporary: only the tensors made on the way show it."""

from __future__ import annotations

import linecache
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

MAX_LINE_CHARS = 120  # of the learner's source line, quoted


def at_full(shape: tuple[int, ...], rows: int, n: int) -> tuple[int, ...]:
    """A shape seen on the slice's `rows`, its rows put back to the full `n`."""
    return tuple(n if d == rows else d for d in shape)


@dataclass(frozen=True)
class Made:
    """A tensor the learner's code made on the slice, and what it would be on the full data."""

    shape: tuple[int, ...]
    full: tuple[int, ...]
    bytes: int  # on the full data
    file: str  # where in their code: the innermost frame of theirs
    line: int
    function: str
    source: str

    def reply(self, rows: int) -> dict:
        return {"error": "foreseen_made", "shape": list(self.shape), "full": list(self.full), "bytes": self.bytes,
                "rows": rows, "file": Path(self.file).name, "line": self.line, "function": self.function,
                "source": self.source}  # fmt: skip


class Watch(TorchDispatchMode):
    """Every tensor made while active, its rows (a dimension of `rows`) foreseen at `n`; `largest` is the biggest
    of those with more entries than `ceiling` (the largest the net itself needs: x, or an activation)."""

    def __init__(self, rows: int, n: int, ceiling: int, theirs: Callable[[str], bool]) -> None:
        super().__init__()
        self.rows, self.n, self.ceiling, self.theirs = rows, n, ceiling, theirs
        self.largest: Made | None = None
        self.entered = None  # the frame that turned the watch on: the search for the learner's line stops there

    def __enter__(self):
        self.entered = sys._getframe(1)
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and self.rows in t.shape:
                self._saw(tuple(t.shape), t.element_size())
        return out

    def _saw(self, shape: tuple[int, ...], element_size: int) -> None:
        full = at_full(shape, self.rows, self.n)
        entries = math.prod(full)
        if entries <= self.ceiling or (self.largest and entries * element_size <= self.largest.bytes):
            return
        frame = sys._getframe(2)
        while frame is not None and frame is not self.entered and not self.theirs(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None or frame is self.entered:  # made by the lab's own steps: not the learner's to hear about
            return
        file, line = frame.f_code.co_filename, frame.f_lineno
        source = linecache.getline(file, line).strip()[:MAX_LINE_CHARS]
        self.largest = Made(shape, full, entries * element_size, file, line, frame.f_code.co_name, source)
