"""The backward implementations, one file each. The notebook's four, read side by side with the lesson's cells:
`functional`, `layers`, `module`, `module_einsum`; `lean`, the fastest hand-written backward; and autograd's two,
`autograd` (the reference every check uses) and `nn`. Which exist is said once, by the options in `conf/impl/`,
each naming its module here.

Each module's `Net(params, shift)` has `forward(x, y) -> loss` and `backward() -> grads`, grads mapping `w1`, `b1`,
... to tensors shaped like the parameters ((in, out) weights) and `x` to the input's gradient: always for the
notebook's four, which computed it, and when asked (`Net(params, shift, input_grad=True)`) for the others. After a
backward, `node_grads()` maps each intermediate node (`lin{i}`, a linear layer's output; `act{i}`, the shifted
ReLU's after it) to the gradient there, for the check that names the first node where a backward goes wrong.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import torch

from backprop_lab.errors import ConfigError


def load(name: str) -> ModuleType:
    from backprop_lab.config import options

    if name not in options("impl"):
        raise ConfigError(f"impl.name: no implementation {name!r}; choose one of {', '.join(options('impl'))}")
    return importlib.import_module(f"{__name__}.{name}")


def input_grad_optional(name: str) -> bool:
    """Whether the implementation can skip the input's gradient (the notebook's four always compute it)."""
    return "input_grad" in inspect.signature(load(name).Net).parameters


def build(name: str, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False, keep_nodes=False):
    """The implementation's Net; the notebook's four compute the input's gradient whatever `input_grad` says.
    `keep_nodes`: `node_grads()` will hold the gradient at every intermediate node (lean keeps them only if asked)."""
    accepts = inspect.signature(load(name).Net).parameters
    options = {"input_grad": input_grad, "keep_nodes": keep_nodes}
    return load(name).Net(params, shift, **{k: v for k, v in options.items() if k in accepts})
