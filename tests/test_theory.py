"""The variance formulas: both halves of Kaiming's argument, checked on the numbers they must give."""

from __future__ import annotations

import math

import pytest
import torch

from backprop_lab import init_schemes, theory
from backprop_lab.init import init_params


@pytest.mark.parametrize("scheme, mode", [("xavier", "fan_out"), ("kaiming_normal", "fan_out"),
                                          ("kaiming_uniform", "fan_out"), ("kaiming_uniform", "fan_in"),
                                          ("torch_default", "fan_out"), ("normal", "fan_out")])  # fmt: skip
def test_the_formulas_give_the_variance_the_init_draws(scheme, mode):
    params = init_params([400, 300, 1], scheme, mode, seed=0)
    v, bias_v = init_schemes.scheme(scheme).variances(400, 300, mode)
    assert params["w1"].var().item() == pytest.approx(v, rel=0.02)
    assert params["b1"].var().item() == pytest.approx(bias_v, rel=0.2, abs=1e-12)


def test_fan_in_scaling_keeps_the_forward_std_without_a_shift():
    layers = theory.forward([100] * 6 + [1], "kaiming_normal", "fan_out", 1.0, shift=0.0)
    assert [round(layer.act_std, 6) for layer in layers[1:-1]] == [pytest.approx(layers[1].act_std)] * 4
    assert layers[0].relu_mean == pytest.approx(layers[0].act_std / math.sqrt(2 * math.pi))


def test_fan_out_scaling_keeps_the_backward_std_and_fan_in_does_only_for_equal_widths():
    uneven = [784, 400, 100, 1]
    kept = theory.backward(uneven, "kaiming_uniform", "fan_in", output_grad_std=1.0)  # fan_in here: n_out
    assert kept[1] == pytest.approx(kept[2])
    shrunk = theory.backward(uneven, "kaiming_uniform", "fan_out", output_grad_std=1.0)  # scaled by n_in
    assert shrunk[1] == pytest.approx(shrunk[2] * math.sqrt(100 / 400))


def test_the_forward_prediction_meets_a_gaussian_measurement():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 200, generator=g)
    params = init_params([200, 200, 1], "kaiming_normal", "fan_out", seed=1)
    z = x @ params["w1"]
    a = z.clamp_min(0) - 0.5
    (first, _) = theory.forward([200, 200, 1], "kaiming_normal", "fan_out", 1.0, shift=0.5)
    assert z.std().item() == pytest.approx(first.act_std, rel=0.03)
    assert a.mean().item() == pytest.approx(first.relu_mean, abs=0.02)
    assert a.std().item() == pytest.approx(first.relu_std, rel=0.03)
