"""A run's timing as it is shown: each ratio with the autograd it is against, and a noisy timing said to be noisy
(with the machine's load) instead of printed as firm; on crafted timings (fast)."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from backprop_lab.impls import timing
from backprop_lab.impls.timing import Timed, Timing
from backprop_lab.study import summary
from backprop_lab.tracking import run_names


def crafted(backward_iqr_ms: float = 1.0, input_grad: bool = True) -> Timing:
    """A backward of 38.3 ms against autograd's 30 ms (+x.g) and, without x.g, 12 ms: the notebook's case."""
    return Timing(forward=Timed(10.0, 0.5, 100), backward=Timed(38.3, backward_iqr_ms, 100),
                  backward_autograd=Timed(30.0, 1.0, 100), threads=4, backward_vs_autograd=1.28,
                  reference_input_grad=input_grad, backward_vs_autograd_no_xg=3.19 if input_grad else 1.28,
                  load_avg_1min=3.25)  # fmt: skip


def printed(tm: Timing) -> str:
    console = Console(record=True, width=100)
    summary.print_timing(SimpleNamespace(timing=tm), console)
    return console.export_text()


def test_a_timing_is_noisy_when_its_iqr_passes_half_its_median():
    assert not Timed(38.3, 19.0, 10).noisy and Timed(38.3, 19.2, 10).noisy  # 0.5 x 38.3 = 19.15
    firm, noisy = crafted(), crafted(backward_iqr_ms=65.7)  # the notebook's forward: IQR 65.7 over median 38.3
    assert firm.noisy() == [] and firm.noise_note() == "" and firm.tags() == {timing.NOISY_TAG: "none"}
    assert noisy.noisy() == ["backward"] and noisy.tags() == {timing.NOISY_TAG: "backward"}
    assert noisy.noise_note() == ("timing noisy (backward: IQR 65.7 ms > 0.5 × median 38.3 ms; load average 3.25)")
    assert noisy.metrics()[timing.LOAD_METRIC] == 3.25


def test_each_ratio_names_its_baseline_and_a_noisy_one_is_not_firm():
    assert crafted().ratio_line() == "backward 1.28 × autograd (+x.g), 3.19 × autograd (no x.g)"
    assert crafted(input_grad=False).ratio_line() == "backward 1.28 × autograd (no x.g)"  # one baseline: said once
    line = crafted(backward_iqr_ms=65.7).ratio_line()
    assert line.startswith("backward 1.28 × autograd (+x.g), 3.19 × autograd (no x.g); NOT firm: timing noisy (")
    metrics = crafted().metrics()
    assert (metrics[timing.RATIO_METRIC], metrics[timing.COMMON_RATIO_METRIC]) == (1.28, 3.19)
    description = run_names.description("module·kaiming_uniform", "gradients ok", line)
    assert "× autograd (+x.g)" in description and "NOT firm" in description and "load average 3.25" in description


def test_the_console_timing_table_names_autograd_s_baseline_and_flags_noise():
    text = printed(crafted(backward_iqr_ms=65.7))
    assert "backward, autograd (+x.g)" in text and "65.70 (noisy)" in text
    assert "3.19 × autograd (no x.g)" in text and "NOT firm" in text and "load average 3.25" in text
    assert crafted(backward_iqr_ms=65.7).ratio_line() in text.splitlines()  # a line of its own, never wrapped
    firm = printed(crafted(input_grad=False))
    assert "backward, autograd (no x.g)" in firm and "noisy" not in firm and "NOT firm" not in firm
