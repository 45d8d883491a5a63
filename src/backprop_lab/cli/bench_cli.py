"""The benchmark: `python scripts/bench.py [group=option ...] [--min-run-time S] [--sweep] [--no-log]`.

Hydra composes the problem (the default: MNIST's 50,000 training rows, 784-80-1). Every implementation is measured
in this one process, side by side; the pipeline around the compute (a default run's memory, start-up, a sweep's
per-job overhead) in fresh processes. The run is logged to the configured MLflow experiment, `bench` unless an
override names another. The exit code is 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from backprop_lab import cli
from backprop_lab.bench import bench_processes
from backprop_lab.cli.entry import compose
from backprop_lab.core.errors import ConfigError
from backprop_lab.core.names import RELU
from backprop_lab.tracking import store

if TYPE_CHECKING:
    from backprop_lab.bench import BenchResult
    from backprop_lab.bench.targets import Target

EXPERIMENT = "bench"  # the default, before the user's overrides: `tracking.experiment=` after it wins


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the problem, e.g. model=deep")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement (default 0.5)")
    parser.add_argument("--sweep", action="store_true", help="also time a sweep's per-job overhead (~1 min)")
    parser.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows (~1 min)")
    return parser.parse_args(argv)


def measure_problem(cfg, min_run_time: float, console, compiled: bool = True):
    from backprop_lab import bench
    from backprop_lab.study import data, init
    from backprop_lab.tracking import environment

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


def log(cfg, args, device, result: BenchResult, judged: list[Target], extra: dict, machine: dict[str, str]) -> str:
    from backprop_lab import tracking
    from backprop_lab.bench import bench_render
    from backprop_lab.tracking import environment, lifecycle

    uri, artifacts = store.resolve_store(cfg.tracking.uri, Path.cwd())
    tags = environment.git_state() | {f"machine.{k}": v for k, v in machine.items()} | {
        "device": str(device), "problem": result.problem, "overrides": " ".join(args.overrides) or "(none)",
        "min_run_time": str(args.min_run_time)}  # fmt: skip
    name = f"bench {result.problem}"[:250]
    with lifecycle.tracked_run(uri, cfg.tracking.experiment, name, tags, artifacts) as ref:
        tracking.log_metrics(bench_render.metrics(result, judged, extra))
        tracking.log_json(bench_render.as_json(result, judged, extra, machine), "bench.json")
        tracking.log_text(bench_render.markdown(result, judged, extra, machine), "bench.md")
        tracking.log_json(environment.device_info(device), "device.json")
        tracking.log_figure(bench_render.figure(result), "figures/backward.png")
    return ref.run_id


def bench(args: argparse.Namespace) -> int:
    cfg = compose([f"tracking.experiment={EXPERIMENT}", *args.overrides])
    if cfg.model.activation != RELU:  # its rows are every implementation's, most of which write their ReLU in
        raise ConfigError(f"model.activation: the bench times the lesson's ReLU nets (relu), got "
                          f"{cfg.model.activation}; a linear stack is timed by its runs (scripts/run.py)")  # fmt: skip

    from rich.console import Console

    from backprop_lab.bench import bench_render, targets
    from backprop_lab.core import tables
    from backprop_lab.tracking import environment

    console = Console(width=None if sys.stdout.isatty() else 150)
    extra = bench_processes.around_the_compute(args.overrides, args.sweep, console)
    result, device = measure_problem(cfg, args.min_run_time, console, compiled=not args.no_compile)
    extra |= result.compile_s
    judged, machine = targets.judge(result.rows, extra), environment.machine()
    console.print(tables.to_rich(bench_render.rows_table(result, machine)))
    console.print(tables.to_rich(bench_render.targets_table(judged)))
    console.print(bench_render.extra_line(extra))
    if not args.no_log:
        run_id = log(cfg, args, device, result, judged, extra, machine)
        console.print(f"logged as run {run_id} of the MLflow experiment {cfg.tracking.experiment!r}")
    return 0 if all(t.met for t in judged) else 1


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    return cli.run(lambda: bench(args), "the bench is not finished")
