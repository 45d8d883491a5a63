"""What the bench shows and logs, built from its measurements: its two tables (rendered by tables.py to the console
and to markdown), its JSON record, its figure, and the MLflow names of its metrics."""

from __future__ import annotations

import re
from dataclasses import asdict

from matplotlib.figure import Figure

from backprop_lab.bench import GEMMS, REFERENCE, BenchResult, PassTiming, find
from backprop_lab.bench.targets import Target
from backprop_lab.core import tables

STYLES = {"yes": "green", "NO": "red", "NO, out of reach": "red", "WRONG": "red"}
# the two baselines (bench.Variant.reference): autograd computing the input's gradient where the variant does (its
# name says "+x.g" or "(notebook)"), and autograd without it, one baseline every row shares
SAME, COMMON = "× autograd (same x.g)", "× autograd (no x.g)"
COLUMNS = ["variant", "pass", "median ms", "IQR ms", "GFLOP/s", SAME, COMMON, "× roofline", "× GEMMs", "grads"]
TARGET_COLUMNS = ["target", "measured", "limit", "floor", "met", "which"]


def machine_line(machine: dict[str, str]) -> str:
    return f"{machine['cpu']} ({machine['isa']}, {machine['blas']}, {machine['onednn']})"


def row_cells(r: PassTiming) -> list[str]:
    return [r.variant, r.pass_, f"{r.median_ms:.2f}", f"{r.iqr_ms:.2f}", f"{r.gflops:.0f}", f"{r.vs_autograd:.2f}",
            f"{r.vs_autograd_no_xg:.2f}", f"{r.vs_roofline:.2f}", f"{r.vs_gemms:.2f}",
            {True: "ok", False: "WRONG", None: ""}[r.close]]  # fmt: skip


def target_cells(t: Target) -> list[str]:
    limit = ("≤ " if t.below else "≥ ") + f"{t.limit:g}"
    floor = "" if t.floor is None else f"{t.floor:.3g}"
    return [t.name, f"{t.measured:.3g}", limit, floor, t.verdict, t.detail]


def rows_table(result: BenchResult, machine: dict[str, str]) -> tables.Table:
    title = (f"bench: {result.problem}; {machine_line(machine)}; roofline {result.roofline_gflops:.0f} GFLOP/s "
             f"(best GEMM of {len(result.peak)} shapes); {SAME}: against autograd computing the input's gradient "
             f"where the variant does (+x.g, notebook), interleaved; {COMMON}: against autograd without it, for "
             f"every row")  # fmt: skip
    return tables.Table(title, COLUMNS, [row_cells(r) for r in result.rows], align="ll", styles=STYLES)


def targets_table(judged: list[Target]) -> tables.Table:
    title = ("targets, as measured in this run (floor: the same ratio for the least the pass can take, its products "
             "timed bare, and for the speed-up with the backward's unavoidable elementwise passes)")
    return tables.Table(title, TARGET_COLUMNS, [target_cells(t) for t in judged], align="lrrrrl", styles=STYLES)


def extra_line(extra: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3g}" for k, v in extra.items())


def markdown(result: BenchResult, judged: list[Target], extra: dict[str, float], machine: dict[str, str]) -> str:
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in result.peak.items())
    return "\n\n".join([tables.to_markdown(rows_table(result, machine)),
                        f"GEMM GFLOP/s: {peaks}; roofline {result.roofline_gflops:.0f}.",
                        tables.to_markdown(targets_table(judged), level=2), extra_line(extra)]) + "\n"  # fmt: skip


def as_json(result: BenchResult, judged: list[Target], extra: dict[str, float], machine: dict[str, str]) -> dict:
    return {
        "problem": result.problem,
        "machine": machine,
        "peak_gflops": result.peak,
        "rows": [asdict(r) for r in result.rows],
        "targets": [asdict(t) | {"met": t.met, "out_of_reach": t.out_of_reach} for t in judged],
        "extra": extra,
    }


def figure(result: BenchResult) -> Figure:
    """Backward medians per variant, with the roofline, the products alone and autograd as lines. Margins fixed in
    inches (figures.py's rule: no tight_layout), so the variants' names fit whatever the number of rows."""
    rows = [r for r in result.rows if r.pass_ == "backward"]
    width, height = 8.5, 0.35 * len(rows) + 1.5  # the names take 2.3 in on the left
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=2.3 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.35 / height)
    ax = fig.subplots()
    ax.barh([r.variant for r in rows], [r.median_ms for r in rows], xerr=[r.iqr_ms / 2 for r in rows], capsize=2)
    gemms, ref = find(result.rows, GEMMS, "backward"), find(result.rows, REFERENCE, "backward")
    roofline_ms = gemms.gflop / result.roofline_gflops * 1e3
    ax.axvline(roofline_ms, color="k", ls=":", label=f"roofline, backward without x.g ({roofline_ms:.1f} ms)")
    ax.axvline(gemms.median_ms, color="C2", ls="-.", label=f"its products timed alone ({gemms.median_ms:.1f} ms)")
    ax.axvline(ref.median_ms, color="C3", ls="--", label=f"{REFERENCE}, no x.g ({ref.median_ms:.1f} ms)")
    ax.invert_yaxis()
    ax.set(xlabel="backward, median ms (bars: IQR)", title=result.problem)
    ax.legend(fontsize=8)
    return fig


def metric_name(row: PassTiming) -> str:
    """`bench/module_notebook/forward_and_backward_ms`: what MLflow allows in a metric name."""
    variant = row.variant.replace(" +x.g", "_input_grad")
    variant = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", variant)).strip("_")  # "lean (compiled)": lean_compiled
    return f"bench/{variant}/{row.pass_.replace('+', '_and_')}_ms"


def target_metric(target: Target) -> str:
    """`target/lean_backward_autograd_backward`: a target's measured value as an MLflow metric name."""
    return "target/" + re.sub(r"[^a-z0-9]+", "_", target.name.lower()).strip("_")


def metrics(result: BenchResult, judged: list[Target], extra: dict[str, float]) -> dict[str, float]:
    out = {metric_name(r): r.median_ms for r in result.rows}
    out |= {metric_name(r).removesuffix("_ms") + "_vs_autograd": r.vs_autograd for r in result.rows}
    out |= {metric_name(r).removesuffix("_ms") + "_vs_autograd_no_xg": r.vs_autograd_no_xg for r in result.rows}
    out |= {target_metric(t): t.measured for t in judged}
    return out | {f"bench/gemm_{k}_gflops": v for k, v in result.peak.items()} | extra
