"""The backward implementations, one file each. The notebook's four, read side by side with the lesson's cells:
`functional`, `layers`, `module`, `module_einsum`; `lean`, the fastest hand-written backward; and autograd's two,
`autograd` (the reference every check uses) and `nn`. Which exist is said once, by the options in `conf/impl/`,
each naming its code (`code: backprop_lab.impls.NAME`); `impl=user impl.code=FILE` is yours, through the same door,
in a process of its own (isolation/).
What an implementation must define is `protocol.py`'s docstring.

Each `Net(params, shift)` has `forward(x, y) -> loss` and `backward() -> grads`, grads mapping `w1`, `b1`, ...
to tensors shaped like the parameters ((in, out) weights) and `x` to the input's gradient: always for the
notebook's four, which computed it, and when asked (`Net(params, shift, input_grad=True)`) for the others. After a
backward, `node_grads()` maps each intermediate node (`lin{i}`, a linear layer's output; `act{i}`, the shifted
ReLU's after it) to the gradient there, for the check that names the first node where a backward goes wrong.

Add a backward here as a file of its own with its conf/impl option (the floor: above tracking/, below isolation/;
nothing here logs).
"""

from __future__ import annotations

from functools import cache

import torch

from backprop_lab.core.names import USER_IMPL
from backprop_lab.impls import protocol


@cache
def code_of(name: str) -> str:
    """What the option `conf/impl/NAME.yaml` names as its code ("???" for the user's)."""
    from omegaconf import OmegaConf

    from backprop_lab.config import CONF_DIR

    return str(OmegaConf.load(CONF_DIR / "impl" / f"{name}.yaml")._get_node("code")._value())


def built_in() -> list[str]:
    """The options whose code the lab ships: every one of conf/impl/ but the user's."""
    from backprop_lab.config import options

    return [name for name in options("impl") if name != USER_IMPL]


def is_lab_code(code: str) -> bool:
    """`code` is the lab's own: an option of conf/impl/ (but the user's), or the module one of them names. Anything
    else is a learner's, and runs in a process of its own (isolation/)."""
    from backprop_lab.config import options

    names = [name for name in options("impl") if name != USER_IMPL]
    return code in names or code in {code_of(name) for name in names}


def load(code: str | protocol.Code) -> protocol.Code:
    """The lab's own implementation: an option's (`module`) or its module (`backprop_lab.impls.module`); a code
    already loaded is itself. ConfigError for anything else: a learner's code is never imported here."""
    from backprop_lab.core.errors import ConfigError

    if isinstance(code, protocol.Code):
        return code
    if not is_lab_code(code):
        raise ConfigError(f"impl.code: {code!r} is not the lab's own implementation; a learner's runs as impl=user")
    return protocol.load_module(code_of(code) if "." not in code else code)


def check_activation(name: str, code: str, activation: str) -> None:
    """A linear stack (model.activation=none) only with the lab's own code that builds one (a learner's runs the
    lesson's ReLU): ConfigError naming the implementations that do."""
    from backprop_lab.core.errors import ConfigError
    from backprop_lab.core.names import RELU

    lab = name != USER_IMPL and is_lab_code(code)
    if activation == RELU or (lab and protocol.knows_linear_stacks(load(code))):
        return
    able = [option for option in built_in() if protocol.knows_linear_stacks(load(option))]
    what = f"impl={name}" if lab else "a learner's code (impl.code)"
    raise ConfigError(f"model.activation: {activation} builds a net without its ReLU, which impl={', '.join(able)} "
                      f"can; {what} has its ReLU written in")  # fmt: skip


def input_grad_optional(code: str) -> bool:
    """Whether the implementation can skip the input's gradient (the notebook's four always compute it)."""
    return protocol.computes_input_grad_optionally(load(code))


def build(code: str, params: dict[str, torch.Tensor], shift: float, input_grad: bool = False, keep_nodes=False):
    """The implementation's Net; the notebook's four compute the input's gradient whatever `input_grad` says.
    `keep_nodes`: `node_grads()` will hold the gradient at every intermediate node (lean keeps them only if asked)."""
    return protocol.build(load(code), params, shift, input_grad, keep_nodes)
