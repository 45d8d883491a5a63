"""The bench's arithmetic and its table on a tiny problem (its speed targets are judged by scripts/bench.py only)."""

from __future__ import annotations

import pytest
from helpers import composed, small_problem

from backprop_lab import bench


def test_pass_flops_count_the_products():
    flops = bench.pass_flops([784, 80, 1], 50000, input_grad=False)
    first, second = 2 * 50000 * 784 * 80 / 1e9, 2 * 50000 * 80 / 1e9
    assert flops["forward"] == pytest.approx(first + second)
    assert flops["backward"] == pytest.approx(first + 2 * second)  # w1.g, w2.g and a1.g; no x.g
    assert bench.pass_flops([784, 80, 1], 50000, input_grad=True)["backward"] == pytest.approx(2 * first + 2 * second)


def test_pass_products_and_their_bare_times():
    products = bench.pass_products([784, 80, 1], 50000, input_grad=False)
    assert [p.kind for p in products["backward"]] == ["weight grad", "weight grad", "input grad"]
    assert products["backward"][2] == bench.Product("input grad", 50000, 80, 1)  # the hidden layer's, not x.g
    with_x = bench.pass_products([784, 80, 1], 50000, input_grad=True)["backward"]
    assert bench.Product("input grad", 50000, 784, 80) in with_x
    torch = __import__("torch")
    for p in with_x:  # both orientations compute the same product (the second one's transpose)
        first, second = (f() for f in bench.Product(p.kind, 7, 5, 3).orientations("cpu"))
        assert first.shape == second.t().shape
    timed = bench.gemms_alone([12, 8, 1], 64, min_run_time=0.001, threads=1, device=torch.device("cpu"))
    assert timed[True]["backward"].median_ms > timed[False]["backward"].median_ms > 0  # x.g adds a product


def test_a_target_the_products_alone_miss_is_out_of_reach():
    assert bench.Target("t", 1.3, 1.2, floor=1.25).out_of_reach
    assert not bench.Target("t", 1.3, 1.2, floor=1.1).out_of_reach
    assert not bench.Target("t", 1.3, 1.2).out_of_reach
    assert bench.verdict(bench.Target("t", 1.3, 1.2, floor=1.25)) == "NO, out of reach"
    assert bench.verdict(bench.Target("t", 1.1, 1.2, floor=1.0)) == "yes"


def test_variants_cover_every_implementation_and_mode():
    names = {v.name for v in bench.variants()}
    for impl in bench.HAND_WRITTEN:
        assert {impl, f"{impl} +x.g", f"{impl} (notebook)"} <= names
    assert {"autograd", "autograd +x.g", "nn"} <= names
    assert bench.Variant("module", notebook=True).reference == bench.Variant("autograd", input_grad=True)


def test_run_bench_on_a_tiny_problem():
    params, x, y = small_problem([12, 8, 1], n=64, dtype=__import__("torch").float32)
    result = bench.run_bench(params, x, y, 0.5, [12, 8, 1], min_run_time=0.001, check=composed().check)
    gemms = {bench.GEMMS, f"{bench.GEMMS} +x.g"}
    assert {r.variant for r in result.rows} == {v.name for v in bench.variants()} | gemms
    assert all(r.close is not False for r in result.rows)  # every variant's gradients agree with autograd
    assert all(r.median_ms > 0 and r.vs_roofline > 0 and r.vs_gemms > 0 for r in result.rows)
    assert next(r for r in result.rows if r.variant == bench.GEMMS and r.pass_ == "backward").vs_gemms == 1.0
    autograd_backward = next(r for r in result.rows if r.variant == "autograd" and r.pass_ == "backward")
    assert 0.2 < autograd_backward.vs_autograd < 5  # autograd timed against itself: 1 up to the noise
    names = [t.name for t in result.targets]
    assert "fastest hand-written backward / autograd" in names and "fastest forward / roofline" in names
    assert "| module (notebook) | backward |" in bench.markdown(result)
    assert all(t.floor is not None for t in result.targets if "roofline" in t.name or "/ autograd" in t.name)
    assert bench.metric_name(result.rows[0]) == "bench/GEMMs_alone/forward_ms"
    assert bench.target_metric(result.targets[0]) == "target/fastest_hand_written_backward_autograd"


def test_a_paired_ratio_is_the_ratio_of_the_two_times():
    import time

    from backprop_lab.timing import measure_paired

    paired = measure_paired(lambda: time.sleep(0.02), lambda: time.sleep(0.005), "sleep", 0.3, 1, rounds=4)
    assert 19 < paired.timed.median_ms < 40 and 4.5 < paired.ref.median_ms < 20
    assert 2 < paired.ratio < 5  # 20 ms against 5 ms, with sleep's overshoot


def test_a_stop_requested_ends_a_measurement_between_blocks():
    """What a lost KeyboardInterrupt (raised inside a weakref callback, where Python drops it) falls back on."""
    import time

    from backprop_lab import stop
    from backprop_lab.timing import measure, measure_paired

    calls = []

    def one_ms():
        calls.append(1)
        time.sleep(0.001)

    stop.requested.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            measure(one_ms, "1 ms", 60.0, 1)
        with pytest.raises(KeyboardInterrupt):
            measure_paired(one_ms, one_ms, "1 ms", 60.0, 1)
    finally:
        stop.requested.clear()
    assert len(calls) < 2000  # sizing its blocks, then one block: not a minute of calls
