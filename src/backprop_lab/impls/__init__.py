"""The backward implementations, one file each. The notebook's four, read side by side with the lesson's cells:
`functional`, `layers`, `module`, `module_einsum`; `lean`, the fastest hand-written backward; and autograd's two,
`autograd` (the reference every check uses) and `nn`. Which exist is said once, by the options in `conf/impl/`,
each naming its code (`code: backprop_lab.impls.NAME`); `impl=user impl.code=FILE` is yours, through the same door.
What an implementation must define is `protocol.py`'s docstring.

Each `Net(params, shift)` has `forward(x, y) -> loss` and `backward() -> grads`, grads mapping `w1`, `b1`, ...
to tensors shaped like the parameters ((in, out) weights) and `x` to the input's gradient: always for the
notebook's four, which computed it, and when asked (`Net(params, shift, input_grad=True)`) for the others. After a
backward, `node_grads()` maps each intermediate node (`lin{i}`, a linear layer's output; `act{i}`, the shifted
ReLU's after it) to the gradient there, for the check that names the first node where a backward goes wrong.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Optional

import torch

from backprop_lab.impls import protocol

USER = "user"  # the option whose code is the user's (`impl.code=...`)


@cache
def code_of(name: str) -> str:
    """What the option `conf/impl/NAME.yaml` names as its code ("???" for the user's)."""
    from omegaconf import OmegaConf

    from backprop_lab.config import CONF_DIR

    return str(OmegaConf.load(CONF_DIR / "impl" / f"{name}.yaml")._get_node("code")._value())


def built_in() -> list[str]:
    """The options whose code the lab ships: every one of conf/impl/ but the user's."""
    from backprop_lab.config import options

    return [name for name in options("impl") if name != USER]


def load(code: str | protocol.Code, base: Optional[Path] = None) -> protocol.Code:
    """An option's code (`module`) or a code itself (`backprop_lab.impls.module`, `my_backward.py`); a code
    already loaded is itself."""
    from backprop_lab.config import options

    if isinstance(code, protocol.Code):
        return code

    return protocol.load(code_of(code) if code in options("impl") and code != USER else code, base)


def input_grad_optional(code: str) -> bool:
    """Whether the implementation can skip the input's gradient (the notebook's four always compute it)."""
    return protocol.computes_input_grad_optionally(load(code))


def build(code: str, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False, keep_nodes=False,
          base: Optional[Path] = None):  # fmt: skip
    """The implementation's Net; the notebook's four compute the input's gradient whatever `input_grad` says.
    `keep_nodes`: `node_grads()` will hold the gradient at every intermediate node (lean keeps them only if asked)."""
    return protocol.build(load(code, base), params, shift, input_grad, keep_nodes)
