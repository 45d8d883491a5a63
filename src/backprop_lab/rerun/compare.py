"""A rerun set against its original, metric by metric: bit-identical where the environment is the same, within
tolerances where it differs (and what differs, said); timings apart, as ratios, never judged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from backprop_lab.tracking.runs import LoggedRun

TIMING_PREFIXES = ("time/", "wall/", "mem/")  # measurements of the machine: reported, never judged


@dataclass
class MetricCheck:
    key: str
    step: int
    original: Optional[float]  # None: not logged by that run
    rerun: Optional[float]
    same: bool


@dataclass
class Verdict:
    original_id: str
    rerun_id: str
    environment: list[tuple[str, str, str]]  # what differs: (name, original, rerun)
    checks: list[MetricCheck]
    timings: list[tuple[str, float, float]]  # (key, original, rerun)
    tolerance: Optional[tuple[float, float]] = None  # (rtol, atol) when the environment differs
    differing: list[MetricCheck] = field(init=False)

    def __post_init__(self):
        self.differing = [c for c in self.checks if not c.same]

    @property
    def same(self) -> bool:
        return not self.differing


def fingerprint(run: LoggedRun) -> dict[str, str]:
    """What must match for bit-identical numbers: code, data, libraries, device, CPU and threads."""
    tags, device = run.record.tags, run.device
    out = {f"version.{k}": v for k, v in device.get("versions", {}).items()}
    out |= {
        "device": tags.get("device", device.get("device", "unknown")),
        "cpu": device.get("cpu_model", "unknown"),
        "gpu": device.get("gpu_name", "none"),
        "threads": tags.get("torch.threads", str(device.get("torch_threads", "unknown"))),
        "deterministic algorithms": tags.get("torch.deterministic_algorithms", "unknown"),
        "git.commit": tags.get("git.commit", "unknown"),
        "git.diff": tags.get("git.diff_sha256", "none") if tags.get("git.dirty") == "true" else "none",
        "data.sha256": tags.get("data.sha256", "unknown"),
    }
    return out


def environment_differences(original: LoggedRun, rerun: LoggedRun) -> list[tuple[str, str, str]]:
    a, b = fingerprint(original), fingerprint(rerun)
    return [(k, a.get(k, "unknown"), b.get(k, "unknown")) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def same_value(a: Optional[float], b: Optional[float], tolerance: Optional[tuple[float, float]]) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if tolerance is None:
        return a == b  # bit equality, as floats logged by MLflow
    rtol, atol = tolerance
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def compare(original: LoggedRun, rerun: LoggedRun, rtol: float, atol: float) -> Verdict:
    environment = environment_differences(original, rerun)
    tolerance = (rtol, atol) if environment else None
    checks, timings = [], []
    for key, step in sorted(original.points.keys() | rerun.points.keys()):
        a, b = original.points.get((key, step)), rerun.points.get((key, step))
        if key.startswith(TIMING_PREFIXES):
            if a is not None and b is not None:
                timings.append((key, a, b))
        elif not key.startswith("sweep/"):
            checks.append(MetricCheck(key, step, a, b, same_value(a, b, tolerance)))
    return Verdict(original.record.run_id, rerun.record.run_id, environment, checks, timings, tolerance)
