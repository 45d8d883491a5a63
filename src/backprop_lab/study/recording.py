"""What a run records of each stage, under which names: the one place the pipeline writes to MLflow (through
tracking). The pipeline calls each as soon as its stage is done, so that a failure keeps what came before."""

from __future__ import annotations

import hashlib
import math
import resource
from typing import Optional

import torch

from backprop_lab import tracking
from backprop_lab.config import run_params
from backprop_lab.config.objectives import METRIC
from backprop_lab.core.names import (
    ACT_ALL_FINITE,
    CODE_TAG,
    DATA_NORMALIZED_OK,
    MEM_PEAK_RSS_MB,
    NOTE_TAG,
    OWN_PROCESS_TAG,
    THEORY_BACK_STD,
    THEORY_TAG,
    TIME_BACKWARD_GFLOP,
    TIME_FORWARD_GFLOP,
)
from backprop_lab.impls.common import layer_widths
from backprop_lab.impls.protocol import Code
from backprop_lab.impls.timing import Timing
from backprop_lab.isolation.submission import Submission
from backprop_lab.study import figures, forward, grad_check, theory, verdicts
from backprop_lab.study.backward import Checked
from backprop_lab.study.data import Data
from backprop_lab.study.products import pass_flops
from backprop_lab.study.stages import Initialized, Predicted, Setup
from backprop_lab.tracking import environment


def record_setup(setup: Setup, threads: int, git_diff: Optional[environment.GitDiff]) -> None:
    """Where it runs and from what: the resolved device (the config's `auto` says nothing), what a rerun must match,
    the uncommitted changes (`git_diff`, where the checkout is dirty), and a learner's code: the bytes hashed and run,
    and the memory limit its process ran under."""
    tracking.log_params({"device": str(setup.device)})
    tracking.set_tags(environment.reproducibility_tags(threads))
    if git_diff is not None:
        if git_diff.patch is not None:
            tracking.log_text(git_diff.patch, environment.GIT_DIFF_ARTIFACT)
        tracking.set_tags(git_diff.tags)
    tracking.log_json(environment.device_info(setup.device), "device.json")
    code = setup.code
    if isinstance(code, Submission):  # a learner's: run in its own process, within the memory it was given
        tracking.log_params(run_params.own_process(code.memory_limit_gib))
        tracking.set_tags({OWN_PROCESS_TAG: "true", "impl.style": code.style})
        if code.path is not None:
            tracking.log_bytes(code.source, f"code/{code.path.name}")
            tracking.set_tags({CODE_TAG: code.sha256})


def record_unloaded_code(code: str, launch_dir) -> None:
    """A learner's file that did not load (it does not compile, raises, loops at import): its bytes and their hash,
    as a loaded one's, so that its FAILED run shows what failed. Nothing for a name that is no file to read."""
    from backprop_lab.core.errors import ConfigError
    from backprop_lab.isolation.source import source_of

    try:
        path, source = source_of(code, launch_dir)
    except (ConfigError, OSError):
        return
    if path is not None:
        tracking.log_bytes(source, f"code/{path.name}")
        tracking.set_tags({CODE_TAG: hashlib.sha256(source).hexdigest()})


def record_data(d: Data, dataset: tuple[str, str, str, dict, dict]) -> None:
    """The data's statistics, its file's hash, and `dataset` (data.dataset_input) for the runs table."""
    tracking.log_metrics(d.stats | {DATA_NORMALIZED_OK: float(d.normalized_ok)})
    tracking.set_tags({"data.sha256": d.sha256 or "none (generated from the seed)"})
    tracking.log_dataset(*dataset)


def record_check(initialized: Initialized, layers: list[forward.LayerStats], checked: Checked, predicted: Predicted,
                 factor: float, dtype: torch.dtype, expected_node: Optional[str], name: str,
                 code: Optional[Code | Submission] = None) -> None:  # fmt: skip
    """Init, forward and backward by layer (step = layer) beside theory's prediction, the check's verdicts (judged
    at `factor`, in `dtype`) and node table, and the figures titled `name`. `expected_node`: where a named bug
    should first show. The params the option did not settle, as the check found them. For a partial backward, the
    step that left a gradient unset stands where a mistake's words would (`code`: its style names the step)."""
    tracking.log_params(run_params.computed(checked.input_grad))
    by_layer = {
        s.layer: s.metrics() | checked.layer_stats[s.layer] | p.metrics() | {THEORY_BACK_STD: back}
        for s, p, back in zip(layers, predicted.forward, predicted.backward.values())
    }
    for layer, stats in initialized.stats.items():
        by_layer[layer] |= stats
    tracking.log_steps(by_layer)
    parted = theory.parted(by_layer, predicted.forward)  # where theory's assumptions fail, said beside it
    tracking.set_tags({THEORY_TAG: theory.parted_note(parted)})
    finite = forward.all_finite(layers) and math.isfinite(checked.loss)
    if not finite:  # exploding or vanishing statistics are a result of the init, recorded, not a crash
        tracking.set_tags({"non_finite": "activations or loss overflowed; see act/* by step and loss"})
    summaries = forward.depth_summaries(layers, checked.layer_stats)
    if forward.is_stack(layer_widths(initialized.params)):
        summaries |= forward.stack_summaries(layers, predicted.forward)
    grad_metrics = grad_check.metrics(checked.checks)
    tracking.log_metrics({"loss": checked.loss, ACT_ALL_FINITE: float(finite)} | grad_metrics | summaries)
    overall = grad_check.overall(checked.checks)
    tracking.set_tags({"first_divergent": grad_check.first_divergent(checked.checks), "grad.verdict": overall})
    if checked.mistake:  # what kind of mistake, at that node: a stable name to filter by, and its words
        tracking.set_tags({"grad.mistake": checked.mistake.kind, "grad.mistake_words": checked.mistake.words})
    if overall == "partial":
        unset = verdicts.unset_words(checked.checks, code and code.style, code and code.defined)
        tracking.set_tags({"grad.mistake_words": f"PARTIAL: {unset}"})
    if overall == "inconclusive":
        tracking.set_tags({"grad.inconclusive": verdicts.inconclusive_note(checked.checks, factor, dtype)})
    if expected_node is not None:
        tracking.set_tags({"bug.expected_node": expected_node})
    tracking.log_table(grad_check.table(checked.checks), "grad_check.json")
    tracking.log_figure(figures.activation_figure(layers, predicted.forward, name, parted), "figures/activations.png")
    backward_figure = figures.backward_figure(checked.layer_stats, predicted.backward, name, parted)
    tracking.log_figure(backward_figure, "figures/backward.png")
    tracking.log_figure(figures.grad_diff_figure(checked.elementwise, name), "figures/grad_diff.png")


def record_timing(timed: Timing, widths: list[int], rows: int, input_grad: bool) -> None:
    """The times, whether they are noisy, and the work of each pass's products (`input_grad`: the input's gradient
    was computed)."""
    gflop = pass_flops(widths, rows, input_grad)
    work = {TIME_FORWARD_GFLOP: gflop["forward"], TIME_BACKWARD_GFLOP: gflop["backward"]}
    tracking.log_metrics(timed.metrics() | work)
    tracking.set_tags(timed.tags())


def record_objective(value: Optional[float]) -> None:
    """What a search minimizes, where the config names an objective."""
    if value is not None:
        tracking.log_metrics({METRIC: value})


def record_end(wall: dict[str, float], note: str) -> None:
    """The wall-clock time of each stage, the process's peak memory, and the run's description (`note`)."""
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    tracking.log_metrics({f"wall/{k}": v for k, v in wall.items()} | {MEM_PEAK_RSS_MB: peak_rss_mb})
    tracking.set_tags({NOTE_TAG: note})
