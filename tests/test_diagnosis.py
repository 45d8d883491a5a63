"""The diagnosis at the first divergent node: every bug of the bank gets its own kind and the words that name its
cause, measured on the bank's real backward (float32, run twice, against the float64 truth as the check builds it);
crafted gradients cover the kinds the bank has no bug for, and a gradient no model explains says so with its ratio."""

from __future__ import annotations

import pytest
import torch
from helpers import small_problem

from backprop_lab.impls import autograd
from backprop_lab.study import bugs, diagnosis, grad_check

WIDTHS = [30, 16, 16, 16, 1]  # square layers for the missing transpose, as tests/test_backward.py
ROWS, SHIFT = 400, 0.5

BANK = {  # bug: (kind, words that must be in its line)
    "mse_without_mean": ("scale", "× 400.0 everywhere: a constant factor (= N = 400: the mean's 1/N missing?)"),
    "mse_without_two": ("scale", "× 0.5000 everywhere: a constant factor (the square's 2 missing?)"),
    "relu_unmasked": ("relu_mask", "kept where the ReLU's input is <= 0"),
    "relu_mask_from_output": ("relu_mask", "zeroed where the ReLU's input is in (0, 0.5]"),
    "relu_shift_in_backward": ("offset", "-0.5000 added where the ReLU's input is > 0 (= -shift)"),
    "bias_over_features": ("wrong_axis", "shape (400,) where (1,) is due: the bias gradient summed over the features"),
    "weight_not_transposed": ("transposed", "the truth transposed, on a square (16, 16): the (out, in) product"),
    "stale_accumulation": ("accumulated", "||given|| / ||truth|| = 2.000 on the second call"),
    "layer_passes_zero": ("zero", "zero where the truth is not"),
}


def bank_case(bug: str, dtype=torch.float32, rows=ROWS):
    """What backward.run_check has at the bug's expected node: the second backward's gradients, the first's, the
    truth, and the forward's pre-activations (autograd's, whose masks the truth uses)."""
    params, x, y = small_problem(WIDTHS, n=rows, dtype=dtype)
    net = bugs.Net(params, SHIFT, bug)
    net.forward(x, y)
    first = {k: v.clone() for k, v in (net.backward() | net.node_grads()).items()}
    second = net.backward() | net.node_grads()
    reference = autograd.Net(params, SHIFT)
    reference.forward(x, y)
    truth = grad_check.float64_truth(params, x, y, SHIFT, reference.masks)
    pre = {k: v.detach() for k, v in reference.nodes.items() if k.startswith("lin")}
    return second, first, truth, pre


def diagnose_bank(bug: str, dtype=torch.float32, rows=ROWS) -> diagnosis.Diagnosis:
    second, first, truth, pre = bank_case(bug, dtype, rows)
    node = bugs.expected_node(bug, WIDTHS)
    return diagnosis.diagnose_at(node, second, first, truth, pre, due_shape=tuple(truth[node].shape), rows=rows,
                                 shift=SHIFT)  # fmt: skip


def test_the_table_covers_the_whole_bank():
    assert set(BANK) == set(bugs.BUGS)


@pytest.mark.parametrize("bug", list(BANK))
def test_every_bug_of_the_bank_gets_its_kind_and_its_cause(bug):
    kind, words = BANK[bug]
    d = diagnose_bank(bug)
    assert d.kind == kind and words in d.words, d
    assert d.kind in diagnosis.KINDS and "\n" not in d.words


def test_the_shift_in_the_mask_is_the_runs_own():
    """The mask taken from the output zeroes (0, shift]: the interval named is the run's shift, measured."""
    params, x, y = small_problem(WIDTHS, n=ROWS, dtype=torch.float32)
    net = bugs.Net(params, 1.5, "relu_mask_from_output")
    net.forward(x, y)
    given = (net.backward() | net.node_grads())["lin3"]
    reference = autograd.Net(params, 1.5)
    reference.forward(x, y)
    truth = grad_check.float64_truth(params, x, y, 1.5, reference.masks)
    pre = {"lin3": reference.nodes["lin3"]}

    def at(shift):
        return diagnosis.diagnose_at("lin3", {"lin3": given}, {}, truth, pre, due_shape=(ROWS, 16), rows=ROWS,
                                     shift=shift)  # fmt: skip

    d = at(1.5)
    assert d.kind == "relu_mask" and "in (0, 1.5]" in d.words and "shifted output" in d.words, d
    d = at(0.5)  # told another shift: a wrong mask still, whose zeroed inputs reach up to the real shift
    assert d.kind == "relu_mask" and d.words.startswith("a wrong mask: zeroed at") and " to 1.5" in d.words, d


def test_without_the_earlier_call_an_accumulated_gradient_reads_as_a_factor_2():
    """Two calls on one forward double it: only the first call's value tells an accumulation from a real factor."""
    second, first, truth, _ = bank_case("stale_accumulation")
    d = diagnosis.diagnose("act3", second["act3"], truth["act3"], rows=ROWS)
    assert d.kind == "scale" and d.words.startswith("× 2.000 everywhere"), d
    doubled = (truth["act3"] * 2).float()  # a real factor 2, the same on both calls: not an accumulation
    assert diagnosis.diagnose("act3", doubled, truth["act3"], rows=ROWS, earlier=doubled.clone()).kind == "scale"


@pytest.mark.parametrize("bug", ["mse_without_mean", "relu_shift_in_backward"])
def test_a_wrong_gradient_a_thousand_times_the_truth_is_not_taken_for_an_accumulation(bug):
    """The same on both calls, and so large that the first call's value plus the truth is within 1e-3 of it."""
    second, first, truth, _ = bank_case(bug, rows=8000)
    node = bugs.expected_node(bug, WIDTHS)
    assert second[node].double().norm() > 1000 * truth[node].norm()
    d = diagnose_bank(bug, rows=8000)
    assert d.kind == BANK[bug][0], d
    assert bug != "mse_without_mean" or d.words.startswith("× 8000 everywhere: a constant factor (= N = 8000"), d


def test_the_bank_in_float64_gets_the_same_kinds():
    for bug, (kind, _) in BANK.items():
        assert diagnose_bank(bug, torch.float64).kind == kind, bug


def crafted(shape=(64, 16), seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def say(given, truth, node="w2", **context):
    return diagnosis.diagnose(node, given, truth, rows=64, **context)


def test_a_sign_flip_is_sign_not_a_scale():
    t = crafted()
    d = say((-t).float(), t)
    assert d.kind == "sign" and "× -1.000" in d.words
    d = say((-2 * t).float(), t)
    assert d.kind == "scale" and "× -2.000" in d.words and "sign flipped too" in d.words


NAMED_FACTORS = [(3.0, "not 2, 1/2, N, 1/N or N/2"), (1 / 64, "a factor of 1/N, N = 64: a mean where the sum is due?"),
                 (32.0, "= N/2, N = 64"), (2.0, "the square's 2 counted twice?")]  # fmt: skip


@pytest.mark.parametrize("factor, named", NAMED_FACTORS)
def test_a_factor_is_measured_and_named_where_recognisable(factor, named):
    t = crafted()
    d = say((factor * t).float(), t)
    assert d.kind == "scale" and named in d.words and f"× {factor:#.4g}" in d.words, d


def test_an_n_by_n_output_gradient_is_a_broadcast():
    t = crafted((64, 1))
    given = crafted((64, 64)).float()  # (N, 1) - (N,): every prediction against every target
    d = say(given, t, node="lin4")
    assert d.kind == "broadcast" and "(64, 64) where (64, 1) is due" in d.words and "squeeze" in d.words, d
    assert say(crafted((64, 16)), crafted((16,)), node="b2").words.endswith("the rows not summed")


def test_a_transposed_shape_and_a_shape_with_no_pattern():
    t = crafted((30, 16))
    d = say(t.t().float(), t, node="w1")
    assert d.kind == "transposed" and "(16, 30) where (30, 16) is due" in d.words and "(out, in)" in d.words
    d = say(crafted((1, 16)), crafted((16, 3)))
    assert d.kind == "differs" and "(1, 16) where (16, 3) is due" in d.words


def test_a_bias_summed_over_the_features_when_the_batch_is_as_wide_as_the_layer():
    upstream = crafted((16, 16))
    d = diagnosis.diagnose("b2", upstream.sum(1).float(), upstream.sum(0), rows=16, upstream=upstream)
    assert d.kind == "wrong_axis" and "sum(1)" in d.words, d
    assert diagnosis.diagnose("b2", upstream.sum(1).float(), upstream.sum(0), rows=16).kind == "differs"


@pytest.mark.parametrize("bad, said", [(float("nan"), "1 NaN and 0 ±Inf"), (float("inf"), "0 NaN and 1 ±Inf")])
def test_non_finite_entries_are_counted(bad, said):
    t = crafted()
    given = t.float()
    given[3, 2] = bad
    d = say(given, t)
    assert d.kind == "non_finite" and f"{said} of 1024 entries" in d.words and "truth is finite" in d.words


def test_a_gradient_not_given_says_so():
    assert say(None, crafted()) == diagnosis.Diagnosis("not_given", "not given: the backward left no gradient here")


def test_a_random_perturbation_differs_with_its_measured_ratio():
    t = crafted()
    given = (t + 0.3 * crafted(seed=1)).float()
    d = say(given, t)
    ratio = given.double().norm() / t.norm()
    error = (given.double() - t).norm() / t.norm()
    assert d.kind == "differs" and d.words.startswith("differs (no pattern found)")
    assert f"||given|| / ||truth|| = {ratio:#.4g}" in d.words and f"relative error {error:.3g}" in d.words, d


def test_rounding_alone_is_no_pattern_and_a_model_plus_rounding_is_still_its_kind():
    t = crafted()
    d = say((t * (1 + 1e-5)).float(), t)  # nothing to classify beyond rounding
    assert d.kind == "differs" and "too close for any model to tell" in d.words, d
    assert "the truth is 0 here" in say(t.float(), torch.zeros_like(t)).words
    noisy = (2 * t * (1 + 1e-5 * crafted(seed=2))).float()  # a factor 2 under float32 rounding and more
    assert say(noisy, t).kind == "scale"
    off = (2 * t * (1 + 1e-2 * crafted(seed=2))).float()  # 1 % off a factor 2: no model explains it
    assert say(off, t).kind == "differs"


def test_a_constant_offset_everywhere_and_a_wrong_mask_of_another_shape():
    t = crafted()
    d = say((t + 0.25).float(), t)
    assert d.kind == "offset" and d.words == "+0.2500 added everywhere", d
    pre, up = crafted(seed=3), crafted(seed=4)
    inverted = up * (pre <= 0)  # the mask the wrong way round
    d = say(inverted.float(), up * (pre > 0), node="lin2", pre_activation=pre.float(), upstream=up)
    assert d.kind == "relu_mask" and d.words.startswith("a wrong mask: zeroed at") and "kept at" in d.words, d


def test_bfloat16_rounding_still_tells_a_factor():
    t = crafted()
    assert say((0.5 * t).bfloat16(), t).kind == "scale"
    assert diagnosis.tolerance(torch.bfloat16) > diagnosis.tolerance(torch.float32) == 1e-3


def test_every_kind_is_reachable():
    """Each kind in KINDS is said by some case above (the bank's, or a crafted one)."""
    t = crafted()
    said = {diagnose_bank(bug).kind for bug in BANK} | {
        say(None, t).kind, say((-t).float(), t).kind, say(crafted((64, 64)), crafted((64, 1)), node="lin4").kind,
        say(torch.full_like(t, float("nan")), t).kind, say((t + 0.3 * crafted(seed=1)).float(), t).kind,
        say(crafted((64,)).float(), crafted((64, 1)), node="lin4").kind,
        diagnosis.changed_after("lin4", "lin_grad", say((2 * t).float(), t)).kind}  # fmt: skip
    assert said == set(diagnosis.KINDS)


def test_the_inputs_gradient_is_judged_on_a_sample_of_rows_its_shape_whole():
    """At x the truth is a function of a row range (backward.run_check never holds it whole in float64)."""
    params, x, y = small_problem([30, 8, 1], n=diagnosis.SAMPLE_ROWS + 500, dtype=torch.float32)
    lin1, w1 = torch.randn(x.shape[0], 8, dtype=torch.float64), params["w1"].double()
    truth = {"lin1": lin1, "x": lambda start, stop: lin1[start:stop] @ w1.t()}
    right = (lin1 @ w1.t()).float()

    def at(given, earlier=None):
        return diagnosis.diagnose_at("x", {"x": given}, {"x": earlier} if earlier is not None else {}, truth, {},
                                     due_shape=tuple(x.shape), rows=x.shape[0], shift=SHIFT)  # fmt: skip

    assert at(-right).kind == "sign"
    assert at(2 * right, earlier=right).kind == "accumulated"
    d = at(right.t().contiguous())
    assert d.kind == "transposed" and f"({x.shape[1]}, {x.shape[0]}) where" in d.words, d
    assert at(None).kind == "not_given"
