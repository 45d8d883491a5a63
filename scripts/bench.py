"""The benchmark: `python scripts/bench.py [group=option ...] [--min-run-time S] [--sweep]` (see --help).

Hydra composes the problem (the default: MNIST's 50,000 training rows, 784-80-1); everything is measured in this
one process, side by side, and logged as a run of the MLflow experiment `bench`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from backprop_lab import redaction, stop
from backprop_lab.entry import compose
from backprop_lab.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "scripts" / "run.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for the problem, e.g. model=deep data.n_train=10000"
    )
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement (default 0.5)")
    parser.add_argument("--sweep", action="store_true", help="also time a 12-job sweep's per-job overhead (~1 min)")
    parser.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    args = parser.parse_args()

    redaction.protect_process()
    stop.install()
    try:
        cfg = compose(args.overrides)
    except UserError as e:
        sys.exit(f"error: {e}")

    from rich.console import Console

    from backprop_lab import bench, data, environment, init, tracking

    console = Console(width=None if sys.stdout.isatty() else 150)
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        # the pipeline around the compute, each in a fresh process, before anything else grows this one's children
        extra["default_run_peak_rss_gib"], _ = bench.peak_rss_of([sys.executable, str(RUN), "timing=fast"], Path(tmp))
        for name, argv in {"help": ["--help"], "cfg_job": ["--cfg", "job"], "config_error": ["impl=nope"]}.items():
            extra[f"{name}_s"] = bench.seconds_of([sys.executable, str(RUN), *argv], Path(tmp))
        if args.sweep:
            with console.status("a 12-job sweep on the basic launcher, for the per-job overhead"):
                extra |= bench.sweep_overhead(RUN, Path(tmp), args.overrides)

    device = environment.resolve_device(cfg.device)
    d = data.prepare(cfg.data, cfg.seed, device)
    widths = list(cfg.model.widths)
    params = {k: p.to(device) for k, p in init.init_params(widths, cfg.init.scheme, cfg.init.mode, cfg.seed).items()}
    with console.status("measuring") as status:
        result = bench.run_bench(params, d.x_train, d.y_train, cfg.model.relu_shift, widths, args.min_run_time,
                                 cfg.check, progress=lambda name: status.update(f"measuring {name}"))  # fmt: skip
    result.extra = extra
    result.targets.append(bench.Target("default run's peak RSS, GiB", extra["default_run_peak_rss_gib"], 1.5))
    result.targets.append(bench.Target("--cfg job, s (no torch, no MLflow)", extra["cfg_job_s"], 1.5))
    result.targets.append(bench.Target("config error, s", extra["config_error_s"], 1.5))
    if "overhead_median_s" in extra:
        result.targets.append(
            bench.Target("per-job overhead in a 12-job sweep, median s", extra["overhead_median_s"], 0.5)
        )
    console.print(bench.table(result))
    console.print(bench.targets_table(result))
    console.print("  ".join(f"{k} {v:.3g}" for k, v in extra.items()))

    if not args.no_log:
        uri, artifacts = tracking.resolve_store(cfg.tracking.uri, Path.cwd())
        tags = environment.git_state() | {"device": str(device), "problem": result.problem}
        with tracking.tracked_run(uri, "bench", f"bench {result.problem}"[:250], tags, artifacts) as ref:
            tracking.log_params({"overrides": " ".join(args.overrides) or "(none)", "min_run_time": args.min_run_time})
            metrics = {bench.metric_name(r): r.median_ms for r in result.rows}
            metrics |= {bench.metric_name(r).removesuffix("_ms") + "_vs_autograd": r.vs_autograd for r in result.rows}
            metrics |= {bench.target_metric(g): g.measured for g in result.targets}
            metrics |= {f"bench/gemm_{k}_gflops": v for k, v in result.peak.items()} | extra
            tracking.log_metrics(metrics)
            tracking.log_json(bench.as_json(result), "bench.json")
            tracking.log_text(bench.markdown(result), "bench.md")
            tracking.log_json(environment.device_info(device), "device.json")
            tracking.log_figure(bench.figure(result), "figures/backward.png")
        console.print(f"logged as run {ref.run_id} of the MLflow experiment 'bench'")
    return 0 if all(t.met for t in result.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
