"""The product's verdict: the check shown wrong gradients of every kind must say not close; its tolerance, on
crafted tensors, follows autograd's own error; float64 agrees with the truth to float64 precision; and every bug of
the bank is caught at the node it is put in."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import small_problem

from backprop_lab import impls
from backprop_lab.config import options
from backprop_lab.core import names
from backprop_lab.impls.common import backward_order
from backprop_lab.study import backward, bugs, grad_check, verdicts

FACTOR = 8.0


def truth_and_reference(shape=(64, 16), noise=1e-6, seed=0):
    """A float64 truth, and an 'autograd' at float32 that is off from it by about `noise`, relatively."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(*shape, generator=g, dtype=torch.float64)
    ref = (truth * (1 + noise * torch.randn(*shape, generator=g, dtype=torch.float64))).float()
    return truth, ref


def judge(manual, ref, truth, reduction=64):
    return grad_check.check_node("w1", manual, ref, truth, reduction, FACTOR)


def test_the_same_gradient_as_autograd_is_close():
    truth, ref = truth_and_reference()
    c = judge(ref.clone(), ref, truth)
    assert c.close and c.exact and c.verdict == "ok" and c.ratio == pytest.approx(1.0)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda w: w * 2,  # a factor 2 too many
        lambda w: w / 50_000,  # a missing 1/N
        lambda w: w.flip(0),  # rows swapped: what a transposed product looks like on a square layer
        lambda w: w.index_put((torch.tensor([0]), torch.tensor([0])), w[0, 0] + 0.1 * w.abs().max()),  # one entry off
        torch.zeros_like,  # a layer's gradient silently zero
    ],
)
def test_a_wrong_gradient_is_not_close(wrong):
    truth, ref = truth_and_reference()
    c = judge(wrong(ref.clone()), ref, truth)
    assert not c.close and c.verdict == "differs" and c.ratio > 1e3


@pytest.mark.parametrize("k, close", [(1.0, True), (FACTOR / 2, True), (FACTOR * 4, False), (1e4, False)])
def test_the_tolerance_is_a_factor_of_autograds_own_error(k, close):
    """A manual gradient `k` times as far from the truth as autograd's: close up to the factor, not past it."""
    truth, ref = truth_and_reference(noise=1e-5)
    g = torch.Generator().manual_seed(7)
    shuffled = (ref.double() - truth).flatten()[torch.randperm(truth.numel(), generator=g)].view_as(truth)
    manual = (truth + k * shuffled).float()  # autograd's error, shuffled and scaled
    c = judge(manual, ref, truth)
    assert c.close is close, (c.ratio, c.autograd_error)
    assert c.autograd_error == pytest.approx(1e-5, rel=0.2)


def test_where_autograd_is_exact_the_dtypes_rounding_is_the_floor():
    truth = torch.randn(32, 8, dtype=torch.float64)
    ref = truth.clone()  # float64: autograd is the truth itself
    eps = torch.finfo(torch.float64).eps
    c = judge(truth * (1 + 3 * eps), ref, truth, reduction=100)
    assert c.close and c.autograd_error == 0 and c.tolerance == pytest.approx(FACTOR * eps * 10)
    assert not judge(truth * (1 + 1e-9), ref, truth, reduction=100).close


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gradient_is_never_close_not_even_to_itself(bad):
    """Non-finite where autograd's is finite: the backward's own overflow or 0/0, wrong. Where autograd's is not
    finite either, the run's dtype overflowed there (an exploding init): nothing at that dtype can be told, so
    inconclusive; never ok either way."""
    truth, ref = truth_and_reference()
    given = ref.clone()
    given[2, 1] = bad
    alone = judge(given, ref, truth)
    assert not alone.close and not alone.finite and alone.autograd_finite and alone.verdict == "non-finite"
    assert grad_check.metrics([alone])["grad/all_close"] == 0.0 and grad_check.metrics([alone])["grad/all_finite"] == 0
    ref[2, 1] = bad
    both = judge(ref.clone(), ref, truth)
    assert not both.close and not both.autograd_finite and both.truth_finite and both.verdict == "inconclusive"


def test_a_wrong_shape_is_its_own_verdict():
    truth, ref = truth_and_reference(shape=(8, 8))
    c = judge(ref.t().clone()[:4], ref, truth)
    assert c.verdict == "shape" and not c.close


def test_the_first_divergent_node_is_the_first_not_close_in_backward_order():
    truth, ref = truth_and_reference()
    good, bad = judge(ref, ref, truth), judge(ref * 3, ref, truth)
    assert grad_check.first_divergent([good, good]) == names.NONE
    named = [grad_check.check_node(n, *(ref * 3, ref, truth) if n in ("act1", "w1") else (ref, ref, truth), 64, FACTOR)
             for n in ("lin2", "w2", "act1", "lin1", "w1")]  # fmt: skip
    assert bad.verdict == "differs" and grad_check.first_divergent(named) == "act1"


@pytest.mark.parametrize("name", impls.built_in())
def test_float64_agrees_with_the_truth_to_float64_precision(name):
    params, x, y = small_problem([20, 12, 12, 1], n=50)  # float64
    checked = backward.run_check(name, params, x, y, 0.5, True, FACTOR)
    assert checked.all_close
    assert max(c.error for c in checked.checks) < 1e-13
    assert [c.node for c in checked.checks] == backward_order(3, True)


@pytest.mark.parametrize("bug", list(bugs.BUGS))
def test_every_bug_of_the_bank_is_caught_where_it_is_put(bug):
    widths = [30, 16, 16, 16, 1]  # square layers for the missing transpose
    params, x, y = (t.float() if hasattr(t, "float") else t for t in small_problem(widths, n=400))
    params = {k: v.float() for k, v in params.items()}
    checked = backward.run_check("functional", params, x.float(), y.float(), 0.5, False, FACTOR, bug)
    assert not checked.all_close
    assert grad_check.first_divergent(checked.checks) == bugs.expected_node(bug, widths)


def test_the_bank_and_its_config_options_are_the_same_list():
    assert options("bug") == sorted(["none", *bugs.BUGS])


def test_a_bug_that_needs_a_square_layer_on_a_model_without_one_is_refused():
    from backprop_lab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a square layer"):
        bugs.check("weight_not_transposed", [784, 80, 1])
    with pytest.raises(ConfigError, match="no bug 'nope'"):
        bugs.check("nope", [784, 80, 1])
    assert math.isfinite(FACTOR)


def test_a_node_whose_tolerance_cannot_tell_is_inconclusive_never_ok():
    """Autograd itself half wrong (underflow): a factor of it allows a zero gradient, so the check cannot know."""
    truth, _ = truth_and_reference()
    ref = (truth * 0.5).float()  # autograd's own error against the truth: 0.5
    c = judge(torch.zeros_like(ref), ref, truth)  # a layer's gradient silently zero: error 1, within 8 x 0.5
    assert c.within and not c.close and not c.conclusive and c.verdict == "inconclusive"
    metrics = grad_check.metrics([c])
    assert metrics["grad/all_close"] == 0.0 and metrics["grad/inconclusive_nodes"] == 1.0
    assert grad_check.first_divergent([c]) == names.NONE and grad_check.overall([c]) == "inconclusive"
    assert judge(ref * 1e3, ref, truth).verdict == "differs"  # far past even that tolerance: known wrong


def test_a_verdict_of_ok_always_allows_less_than_the_conclusive_tolerance():
    for noise in (1e-7, 1e-4, 1e-2, 0.3):
        truth, ref = truth_and_reference(noise=noise)
        c = judge(ref.clone(), ref, truth)
        assert (c.verdict == "ok") == (c.tolerance <= grad_check.CONCLUSIVE_TOLERANCE), (noise, c.tolerance)
        assert c.verdict in ("ok", "inconclusive")


def _deep_float32(gain: float, n: int = 400):
    from backprop_lab.study.init import init_params

    widths = [30, *[16] * 8, 1]  # the deep model's depth, narrower
    params = {k: v.float() for k, v in init_params(widths, "kaiming_uniform", "fan_in", 0, gain).items()}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 30, generator=g), torch.randint(0, 10, (n,), generator=g).float()
    return widths, params, x, y


@pytest.mark.parametrize("gain", [3e-6, 1e-20])
def test_a_known_bug_at_an_underflowing_init_is_inconclusive_and_float64_catches_it(gain):
    """The issue's case: a gradient stopped at layer 1 (zeros where the truth is not) under a gain so small that
    float32's own gradients underflow there; every node it touches must say inconclusive, none ok."""
    widths, params, x, y = _deep_float32(gain)  # layer 1's gradient about gain ** 8: float32's subnormals, or 0
    checked = backward.run_check("functional", params, x, y, 0.5, False, FACTOR, "layer_passes_zero")
    wrong_at = backward_order(len(widths) - 1, False)
    wrong_at = wrong_at[wrong_at.index(bugs.expected_node("layer_passes_zero", widths)):]
    by_node = {c.node: c.verdict for c in checked.checks}
    assert all(by_node[node] != "ok" for node in wrong_at), by_node
    assert "inconclusive" in by_node.values() and not checked.all_close
    assert grad_check.overall(checked.checks) == "inconclusive"
    line = verdicts.verdict_line(checked.checks, FACTOR, torch.float32)
    assert line.startswith("gradients INCONCLUSIVE at ") and "dtype=float64" in line and "init.gain" in line
    p64 = {k: v.double() for k, v in params.items()}
    exact = backward.run_check("functional", p64, x.double(), y.double(), 0.5, False, FACTOR, "layer_passes_zero")
    assert grad_check.first_divergent(exact.checks) == bugs.expected_node("layer_passes_zero", widths)
    assert grad_check.overall(exact.checks) == "wrong"


def test_bfloat16_weight_gradients_are_inconclusive_and_the_note_says_what_decides():
    widths, params, x, y = _deep_float32(gain=1.0, n=2000)
    bf = {k: v.bfloat16() for k, v in params.items()}
    checked = backward.run_check("lean", bf, x.bfloat16(), y.bfloat16(), 0.5, False, FACTOR)
    assert all(c.verdict != "ok" or c.tolerance <= grad_check.CONCLUSIVE_TOLERANCE for c in checked.checks)
    weights = [c for c in checked.checks if c.node[0] == "w"]
    assert all(c.verdict == "inconclusive" for c in weights), [(c.node, c.tolerance) for c in weights]
    note = verdicts.inconclusive_note(checked.checks, FACTOR, torch.bfloat16)
    assert "dtype=float32 or float64" in note and "check.factor=8 allows" in note


def test_the_note_offers_a_factor_only_where_one_of_at_least_1_would_decide():
    truth, _ = truth_and_reference()
    ref = (truth * (1 + 0.02 * torch.randn_like(truth))).float()  # autograd 2 % off: 8 x that is 0.16
    c = judge(ref.clone(), ref, truth)
    assert c.verdict == "inconclusive"
    note = verdicts.inconclusive_note([c], FACTOR, torch.float32)
    limit = float(note.split("check.factor at most ")[1].split(";")[0].split()[0])
    assert limit >= 1 and grad_check.check_node("w1", ref.clone(), ref, truth, 64, limit).verdict == "ok"
    far = (truth * 0.5).float()
    assert "check.factor at most" not in verdicts.inconclusive_note([judge(far.clone(), far, truth)], FACTOR,
                                                                   torch.float32)
