"""The variance formulas: both halves of Kaiming's argument, checked on the numbers they must give."""

from __future__ import annotations

import math

import pytest
import torch

from backprop_lab.config import init_schemes
from backprop_lab.study import theory
from backprop_lab.study.init import init_params


@pytest.mark.parametrize("scheme, mode", [("xavier", "fan_out"), ("kaiming_normal", "fan_out"),
                                          ("kaiming_uniform", "fan_out"), ("kaiming_uniform", "fan_in"),
                                          ("torch_default", "fan_out"), ("normal", "fan_out")])  # fmt: skip
def test_the_formulas_give_the_variance_the_init_draws(scheme, mode):
    params = init_params([400, 300, 1], scheme, mode, seed=0)
    v, bias_v = init_schemes.scheme(scheme).variances(400, 300, mode)
    assert params["w1"].var().item() == pytest.approx(v, rel=0.02)
    assert params["b1"].var().item() == pytest.approx(bias_v, rel=0.2, abs=1e-12)


def test_fan_in_scaling_keeps_the_forward_std_without_a_shift():
    layers = theory.forward([100] * 6 + [1], "kaiming_normal", "fan_out", 0.0, 1.0, shift=0.0)
    # within a percent: a layer of 100 units measures 99% of the spread of its units' offsets
    assert [layer.act_std for layer in layers[1:-1]] == [pytest.approx(layers[1].act_std, rel=0.01)] * 4
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
    (first, _) = theory.forward([200, 200, 1], "kaiming_normal", "fan_out", 0.0, 1.0, shift=0.5)
    assert z.std().item() == pytest.approx(first.act_std, rel=0.03)
    assert a.mean().item() == pytest.approx(first.relu_mean, abs=0.02)
    assert a.std().item() == pytest.approx(first.relu_std, rel=0.03)


def _measured(widths, scheme, shift, x):
    """act/std by layer, as forward.activation_stats measures it (over units and samples together)."""
    from backprop_lab.study.forward import activation_stats

    return [s.std for s in activation_stats(x, init_params(widths, scheme, "fan_out", seed=3), shift)]


@pytest.mark.parametrize("scheme", ["torch_default", "xavier", "kaiming_uniform"])
def test_the_one_unit_output_layer_is_predicted_across_samples_only(scheme):
    """Gaussian inputs, the deep model's shape: each unit's offset (the same for every sample) drops out of the
    one-unit output layer's std. Before, theory predicted the pooled std there (0.25 for torch_default, 0.41 for
    xavier), 1000x and 10x what the layer measures."""
    widths, shift = [200, *[100] * 8, 1], 0.5
    x = torch.randn(4000, 200, generator=torch.Generator().manual_seed(0))
    measured = _measured(widths, scheme, shift, x)
    predicted = [layer.act_std for layer in theory.forward(widths, scheme, "fan_out", 0.0, 1.0, shift)]
    ratios = [m / p for m, p in zip(measured, predicted)]
    assert all(1 / 1.25 < r < 1.25 for r in ratios[:-1]), ratios
    # the output layer's std is one draw of one unit's weights: within the factor theory.parted allows
    assert 1 / theory.FACTOR < ratios[-1] < theory.FACTOR, ratios
    if scheme == "torch_default":  # the pooled std holds, the part that tells samples apart vanishes
        assert measured[-2] > 0.2 and measured[-1] < 1e-2


def test_the_offsets_spread_count_by_units_and_sum_to_the_pooled_formula():
    (one,) = theory.forward([50, 1], "torch_default", "fan_out", 0.3, 0.9, shift=0.5)
    (many,) = theory.forward([50, 10**6], "torch_default", "fan_out", 0.3, 0.9, shift=0.5)
    v, bias_v = init_schemes.scheme("torch_default").variances(50, 1, "fan_out")
    assert many.act_std == pytest.approx(math.sqrt(50 * v * (0.3**2 + 0.9**2) + bias_v))  # Kaiming's formula
    assert one.act_std == pytest.approx(math.sqrt(50 * v * 0.9**2)) == pytest.approx(one.within_std)
    assert one.few_units and not many.few_units


def _by_layer(measured_std: float, predicted_std: float, relu_mean: float, predicted_relu_mean: float):
    return {1: {"act/std": measured_std, "theory/act_std": predicted_std, "act/relu_mean": relu_mean,
                "theory/relu_mean": predicted_relu_mean}}  # fmt: skip


def test_parted_names_each_prediction_beyond_the_factor_and_compares_a_mean_before_the_shift():
    layer = theory.Layer(1, 1.0, 1.0, 0.0, 100, shift=0.5, relu_mean=-0.1, relu_std=0.5)
    assert theory.parted(_by_layer(1.9, 1.0, -0.1, -0.1), [layer]) == []
    # a mean near 0 that changes sign is still close: 0.45 against 0.55 before the shift
    assert theory.parted(_by_layer(1.0, 1.0, 0.05, -0.05), [layer]) == []
    (far,) = theory.parted(_by_layer(2.2e-4, 0.25, -0.1, -0.1), [layer])
    assert (far.metric, far.layer, far.ratio) == ("act/std", 1, pytest.approx(2.2e-4 / 0.25))
    (dead,) = theory.parted(_by_layer(1.0, 1.0, -0.5, -0.1), [layer])  # the ReLU never fires: no ratio
    assert dead.metric == "act/relu_mean" and math.isnan(dead.ratio)
    note = theory.parted_note([far, dead])
    assert note.startswith(f"beyond ×{theory.FACTOR:g}: act/std at layer 1 (100 units): measured 0.00022 = 0.000880 ×")
    assert "not comparable" in note
    assert theory.parted_note([]).startswith("none")
