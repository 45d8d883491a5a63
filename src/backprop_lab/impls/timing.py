"""Stage 5, timing: forward, backward, and autograd's backward, each measured alone with torch.utils.benchmark,
the two backwards in interleaved rounds.

blocked_autorange warms up while it sizes its blocks and reports the median and IQR of many blocks; its Timer
synchronizes CUDA around each block. The Timer defaults to one thread, so the thread count is passed and logged.

The backward is compared with autograd twice. `time/backward_vs_autograd` against autograd asked for the same
gradients (the input's too where the implementation computes it: always for the notebook's four): the fair
comparison of one run. `time/backward_vs_autograd_no_xg` against autograd without the input's gradient, the one
baseline every run shares, so that runs can be compared with each other.

A timing whose spread is large against its median (NOISY_IQR_OVER_MEDIAN) is noisy: the machine was busy (its load
average is logged beside), and a ratio from it is not firm.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from torch.utils import benchmark

from backprop_lab.core import stop
from backprop_lab.core.names import (
    NONE,
    RELU,
    TIME_BACKWARD_VS_AUTOGRAD,
    TIME_BACKWARD_VS_AUTOGRAD_NO_XG,
    TIME_LOAD_AVG_1MIN,
    TIME_THREADS,
)
from backprop_lab.impls import autograd, protocol

# a timing whose IQR is more than this share of its median is noisy: the machine's other work shows in it
NOISY_IQR_OVER_MEDIAN = 0.5
NOISY_TAG = "time.noisy"  # the passes whose timing is noisy, comma-separated, or "none"
LOAD_METRIC = TIME_LOAD_AVG_1MIN  # the machine's 1-minute load average when the timing ended
RATIO_METRIC = TIME_BACKWARD_VS_AUTOGRAD  # against autograd asked for the same gradients: BASELINES[input_grad]
COMMON_RATIO_METRIC = TIME_BACKWARD_VS_AUTOGRAD_NO_XG  # against autograd without x.g: one baseline for all runs
BASELINES = {True: "autograd (+x.g)", False: "autograd (no x.g)"}  # by whether autograd computed the input's gradient
PASSES = ("forward", "backward", "backward_autograd")


@dataclass
class Timed:
    median_ms: float
    iqr_ms: float
    runs: int

    @property
    def noisy(self) -> bool:
        return self.iqr_ms > NOISY_IQR_OVER_MEDIAN * self.median_ms


@dataclass
class Timing:
    forward: Timed
    backward: Timed
    backward_autograd: Timed  # autograd asked for the input's gradient when `reference_input_grad`
    threads: int
    backward_vs_autograd: float  # against backward_autograd, measured interleaved, not the ratio of two medians
    reference_input_grad: bool  # the baseline of backward_vs_autograd computed the input's gradient
    backward_vs_autograd_no_xg: float  # against autograd without the input's gradient, measured interleaved
    load_avg_1min: float

    @property
    def baseline(self) -> str:
        return BASELINES[self.reference_input_grad]

    def label(self, name: str) -> str:
        """A pass (one of PASSES) as the console names it: autograd's backward by its baseline."""
        return f"backward, {self.baseline}" if name == "backward_autograd" else name

    def noisy(self) -> list[str]:
        return [name for name in PASSES if getattr(self, name).noisy]

    def noise_note(self) -> str:
        """Why the timing is not firm, or "" when it is."""
        passes = [f"{self.label(name)}: IQR {t.iqr_ms:.3g} ms > {NOISY_IQR_OVER_MEDIAN:g} × median "
                  f"{t.median_ms:.3g} ms" for name in PASSES if (t := getattr(self, name)).noisy]  # fmt: skip
        return f"timing noisy ({'; '.join(passes)}; load average {self.load_avg_1min:.2f})" if passes else ""

    def ratio_line(self) -> str:
        """The backward against both baselines, and whether the ratios are firm."""
        line = f"backward {self.backward_vs_autograd:.2f} × {self.baseline}"
        if self.reference_input_grad:
            line += f", {self.backward_vs_autograd_no_xg:.2f} × {BASELINES[False]}"
        note = self.noise_note()
        return f"{line}; NOT firm: {note}" if note else line

    def metrics(self) -> dict[str, float]:
        out = {}
        for name in PASSES:
            timed: Timed = getattr(self, name)
            out[f"time/{name}_ms"] = timed.median_ms
            out[f"time/{name}_iqr_ms"] = timed.iqr_ms
        out[RATIO_METRIC] = self.backward_vs_autograd
        out[COMMON_RATIO_METRIC] = self.backward_vs_autograd_no_xg
        out[TIME_THREADS] = float(self.threads)
        out[LOAD_METRIC] = self.load_avg_1min
        return out

    def tags(self) -> dict[str, str]:
        return {NOISY_TAG: ",".join(self.noisy()) or NONE}


def _between_blocks(number: int, seconds: float) -> None:
    stop.check()  # a Ctrl-C or SIGTERM whose KeyboardInterrupt was lost still ends the measurement here


def _timed(measurements: list[benchmark.Measurement]) -> Timed:
    """Blocks of one Timer as one Timed: merge gives per-call times, one per block; `runs` counts the calls."""
    m = benchmark.Measurement.merge(measurements)[0]
    return Timed(m.median * 1e3, m.iqr * 1e3, sum(len(x.times) * x.number_per_run for x in measurements))


def measure(fn: Callable[[], object], label: str, min_run_time: float, threads: int) -> Timed:
    fn()  # a first call outside the measurement: allocations and lazy initialisation
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label, num_threads=threads)
    return _timed([timer.blocked_autorange(callback=_between_blocks, min_run_time=min_run_time)])


def measure_cold(fn: Callable[[], object], label: str, threads: int, sweep, calls: int) -> Timed:
    """`fn` timed one call at a time, each after `sweep` (a tensor larger than the caches) is written through: how a
    memory-bound pass meets its tensors inside a backward, after the big product has streamed its input through."""
    fn()
    timer = benchmark.Timer(stmt="fn()", setup="sweep.fill_(1.0)", globals={"fn": fn, "sweep": sweep}, label=label,
                            num_threads=threads)  # fmt: skip
    times = [timer.timeit(1).median for _ in range(calls)]
    quartiles = statistics.quantiles(times, n=4)
    return Timed(statistics.median(times) * 1e3, (quartiles[2] - quartiles[0]) * 1e3, calls)


@dataclass
class Paired:
    timed: Timed
    ref: Timed
    ratio: float  # the median of the per-round ratios timed / ref


def measure_paired(
    fn: Callable[[], object], ref: Callable[[], object], label: str, min_run_time: float, threads: int, rounds: int = 6
) -> Paired:
    """`fn` and `ref` timed in interleaved rounds (`ref` first every other round), each for `min_run_time` in all,
    and the median of the per-round ratios: two medians measured a minute apart would carry the machine's drift into
    their ratio."""
    fn(), ref()  # first calls outside the measurement
    timers = [benchmark.Timer(stmt="f()", globals={"f": f}, label=label, num_threads=threads) for f in (fn, ref)]
    mine, theirs, ratios = [], [], []
    for i in range(rounds):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        measured = {k: timers[k].blocked_autorange(_between_blocks, min_run_time / rounds) for k in order}
        mine.append(measured[0])
        theirs.append(measured[1])
        ratios.append(measured[0].median / measured[1].median)
    return Paired(_timed(mine), _timed(theirs), statistics.median(ratios))


def time_passes(net, reference, x, y, min_run_time: float, threads: int, reference_input_grad: bool,
                common=None) -> Timing:  # fmt: skip
    """`net`, `reference` (autograd asked for the same gradients) and `common` (autograd without the input's
    gradient, None where `reference` is that) must have run forward on (x, y): backward reuses that forward's state.
    The backward is timed interleaved with each autograd's, each pair for `min_run_time` in all."""
    forward = measure(lambda: net.forward(x, y), "forward", min_run_time, threads)
    net.forward(x, y)
    backward = measure_paired(net.backward, reference.backward, "backward", min_run_time, threads)
    no_xg = backward.ratio
    if common is not None:
        no_xg = measure_paired(net.backward, common.backward, "backward, autograd without x.g", min_run_time,
                               threads).ratio  # fmt: skip
    load = os.getloadavg()[0]  # over the last minute: the timing's
    return Timing(forward, backward.timed, backward.ref, threads, backward.ratio, reference_input_grad, no_xg, load)


def time_implementation(code: protocol.Code, params: dict, x, y, shift: float, input_grad: bool,
                        reference_input_grad: bool, min_run_time: float, threads: int,
                        activation: str = RELU) -> Timing:  # fmt: skip
    """The stage, for the lab's own implementations: on fresh copies of the weights (a learner's code is timed
    the same way, in its own process: isolation/child.py)."""
    net = protocol.build(code, {k: protocol.fresh(v) for k, v in params.items()}, shift, input_grad,
                         activation=activation)  # fmt: skip
    return time_against_autograd(net, params, x, y, shift, reference_input_grad, min_run_time, threads, activation)


def time_against_autograd(net, params: dict, x, y, shift: float, reference_input_grad: bool, min_run_time: float,
                          threads: int, activation: str = RELU) -> Timing:  # fmt: skip
    """`net` against autograd asked for the input's gradient when the check found the implementation computes it
    (`reference_input_grad`), and then against autograd without it too."""
    reference = autograd.Net(params, shift, reference_input_grad, activation)
    common = autograd.Net(params, shift, False, activation) if reference_input_grad else None
    for m in (net, reference, common or reference):
        m.forward(x, y)
    return time_passes(net, reference, x, y, min_run_time, threads, reference_input_grad, common)


def as_plain(timed: Timing) -> dict:
    """A Timing as JSON's numbers, to cross from a learner's process."""
    out = {name: [getattr(timed, name).median_ms, getattr(timed, name).iqr_ms, getattr(timed, name).runs]
           for name in PASSES}  # fmt: skip
    return out | {"threads": timed.threads, "ratio": timed.backward_vs_autograd,
                  "ratio_no_xg": timed.backward_vs_autograd_no_xg, "load": timed.load_avg_1min}


def from_plain(plain: dict, reference_input_grad: bool) -> Timing:
    """A Timing from a learner's process, every number checked to be one (ValueError otherwise)."""

    def number(v, positive: bool = False) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0 or (
                positive and v == 0):  # fmt: skip
            raise ValueError(v)
        return float(v)

    passes = []
    for name in PASSES:
        median, iqr, runs = plain[name]
        passes.append(Timed(number(median, True), number(iqr), int(number(runs, True))))
    return Timing(*passes, int(number(plain["threads"], True)), number(plain["ratio"], True), reference_input_grad,
                  number(plain["ratio_no_xg"], True), number(plain["load"]))
