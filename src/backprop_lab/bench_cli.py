"""The benchmark: `python scripts/bench.py [group=option ...] [--min-run-time S] [--sweep] [--no-log]`.

Hydra composes the problem (the default: MNIST's 50,000 training rows, 784-80-1). Every implementation is measured
in this one process, side by side; the pipeline around the compute (a default run's memory, start-up, a sweep's
per-job overhead) in fresh processes. The run is logged to the configured MLflow experiment, `bench` unless an
override names another. The exit code is 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from backprop_lab import impls, redaction, runs, stop, store, streams, tables
from backprop_lab.entry import compose
from backprop_lab.errors import UserError

if TYPE_CHECKING:
    from backprop_lab.bench import BenchResult, Row
    from backprop_lab.targets import Target

EXPERIMENT = "bench"  # the default, before the user's overrides: `tracking.experiment=` after it wins
SWEEP_INITS = ("xavier", "kaiming_uniform")  # with every implementation: the sweep whose per-job overhead is timed
SWEEP_EXPERIMENT = "bench-sweep"  # in a store of its own, in a temporary directory
DEFAULT_RUN_EXPERIMENT = "bench-default-run"  # the same
STARTUPS = {"help": ["--help"], "cfg_job": ["--cfg", "job"], "config_error": ["impl=nope"]}
FAILS = {"config_error"}  # the start-ups that must end in an error
STYLES = {"yes": "green", "NO": "red", "NO, out of reach": "red", "WRONG": "red"}


class ChildFailed(RuntimeError):
    """A measured process did not end as it should: its time or memory would measure something else."""


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the problem, e.g. model=deep")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement (default 0.5)")
    parser.add_argument("--sweep", action="store_true", help="also time a sweep's per-job overhead (~1 min)")
    parser.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows (~1 min)")
    return parser.parse_args(argv)


# --- the pipeline around the compute, each in a fresh process ---------------------------------------------------


def _entry(*args: str) -> list[str]:
    """The entry point as a user starts it (scripts/run.py is this), from a checkout or an installed copy."""
    return [sys.executable, "-m", "backprop_lab", *args]


def _last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else "(nothing on stderr)"


def peak_rss_gib(args: list[str], cwd: Path) -> float:
    """The peak RSS of one run of the entry point: wait4 reports that child's alone, whatever ran before it."""
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(_entry(*args), cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if child.returncode is None:
                child.kill()
                child.wait()
        if child.returncode != 0:
            err.seek(0)
            raise ChildFailed(f"{' '.join(args)}: exit {child.returncode}: {_last_line(err.read())}")
    return usage.ru_maxrss / 2**20  # Linux reports KiB


def startup_s(args: list[str], cwd: Path, fails: bool, repeat: int = 3) -> float:
    """The best of a few wall times: start-up is what is measured, not the machine's hiccups."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(_entry(*args), cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if (done.returncode != 0) != fails:
            raise ChildFailed(f"{' '.join(args)}: exit {done.returncode}: {_last_line(done.stderr)}")
    return min(times)


def outside_timing_s(metrics: dict[str, float]) -> float:
    """A run's wall time outside its timing stage: start-up, data, check and logging (its `wall/*` metrics)."""
    return metrics["wall/startup_s"] + metrics["wall/run_s"] - metrics["wall/timing_s"]


def default_runs(cwd: Path, overrides: tuple[str, ...] = ("timing=fast",)) -> dict[str, float]:
    """The default run twice in one launch directory, as a user's first and second: the larger peak RSS, and the
    time outside the timing stage on an empty store (the first) and on a warm one (the second); the data cache is
    the user's, warm from this bench."""
    uri, _ = store.resolve_store(None, cwd)
    rss, outside, seen = [], [], set()
    for _ in range(2):
        rss.append(peak_rss_gib([*overrides, f"tracking.experiment={DEFAULT_RUN_EXPERIMENT}"], cwd))
        (new,) = [r for r in runs.experiment_records(uri, DEFAULT_RUN_EXPERIMENT) if r.run_id not in seen]
        seen.add(new.run_id)
        outside.append(outside_timing_s(new.metrics))
    return {"default_run_peak_rss_gib": max(rss), "default_run_first_outside_timing_s": outside[0],
            "default_run_outside_timing_s": outside[1]}  # fmt: skip


def sweep_overhead(cwd: Path, overrides: list[str]) -> dict[str, float]:
    """Median per-job time outside the checked compute and its timing, over a sweep of every implementation."""

    sweep = [f"impl={','.join(impls.built_in())}", f"init={','.join(SWEEP_INITS)}", "timing=fast"]
    where = ["tracking.uri=null", f"tracking.experiment={SWEEP_EXPERIMENT}"]  # the default store, under cwd
    started = time.perf_counter()
    done = subprocess.run(_entry("-m", *overrides, *sweep, *where), cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise ChildFailed(f"the sweep: exit {done.returncode}: {_last_line(done.stderr)}")
    uri, _ = store.resolve_store(None, cwd)
    _, children = runs.sweep_records(uri, runs.latest_sweep(uri, SWEEP_EXPERIMENT))
    overhead = [outside_timing_s(c.metrics) - c.metrics["wall/check_s"] for c in children]
    return {"sweep_jobs": len(children), "sweep_wall_s": wall, "overhead_median_s": statistics.median(overhead),
            "overhead_max_s": max(overhead)}  # fmt: skip


def around_the_compute(overrides: list[str], with_sweep: bool, console) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        with console.status("the default run, twice: its memory and its time outside the timing stage"):
            extra = default_runs(Path(tmp))
        extra |= {f"{name}_s": startup_s(args, Path(tmp), name in FAILS) for name, args in STARTUPS.items()}
        if with_sweep:
            with console.status("a sweep of every implementation, for the per-job overhead"):
                extra |= sweep_overhead(Path(tmp), overrides)
    return extra


# --- the compute ---------------------------------------------------------------------------------------------------


def measure_problem(cfg, min_run_time: float, console, compiled: bool = True):
    from backprop_lab import bench, data, environment, init

    device = environment.resolve_device(cfg.device)
    d = data.prepare(cfg.data, cfg.seed, device)
    widths = list(cfg.model.widths)
    drawn = init.init_params(widths, cfg.init.scheme, cfg.init.mode, cfg.seed, cfg.init.gain)
    params = {k: p.to(device) for k, p in drawn.items()}
    with console.status("measuring") as status:
        say = lambda name: status.update(f"measuring {name}")  # noqa: E731
        result = bench.run_bench(params, d.x_train, d.y_train, cfg.model.relu_shift, widths, min_run_time, cfg.check,
                                 progress=say, compiled=compiled)  # fmt: skip
    return result, device


# --- tables, figure, metrics -------------------------------------------------------------------------------------

COLUMNS = ["variant", "pass", "median ms", "IQR ms", "GFLOP/s", "× autograd", "× roofline", "× GEMMs", "grads"]
TARGET_COLUMNS = ["target", "measured", "limit", "floor", "met", "which"]


def machine_line(machine: dict[str, str]) -> str:
    return f"{machine['cpu']} ({machine['isa']}, {machine['blas']}, {machine['onednn']})"


def row_cells(r: Row) -> list[str]:
    return [r.variant, r.pass_, f"{r.median_ms:.2f}", f"{r.iqr_ms:.2f}", f"{r.gflops:.0f}", f"{r.vs_autograd:.2f}",
            f"{r.vs_roofline:.2f}", f"{r.vs_gemms:.2f}", {True: "ok", False: "WRONG", None: ""}[r.close]]  # fmt: skip


def target_cells(t: Target) -> list[str]:
    limit = ("≤ " if t.below else "≥ ") + f"{t.limit:g}"
    floor = "" if t.floor is None else f"{t.floor:.3g}"
    return [t.name, f"{t.measured:.3g}", limit, floor, t.verdict, t.detail]


def rows_table(result: BenchResult, machine: dict[str, str]) -> tables.Table:
    title = (f"bench: {result.problem}; {machine_line(machine)}; roofline {result.roofline_gflops:.0f} GFLOP/s "
             f"(best GEMM of {len(result.peak)} shapes)")  # fmt: skip
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


def figure(result: BenchResult):
    """Backward medians per variant, with the roofline, the products alone and autograd as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backprop_lab.bench import GEMMS, REFERENCE, find

    rows = [r for r in result.rows if r.pass_ == "backward"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    ax.barh([r.variant for r in rows], [r.median_ms for r in rows], xerr=[r.iqr_ms / 2 for r in rows], capsize=2)
    gemms, ref = find(result.rows, GEMMS, "backward"), find(result.rows, REFERENCE, "backward")
    roofline_ms = gemms.gflop / result.roofline_gflops * 1e3
    ax.axvline(roofline_ms, color="k", ls=":", label=f"roofline, backward without x.g ({roofline_ms:.1f} ms)")
    ax.axvline(gemms.median_ms, color="C2", ls="-.", label=f"its products timed alone ({gemms.median_ms:.1f} ms)")
    ax.axvline(ref.median_ms, color="C3", ls="--", label=f"{REFERENCE} ({ref.median_ms:.1f} ms)")
    ax.invert_yaxis()
    ax.set(xlabel="backward, median ms (bars: IQR)", title=result.problem)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_name(row: Row) -> str:
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
    out |= {target_metric(t): t.measured for t in judged}
    return out | {f"bench/gemm_{k}_gflops": v for k, v in result.peak.items()} | extra


# --- the command -------------------------------------------------------------------------------------------------


def log(cfg, args, device, result: BenchResult, judged: list[Target], extra: dict, machine: dict[str, str]) -> str:
    from backprop_lab import environment, tracking

    uri, artifacts = store.resolve_store(cfg.tracking.uri, Path.cwd())
    tags = environment.git_state() | {f"machine.{k}": v for k, v in machine.items()} | {
        "device": str(device), "problem": result.problem, "overrides": " ".join(args.overrides) or "(none)",
        "min_run_time": str(args.min_run_time)}  # fmt: skip
    name = f"bench {result.problem}"[:250]
    with tracking.tracked_run(uri, cfg.tracking.experiment, name, tags, artifacts) as ref:
        tracking.log_metrics(metrics(result, judged, extra))
        tracking.log_json(as_json(result, judged, extra, machine), "bench.json")
        tracking.log_text(markdown(result, judged, extra, machine), "bench.md")
        tracking.log_json(environment.device_info(device), "device.json")
        tracking.log_figure(figure(result), "figures/backward.png")
    return ref.run_id


def bench(args: argparse.Namespace) -> int:
    cfg = compose([f"tracking.experiment={EXPERIMENT}", *args.overrides])

    from rich.console import Console

    from backprop_lab import environment, targets

    console = Console(width=None if sys.stdout.isatty() else 150)
    extra = around_the_compute(args.overrides, args.sweep, console)
    result, device = measure_problem(cfg, args.min_run_time, console, compiled=not args.no_compile)
    extra |= result.compile_s
    judged, machine = targets.judge(result.rows, extra), environment.machine()
    console.print(tables.to_rich(rows_table(result, machine)))
    console.print(tables.to_rich(targets_table(judged)))
    console.print(extra_line(extra))
    if not args.no_log:
        run_id = log(cfg, args, device, result, judged, extra, machine)
        console.print(f"logged as run {run_id} of the MLflow experiment {cfg.tracking.experiment!r}")
    return 0 if all(t.met for t in judged) else 1


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    redaction.protect_process()
    streams.tolerate_any_encoding()
    stop.install()
    try:
        return bench(args)
    except (UserError, ChildFailed) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # one line, as run and rerun say it; a bench run being logged ends KILLED
        from backprop_lab import tracking

        failed = [f"{run_id} ({why})" for run_id, why in tracking.end_open_runs("KILLED") if why]
        stop.ignore_further()
        print("interrupted: " + (f"could not end {', '.join(failed)}" if failed else "the bench is not finished"),
              file=sys.stderr)  # fmt: skip
        return 130
