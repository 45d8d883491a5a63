from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from backprop_lab.study.init import init_params, param_stats

SCHEMES = ["normal", "xavier", "kaiming_normal", "kaiming_uniform", "torch_default"]  # in the order errors list them


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shapes_names_and_seed(scheme):
    a = init_params([784, 80, 1], scheme, "fan_out", seed=3)
    b = init_params([784, 80, 1], scheme, "fan_out", seed=3)
    c = init_params([784, 80, 1], scheme, "fan_out", seed=4)
    assert list(a) == ["w1", "b1", "w2", "b2"]
    assert a["w1"].shape == (784, 80) and a["b1"].shape == (80,) and a["w2"].shape == (80, 1) and a["b2"].shape == (1,)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["w1"], c["w1"])
    if scheme != "torch_default":
        assert not a["b1"].any() and not a["b2"].any()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_gain_scales_the_weights_and_only_them(scheme):
    plain = init_params([784, 80, 1], scheme, "fan_out", 3)
    scaled = init_params([784, 80, 1], scheme, "fan_out", 3, gain=1.7)
    assert list(scaled) == list(plain)
    for name in plain:
        factor = 1.7 if name.startswith("w") else 1.0
        torch.testing.assert_close(scaled[name], plain[name] * factor, rtol=0, atol=0)


@pytest.mark.parametrize(
    "scheme, expected_std",
    [
        ("normal", 1.0),
        ("xavier", 1 / math.sqrt(784)),
        ("kaiming_normal", math.sqrt(2 / 784)),
        ("kaiming_uniform", math.sqrt(2 / 784)),  # uniform(+-sqrt(6/fan)) has std sqrt(2/fan)
        ("torch_default", 1 / math.sqrt(3 * 784)),  # uniform(+-1/sqrt(fan_in))
    ],
)
def test_first_layer_std_follows_fan_in(scheme, expected_std):
    w = init_params([784, 200, 1], scheme, "fan_out", seed=0)["w1"]
    assert w.std().item() == pytest.approx(expected_std, rel=0.03)


def test_kaiming_uniform_mode_swaps_because_weights_are_in_out():
    """torch reads (out, in); our (in, out) weights make mode=fan_out scale by n_in and fan_in by n_out."""
    fan_out = init_params([784, 50, 1], "kaiming_uniform", "fan_out", seed=0)["w1"]
    fan_in = init_params([784, 50, 1], "kaiming_uniform", "fan_in", seed=0)["w1"]
    assert fan_out.abs().max().item() <= math.sqrt(6 / 784) + 1e-7
    assert fan_out.abs().max().item() > 0.95 * math.sqrt(6 / 784)
    assert fan_in.abs().max().item() > 0.95 * math.sqrt(6 / 50)


def test_torch_default_is_what_nn_linear_does():
    torch.manual_seed(11)
    linear = nn.Linear(20, 7)
    ours = init_params([20, 7], "torch_default", "fan_out", seed=11)
    torch.testing.assert_close(ours["w1"], linear.weight.detach().T, rtol=0, atol=0)
    torch.testing.assert_close(ours["b1"], linear.bias.detach(), rtol=0, atol=0)


def test_param_stats_by_layer():
    stats = param_stats(init_params([10, 4, 1], "xavier", "fan_out", seed=0))
    assert set(stats) == {1, 2}  # step = layer, like act/*
    assert all(set(layer) == {f"init/{p}_{s}" for p in "wb" for s in ("mean", "std")} for layer in stats.values())
    assert stats[2]["init/b_std"] == 0.0  # a one-element bias has no spread, not NaN


def test_the_init_options_are_the_tables_schemes():
    from helpers import CONF

    from backprop_lab.config import InitScheme, init_schemes

    assert list(InitScheme.__members__) == list(init_schemes.SCHEMES) == SCHEMES
    assert sorted(p.stem for p in (CONF / "init").glob("*.yaml")) == sorted(SCHEMES)


def test_an_unknown_scheme_is_a_config_error_for_the_draw_and_the_theory_alike():
    from backprop_lab.core.errors import ConfigError
    from backprop_lab.study import theory

    message = "init.scheme: must be one of normal, xavier, kaiming_normal, kaiming_uniform, torch_default, got 'he'"
    with pytest.raises(ConfigError) as drawn:
        init_params([4, 1], "he", "fan_out", seed=0)
    with pytest.raises(ConfigError) as predicted:
        theory.forward([4, 1], "he", "fan_out", 0.0, 1.0, shift=0.0)
    assert str(drawn.value) == str(predicted.value) == message
