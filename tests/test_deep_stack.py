"""The course's next notebook, 02b_initializing, as a study: a stack of square layers (model.depth), linear or with
the notebook's ReLU, its statistics by layer, where it overflows and underflows, the check's verdicts there, and the
report's answer beside the course's printed numbers. On small stacks (fast) and one tiny sweep (slow)."""

from __future__ import annotations

import math
import statistics
import sys

import pytest
import torch
from helpers import FAST, cli, composed, runs_in, split_sweep

from backprop_lab.cli import report as report_cli
from backprop_lab.core.errors import ConfigError
from backprop_lab.core.names import NONE, RELU, STACK_FIRST_NONFINITE, STACK_FIRST_ZERO, STACK_LAST_STD
from backprop_lab.report import Row, deep_stack, repeats
from backprop_lab.study import backward, forward, grad_check, stages, theory, verdicts

FACTOR = 8.0


def scaled_identity_stack(width: int, depth: int, scale: float, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """`depth` square layers of `scale` times the identity, then a width -> 1 output: every entry of x is multiplied
    by exactly `scale` per layer (a power of 2 stays exact in binary floating point)."""
    params = {}
    for i in range(1, depth + 1):
        params |= {f"w{i}": torch.eye(width, dtype=dtype) * scale, f"b{i}": torch.zeros(width, dtype=dtype)}
    out = {f"w{depth + 1}": torch.ones(width, 1, dtype=dtype) / width, f"b{depth + 1}": torch.zeros(1, dtype=dtype)}
    return params | out


def summaries(params, x, activation=NONE, scheme="xavier"):
    widths = [x.shape[1]] * (len(params) // 2) + [1]
    layers = forward.activation_stats(x, params, 0.0, activation)
    predicted = theory.forward(widths, scheme, "fan_in", 0.0, 1.0, 0.0, activation=activation)
    return forward.stack_summaries(layers, predicted)


def test_the_first_layer_that_overflows_float32_is_where_a_power_of_two_passes_2_to_the_128():
    x = torch.ones(3, 4)
    found = summaries(scaled_identity_stack(4, 20, 2.0**10), x)
    assert found[STACK_FIRST_NONFINITE] == 13  # 2^120 at layer 12 is finite; 2^130 at 13 is past float32's 2^128
    assert math.isnan(found[STACK_FIRST_ZERO]) and math.isnan(found[STACK_LAST_STD])


def test_the_first_layer_all_zero_is_where_a_power_of_two_passes_float32s_smallest_subnormal():
    x = torch.ones(3, 4)
    found = summaries(scaled_identity_stack(4, 20, 2.0**-10), x)
    assert found[STACK_FIRST_ZERO] == 15  # 2^-140 at layer 14 is a subnormal; 2^-150 rounds to 0 (float32: 2^-149)
    assert math.isnan(found[STACK_FIRST_NONFINITE]) and found[STACK_LAST_STD] == 0.0


def test_a_relu_stack_keeps_half_of_the_first_layers_mean_square_and_theory_says_so():
    from backprop_lab.study.init import init_params

    torch.manual_seed(0)
    x = torch.randn(400, 64)
    params = {k: v.float() for k, v in init_params([64] * 4 + [1], "normal", "fan_in", 0).items()}
    found = summaries(params, x, RELU, "normal")
    before, after = found["stack/first_mean_sq"], found["stack/first_relu_mean_sq"]
    assert found["stack/theory_first_mean_sq"] == pytest.approx(64) and before == pytest.approx(64 * 1.0, rel=0.1)
    assert after == pytest.approx(before / 2, rel=0.1) and found["stack/theory_first_relu_mean_sq"] == pytest.approx(32)


def test_a_linear_stack_s_theory_keeps_xaviers_std_and_its_backward_halves_nothing():
    widths = [32] * 6 + [1]
    linear = theory.forward(widths, "xavier", "fan_in", 0.0, 1.0, 0.0, activation=NONE)
    assert all(layer.act_std == pytest.approx(1.0, rel=0.05) for layer in linear[:-1])
    assert all(layer.relu_std is None for layer in linear)
    back, masked = (theory.backward(widths, "xavier", "fan_in", 1.0, activation=a) for a in (NONE, RELU))
    assert back[1] == pytest.approx(back[5]) != back[6]  # from the last square layer down, unchanged by xavier
    assert masked[1] == pytest.approx(masked[5] / 4)  # a ReLU's mask halves the variance at each of the 4 steps


def test_model_depth_makes_the_widths_and_a_run_logs_them():
    cfg = composed(*FAST[:1], "data.n_features=16", "model.widths=[16,1]", "model.depth=3")
    assert list(cfg.model.widths) == [16, 16, 16, 16, 1] and cfg.model.depth is None
    again = composed(*FAST[:1], "data.n_features=16", *(f"model.{k}={v}" for k, v in (("widths", "[16,16,16,16,1]"),)))
    assert list(again.model.widths) == list(cfg.model.widths)  # what was logged composes to the same net
    with pytest.raises(ConfigError, match=r"^model.depth: null or a number of layers from 1 to 10,000, got 0$"):
        composed(*FAST[:1], "model.depth=0")


def test_the_preset_composes_the_notebooks_stack_and_each_scale():
    cfg = composed("+experiment=deep_stack", "hydra.mode=RUN")
    assert list(cfg.model.widths) == [512] * 101 + [1] and cfg.data.n_features == 512 and cfg.data.mean == 0.0
    chosen = {scale: composed("+experiment=deep_stack", f"scale={scale}", "hydra.mode=RUN")
              for scale in ("randn", "randn_relu", "hundredth", "magic", "kaiming_relu")}  # fmt: skip
    assert {s: (c.init.scheme, c.init.gain, c.model.activation) for s, c in chosen.items()} == {
        "randn": ("normal", 1.0, NONE), "randn_relu": ("normal", 1.0, RELU), "hundredth": ("normal", 0.01, NONE),
        "magic": ("xavier", 1.0, NONE), "kaiming_relu": ("kaiming_normal", 1.0, RELU)}  # fmt: skip
    assert all(c.model.relu_shift == 0.0 and c.model.name == "deep_stack" and c.scale == s for s, c in chosen.items())
    assert composed().model.activation == RELU and composed().model.relu_shift == 0.5  # the lesson's stays


def test_an_implementation_with_its_relu_written_in_refuses_a_linear_stack_in_one_line(tmp_path):
    cfg = composed(*FAST, "impl=functional", "model.activation=none")
    with pytest.raises(ConfigError) as refused:
        stages.set_up(cfg, tmp_path)
    assert str(refused.value) == ("model.activation: none builds a net without its ReLU, which impl=autograd, layers, "
                                  "module, module_einsum can; impl=functional has its ReLU written in")  # fmt: skip


def test_a_learners_code_under_any_impl_name_refuses_a_linear_stack_in_one_line(tmp_path):
    (tmp_path / "mine.py").write_text("def Net(params, shift, activation='none'):\n    raise RuntimeError\n")
    for impl in ("user", "module"):
        cfg = composed(*FAST, f"impl={impl}", "impl.code=mine.py", "model.activation=none")
        with pytest.raises(ConfigError, match=r"; a learner's code \(impl.code\) has its ReLU written in$"):
            stages.set_up(cfg, tmp_path)


def test_the_bench_times_only_the_lessons_relu_nets_and_says_so_in_one_line(capsys):
    from backprop_lab.cli import USER_ERROR_EXIT, bench_cli

    assert bench_cli.main(["model.activation=none", "--no-log"]) == USER_ERROR_EXIT
    assert capsys.readouterr().err.strip().startswith("error: model.activation: the bench times the lesson's ReLU")


def stack_problem(scale_name: str, depth: int = 6, width: int = 24, rows: int = 16, activation=NONE):
    from backprop_lab.study.init import init_params

    params = {k: v.float() for k, v in init_params([width] * (depth + 1) + [1], scale_name, "fan_in", 0).items()}
    g = torch.Generator().manual_seed(1)
    return params, torch.randn(rows, width, generator=g), torch.randn(rows, generator=g)


@pytest.mark.parametrize("impl", ["module", "layers", "module_einsum", "autograd"])
@pytest.mark.parametrize("scale,activation", [("xavier", NONE), ("kaiming_normal", RELU)])
def test_the_magic_scales_give_a_conclusive_ok_at_every_node_of_the_stack(impl, scale, activation):
    params, x, y = stack_problem(scale, activation=activation)
    checked = backward.run_check(impl, params, x, y, 0.0, True, FACTOR, activation=activation)
    assert {c.verdict for c in checked.checks} == {"ok"}, verdicts.verdict_line(checked.checks, FACTOR, x.dtype)
    assert {f"act{i}" for i in range(1, 7)} <= {c.node for c in checked.checks}  # the stack's every node


def test_an_overflowing_stack_is_inconclusive_at_each_node_it_overflows_never_ok_and_says_the_truth_is_finite():
    params = scaled_identity_stack(8, 16, 2.0**10)  # float32 overflows from layer 13; float64 holds 2^160
    x, y = torch.ones(4, 8), torch.zeros(4)
    checked = backward.run_check("module", params, x, y, 0.0, True, FACTOR, activation=NONE)
    assert "ok" not in {c.verdict for c in checked.checks if not c.autograd_finite}
    assert not set(grad_check.WRONG) & {c.verdict for c in checked.checks}  # nothing called wrong either
    line = verdicts.verdict_line(checked.checks, FACTOR, torch.float32)
    assert (
        line.startswith("gradients INCONCLUSIVE at ")
        and "from lin17 on (none known wrong), autograd's own float32 gradient is not finite" in line
        and "the float64 truth is finite at every node" in line
    )


@pytest.mark.parametrize("activation", [NONE, RELU])
def test_where_the_float64_truth_itself_stops_being_finite_the_first_such_node_is_named(activation):
    """With a ReLU too: past float32's overflow its masks cannot say, and the truth takes float64's own signs."""
    params = scaled_identity_stack(8, 12, 2.0**100)  # 2^1200 by the last layer: past float64's 2^1024 too
    x, y = torch.ones(4, 8), torch.zeros(4)
    checked = backward.run_check("module", params, x, y, 0.0, True, FACTOR, activation=activation)
    first = next(c.node for c in checked.checks if not c.truth_finite)
    assert first == "lin13" and {c.verdict for c in checked.checks} == {"inconclusive"}
    assert f"the float64 truth itself stops being finite at node {first}" in verdicts.verdict_line(
        checked.checks, FACTOR, torch.float32)  # fmt: skip


def test_a_gradient_past_1e154_still_has_a_norm_so_a_correct_one_is_judged_ok():
    """Its squares would overflow float64: the norms are held as scale and sum (grad_check._SumSq)."""
    truth = torch.full((4, 3), 1e200, dtype=torch.float64)
    given = truth.clone()
    given[0, 0] *= 1 + 1e-12
    check = grad_check.check_node("w1", given, truth.clone(), truth, 4, FACTOR)
    assert check.truth_finite and check.error == pytest.approx(1e-12 / math.sqrt(12), rel=1e-3)


def stack_row(scale: str, **values: list[float]) -> Row:
    metrics = {k.replace("__", "/"): sum(v) / len(v) for k, v in values.items()}
    return Row(f"{scale}", {"scale": scale}, "FINISHED", metrics, {}, {}, {"scale": scale},
               values={k.replace("__", "/"): v for k, v in values.items()},
               runs=len(next(iter(values.values()))))  # fmt: skip


def test_the_course_numbers_are_set_beside_where_one_more_seed_would_fall_and_one_outside_says_why():
    rows = [stack_row("randn", stack__first_nonfinite_layer=[28.0, 28.0, 28.0], stack__last_std=[math.nan] * 3,
                      stack__first_mean_sq=[509.0, 514.0, 520.0]),
            stack_row("magic", stack__last_std=[0.6, 0.9, 1.4], stack__theory_last_std=[1.0] * 3,
                      stack__first_mean_sq=[1.0, 1.01, 0.99])]  # fmt: skip
    table = deep_stack.anchors_table(rows)
    by_number = {(r[0], r[1].split(" (")[0]): r for r in table.rows}
    nonfinite = by_number["randn", "first layer not finite"]
    assert nonfinite[2] == "i = 28" and nonfinite[4] == "28 (all 3 alike)"
    assert nonfinite[5].startswith("OUTSIDE: the notebook's one vector holds 512")
    assert by_number["magic", "std after the last layer"][2:4] == ["0.927", "1"]  # as printed, and theory's
    assert by_number["magic", "std after the last layer"][5] == "inside"
    assert by_number["randn", "mean square of a @ x"][5] == "inside"
    assert by_number["kaiming_relu", "root mean square after the ReLU"][4].startswith("n/a (no kaiming_relu runs)")
    assert deep_stack.lead(rows) == ("randn overflows at layer 28; /√512 ends at std 0.6-1.4; 2 of 3 course numbers "
                                     "inside the lab's 95% for one more seed.")  # fmt: skip


def test_where_one_more_repeat_would_fall_is_wider_than_where_the_mean_is():
    values = [0.6, 0.9, 1.4, 1.1]
    mean, one = repeats.interval(values, log=True), repeats.interval(values, log=True, one_more=True)
    assert one.lo < mean.lo and one.hi > mean.hi and one.center == pytest.approx(mean.center)
    half = statistics.stdev(math.log(v) for v in values) * repeats._t(4)
    assert math.log(one.hi / one.center) == pytest.approx(half * math.sqrt(1 + 1 / 4))


def test_a_std_that_is_0_in_some_seeds_shows_its_range_not_a_log_interval():
    row = stack_row("hundredth", stack__last_std=[0.0, 1e-40, 2e-40])
    assert deep_stack._cell(row, STACK_LAST_STD) == "range 0-2e-40"


@pytest.mark.slow
def test_the_preset_s_sweep_answers_beside_the_course_numbers(tmp_path):
    done = cli(tmp_path, "-m", "+experiment=deep_stack", "model.depth=3", "data.n_train=8", "data.n_valid=4",
               "timing.min_run_time=0.01", "seed=range(2)")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert len(children) == 10 and {(c.data.params["scale"], c.data.params["init.scheme"]) for c in children} == {
        ("randn", "normal"), ("randn_relu", "normal"), ("hundredth", "normal"), ("magic", "xavier"),
        ("kaiming_relu", "kaiming_normal")}  # fmt: skip
    note = parent.data.tags["mlflow.note.content"]
    assert "the course's printed numbers beside the lab's repeats" in note
    assert note.splitlines()[0].endswith("course numbers inside the lab's 95% for one more seed.")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert report_cli.main([parent.info.run_id, "--tracking-uri", uri, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "stack_std.png").exists()


def test_a_seed_sweep_whose_repeats_overflowed_is_grouped_without_an_error():
    """MLflow stores an infinite metric as the largest double: two of them summed overflow, which once ended a deep
    stack's sweep with an error instead of its report."""
    largest = sys.float_info.max
    rows = [Row(f"r{s}", {"scale": "randn", "seed": str(s)}, "FINISHED", {"loss": largest}, {},
                {"act/std": [(1, 1.0 + s), (2, largest)]}, {"scale": "randn"}) for s in range(3)]  # fmt: skip
    (grouped,) = repeats.grouped(rows)
    assert grouped.m("loss") >= largest and "loss" not in grouped.intervals
    assert grouped.series["act/std"][1][1] >= largest and grouped.series["act/std"][0][1] == pytest.approx(2, rel=0.1)


def test_a_long_table_folds_its_middle_but_shows_the_rows_its_answer_points_at():
    from backprop_lab.study import summary

    rows = [(str(i), f"{i}") for i in range(1, 101)]
    folded = summary._folded(rows, {49}, "grad_check.json")  # the 50th row: where the answer points
    firsts = [r[0] for r in folded]
    assert firsts == [*map(str, range(1, 7)), "... 43 more", "50", "... 44 more", *map(str, range(95, 101))]
    assert folded[6][-1] == "all in grad_check.json" and summary._folded(rows[:40], set(), "x") == rows[:40]
