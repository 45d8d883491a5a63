"""The study as one function of a config, in the notebook's order: normalize, init, forward, backward and check,
time, and log each stage to MLflow as soon as it is done (so a failure keeps what came before)."""

from __future__ import annotations

import hashlib
import math
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from backprop_lab import (
    backward,
    data,
    environment,
    figures,
    forward,
    impls,
    init,
    owner,
    stop,
    store,
    timing,
    tracking,
)
from backprop_lab.impls import autograd
from backprop_lab.validation import validate

_previous_job_end: Optional[float] = None  # perf_counter() when this process's last job ended


@dataclass
class Result:
    run: tracking.RunRef
    run_name: str
    ui_command: str
    data_stats: dict[str, float]
    normalized_ok: bool
    init_stats: dict[str, float]
    layers: list[forward.LayerStats]
    loss: float
    diffs: list[backward.GradDiff]
    all_close: bool
    timing: timing.Timing
    wall: dict[str, float] = field(default_factory=dict)


@contextmanager
def _job_clock() -> Iterator[None]:
    """Marks when a job ends, failed or not, so the next job in this process can tell its overhead."""
    global _previous_job_end
    try:
        yield
    finally:
        _previous_job_end = time.perf_counter()


def run_name(cfg: DictConfig) -> str:
    parts = [cfg.impl.name, cfg.init.scheme, cfg.data.name] + ([cfg.model.name] if cfg.model.name != "seed" else [])
    return "·".join(parts)


def log_git_diff(cfg: DictConfig) -> dict[str, str]:
    """Log the uncommitted changes (redacted) when asked and not too large; return the tags that describe them."""
    diff = environment.git_diff().encode()
    tags = {"git.diff_sha256": hashlib.sha256(diff).hexdigest(), "git.diff_bytes": str(len(diff))}
    if cfg.git_diff == "patch" and len(diff) <= cfg.git_diff_max_bytes:
        tracking.log_text(diff.decode(errors="replace"), "git/diff.patch")
        return tags | {"git.diff": "logged as git/diff.patch"}
    why = "tracking.git_diff=hash" if cfg.git_diff == "hash" else "over tracking.git_diff_max_bytes"
    return tags | {"git.diff": f"hash only ({why})"}


def checked_device(cfg: DictConfig) -> torch.device:
    validate(cfg)
    return environment.resolve_device(cfg.device)


def run(
    cfg: DictConfig,
    overrides: list[str],
    launch_dir: Path,
    console: Optional[Console] = None,
    parent_run_id: Optional[str] = None,
    job_tags: Optional[dict[str, str]] = None,
) -> Result:
    console = console or Console(stderr=True)
    stop.check()  # a sweep's next job does not start after a stop was asked for
    # bad input outside a sweep creates no run; inside one it must leave a FAILED child that says why
    device = None if parent_run_id else checked_device(cfg)
    uri, artifact_location = store.resolve_store(cfg.tracking.uri, launch_dir)
    name = run_name(cfg)
    tags = environment.git_state() | {"overrides": " ".join(overrides) or "(none)"} | (job_tags or {})
    t_start = time.perf_counter()
    # the overhead before this job: imports and setup for a process's first job, Hydra's work between jobs after
    wall = {"startup_s": t_start - _previous_job_end if _previous_job_end else owner.process_age_s() or 0.0}

    with (
        _job_clock(),
        tracking.tracked_run(uri, cfg.tracking.experiment, name, tags, artifact_location, parent_run_id) as ref,
    ):
        # what the run was asked to do comes first, so that a job failing its checks can still be read and rerun
        tracking.log_params(OmegaConf.to_container(cfg))
        tracking.log_text(OmegaConf.to_yaml(cfg), "config/config.yaml")
        tracking.log_json({"overrides": list(overrides)}, "config/overrides.json")
        device = device or checked_device(cfg)
        threads = cfg.timing.num_threads or torch.get_num_threads()
        tracking.set_tags({"device": str(device)} | environment.reproducibility_tags(cfg.seed, threads))
        if tags.get("git.dirty") == "true":
            tracking.set_tags(log_git_diff(cfg.tracking))
        tracking.log_json(environment.device_info(device), "device.json")

        with console.status("data: read, verify, normalize"):
            t = time.perf_counter()
            d = data.prepare_once(cfg.data, cfg.seed, device)
            wall["data_s"] = time.perf_counter() - t
        tracking.log_metrics(d.stats | {"data/normalized_ok": float(d.normalized_ok)})
        tracking.set_tags({"data.sha256": d.sha256 or "none (generated from the seed)"})

        with console.status("init, forward, backward against autograd"):
            t = time.perf_counter()
            params = init.init_params(list(cfg.model.widths), cfg.init.scheme, cfg.init.mode, cfg.seed)
            init_stats = init.param_stats(params)
            params = {k: p.to(device) for k, p in params.items()}
            shift = cfg.model.relu_shift
            layers = forward.activation_stats(d.x_train, params, shift)

            net = impls.build(cfg.impl.name, params, shift, cfg.impl.compute_input_grad)
            loss = net.forward(d.x_train, d.y_train).item()
            grads = net.backward()
            reference = autograd.Net(params, shift, input_grad="x" in grads)  # asked for what the net computed
            reference.forward(d.x_train, d.y_train)
            ref_grads = reference.backward()
            diffs = backward.compare(grads, ref_grads, cfg.check.rtol, cfg.check.atol)
            elementwise = backward.elementwise_diffs(grads, ref_grads)
            wall["check_s"] = time.perf_counter() - t

        by_layer = {s.layer: s.metrics() for s in layers}
        by_layer[0] = init_stats
        tracking.log_steps(by_layer)
        finite = forward.all_finite(layers) and math.isfinite(loss)
        if not finite:  # exploding or vanishing statistics are a result of the init, recorded, not a crash
            tracking.set_tags({"non_finite": "activations or loss overflowed; see act/* by step and loss"})
        grad_metrics = backward.metrics(diffs)
        tracking.log_metrics({"loss": loss, "act/all_finite": float(finite)} | grad_metrics)
        tracking.log_json([diff.row() for diff in diffs], "grad_diff.json")
        tracking.log_figure(figures.activation_figure(layers, name), "figures/activations.png")
        tracking.log_figure(figures.grad_diff_figure(elementwise, name), "figures/grad_diff.png")

        with console.status(f"timing forward and backward ({cfg.timing.min_run_time:g} s each, {threads} threads)"):
            t = time.perf_counter()
            timed = timing.time_passes(net, reference, d.x_train, d.y_train, cfg.timing.min_run_time, threads)
            wall["timing_s"] = time.perf_counter() - t
        tracking.log_metrics(timed.metrics())

        wall["run_s"] = time.perf_counter() - t_start
        wall["logging_s"] = wall["run_s"] - wall["data_s"] - wall["check_s"] - wall["timing_s"]
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        tracking.log_metrics({f"wall/{k}": v for k, v in wall.items()} | {"mem/peak_rss_mb": peak_rss_mb})

    return Result(
        ref,
        name,
        store.ui_command(uri, launch_dir),
        d.stats,
        d.normalized_ok,
        init_stats,
        layers,
        loss,
        diffs,
        bool(grad_metrics["grad/all_close"]),
        timed,
        wall,
    )
