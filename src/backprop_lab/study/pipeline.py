"""The study as one function of a config, in the lesson's order: data, init, forward, the check of the backward,
timing. Each stage is a function that returns its result; recording.py logs each result as soon as its stage is
done, so that a failure keeps what came before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from backprop_lab.config import run_params
from backprop_lab.core import names, stop
from backprop_lab.core.errors import UserError
from backprop_lab.impls import timing
from backprop_lab.study import backward, bugs, data, forward, grad_check, recording, stages, verdicts
from backprop_lab.tracking import environment, lifecycle, owner, run_names, store, sweep_env

_previous_job_end: Optional[float] = None  # perf_counter() when this process's last job ended


@dataclass
class Result:
    run: lifecycle.RunRef
    run_name: str
    ui_command: str
    runs_table_url: str  # the experiment's runs table in the UI that ui_command serves
    run_url: str  # this run's page there
    data_stats: dict[str, float]
    normalized_ok: bool
    init_stats: dict[int, dict[str, float]]  # by layer
    layers: list[forward.LayerStats]
    loss: float
    checks: list[grad_check.NodeCheck]  # every node, in backward order
    all_close: bool  # every node conclusively close
    first_divergent: str
    verdict: str  # the check's answer in a line (verdicts.verdict_line)
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


@contextmanager
def _timed(wall: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    wall[key] = time.perf_counter() - start


def run(
    cfg: DictConfig,
    overrides: list[str],
    launch_dir: Path,
    console: Optional[Console] = None,
    parent_run_id: Optional[str] = None,
    job_tags: Optional[dict[str, str]] = None,
    refused: Optional[Exception] = None,
) -> Result:
    """One run of the study, on a config validated where it entered; a sweep's job refused there (`refused`) ends
    its child run FAILED with the reason."""
    console = console or Console(stderr=True)
    stop.check()  # a sweep's next job does not start after a stop was asked for
    # what the stages need, read here once: below, the pipeline hands them plain values (and data its group)
    widths, shift, factor, seed = list(cfg.model.widths), cfg.model.relu_shift, cfg.check.factor, cfg.seed
    scheme, bug, impl = (cfg.init.scheme, cfg.init.mode, cfg.init.gain), cfg.bug.name, cfg.impl
    input_grad = impl.compute_input_grad
    min_run_time, num_threads, objective_name = cfg.timing.min_run_time, cfg.timing.num_threads, cfg.objective
    tracking_cfg, data_cfg = cfg.tracking, cfg.data
    uri_given, experiment = tracking_cfg.uri, tracking_cfg.experiment
    diff = tracking_cfg.git_diff, tracking_cfg.git_diff_max_bytes
    # bad input outside a sweep creates no run; inside one it must leave a FAILED child that says why
    setup = None if parent_run_id else stages.set_up(cfg, launch_dir)
    try:
        uri, artifact_location = store.resolve_store(uri_given, launch_dir)
        name = run_names.run_name(cfg, sweep_env.swept_from_env() if parent_run_id else None)
        config = OmegaConf.to_container(cfg)
        identity = {names.CONFIG_TAG: run_params.config_digest(config),
                    names.SHAPE_TAG: run_params.shape_digest(config)}  # fmt: skip
        tags = environment.git_state() | {"overrides": " ".join(overrides) or "(none)"} | identity | (job_tags or {})
        t_start = time.perf_counter()
        # the overhead before this job: imports and setup for a process's first job, Hydra's work between jobs after
        wall = {"startup_s": t_start - _previous_job_end if _previous_job_end else owner.process_age_s() or 0.0}

        with (
            _job_clock(),
            lifecycle.tracked_run(uri, experiment, name, tags, artifact_location, parent_run_id) as ref,
        ):
            recording.record_request(config, OmegaConf.to_yaml(cfg), overrides)
            try:
                if refused is not None:  # a sweep's job whose config was refused where it entered
                    raise refused
                setup = setup or stages.set_up(cfg, launch_dir)
            except UserError:  # a sweep's job: its FAILED run still holds the learner's file, as it was
                recording.record_unloaded_code(impl.code, launch_dir)
                raise
            threads = num_threads or torch.get_num_threads()
            git_diff = environment.git_diff_record(*diff) if tags.get("git.dirty") == "true" else None
            recording.record_setup(setup, threads, git_diff)

            with console.status("data: read, verify, normalize"), _timed(wall, "data_s"):
                d = data.prepare_once(data_cfg, seed, setup.device)
            recording.record_data(d, data.dataset_input(data_cfg, seed, d))

            with console.status("init, forward, backward against autograd"), _timed(wall, "check_s"):
                initialized = stages.initialize(widths, *scheme, seed, setup)
                x, y = d.x_train.to(setup.dtype), d.y_train.to(setup.dtype)
                layers = forward.activation_stats(x, initialized.params, shift)
                checked = backward.run_check(setup.code, initialized.params, x, y, shift, input_grad, factor, bug)
            predicted = stages.predict(widths, *scheme, d.stats, shift, checked.layer_stats)
            expected = None if bug == names.NONE else bugs.expected_node(bug, widths)
            recording.record_check(initialized, layers, checked, predicted, factor, setup.dtype, expected, name)

            with (
                console.status(f"timing forward and backward ({min_run_time:g} s each, {threads} threads)"),
                _timed(wall, "timing_s"),
            ):
                timed = stages.time(setup, initialized.params, x, y, shift, input_grad, checked.input_grad,
                                    min_run_time, threads)  # fmt: skip
            recording.record_timing(timed, widths, x.shape[0], checked.input_grad)
            objective = stages.objective(objective_name, layers, checked, timed)
            if objective is not None:
                recording.record_objective(objective)

            verdict = verdicts.verdict_line(checked.checks, factor, setup.dtype, checked.mistake, setup.code.style,
                                              setup.code.defined)  # fmt: skip
            wall["run_s"] = time.perf_counter() - t_start
            wall["logging_s"] = wall["run_s"] - wall["data_s"] - wall["check_s"] - wall["timing_s"]
            recording.record_end(wall, run_names.description(name, verdict, timed.ratio_line()))
    finally:
        if setup is not None:
            setup.close()

    return Result(
        ref,
        name,
        store.ui_command(uri, launch_dir),
        store.ui_url(uri, ref.experiment_id),
        store.ui_url(uri, ref.experiment_id, ref.run_id),
        d.stats,
        d.normalized_ok,
        initialized.stats,
        layers,
        checked.loss,
        checked.checks,
        checked.all_close,
        grad_check.first_divergent(checked.checks),
        verdict,
        timed,
        wall,
        objective,
    )
