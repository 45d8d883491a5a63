"""Stage 5, timing: forward, backward, and autograd's backward, each measured alone with torch.utils.benchmark.

blocked_autorange warms up while it sizes its blocks and reports the median and IQR of many blocks; its Timer
synchronizes CUDA around each block. The Timer defaults to one thread, so the thread count is passed and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils import benchmark


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

    def metrics(self) -> dict[str, float]:
        out = {}
        for name in ("forward", "backward", "backward_autograd"):
            timed: Timed = getattr(self, name)
            out[f"time/{name}_ms"] = timed.median_ms
            out[f"time/{name}_iqr_ms"] = timed.iqr_ms
        out["time/backward_vs_autograd"] = self.backward.median_ms / self.backward_autograd.median_ms
        out["time/threads"] = float(self.threads)
        return out


def measure(fn: Callable[[], object], label: str, min_run_time: float, threads: int) -> Timed:
    fn()  # a first call outside the measurement: allocations and lazy initialisation
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timed(m.median * 1e3, m.iqr * 1e3, len(m.times) * m.number_per_run)


def time_passes(net, reference, x, y, min_run_time: float, threads: int) -> Timing:
    """`net` and `reference` (autograd) must have run forward on (x, y): backward reuses that forward's state."""
    forward = measure(lambda: net.forward(x, y), "forward", min_run_time, threads)
    net.forward(x, y)
    backward = measure(net.backward, "backward", min_run_time, threads)
    reference.forward(x, y)
    backward_autograd = measure(reference.backward, "backward (autograd)", min_run_time, threads)
    return Timing(forward, backward, backward_autograd, threads)
