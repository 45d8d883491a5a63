"""Functions given to check() become a module that stands on its own: what they use from where they were defined is
carried with them (imports, helpers, constants), a renamed one is bound to the lesson's name, and what a file cannot
carry is one line before any run."""

from __future__ import annotations

import math as maths

import pytest
import torch
from test_user_code import CLASSES

from backprop_lab.core.errors import ConfigError
from backprop_lab.isolation.cell_source import module_source

SCALE = 2.0
NOT_A_FILE = torch.ones(3)


def _twice(t):
    return SCALE * t


def my_mse_grad(inp, targ):
    inp.g = _twice((inp.squeeze(-1) - targ).unsqueeze(-1)) / inp.shape[0] * maths.cos(0.0)


def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = torch.einsum("bi,bj->ij", inp, out.g)
    b.g = out.g.sum(0)


def run(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "cell.py", "exec"), namespace)  # a fresh namespace: nothing of this module's
    return namespace


def test_what_the_functions_use_is_carried_and_a_renamed_one_bound_to_the_lessons_name():
    source = module_source({"lin_grad": lin_grad, "mse_grad": my_mse_grad})
    assert "import torch" in source and "import math as maths" in source and "SCALE = 2.0" in source
    assert "def _twice(t):" in source and source.rstrip().endswith("mse_grad = my_mse_grad")
    cell = run(source)
    inp, targ = torch.randn(4, 1), torch.randn(4)
    cell["mse_grad"](inp, targ)
    assert torch.allclose(inp.g, 2.0 * (inp.squeeze(-1) - targ).unsqueeze(-1) / 4)


def test_a_class_brings_its_base_class(tmp_path):
    """The notebook's Relu(Module), from a module of its own (as a notebook's class is found through its cell)."""
    import importlib.util

    (tmp_path / "lesson_classes.py").write_text(CLASSES)
    spec = importlib.util.spec_from_file_location("lesson_classes", tmp_path / "lesson_classes.py")
    classes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(classes)
    cell = run(module_source({"Relu": classes.Relu}))
    x = torch.tensor([[-1.0, 2.0]])
    assert torch.equal(cell["Relu"]()(x), torch.tensor([[-0.5, 1.5]])) and "Module" in cell


def test_what_a_file_cannot_carry_is_one_line():
    def uses_tensor(inp, out):
        inp.g = out.g * NOT_A_FILE

    def closure(k):
        def relu_grad(inp, out):
            inp.g = out.g * k

        return relu_grad

    with pytest.raises(ConfigError, match=r"^check: relu_grad uses 'NOT_A_FILE', a Tensor of your notebook's"):
        module_source({"relu_grad": uses_tensor})
    with pytest.raises(ConfigError, match=r"^check: relu_grad reads k from an enclosing function"):
        module_source({"relu_grad": closure(2.0)})
