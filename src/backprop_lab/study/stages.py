"""The study's stages that have no module of their own: setting up (the config's combination checked, the device,
the implementation's code loaded), the init, theory's prediction, and the objective a search minimizes. Each takes
what it needs and returns its result; none of them logs (recording.py does)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

from backprop_lab import impls, isolation
from backprop_lab.config import objectives
from backprop_lab.core.errors import ConfigError
from backprop_lab.core.names import BACK_STD, BUG_IMPL, DATA_TRAIN_MEAN, DATA_TRAIN_STD, NONE, RELU, USER_IMPL
from backprop_lab.impls import protocol, timing
from backprop_lab.impls.timing import Timing
from backprop_lab.isolation.submission import Submission
from backprop_lab.study import bugs, forward, grad_check, init, theory
from backprop_lab.study.backward import Checked
from backprop_lab.tracking import environment


@dataclass
class Setup:
    device: torch.device
    dtype: torch.dtype
    # loaded once for the run: the lab's own code, or a learner's in its own process (what is logged, checked and
    # timed is one version of their file); close() stops that process
    code: protocol.Code | Submission

    def close(self) -> None:
        if isinstance(self.code, Submission):
            self.code.close()


def set_up(cfg: DictConfig, launch_dir: Path) -> Setup:
    """On a config whose values were checked where it entered (config/validation.py), what only the pipeline can check:
    the implementation's code loads, the bug fits the model and the implementation, the device is there and the
    dtype runs on it. Called before a single run exists, so that bad input creates none; inside a sweep's child, so
    that a bad job leaves a FAILED child that says why. A learner's code is started in its own process: close() the
    Setup."""
    bugs.check(cfg.bug.name, list(cfg.model.widths))
    if cfg.bug.name != NONE and cfg.impl.name != BUG_IMPL:
        raise ConfigError(f"bug.name: {cfg.bug.name} is put into impl={BUG_IMPL}'s backward; got impl={cfg.impl.name}")
    impls.check_activation(cfg.impl.name, cfg.impl.code, cfg.model.activation)
    device, dtype = environment.resolve_device(cfg.device), getattr(torch, cfg.dtype)
    impl = cfg.impl
    if impl.name == USER_IMPL or not impls.is_lab_code(impl.code):  # a learner's: loaded in its own process, last
        return Setup(device, dtype, isolation.open_submission(impl.code, launch_dir, impl.time_limit_s,
                                                          impl.memory_limit_gib))  # fmt: skip
    code = impls.load(impl.code)
    tiny = {k: p.to(device, dtype) for k, p in init.init_params([3, 2, 1], "xavier", "fan_in", 0).items()}
    protocol.check_dtype(code, impl.name, tiny, cfg.model.relu_shift, impl.compute_input_grad)
    return Setup(device, dtype, code)


def time(setup: Setup, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, shift: float,
         input_grad: bool, reference_input_grad: bool, min_run_time: float, threads: int,
         activation: str = RELU) -> Timing:  # fmt: skip
    """Stage 5: the lab's own implementation timed here, a learner's in its own process (on the check's inputs)."""
    if isinstance(setup.code, Submission):
        return setup.code.time(shift, input_grad, reference_input_grad, min_run_time, threads)
    return timing.time_implementation(setup.code, params, x, y, shift, input_grad, reference_input_grad,
                                      min_run_time, threads, activation)  # fmt: skip


@dataclass
class Initialized:
    params: dict[str, torch.Tensor]  # on the run's device, in its dtype
    stats: dict[int, dict[str, float]]  # init/* by layer, of the draw itself (before the cast to the run's dtype)


def initialize(widths: list[int], scheme: str, mode: str, gain: float, seed: int, setup: Setup) -> Initialized:
    params = init.init_params(widths, scheme, mode, seed, gain)
    stats = init.param_stats(params)
    return Initialized({k: p.to(setup.device, setup.dtype) for k, p in params.items()}, stats)


@dataclass
class Predicted:
    forward: list[theory.Layer]  # by layer, from the data's mean and std
    backward: dict[int, float]  # the gradient's std at each layer's output, from the measured one at the output


def predict(widths: list[int], scheme: str, mode: str, gain: float, data_stats: dict[str, float], shift: float,
            back_stats: dict[int, dict[str, float]], activation: str = RELU) -> Predicted:  # fmt: skip
    """What theory predicts for this init, to set beside what was measured."""
    output_grad_std = back_stats[len(widths) - 1][BACK_STD]
    data_moments = data_stats[DATA_TRAIN_MEAN], data_stats[DATA_TRAIN_STD]
    return Predicted(theory.forward(widths, scheme, mode, *data_moments, shift, gain, activation),
                     theory.backward(widths, scheme, mode, output_grad_std, gain, activation))  # fmt: skip


def objective(name: str, layers: list[forward.LayerStats], checked: Checked, timed: Timing) -> Optional[float]:
    """The value a search minimizes, when the config names one; NaN for a trial whose gradients are wrong: it
    answers nothing."""
    if name == NONE:
        return None
    measured = grad_check.metrics(checked.checks) | forward.depth_summaries(layers, checked.layer_stats)
    value = objectives.value(name, measured | timed.metrics())
    return value if checked.all_close else math.nan
