"""The project's targets, judged from one bench run: ratios of its rows (each from the same run, so the machine's
speed cancels out), the count of variants whose gradients disagree with autograd, and the pipeline's memory and
times measured around the compute (the default run's time outside its timing stage is an absolute time, not a ratio:
it holds on the machine it was measured on).

Beside a speed ratio stands `floor`, the same ratio for the least the pass can take: its products timed bare
("GEMMs alone"), and for the speed-up over the notebook the products plus the backward's unavoidable elementwise
passes ("GEMMs + elementwise alone"). Where the floor already misses the limit, no implementation built on torch's
eager ops can meet it on this machine.
The notebook's implementations and the roofline ratios are reported in the bench's table, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from backprop_lab.bench import FLOOR, GEMMS, REFERENCE, PassTiming, Variant, find

FAST = Variant("lean")  # the fastest hand-written backward
FAST_X = Variant("lean", input_grad=True)
NOTEBOOK = Variant("module", input_grad=True, notebook=True)  # the notebook's last version before einsum

# (key in the measurements around the compute, target, limit); a key not measured (the sweep's) is not judged
PROCESS = (
    ("default_run_peak_rss_gib", "default run's peak RSS, GiB", 1.5),
    ("default_run_outside_timing_s", "default run outside its timing stage, warm store, s", 4.0),
    ("cfg_job_s", "--cfg job, s (no torch, no MLflow)", 1.5),
    ("config_error_s", "config error, s", 1.5),
    ("overhead_median_s", "per-job overhead in a sweep, median s", 0.5),
)


@dataclass
class Target:
    name: str
    measured: float
    limit: float
    below: bool = True  # met when measured <= limit; else when measured >= limit
    detail: str = ""
    floor: Optional[float] = None  # the same ratio for the pass's products timed alone

    @property
    def met(self) -> bool:
        return self.measured <= self.limit if self.below else self.measured >= self.limit

    @property
    def out_of_reach(self) -> bool:
        """The products alone already miss the limit: no code around them can meet it."""
        return self.floor is not None and (self.floor > self.limit if self.below else self.floor < self.limit)

    @property
    def verdict(self) -> str:
        return "yes" if self.met else "NO, out of reach" if self.out_of_reach else "NO"


def _backward(rows: list[PassTiming], variant: Variant) -> PassTiming:
    row = find(rows, variant.name, "backward")
    if row is None:
        raise LookupError(f"the bench has no backward row for {variant.name}; a target needs it")
    return row


def speed_targets(rows: list[PassTiming]) -> list[Target]:
    fast, fast_x, notebook = (_backward(rows, v) for v in (FAST, FAST_X, NOTEBOOK))
    gemms, gemms_x = (_backward(rows, Variant(GEMMS, x)) for x in (False, True))
    least = find(rows, FLOOR, "backward")
    return [
        Target(f"{fast.variant} backward / {REFERENCE} backward", fast.vs_autograd, 1.0, floor=gemms.vs_autograd),
        Target(f"{fast.variant} backward / {GEMMS} backward", fast.vs_gemms, 1.15, floor=gemms.vs_gemms),
        Target(f"{notebook.variant} backward / {fast.variant} backward", notebook.median_ms / fast.median_ms, 3.0,
               below=False, detail="the speed work pays",
               floor=notebook.median_ms / least.median_ms if least else None),
        Target(f"{fast_x.variant} backward / {REFERENCE} +x.g backward", fast_x.vs_autograd, 1.0,
               floor=gemms_x.vs_autograd),
    ]  # fmt: skip


def agreement_target(rows: list[PassTiming]) -> Target:
    wrong = sorted({r.variant for r in rows if r.close is False})
    return Target(f"variants whose gradients disagree with {REFERENCE}", len(wrong), 0, detail=", ".join(wrong))


def process_targets(extra: dict[str, float]) -> list[Target]:
    return [Target(name, extra[key], limit) for key, name, limit in PROCESS if key in extra]


def judge(rows: list[PassTiming], extra: dict[str, float]) -> list[Target]:
    return [*speed_targets(rows), agreement_target(rows), *process_targets(extra)]
