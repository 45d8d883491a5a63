"""The study as one function of a config, in the lesson's order: data, init, forward, the check of the backward,
timing. Each stage is a function that returns its result; recording.py logs each result as soon as its stage is
done, so that a failure keeps what came before."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig
from rich.console import Console

from backprop_lab.core import names, stop
from backprop_lab.core.errors import UserError
from backprop_lab.impls import timing
from backprop_lab.study import backward, bugs, data, forward, grad_check, recording, stages, verdicts
from backprop_lab.tracking import job, lifecycle, run_names


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

    @classmethod
    def of(cls, run: job.Job, d: data.Data, initialized: stages.Initialized, layers: list[forward.LayerStats],
           checked: backward.Checked, verdict: str, timed: timing.Timing, objective: Optional[float]) -> Result:
        return cls(run.ref, run.name, *run.addresses(), d.stats, d.normalized_ok, initialized.stats, layers,
                   checked.loss, checked.checks, checked.all_close, grad_check.first_divergent(checked.checks),
                   verdict, timed, run.wall, objective)  # fmt: skip


def run(cfg: DictConfig, overrides: list[str], launch_dir: Path, console: Optional[Console] = None,
        parent_run_id: Optional[str] = None, job_tags: Optional[dict[str, str]] = None,
        refused: Optional[Exception] = None) -> Result:  # fmt: skip
    """One run of the study, on a config validated where it entered; a sweep's job refused there (`refused`) ends
    its child run FAILED with the reason."""
    console = console or Console(stderr=True)
    stop.check()  # a sweep's next job does not start after a stop was asked for
    widths, shift, factor, seed = list(cfg.model.widths), cfg.model.relu_shift, cfg.check.factor, cfg.seed
    activation = cfg.model.activation
    scheme, bug, input_grad = (cfg.init.scheme, cfg.init.mode, cfg.init.gain), cfg.bug.name, cfg.impl.compute_input_grad
    min_run_time, threads = cfg.timing.min_run_time, cfg.timing.num_threads or torch.get_num_threads()
    data_cfg, objective_name = cfg.data, cfg.objective
    setup = None if parent_run_id else stages.set_up(cfg, launch_dir)  # bad input outside a sweep creates no run
    try:
        with job.tracked_job(cfg, overrides, launch_dir, parent_run_id, job_tags) as run_:
            setup = setup or _set_up_in_run(cfg, launch_dir, refused)
            recording.record_setup(setup, threads, run_.git_diff)

            with console.status("data: read, verify, normalize"), run_.timed("data_s"):
                d = data.prepare_once(data_cfg, seed, setup.device)
            recording.record_data(d, data.dataset_input(data_cfg, seed, d))

            with console.status("init, forward, backward against autograd"), run_.timed("check_s"):
                initialized = stages.initialize(widths, *scheme, seed, setup)
                x, y = d.x_train.to(setup.dtype), d.y_train.to(setup.dtype)
                layers = forward.activation_stats(x, initialized.params, shift, activation)
                checked = backward.run_check(setup.code, initialized.params, x, y, shift, input_grad, factor, bug,
                                             activation=activation)  # fmt: skip
            predicted = stages.predict(widths, *scheme, d.stats, shift, checked.layer_stats, activation)
            expected = None if bug == names.NONE else bugs.expected_node(bug, widths)
            recording.record_check(initialized, layers, checked, predicted, factor, setup.dtype, expected, run_.name,
                                   setup.code)

            timing_what = f"timing forward and backward ({min_run_time:g} s each, {threads} threads)"
            with console.status(timing_what), run_.timed("timing_s"):
                timed = stages.time(setup, initialized.params, x, y, shift, input_grad, checked.input_grad,
                                    min_run_time, threads, activation)  # fmt: skip
            recording.record_timing(timed, widths, x.shape[0], checked.input_grad)
            objective = stages.objective(objective_name, layers, checked, timed)
            recording.record_objective(objective)

            verdict = verdicts.verdict_line(checked.checks, factor, setup.dtype, checked.mistake, setup.code.style,
                                            setup.code.defined)  # fmt: skip
            recording.record_end(run_.clock_stopped(), run_names.description(run_.name, verdict, timed.ratio_line()))
    finally:
        if setup is not None:
            setup.close()
    return Result.of(run_, d, initialized, layers, checked, verdict, timed, objective)


def _set_up_in_run(cfg: DictConfig, launch_dir: Path, refused: Optional[Exception]) -> stages.Setup:
    """A sweep's job set up inside its run: a refusal ends it FAILED saying why, still holding the learner's file."""
    try:
        if refused is not None:
            raise refused
        return stages.set_up(cfg, launch_dir)
    except UserError:
        recording.record_unloaded_code(cfg.impl.code, launch_dir)
        raise
