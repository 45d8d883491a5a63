"""The side-by-side benchmark: every implementation, lean and as the notebook wrote it, against autograd, torch.nn
and the GEMM roofline, measured in one process with torch.utils.benchmark, and the project's targets as ratios.

The roofline of a pass is the time its matrix products need at the best single-precision GEMM throughput measured
in the same run (a few shapes, the best kept): FLOPs / peak. Elementwise work is not counted in the FLOPs.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from rich.table import Table

from backprop_lab import backward
from backprop_lab.impls import autograd, load
from backprop_lab.timing import Timed, measure

HAND_WRITTEN = ("functional", "layers", "module", "module_einsum")


@dataclass(frozen=True)
class Variant:
    impl: str
    input_grad: bool = False
    notebook: bool = False

    @property
    def name(self) -> str:
        return self.impl + (" (notebook)" if self.notebook else " +x.g" if self.input_grad else "")

    @property
    def reference(self) -> Variant:
        """Autograd asked for the same gradients: what this variant's times are divided by."""
        return Variant("autograd", self.input_grad or self.notebook)


@dataclass
class Row:
    variant: str
    pass_: str  # forward | backward | forward+backward
    median_ms: float
    iqr_ms: float
    gflop: float
    close: Optional[bool]  # the variant's gradients against autograd's (None: forward only)
    vs_autograd: Optional[float] = None
    vs_roofline: Optional[float] = None

    @property
    def gflops(self) -> float:
        return self.gflop / self.median_ms * 1e3


def metric_name(row: Row) -> str:
    """`bench/module_notebook/forward_and_backward_ms`: what MLflow allows in a metric name."""
    variant = row.variant.replace(" (notebook)", "_notebook").replace(" +x.g", "_input_grad")
    return f"bench/{variant}/{row.pass_.replace('+', '_and_')}_ms"


def variants() -> list[Variant]:
    out = []
    for name in HAND_WRITTEN:
        out += [Variant(name), Variant(name, input_grad=True), Variant(name, notebook=True)]
    return out + [Variant("autograd"), Variant("autograd", input_grad=True), Variant("nn")]


def pass_flops(widths: list[int], n: int, input_grad: bool) -> dict[str, float]:
    """GFLOP of the matrix products: forward x @ w per layer; backward w.g per layer and the input's gradient of
    every layer but the first, which only counts when asked."""
    products = [2 * n * a * b / 1e9 for a, b in zip(widths[:-1], widths[1:])]
    back = 2 * sum(products) - (0 if input_grad else products[0])
    return {"forward": sum(products), "backward": back, "forward+backward": sum(products) + back}


def gemm_peak(shapes: list[tuple[int, int, int]], min_run_time: float, threads: int, device) -> dict[str, float]:
    """GFLOP/s of `a @ b` for each (m, k, n); the best is the roofline's throughput."""
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        timed = measure(lambda a=a, b=b: a @ b, f"gemm {m}x{k}x{n}", min_run_time, threads)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / timed.median_ms / 1e6
    return out


def measure_variant(v: Variant, params, x, y, shift, min_run_time, threads, check) -> list[tuple[str, Timed, bool]]:
    net = load(v.impl).Net(params, shift, v.input_grad, v.notebook)
    ref = autograd.Net(params, shift, v.input_grad or v.notebook)
    ref.forward(x, y)
    net.forward(x, y)
    diffs = backward.compare(net.backward(), ref.backward(), check.rtol, check.atol)
    close = all(d.close for d in diffs)
    out = []
    if not (v.input_grad or v.notebook):  # the forward is the same code in every mode of an implementation
        out.append(("forward", measure(lambda: net.forward(x, y), f"{v.name} forward", min_run_time, threads), None))
    net.forward(x, y)
    out.append(("backward", measure(net.backward, f"{v.name} backward", min_run_time, threads), close))

    def both():
        net.forward(x, y)
        return net.backward()

    out.append(("forward+backward", measure(both, f"{v.name} fwd+bwd", min_run_time, threads), close))
    return out


@dataclass
class Target:
    name: str
    measured: float
    limit: float
    below: bool = True  # met when measured <= limit; else when measured >= limit
    detail: str = ""

    @property
    def met(self) -> bool:
        return self.measured <= self.limit if self.below else self.measured >= self.limit


@dataclass
class BenchResult:
    rows: list[Row]
    peak: dict[str, float]
    problem: str
    threads: int
    targets: list[Target]
    extra: dict[str, float]


def _find(rows: list[Row], variant: str, pass_: str) -> Optional[Row]:
    return next((r for r in rows if r.variant == variant and r.pass_ == pass_), None)


def run_bench(params, x, y, shift: float, widths: list[int], min_run_time: float, check, progress=None) -> BenchResult:
    threads = torch.get_num_threads()
    n = x.shape[0]
    shapes = [(2048, 2048, 2048), (4096, 1024, 1024), (n, widths[0], widths[1]), (widths[0], n, widths[1])]
    peak = gemm_peak(shapes, min_run_time, threads, x.device)
    best = max(peak.values())
    rows: list[Row] = []
    for v in variants():
        if progress:
            progress(v.name)
        flops = pass_flops(widths, n, v.input_grad or v.notebook)
        for pass_, timed, close in measure_variant(v, params, x, y, shift, min_run_time, threads, check):
            rows.append(Row(v.name, pass_, timed.median_ms, timed.iqr_ms, flops[pass_], close))
    for row in rows:
        variant = next(v for v in variants() if v.name == row.variant)
        ref = _find(rows, variant.reference.name, row.pass_) or _find(rows, "autograd", row.pass_)
        row.vs_autograd = row.median_ms / ref.median_ms
        row.vs_roofline = row.median_ms / (row.gflop / best * 1e3)
    problem = f"{n}x{'-'.join(map(str, widths))}, {x.dtype}, {threads} threads, {x.device}"
    return BenchResult(rows, peak, problem, threads, targets(rows), {})


def targets(rows: list[Row]) -> list[Target]:
    lean = [_find(rows, name, "backward") for name in HAND_WRITTEN]
    fastest = min(lean, key=lambda r: r.median_ms)
    out = [
        Target("fastest hand-written backward / autograd", fastest.vs_autograd, 0.9, detail=fastest.variant),
        Target("fastest hand-written backward / roofline", fastest.vs_roofline, 1.2, detail=fastest.variant),
    ]
    for name in HAND_WRITTEN:
        speedup = _find(rows, f"{name} (notebook)", "backward").median_ms / _find(rows, name, "backward").median_ms
        out.append(Target(f"{name}: notebook backward / lean backward", speedup, 3.0, below=False))
    for name in HAND_WRITTEN:
        row = _find(rows, f"{name} +x.g", "backward")
        out.append(Target(f"{name} +x.g backward / autograd +x.g", row.vs_autograd, 1.0))
    forwards = [r for r in rows if r.pass_ == "forward" and r.variant in HAND_WRITTEN]
    fastest_forward = min(forwards, key=lambda r: r.median_ms)
    out.append(Target("fastest forward / roofline", fastest_forward.vs_roofline, 1.25, detail=fastest_forward.variant))
    wrong = [f"{r.variant} {r.pass_}" for r in rows if r.close is False]
    out.append(Target("variants whose gradients disagree with autograd", len(wrong), 0, detail=", ".join(wrong)))
    return out


def table(result: BenchResult) -> Table:
    best = max(result.peak.values())
    t = Table(title=f"bench: {result.problem}; roofline {best:.0f} GFLOP/s (best GEMM of {len(result.peak)} shapes)")
    for col in ("variant", "pass", "median ms", "IQR ms", "GFLOP/s", "× autograd", "× roofline", "grads"):
        t.add_column(col, justify="left" if col in ("variant", "pass") else "right")
    for r in result.rows:
        grads = {True: "ok", False: "[red]WRONG[/]", None: ""}[r.close]
        t.add_row(r.variant, r.pass_, f"{r.median_ms:.2f}", f"{r.iqr_ms:.2f}", f"{r.gflops:.0f}",
                  f"{r.vs_autograd:.2f}", f"{r.vs_roofline:.2f}", grads)  # fmt: skip
    return t


def targets_table(result: BenchResult) -> Table:
    t = Table(title="targets, as measured in this run")
    for col in ("target", "measured", "limit", "met", "which"):
        t.add_column(col, justify="left" if col in ("target", "which") else "right")
    for g in result.targets:
        limit = ("≤ " if g.below else "≥ ") + f"{g.limit:g}"
        t.add_row(g.name, f"{g.measured:.3g}", limit, "[green]yes[/]" if g.met else "[red]NO[/]", g.detail)
    return t


def figure(result: BenchResult):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.pass_ == "backward"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    ax.barh([r.variant for r in rows], [r.median_ms for r in rows], xerr=[r.iqr_ms / 2 for r in rows], capsize=2)
    roofline_ms = rows[0].gflop / max(result.peak.values()) * 1e3 if rows else 0
    ax.axvline(roofline_ms, color="k", ls=":", label=f"roofline, weight-only backward ({roofline_ms:.1f} ms)")
    autograd_row = _find(result.rows, "autograd", "backward")
    ax.axvline(autograd_row.median_ms, color="C3", ls="--", label=f"autograd ({autograd_row.median_ms:.1f} ms)")
    ax.invert_yaxis()
    ax.set(xlabel="backward, median ms (bars: IQR)", title=result.problem)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def markdown(result: BenchResult) -> str:
    lines = [
        f"# bench: {result.problem}",
        "",
        "| variant | pass | median ms | IQR ms | GFLOP/s | × autograd | × roofline |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for r in result.rows:
        lines.append(f"| {r.variant} | {r.pass_} | {r.median_ms:.2f} | {r.iqr_ms:.2f} | {r.gflops:.0f} | "
                     f"{r.vs_autograd:.2f} | {r.vs_roofline:.2f} |")  # fmt: skip
    lines += ["", "| target | measured | limit | met |", "|---|---|---|---|"]
    for g in result.targets:
        lines.append(f"| {g.name} | {g.measured:.3g} | {'≤' if g.below else '≥'} {g.limit:g} | {g.met} |")
    return "\n".join(lines) + "\n"


def as_json(result: BenchResult) -> dict:
    return {
        "problem": result.problem,
        "peak_gflops": result.peak,
        "rows": [asdict(r) for r in result.rows],
        "targets": [asdict(g) | {"met": g.met} for g in result.targets],
        "extra": result.extra,
    }


# --- the pipeline around the compute: memory, start-up and sweep overhead, each in a subprocess ------------------


def peak_rss_of(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """(peak RSS in GiB, exit code) of a child process. RUSAGE_CHILDREN keeps the largest child so far: call this
    before starting any other."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, done.returncode


def seconds_of(cmd: list[str], cwd: Path, repeat: int = 3) -> float:
    """The best of a few wall times: start-up is what is measured, not the machine's hiccups."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def sweep_overhead(run_script: Path, workdir: Path, overrides: list[str]) -> dict[str, float]:
    """Median per-job time outside the measured compute and timing over a 12-job sweep (basic launcher)."""
    from backprop_lab import tracking

    args = ["-m", "impl=functional,layers,module,module_einsum,autograd,nn", "init=xavier,kaiming_uniform",
            "timing=fast", *overrides]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(run_script), *args], cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the sweep failed: {done.stderr.strip().splitlines()[-1:]}")
    uri, _ = tracking.default_store(workdir)
    _, children = tracking.sweep_records(uri, tracking.latest_sweep(uri, "backprop-lab"))
    overhead = [
        c.metrics["wall/startup_s"] + c.metrics["wall/run_s"] - c.metrics["wall/check_s"] - c.metrics["wall/timing_s"]
        for c in children
    ]
    return {"sweep_jobs": len(children), "sweep_wall_s": wall, "overhead_median_s": statistics.median(overhead),
            "overhead_max_s": max(overhead)}  # fmt: skip
