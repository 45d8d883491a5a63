"""The side-by-side benchmark: every implementation, lean and as the notebook wrote it, against autograd, torch.nn
and the GEMM roofline, measured in one process with torch.utils.benchmark, and the project's targets as ratios.

The roofline of a pass is the time its matrix products need at the best single-precision GEMM throughput measured
in the same run (a few shapes, the best kept): FLOPs / peak. Elementwise work is not counted in the FLOPs.

"GEMMs alone" is the other yardstick: the same products, each timed bare on tensors of the problem's shapes (in the
faster of its two orientations), summed per pass. No implementation built on torch's matrix multiply runs a pass in
less, so where that sum alone misses a target, the target is out of reach on this machine, whatever the code around
the products does.
"""

from __future__ import annotations

import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Optional

import torch
from rich.table import Table

from backprop_lab import backward
from backprop_lab.impls import autograd, load
from backprop_lab.timing import Timed, measure, measure_paired

HAND_WRITTEN = ("functional", "layers", "module", "module_einsum")
GEMMS = "GEMMs alone"


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
    vs_gemms: Optional[float] = None  # over the same pass's products timed alone

    @property
    def gflops(self) -> float:
        return self.gflop / self.median_ms * 1e3


def metric_name(row: Row) -> str:
    """`bench/module_notebook/forward_and_backward_ms`: what MLflow allows in a metric name."""
    variant = row.variant.replace(" (notebook)", "_notebook").replace(" +x.g", "_input_grad").replace(" ", "_")
    return f"bench/{variant}/{row.pass_.replace('+', '_and_')}_ms"


def target_metric(target: Target) -> str:
    """`target/fastest_hand_written_backward_autograd`: a target's measured ratio as an MLflow metric name."""
    return "target/" + re.sub(r"[^a-z0-9]+", "_", target.name.lower()).strip("_")


def variants() -> list[Variant]:
    out = []
    for name in HAND_WRITTEN:
        out += [Variant(name), Variant(name, input_grad=True), Variant(name, notebook=True)]
    return out + [Variant("autograd"), Variant("autograd", input_grad=True), Variant("nn")]


@dataclass(frozen=True)
class Product:
    """One matrix product of a layer `a -> b` over `rows` rows: `inp @ w` (forward), `w.g` or the input's gradient."""

    kind: str  # forward | weight grad | input grad
    rows: int
    a: int
    b: int

    @property
    def gflop(self) -> float:
        return 2 * self.rows * self.a * self.b / 1e9

    def orientations(self, device) -> list:
        """The product both ways round (the second gives the transpose, a free view): MKL runs them at different
        speeds, and an implementation may pick either."""
        rand = partial(torch.randn, device=device)
        if self.kind == "forward":
            inp, w = rand(self.rows, self.a), rand(self.a, self.b)
            return [lambda: inp @ w, lambda: w.t() @ inp.t()]
        if self.kind == "weight grad":
            inp, g = rand(self.rows, self.a), rand(self.rows, self.b)
            return [lambda: inp.t() @ g, lambda: g.t() @ inp]
        g, w = rand(self.rows, self.b), rand(self.a, self.b)
        return [lambda: g @ w.t(), lambda: w @ g.t()]


def pass_products(widths: list[int], n: int, input_grad: bool) -> dict[str, list[Product]]:
    """The products of each pass: forward `inp @ w` per layer; backward `w.g` per layer and the input's gradient of
    every layer but the first, and the first's too when asked."""
    layers = list(enumerate(zip(widths[:-1], widths[1:])))
    forward = [Product("forward", n, a, b) for _, (a, b) in layers]
    back = [Product("weight grad", n, a, b) for _, (a, b) in layers]
    back += [Product("input grad", n, a, b) for i, (a, b) in layers if i > 0 or input_grad]
    return {"forward": forward, "backward": back, "forward+backward": forward + back}


def pass_flops(widths: list[int], n: int, input_grad: bool) -> dict[str, float]:
    """GFLOP of each pass's matrix products (elementwise work is not counted)."""
    return {name: sum(p.gflop for p in ps) for name, ps in pass_products(widths, n, input_grad).items()}


def gemms_alone(widths: list[int], n: int, min_run_time: float, threads: int, device) -> dict[bool, dict[str, Timed]]:
    """Per pass, without and with the input's gradient: the sum of its products' bare times (the faster orientation
    of each). Products of the same shape are timed once."""
    best: dict[Product, Timed] = {}
    out = {}
    for input_grad in (False, True):
        out[input_grad] = {}
        for name, products in pass_products(widths, n, input_grad).items():
            for p in products:
                if p not in best:
                    times = [measure(f, f"{p.kind} {p.rows}x{p.a}x{p.b}", min_run_time, threads)
                             for f in p.orientations(device)]  # fmt: skip
                    best[p] = min(times, key=lambda t: t.median_ms)
            out[input_grad][name] = Timed(
                sum(best[p].median_ms for p in products),
                sum(best[p].iqr_ms for p in products),  # a rough spread: the products were timed apart
                min(best[p].runs for p in products),
            )
    return out


def gemm_peak(shapes: list[tuple[int, int, int]], min_run_time: float, threads: int, device) -> dict[str, float]:
    """GFLOP/s of `a @ b` for each (m, k, n); the best is the roofline's throughput."""
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        timed = measure(lambda a=a, b=b: a @ b, f"gemm {m}x{k}x{n}", min_run_time, threads)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / timed.median_ms / 1e6
    return out


def measure_variant(v: Variant, params, x, y, shift, min_run_time, threads, check) -> list[tuple]:
    """(pass, timed, ratio to autograd asked for the same gradients, gradients close) for each pass of `v`, every
    pass timed interleaved with autograd's."""
    net = load(v.impl).Net(params, shift, v.input_grad, v.notebook)
    ref = autograd.Net(params, shift, v.input_grad or v.notebook)
    ref.forward(x, y)
    net.forward(x, y)
    diffs = backward.compare(net.backward(), ref.backward(), check.rtol, check.atol)
    close = all(d.close for d in diffs)

    def both(net):
        net.forward(x, y)
        return net.backward()

    passes = {}
    if not (v.input_grad or v.notebook):  # the forward is the same code in every mode of an implementation
        passes["forward"] = (lambda: net.forward(x, y), lambda: ref.forward(x, y), None)
    passes["backward"] = (net.backward, ref.backward, close)
    passes["forward+backward"] = (lambda: both(net), lambda: both(ref), close)
    out = []
    for pass_, (fn, ref_fn, pass_close) in passes.items():
        for m in (net, ref):  # backward alone reuses the state of a forward
            m.forward(x, y)
        paired = measure_paired(fn, ref_fn, f"{v.name} {pass_}", min_run_time, threads)
        out.append((pass_, paired.timed, paired.ratio, pass_close))
    return out


@dataclass
class Target:
    name: str
    measured: float
    limit: float
    below: bool = True  # met when measured <= limit; else when measured >= limit
    detail: str = ""
    floor: Optional[float] = None  # the same ratio for the pass's products timed alone

    @property
    def out_of_reach(self) -> bool:
        """The products alone already miss the limit: no code around them can meet it."""
        return self.floor is not None and (self.floor > self.limit if self.below else self.floor < self.limit)

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
    if progress:
        progress("GEMM throughput")
    peak = gemm_peak(shapes, min_run_time, threads, x.device)
    best = max(peak.values())
    rows: list[Row] = []
    if progress:
        progress(GEMMS)
    for input_grad, passes in gemms_alone(widths, n, min_run_time, threads, x.device).items():
        flops = pass_flops(widths, n, input_grad)
        name = Variant(GEMMS, input_grad).name
        for pass_, timed in passes.items():
            if not (input_grad and pass_ == "forward"):  # the same products as without
                rows.append(Row(name, pass_, timed.median_ms, timed.iqr_ms, flops[pass_], None))
    for v in variants():
        if progress:
            progress(v.name)
        flops = pass_flops(widths, n, v.input_grad or v.notebook)
        for pass_, timed, ratio, close in measure_variant(v, params, x, y, shift, min_run_time, threads, check):
            rows.append(Row(v.name, pass_, timed.median_ms, timed.iqr_ms, flops[pass_], close, vs_autograd=ratio))
    known = {v.name: v for v in variants() + [Variant(GEMMS), Variant(GEMMS, input_grad=True)]}
    for row in rows:
        variant = known[row.variant]
        gemms = _find(rows, Variant(GEMMS, variant.input_grad or variant.notebook).name, row.pass_)
        gemms = gemms or _find(rows, GEMMS, row.pass_)
        if row.vs_autograd is None:  # the products alone: against autograd's median, measured apart
            ref = _find(rows, variant.reference.name, row.pass_) or _find(rows, "autograd", row.pass_)
            row.vs_autograd = row.median_ms / ref.median_ms
        row.vs_roofline = row.median_ms / (row.gflop / best * 1e3)
        row.vs_gemms = row.median_ms / gemms.median_ms
    problem = f"{n}x{'-'.join(map(str, widths))}, {x.dtype}, {threads} threads, {x.device}"
    return BenchResult(rows, peak, problem, threads, targets(rows), {})


def targets(rows: list[Row]) -> list[Target]:
    """Each speed target with what the products alone reach on the same ratio (`floor`): a target the floor
    misses cannot be met by any implementation on this machine."""
    lean = [_find(rows, name, "backward") for name in HAND_WRITTEN]
    fastest = min(lean, key=lambda r: r.median_ms)
    gemms_backward = _find(rows, GEMMS, "backward")
    out = [
        Target("fastest hand-written backward / autograd", fastest.vs_autograd, 0.9, detail=fastest.variant,
               floor=gemms_backward.vs_autograd),
        Target("fastest hand-written backward / roofline", fastest.vs_roofline, 1.2, detail=fastest.variant,
               floor=gemms_backward.vs_roofline),
    ]  # fmt: skip
    for name in HAND_WRITTEN:
        speedup = _find(rows, f"{name} (notebook)", "backward").median_ms / _find(rows, name, "backward").median_ms
        out.append(Target(f"{name}: notebook backward / lean backward", speedup, 3.0, below=False))
    gemms_input_grad = _find(rows, Variant(GEMMS, input_grad=True).name, "backward")
    for name in HAND_WRITTEN:
        row = _find(rows, f"{name} +x.g", "backward")
        out.append(Target(f"{name} +x.g backward / autograd +x.g", row.vs_autograd, 1.0,
                          floor=gemms_input_grad.vs_autograd))  # fmt: skip
    forwards = [r for r in rows if r.pass_ == "forward" and r.variant in HAND_WRITTEN]
    fastest_forward = min(forwards, key=lambda r: r.median_ms)
    out.append(Target("fastest forward / roofline", fastest_forward.vs_roofline, 1.25, detail=fastest_forward.variant,
                      floor=_find(rows, GEMMS, "forward").vs_roofline))  # fmt: skip
    wrong = [f"{r.variant} {r.pass_}" for r in rows if r.close is False]
    out.append(Target("variants whose gradients disagree with autograd", len(wrong), 0, detail=", ".join(wrong)))
    return out


COLUMNS = ("variant", "pass", "median ms", "IQR ms", "GFLOP/s", "× autograd", "× roofline", "× GEMMs")


def cells(r: Row) -> list[str]:
    return [r.variant, r.pass_, f"{r.median_ms:.2f}", f"{r.iqr_ms:.2f}", f"{r.gflops:.0f}", f"{r.vs_autograd:.2f}",
            f"{r.vs_roofline:.2f}", f"{r.vs_gemms:.2f}"]  # fmt: skip


def verdict(g: Target) -> str:
    return "yes" if g.met else "NO, out of reach" if g.out_of_reach else "NO"


def target_cells(g: Target) -> list[str]:
    limit = ("≤ " if g.below else "≥ ") + f"{g.limit:g}"
    floor = "" if g.floor is None else f"{g.floor:.3g}"
    return [g.name, f"{g.measured:.3g}", limit, floor, verdict(g), g.detail]


def table(result: BenchResult) -> Table:
    best = max(result.peak.values())
    t = Table(title=f"bench: {result.problem}; roofline {best:.0f} GFLOP/s (best GEMM of {len(result.peak)} shapes)")
    for col in (*COLUMNS, "grads"):
        t.add_column(col, justify="left" if col in ("variant", "pass") else "right")
    for r in result.rows:
        t.add_row(*cells(r), {True: "ok", False: "[red]WRONG[/]", None: ""}[r.close])
    return t


def targets_table(result: BenchResult) -> Table:
    t = Table(title="targets, as measured in this run (GEMMs alone: the same ratio for the products timed bare)")
    for col in ("target", "measured", "limit", "GEMMs alone", "met", "which"):
        t.add_column(col, justify="left" if col in ("target", "which") else "right")
    for g in result.targets:
        row = target_cells(g)
        row[4] = f"[green]{row[4]}[/]" if g.met else f"[red]{row[4]}[/]"
        t.add_row(*row)
    return t


def figure(result: BenchResult):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.pass_ == "backward"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    ax.barh([r.variant for r in rows], [r.median_ms for r in rows], xerr=[r.iqr_ms / 2 for r in rows], capsize=2)
    gemms = _find(result.rows, GEMMS, "backward")
    roofline_ms = gemms.gflop / max(result.peak.values()) * 1e3
    ax.axvline(roofline_ms, color="k", ls=":", label=f"roofline, weight-only backward ({roofline_ms:.1f} ms)")
    ax.axvline(gemms.median_ms, color="C2", ls="-.", label=f"its products timed alone ({gemms.median_ms:.1f} ms)")
    autograd_row = _find(result.rows, "autograd", "backward")
    ax.axvline(autograd_row.median_ms, color="C3", ls="--", label=f"autograd ({autograd_row.median_ms:.1f} ms)")
    ax.invert_yaxis()
    ax.set(xlabel="backward, median ms (bars: IQR)", title=result.problem)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def markdown(result: BenchResult) -> str:
    best = max(result.peak.values())
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in result.peak.items())
    lines = [f"# bench: {result.problem}", "", f"GEMM GFLOP/s: {peaks}; roofline {best:.0f}.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in result.rows]
    lines += ["", "| target | measured | limit | GEMMs alone | met | which |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(target_cells(g)) + " |" for g in result.targets]
    return "\n".join(lines) + "\n"


def as_json(result: BenchResult) -> dict:
    return {
        "problem": result.problem,
        "peak_gflops": result.peak,
        "rows": [asdict(r) for r in result.rows],
        "targets": [asdict(g) | {"met": g.met, "out_of_reach": g.out_of_reach} for g in result.targets],
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
