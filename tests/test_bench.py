"""The bench's arithmetic and its table on a tiny problem (its speed targets are judged by scripts/bench.py only)."""

from __future__ import annotations

import pytest
from conftest import composed, small_problem

from backprop_lab import bench


def test_pass_flops_count_the_products():
    flops = bench.pass_flops([784, 80, 1], 50000, input_grad=False)
    first, second = 2 * 50000 * 784 * 80 / 1e9, 2 * 50000 * 80 / 1e9
    assert flops["forward"] == pytest.approx(first + second)
    assert flops["backward"] == pytest.approx(first + 2 * second)  # w1.g, w2.g and a1.g; no x.g
    assert bench.pass_flops([784, 80, 1], 50000, input_grad=True)["backward"] == pytest.approx(2 * first + 2 * second)


def test_variants_cover_every_implementation_and_mode():
    names = {v.name for v in bench.variants()}
    for impl in bench.HAND_WRITTEN:
        assert {impl, f"{impl} +x.g", f"{impl} (notebook)"} <= names
    assert {"autograd", "autograd +x.g", "nn"} <= names
    assert bench.Variant("module", notebook=True).reference == bench.Variant("autograd", input_grad=True)


def test_run_bench_on_a_tiny_problem():
    params, x, y = small_problem([12, 8, 1], n=64, dtype=__import__("torch").float32)
    result = bench.run_bench(params, x, y, 0.5, [12, 8, 1], min_run_time=0.001, check=composed().check)
    assert {r.variant for r in result.rows} == {v.name for v in bench.variants()}
    assert all(r.close is not False for r in result.rows)  # every variant's gradients agree with autograd
    assert all(r.median_ms > 0 and r.vs_roofline > 0 for r in result.rows)
    autograd_backward = next(r for r in result.rows if r.variant == "autograd" and r.pass_ == "backward")
    assert autograd_backward.vs_autograd == 1.0
    names = [t.name for t in result.targets]
    assert "fastest hand-written backward / autograd" in names and "fastest forward / roofline" in names
    assert "| module (notebook) | backward |" in bench.markdown(result)
