"""The side-by-side benchmark's measurements: every implementation against autograd, torch.nn and the GEMM roofline,
in one process with torch.utils.benchmark, as rows of (variant, pass). The targets are judged in targets.py; the
command is bench_cli.py, its tables, figure and metric names bench_render.py.

The roofline of a pass is the time its matrix products need at the best single-precision GEMM throughput measured
in the same run (a few shapes, the best kept): FLOPs / peak. Elementwise work is not counted in the FLOPs.

"GEMMs alone" is the other yardstick: the same products, each timed bare on tensors of the problem's shapes (in the
faster of its two orientations), summed per pass. No implementation built on torch's matrix multiply runs a pass in
less, so where that sum alone misses a target, the target is out of reach on this machine, whatever the code around
the products does. "GEMMs + elementwise alone" is the least an eager backward can take: its products and the
elementwise passes that no correct backward skips (the MSE's gradient, each ReLU's mask by `threshold_backward` in
place, each bias's sum), each timed bare the fastest way torch has it, on cold tensors: timed warm, a 16 MB pass
reads its operands from the cache, while inside a backward they come from memory, the big product having streamed
the input through.

The bench floor (beside rerun/, above sweeps/): the measurements here; bench_processes.py, bench_render.py,
targets.py, compiled_check.py. Its command line is cli/bench_cli.py.

Add a measured variant or a target here; its command line stays in cli/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import torch

from backprop_lab import impls
from backprop_lab.bench import compiled_check
from backprop_lab.core.names import REFERENCE_IMPL
from backprop_lab.impls.timing import Timed, measure, measure_cold, measure_paired
from backprop_lab.study import backward
from backprop_lab.study.products import Product, gemm_peak, pass_flops, pass_products

REFERENCE = REFERENCE_IMPL  # every variant's gradients are checked against it and its times divided by it
GEMMS = "GEMMs alone"
COLD_BYTES = 256 * 2**20  # written through before each cold call: more than any of these machines' caches
COLD_CALLS_PER_S = 50  # cold calls per pass for each second of --min-run-time (25 at the default 0.5 s)
FLOOR = "GEMMs + elementwise alone"  # the backward without x.g: its products and its unavoidable elementwise passes
PASSES = ("forward", "backward", "forward+backward")


@dataclass(frozen=True)
class Variant:
    impl: str
    input_grad: bool = False
    notebook: bool = False  # one of the notebook's four, which always compute the input's gradient

    @property
    def name(self) -> str:
        return self.impl + (" (notebook)" if self.notebook else " +x.g" if self.input_grad else "")

    @property
    def reference(self) -> Variant:
        """Autograd asked for the same gradients: what this variant's times are divided by."""
        return Variant(REFERENCE, self.input_grad)


def variants() -> list[Variant]:
    """The notebook's implementations as the notebook ran them (the input's gradient always), then every other
    one without and with the input's gradient, the reference last. From conf/impl/: a new option gets its rows."""
    notebook, optional = [], []
    for impl in impls.built_in():
        if impls.input_grad_optional(impl):
            optional += [Variant(impl), Variant(impl, input_grad=True)]
        else:
            notebook.append(Variant(impl, input_grad=True, notebook=True))
    return notebook + sorted(optional, key=lambda v: v.impl == REFERENCE)


@dataclass
class PassTiming:
    """One variant's pass, timed and related to the others': a row of the bench's table."""

    variant: str
    pass_: str  # forward | backward | forward+backward
    median_ms: float
    iqr_ms: float
    gflop: float
    close: Optional[bool]  # the variant's gradients against autograd's (None: forward only, or the bare products)
    vs_autograd: Optional[float] = None  # over autograd asked for the same gradients (+x.g where input_grad)
    vs_roofline: Optional[float] = None
    vs_gemms: Optional[float] = None  # over the same pass's products timed alone
    input_grad: bool = False  # the pass computes the input's gradient
    vs_autograd_no_xg: Optional[float] = None  # over autograd without x.g: one baseline for every row

    @property
    def gflops(self) -> float:
        return self.gflop / self.median_ms * 1e3


def find(rows: list[PassTiming], variant: str, pass_: str) -> Optional[PassTiming]:
    return next((r for r in rows if r.variant == variant and r.pass_ == pass_), None)


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


def least_backward(widths: list[int], n: int, min_run_time: float, threads: int, device) -> Timed:
    """The backward's products (the faster orientation of each) and the elementwise passes every correct backward
    makes (the MSE's gradient, each hidden layer's ReLU mask applied in place, each layer's bias sum), each timed
    bare on cold tensors, summed. Each cold call costs a sweep through memory: their number follows the budget."""
    sweep = torch.empty(COLD_BYTES // 4, device=device)
    cold = partial(measure_cold, threads=threads, sweep=sweep, calls=max(5, round(COLD_CALLS_PER_S * min_run_time)))
    timed = []
    for p in pass_products(widths, n, False)["backward"]:
        label = f"{p.kind} {p.rows}x{p.a}x{p.b}"
        both = [cold(f, label) for f in p.orientations(device)]
        timed.append(min(both, key=lambda t: t.median_ms))
    rand = partial(torch.randn, device=device)
    out, targ = rand(n, 1), rand(n)
    mask = torch.ops.aten.threshold_backward.grad_input  # in place: what lean and autograd run
    passes = [("mse grad", lambda: (out.squeeze(-1) - targ).unsqueeze(-1) * (2 / n))]
    for width in widths[1:-1]:
        g, z = rand(n, width), rand(n, width)
        passes.append((f"relu mask {n}x{width}", lambda g=g, z=z: mask(g, z, 0, grad_input=g)))
    for width in widths[1:]:
        g = rand(n, width)
        passes.append((f"bias sum {n}x{width}", lambda g=g: g.sum(0)))
    timed += [cold(fn, label) for label, fn in passes]
    return Timed(sum(t.median_ms for t in timed), sum(t.iqr_ms for t in timed), min(t.runs for t in timed))


def gemm_rows(widths: list[int], n: int, min_run_time: float, threads: int, device) -> list[PassTiming]:
    """The rows of "GEMMs alone" and "GEMMs alone +x.g" (the latter without a forward: its products are the same),
    and the backward's "GEMMs + elementwise alone"."""
    rows = []
    for input_grad, passes in gemms_alone(widths, n, min_run_time, threads, device).items():
        flops = pass_flops(widths, n, input_grad)
        name = Variant(GEMMS, input_grad).name
        rows += [PassTiming(name, pass_, timed.median_ms, timed.iqr_ms, flops[pass_], None, input_grad=input_grad)
                 for pass_, timed in passes.items() if not (input_grad and pass_ == "forward")]  # fmt: skip
    least = least_backward(widths, n, min_run_time, threads, device)
    rows.append(PassTiming(FLOOR, "backward", least.median_ms, least.iqr_ms, find(rows, GEMMS, "backward").gflop, None))
    return rows


def peak_shapes(n: int, widths: list[int]) -> list[tuple[int, int, int]]:
    """Two square-ish GEMMs and the problem's own first-layer products: the roofline is the best of them."""
    return [(2048, 2048, 2048), (4096, 1024, 1024), (n, widths[0], widths[1]), (widths[0], n, widths[1])]


def measure_variant(v: Variant, params, x, y, shift, min_run_time, threads, check) -> list[tuple]:
    """(pass, timed, ratio to autograd asked for the same gradients, gradients close) for each pass of `v`, every
    pass timed interleaved with autograd's."""
    net = impls.build(v.impl, params, shift, v.input_grad)
    ref = impls.build(REFERENCE, params, shift, v.reference.input_grad)
    close = backward.run_check(v.impl, params, x, y, shift, v.input_grad, check.factor).all_close

    def both(net):
        net.forward(x, y)
        return net.backward()

    passes = {}
    if v.notebook or not v.input_grad:  # asking for the input's gradient leaves the forward's code as it is
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


def variant_rows(v: Variant, params, x, y, shift, widths, min_run_time, threads, check) -> list[PassTiming]:
    flops = pass_flops(widths, x.shape[0], v.input_grad)
    measured = measure_variant(v, params, x, y, shift, min_run_time, threads, check)
    return [PassTiming(v.name, pass_, timed.median_ms, timed.iqr_ms, flops[pass_], close, ratio,
                       input_grad=v.input_grad) for pass_, timed, ratio, close in measured]  # fmt: skip


def relate(rows: list[PassTiming], peak_gflops: float) -> None:
    """Fill each row's ratios: to the roofline, to the same pass's products alone (with the input's gradient where
    the variant computes it), for the bare products to autograd's median (measured apart), and to autograd without
    the input's gradient: interleaved where that is the row's own baseline, else of the medians (measured apart)."""
    for row in rows:
        gemms = find(rows, Variant(GEMMS, row.input_grad).name, row.pass_) or find(rows, GEMMS, row.pass_)
        if row.vs_autograd is None:
            ref = find(rows, Variant(REFERENCE, row.input_grad).name, row.pass_) or find(rows, REFERENCE, row.pass_)
            row.vs_autograd = row.median_ms / ref.median_ms
        common = row.median_ms / find(rows, REFERENCE, row.pass_).median_ms
        row.vs_autograd_no_xg = common if row.input_grad else row.vs_autograd
        row.vs_roofline = row.median_ms / (row.gflop / peak_gflops * 1e3)
        row.vs_gemms = row.median_ms / gemms.median_ms


def compiled_rows(params, x, y, shift, widths, min_run_time, threads,
                  check) -> tuple[list[PassTiming], dict[str, float]]:  # fmt: skip
    """`torch.compile` of lean's forward+backward and of autograd's (impls/compiled.py), each timed after its
    compile, interleaved with eager autograd's forward+backward, its gradients checked; and the compile times, which
    the per-call times leave out."""
    import time

    from backprop_lab.impls import compiled

    ref = impls.build(REFERENCE, params, shift)

    def eager():
        ref.forward(x, y)
        return ref.backward()

    rows, seconds = [], {}
    gflop = pass_flops(widths, x.shape[0], False)["forward+backward"]
    for impl, make in compiled.PASSES.items():
        name = f"{impl} (compiled)"
        started = time.perf_counter()
        fn = torch.compile(make(params, shift))
        grads = fn(x, y)  # the first call compiles
        seconds[f"compile_s_{impl}"] = time.perf_counter() - started
        close = compiled_check.params_agree(grads, params, x, y, shift, check.factor)
        paired = measure_paired(lambda fn=fn: fn(x, y), eager, f"{name} forward+backward", min_run_time, threads)
        rows.append(PassTiming(name, "forward+backward", paired.timed.median_ms, paired.timed.iqr_ms, gflop, close,
                        paired.ratio))  # fmt: skip
    return rows, seconds


@dataclass
class BenchResult:
    rows: list[PassTiming]
    peak: dict[str, float]  # GFLOP/s by GEMM shape
    problem: str
    threads: int
    compile_s: dict[str, float] = field(default_factory=dict)  # per compiled variant, left out of its per-call time

    @property
    def roofline_gflops(self) -> float:
        return max(self.peak.values())


def run_bench(params, x, y, shift: float, widths: list[int], min_run_time: float, check,
              progress: Optional[Callable[[str], None]] = None, compiled: bool = True) -> BenchResult:  # fmt: skip
    say = progress or (lambda _: None)
    threads, n = torch.get_num_threads(), x.shape[0]
    say("GEMM throughput")
    peak = gemm_peak(peak_shapes(n, widths), min_run_time, threads, x.device)
    say(GEMMS)
    rows = gemm_rows(widths, n, min_run_time, threads, x.device)
    for v in variants():
        say(v.name)
        rows += variant_rows(v, params, x, y, shift, widths, min_run_time, threads, check)
    compile_s = {}
    if compiled:
        say("torch.compile: lean and autograd (tens of seconds to compile)")
        more, compile_s = compiled_rows(params, x, y, shift, widths, min_run_time, threads, check)
        rows += more
    relate(rows, max(peak.values()))
    problem = f"{n}x{'-'.join(map(str, widths))}, {x.dtype}, {threads} threads, {x.device}"
    return BenchResult(rows, peak, problem, threads, compile_s)
