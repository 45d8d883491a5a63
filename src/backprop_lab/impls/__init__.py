"""The backward implementations, one file each, in the order the notebook builds them.

Each module exposes `Net(params, shift, input_grad)` with `forward(x, y) -> loss` and `backward() -> grads`, where
grads maps `w1`, `b1`, ... (and `x`, when `input_grad`) to tensors shaped like the parameters, (in, out) weights.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("functional", "layers", "module", "module_einsum", "autograd", "nn")


def load(name: str) -> ModuleType:
    if name not in NAMES:
        raise ValueError(f"impl.name: unknown implementation {name!r}; choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")
