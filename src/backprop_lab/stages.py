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

from backprop_lab import bugs, environment, forward, grad_check, impls, init, objectives, theory
from backprop_lab.backward import Checked
from backprop_lab.errors import ConfigError
from backprop_lab.impls import protocol
from backprop_lab.names import NONE
from backprop_lab.timing import Timing
from backprop_lab.validation import validate


@dataclass
class Setup:
    device: torch.device
    dtype: torch.dtype
    code: protocol.Code  # loaded once for the run: what is logged, checked and timed is one version of a user's file


def set_up(cfg: DictConfig, launch_dir: Path, validated: bool) -> Setup:
    """The config's values checked (unless the entry `validated` them), then what only the pipeline can check: the
    implementation's code loads, the bug fits the model and the implementation, the device is there and the dtype
    runs on it. Called before a single run exists, so that bad input creates none; inside a sweep's child, so that a
    bad job leaves a FAILED child that says why."""
    if not validated:
        validate(cfg)
    code = impls.load(cfg.impl.code, launch_dir)
    bugs.check(cfg.bug.name, list(cfg.model.widths))
    if cfg.bug.name != NONE and cfg.impl.name != "functional":
        raise ConfigError(f"bug.name: {cfg.bug.name} is put into impl=functional's backward; got impl={cfg.impl.name}")
    device, dtype = environment.resolve_device(cfg.device), getattr(torch, cfg.dtype)
    protocol.check_dtype(code, cfg.impl.name, device, dtype, cfg.model.relu_shift, cfg.impl.compute_input_grad)
    return Setup(device, dtype, code)


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
            back_stats: dict[int, dict[str, float]]) -> Predicted:  # fmt: skip
    """What theory predicts for this init, to set beside what was measured."""
    output_grad_std = back_stats[len(widths) - 1]["back/std"]
    data_moments = data_stats["data/train_mean"], data_stats["data/train_std"]
    return Predicted(theory.forward(widths, scheme, mode, *data_moments, shift, gain),
                     theory.backward(widths, scheme, mode, output_grad_std, gain))  # fmt: skip


def objective(name: str, layers: list[forward.LayerStats], checked: Checked, timed: Timing) -> Optional[float]:
    """The value a search minimizes, when the config names one; NaN for a trial whose gradients are wrong: it
    answers nothing."""
    if name == NONE:
        return None
    measured = grad_check.metrics(checked.checks) | forward.depth_summaries(layers, checked.layer_stats)
    value = objectives.value(name, measured | timed.metrics())
    return value if checked.all_close else math.nan
