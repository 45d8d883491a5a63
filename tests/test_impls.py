"""Every implementation's gradients against autograd in float64, and the hand-written layers against gradcheck."""

from __future__ import annotations

import pytest
import torch
from helpers import small_problem

from backprop_lab import impls
from backprop_lab.core.errors import ShapeError
from backprop_lab.impls import autograd, functional, layers, module, module_einsum
from backprop_lab.impls.common import NotebookNet, check_mse_shapes

SHAPES = [[7, 5, 1], [12, 8, 1], [6, 4, 4, 3, 5, 1]]  # the last one: deep, odd widths
NAMES = impls.built_in()


@pytest.mark.parametrize("widths", SHAPES, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("input_grad", [False, True], ids=["", "x.g"])
def test_gradients_match_autograd(name, widths, input_grad):
    params, x, y = small_problem(widths)
    net = impls.build(name, params, 0.5, input_grad)
    loss = net.forward(x, y)
    grads = net.backward()
    # the notebook's four compute the input's gradient, as the notebook did; the others when asked
    computed_x = input_grad or not impls.input_grad_optional(name)
    ref = autograd.Net(params, 0.5, computed_x)
    ref_loss = ref.forward(x, y)
    expected = ref.backward()
    torch.testing.assert_close(loss, ref_loss.detach())
    assert set(grads) == set(expected) == {*params, *(["x"] if computed_x else [])}
    for key in expected:
        assert grads[key].shape == expected[key].shape, key
        torch.testing.assert_close(grads[key], expected[key], rtol=1e-10, atol=1e-12, msg=key)


def test_the_notebooks_four_always_compute_the_input_gradient():
    assert [n for n in NAMES if not impls.input_grad_optional(n)] == ["functional", "layers", "module", "module_einsum"]


@pytest.mark.parametrize("name", NAMES)
def test_exact_zero_pre_activation_follows_the_same_convention(name):
    """ReLU has no slope at 0: every implementation and the reference must take it as 0 (found on MNIST, deep net)."""
    params, x, y = small_problem([5, 4, 3, 1])
    params["w1"][:, 0], params["b1"][0] = 0.0, 0.0  # the first hidden unit's pre-activation is exactly 0 everywhere
    ref = autograd.Net(params, 0.5, True)
    ref.forward(x, y)
    expected = ref.backward()
    assert not expected["w1"][:, 0].any()  # no gradient flows through a unit sitting exactly at the kink
    net = impls.build(name, params, 0.5, True)
    net.forward(x, y)
    grads = net.backward()
    for key in expected:
        torch.testing.assert_close(grads[key], expected[key], rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_backward_repeats_identically(name):
    """Timing calls backward many times on one forward: each call must give the same gradients."""
    params, x, y = small_problem([5, 4, 1])
    net = impls.build(name, params, 0.5, True)
    net.forward(x, y)
    first, second = net.backward(), net.backward()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_a_wrong_backward_is_caught():
    """The check must be able to fail: a Lin.bwd that doubles the bias gradient disagrees with autograd."""

    class WrongLin(module.Lin):
        def bwd(self, out, inp):
            super().bwd(out, inp)
            self.b.g = self.b.g * 2

    params, x, y = small_problem([5, 4, 1])
    expected = autograd.Net(params, 0.5, True)
    expected.forward(x, y)
    net = NotebookNet(module.Model(params, 0.5, lin=WrongLin), params)
    net.forward(x, y)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(net.backward()["b1"], expected.backward()["b1"])


class _Functional:
    """The notebook's functions as layers: `__call__` keeps what the `*_grad` function needs, `backward` calls it."""

    def __init__(self, fwd, grad, *consts):
        self.fwd, self.grad, self.consts = fwd, grad, consts

    def __call__(self, *args):
        self.args = args
        self.out = self.fwd(*args, *self.consts)
        return self.out

    def backward(self):
        if self.grad is functional.mse_grad:
            self.grad(*self.args)
        elif self.grad is functional.lin_grad:
            self.grad(self.args[0], self.out, *self.args[1:])
        else:
            self.grad(self.args[0], self.out)


class _LinAll:
    """A Lin layer seen as a function of (x, w, b), so that gradcheck checks w.g and b.g as well as x.g."""

    def __init__(self, make_lin):
        self.make_lin = make_lin

    def __call__(self, x, w, b):
        self.lin = self.make_lin(w, b)
        self.out = self.lin(x)
        return self.out

    def backward(self):
        self.lin.backward()


def as_function(make_layer):
    """Wrap a hand-written layer as an autograd.Function whose backward is the layer's own, for gradcheck.
    A new layer per call: gradcheck interleaves forwards, and a layer keeps only its last one."""

    class Wrapped(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            # copies: the notebook's Relu clamps its input in place, which must not touch gradcheck's own
            ctx.layer, ctx.args = make_layer(), [t.detach().clone() for t in inputs]
            return ctx.layer(*ctx.args).clone()

        @staticmethod
        def backward(ctx, grad_out):
            ctx.layer.out.g = grad_out
            ctx.layer.backward()
            grads = [getattr(t, "g", None) for t in ctx.args]
            if ctx.layer.out.ndim == 0:  # a loss is the graph's root: its bwd takes d(loss) = 1, as in the notebook
                grads = [None if g is None else g * grad_out for g in grads]
            return tuple(grads)

    return Wrapped.apply


def double(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


LAYERS = {  # name: (a Lin of (x, w, b), a shifted Relu)
    "functional": (
        lambda: _Functional(functional.lin, functional.lin_grad),
        lambda: _Functional(functional.relu, functional.relu_grad, 0.5),
    ),
    "layers": (lambda: _LinAll(layers.Lin), lambda: layers.Relu(0.5)),
    "module": (lambda: _LinAll(module.Lin), lambda: module.Relu(0.5)),
    "module_einsum": (lambda: _LinAll(module_einsum.Lin), lambda: module.Relu(0.5)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_hand_written_layers(name):
    make_lin, make_relu = LAYERS[name]
    assert torch.autograd.gradcheck(as_function(make_lin), (double(6, 4), double(4, 3), double(3)))
    kinked = torch.randn(6, 4, dtype=torch.float64)
    kinked = (kinked + 0.1 * kinked.sign()).requires_grad_()  # finite differences must not straddle the kink
    assert torch.autograd.gradcheck(as_function(make_relu), (kinked,))


@pytest.mark.parametrize(
    "make_mse",
    [lambda: _Functional(functional.mse, functional.mse_grad), layers.Mse, module.Mse],
    ids=["functional", "layers", "module"],
)
def test_gradcheck_mse(make_mse):
    targ = torch.randint(0, 10, (6,)).double()
    assert torch.autograd.gradcheck(lambda out: as_function(make_mse)(out, targ), (double(6, 1),))


@pytest.mark.parametrize("out_shape, targ_shape", [((5,), (5,)), ((5, 2), (5,)), ((5, 1), (5, 1)), ((5, 1), (4,))])
def test_mse_shape_guard(out_shape, targ_shape):
    with pytest.raises(ShapeError, match=r"expected output \(N, 1\) and target \(N,\)"):
        check_mse_shapes(torch.zeros(out_shape), torch.zeros(targ_shape))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("targ_shape", [(9, 1), (8,), ()])
def test_every_net_refuses_targets_that_would_broadcast(name, targ_shape):
    params, x, _ = small_problem([7, 5, 1], n=9)
    with pytest.raises(ShapeError, match=r"expected output \(N, 1\) and target \(N,\)"):
        impls.build(name, params, 0.5).forward(x, torch.zeros(targ_shape, dtype=x.dtype))


def test_mse_never_builds_n_by_n():
    out, targ = torch.zeros(4, 1), torch.arange(4.0)
    assert functional.mse(out, targ).item() == pytest.approx((targ**2).mean().item())


@pytest.mark.parametrize("name", NAMES)
def test_every_node_gradient_matches_autograd(name):
    """Each implementation hands back the gradient at every intermediate node, in the names the check walks."""
    from backprop_lab.impls.common import backward_order

    params, x, y = small_problem([6, 4, 4, 3, 1])
    net = impls.build(name, params, 0.5, True, keep_nodes=True)
    net.forward(x, y)
    net.backward()
    ref = autograd.Net(params, 0.5, True)
    ref.forward(x, y)
    ref.backward()
    nodes, expected = net.node_grads(), ref.node_grads()
    assert set(nodes) == set(expected) == {n for n in backward_order(4, True) if n[0] in "la"}
    for key in expected:
        torch.testing.assert_close(nodes[key], expected[key], rtol=1e-10, atol=1e-12, msg=key)
