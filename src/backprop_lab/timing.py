"""Stage 5, timing: forward, backward, and autograd's backward, each measured alone with torch.utils.benchmark,
the two backwards in interleaved rounds.

blocked_autorange warms up while it sizes its blocks and reports the median and IQR of many blocks; its Timer
synchronizes CUDA around each block. The Timer defaults to one thread, so the thread count is passed and logged.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from torch.utils import benchmark

from backprop_lab import stop
from backprop_lab.impls import autograd, protocol


@dataclass
class Timed:
    median_ms: float
    iqr_ms: float
    runs: int


@dataclass
class Timing:
    forward: Timed
    backward: Timed
    backward_autograd: Timed
    threads: int
    backward_vs_autograd: float  # measured interleaved, not the ratio of the two medians

    def metrics(self) -> dict[str, float]:
        out = {}
        for name in ("forward", "backward", "backward_autograd"):
            timed: Timed = getattr(self, name)
            out[f"time/{name}_ms"] = timed.median_ms
            out[f"time/{name}_iqr_ms"] = timed.iqr_ms
        out["time/backward_vs_autograd"] = self.backward_vs_autograd
        out["time/threads"] = float(self.threads)
        return out


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


def time_passes(net, reference, x, y, min_run_time: float, threads: int) -> Timing:
    """`net` and `reference` (autograd) must have run forward on (x, y): backward reuses that forward's state.
    The two backwards are timed interleaved, each for `min_run_time` in all."""
    forward = measure(lambda: net.forward(x, y), "forward", min_run_time, threads)
    net.forward(x, y)
    backward = measure_paired(net.backward, reference.backward, "backward", min_run_time, threads)
    return Timing(forward, backward.timed, backward.ref, threads, backward.ratio)


def time_implementation(code: protocol.Code, params: dict, x, y, shift: float, input_grad: bool,
                        reference_input_grad: bool, min_run_time: float, threads: int) -> Timing:  # fmt: skip
    """The stage: the implementation on fresh copies of the weights, against autograd asked for the input's gradient
    when the check found the implementation computes it (`reference_input_grad`), a user's code run as theirs."""
    with protocol.users_code(code, what="forward or backward while timed"):
        net = protocol.build(code, {k: protocol.fresh(v) for k, v in params.items()}, shift, input_grad)
        reference = autograd.Net(params, shift, input_grad=reference_input_grad)
        net.forward(x, y)
        reference.forward(x, y)
        return time_passes(net, reference, x, y, min_run_time, threads)
