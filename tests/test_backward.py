"""The product's verdict: `backward.compare` shown wrong gradients of every kind must say not close."""

from __future__ import annotations

import math

import pytest
import torch

from backprop_lab import backward

RTOL, ATOL = 1e-4, 1e-5


def reference() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w1": torch.randn(6, 4, generator=g), "b1": torch.randn(4, generator=g)}


def verdict(manual: dict[str, torch.Tensor]) -> dict[str, backward.GradDiff]:
    return {d.name: d for d in backward.compare(manual, reference(), RTOL, ATOL)}


def test_identical_gradients_are_close():
    diffs = verdict(reference())
    assert all(d.close and d.finite and d.verdict == "ok" and d.max_abs_diff == 0 for d in diffs.values())
    assert backward.metrics(list(diffs.values()))["grad/all_close"] == 1.0


@pytest.mark.parametrize(
    "wrong",
    [
        lambda w: w * 2,  # a factor 2 too many
        lambda w: w / 50_000,  # a missing 1/N
        lambda w: w.flip(0),  # rows swapped: a transposed product on a square layer looks like this
        lambda w: w.index_put((torch.tensor([0]), torch.tensor([0])), w[0, 0] + 1e-2 * w.abs().max()),  # one entry off
        torch.zeros_like,  # a layer's gradient silently zero
    ],
)
def test_a_wrong_gradient_is_not_close(wrong):
    manual = reference()
    manual["w1"] = wrong(manual["w1"])
    diffs = verdict(manual)
    assert not diffs["w1"].close and diffs["w1"].verdict == "differs" and diffs["b1"].close
    assert backward.metrics(list(diffs.values()))["grad/all_close"] == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gradient_is_never_close_not_even_to_itself(bad):
    ref = reference()
    ref["w1"][2, 1] = bad
    manual = {k: v.clone() for k, v in ref.items()}
    diffs = {d.name: d for d in backward.compare(manual, ref, RTOL, ATOL)}
    assert not diffs["w1"].close and not diffs["w1"].finite and diffs["w1"].verdict == "non-finite"
    metrics = backward.metrics(list(diffs.values()))
    assert metrics["grad/all_close"] == 0.0 and metrics["grad/all_finite"] == 0.0


def test_an_all_nan_gradient_against_an_all_nan_reference_is_not_ok():
    ref = {"w1": torch.full((3, 2), float("nan"))}
    (diff,) = backward.compare({"w1": torch.full((3, 2), float("nan"))}, ref, RTOL, ATOL)
    assert diff.verdict == "non-finite" and not diff.close and math.isnan(diff.max_abs_diff)


def test_a_missing_gradient_or_a_wrong_shape_is_an_error():
    from backprop_lab.errors import ShapeError

    with pytest.raises(ShapeError, match="no gradient for b1"):
        backward.compare({"w1": reference()["w1"]}, reference(), RTOL, ATOL)
    with pytest.raises(ShapeError, match=r"grad w1: manual gradient is \(4, 6\)"):
        backward.compare({"w1": reference()["w1"].t(), "b1": reference()["b1"]}, reference(), RTOL, ATOL)
