"""The config schema: typed dataclasses that Hydra validates on composition, and the value checks types cannot say.

Nothing here imports torch or MLflow, so `--help`, `--cfg job` and config errors stay fast.

The config floor (above datasets/ and core/): the schema here, validation.py, tracking_uri.py, the option tables
(init_schemes.py, objectives.py) and run_params.py (what a run logs as params).

Add an option's type, default and value check here; what a stage does with it belongs to study/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from backprop_lab.config import init_schemes, objectives
from backprop_lab.core.names import NONE, RELU
from backprop_lab.datasets.registry import DATASETS

# The config groups: conf/ at the checkout's root, linked into the package (src/backprop_lab/conf), so that a
# checkout, an editable install and an installed wheel all find them beside this file.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


InitScheme = Enum("InitScheme", {name: name for name in init_schemes.SCHEMES})  # the options are the table's


class FanMode(Enum):
    fan_in = "fan_in"
    fan_out = "fan_out"


@dataclass
class InitConfig:
    scheme: InitScheme = MISSING
    mode: FanMode = FanMode.fan_out  # which fan kaiming_uniform divides by; fan_out is n_in here (init_schemes.py)
    gain: float = 1.0  # every weight times this: 1 is the scheme as published; a search can tune it


class Activation(Enum):
    relu = RELU  # the lesson's, shifted by relu_shift
    none = NONE  # a linear stack: 02b's `x = a @ x`, one layer after another


@dataclass
class ModelConfig:
    name: str = MISSING
    widths: list[int] = MISSING  # input features first, 1 output last
    relu_shift: float = 0.5
    activation: Activation = Activation.relu  # between the linear layers
    # a stack: `depth` square layers of widths[0] (02b's 100 of 512), then the rest of widths (the output the MSE
    # needs); what the stages read and a run logs is the widths it makes, depth then null (plain)
    depth: Optional[int] = None


@dataclass
class ImplConfig:
    name: str = MISSING  # the option of conf/impl/ (`user` for your own code)
    code: str = MISSING  # the implementation's code: a module, or a .py file (impls/protocol.py)
    # a learner's code runs in a process of its own (isolation/): each thing it is asked (import, the check's forward
    # and two backwards, the timing beyond its own budget) within this many seconds, or the process is stopped
    time_limit_s: float = 60.0
    memory_limit_gib: Optional[float] = None  # that process's memory; null: 3/4 of what the machine has free
    # the input's gradient, for the implementations that can skip it (lean, autograd, nn); nothing needs it, so it
    # is opt-in; the notebook's four always compute it, as the notebook did
    compute_input_grad: bool = False


class DType(Enum):
    float32 = "float32"
    float64 = "float64"
    bfloat16 = "bfloat16"  # where the device runs its matmul


@dataclass
class BugConfig:
    name: str = "none"  # a mistake from the bank (bugs.py), put into impl=functional's backward; options: conf/bug/


@dataclass
class CheckConfig:
    # a node's gradient is close when its error against the float64 truth is at most this many times autograd's
    # own at the same dtype (or the dtype's rounding, where autograd is exact): see grad_check.py
    factor: float = 8.0


@dataclass
class TimingConfig:
    min_run_time: float = 1.0  # seconds per blocked_autorange measurement
    num_threads: Optional[int] = None  # None = the process's torch thread count


class GitDiff(Enum):
    patch = "patch"  # git/diff.patch, redacted, when not over git_diff_max_bytes
    hash = "hash"  # only its SHA-256, for trees whose uncommitted changes must not leave the machine


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None = sqlite:///<launch dir>/mlruns/mlflow.db
    experiment: str = "backprop-lab"
    git_diff: GitDiff = GitDiff.patch  # what a run with uncommitted changes logs of them
    git_diff_max_bytes: int = 1_000_000  # a larger diff is logged as its hash only


@dataclass
class SweepConfig:
    resume: bool = False  # a multirun reuses each job whose config already has a FINISHED run in the experiment
    dry_run: bool = False  # a multirun lists what it would run and reuse, with an estimate, and runs nothing


# What a job returns to a search (hydra/sweeper=search), always to minimize: the options are objectives.py's
Objective = Enum("Objective", {name: name for name in (NONE, *objectives.OBJECTIVES)})


@dataclass
class Config:
    data: Any = MISSING  # one dataset's schema (datasets/registry.py), picked by the data group
    init: InitConfig = MISSING
    model: ModelConfig = MISSING
    impl: ImplConfig = MISSING
    bug: BugConfig = field(default_factory=BugConfig)
    seed: int = 0
    device: Device = Device.auto
    dtype: DType = DType.float32
    check: CheckConfig = field(default_factory=CheckConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    objective: Objective = Objective[NONE]
    scale: Optional[str] = None  # the deep stack's weight scale, set by its option of conf/scale/: it names the run


def options(group: str) -> list[str]:
    """A config group's options: its folder under conf/, the one place they are listed."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def plain(cfg: Any) -> DictConfig:
    """The composed config with interpolations resolved, enums as their names and a stack's depth made its widths,
    read-only: what stages read.
    `impl.code` names a file or module: an interpolation there is refused, never resolved (it would put an
    environment variable's value into a file name, and the file name into the store)."""
    from backprop_lab.core.errors import ConfigError

    code = cfg.impl._get_node("code") if isinstance(cfg, DictConfig) and "impl" in cfg else None
    if code is not None and isinstance(code._value(), str) and "${" in code._value():
        raise ConfigError(f"impl.code: a file or module name, not an interpolation ({code._value()[:60]!r}); refused, "
                          "not resolved")  # fmt: skip
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    if "model" in out and out.model.get("depth") is not None:  # the stack as its widths: what runs, and is logged
        out.model.widths, out.model.depth = stacked_widths(list(out.model.widths), out.model.depth), None
    OmegaConf.set_readonly(out, True)
    return out


MAX_DEPTH = 10_000


def stacked_widths(widths: list[int], depth: int) -> list[int]:
    """model.depth square layers of widths[0], then the rest of widths: [512, 1] at depth 3 is [512]*4 + [1]."""
    from backprop_lab.core.errors import ConfigError

    if not 1 <= depth <= MAX_DEPTH:
        raise ConfigError(f"model.depth: null or a number of layers from 1 to {MAX_DEPTH:,}, got {depth}")
    return widths[:1] * (depth + 1) + widths[1:]


def typed_overrides(hydra_cfg: Any) -> list[str]:
    """A job's overrides as they were typed, never resolved: an override holding `${...}` is text to show and log
    (iterating Hydra's list would resolve it, and an environment lookup would put a variable's value in a line)."""
    return [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)]


def store_schema(store: Any) -> None:
    """Register the schema in Hydra's ConfigStore (handed in, so that only entry points import Hydra)."""
    store.store(name="schema", node=Config)
    for name, entry in DATASETS.items():
        store.store(group="schema/data", name=name, node=entry.schema)
