"""The values the schema's types allow but the study cannot use, each refused in one line naming the key and what
it allows; and a logged config read back as data (for a rerun). Nothing here imports torch or MLflow."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf

from backprop_lab.config import Config, plain
from backprop_lab.config.tracking_uri import check_uri_syntax
from backprop_lab.core.errors import ConfigError, one_line
from backprop_lab.datasets.registry import dataset


def _require(ok: bool, key: str, allowed: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {allowed}, got {got!r}")


def _finite_in(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low < value < high


MAX_FACTOR = 1000.0
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed's range
MAX_MIN_RUN_TIME = 600.0  # seconds per measurement; three are taken: more is a typo, not a study
MAX_EXPERIMENT_NAME = 500  # MLflow's limit
MAX_THREADS = 1024
MIN_CHILD_GIB = 1.0  # a learner's process: torch imported, the inputs mapped
LOGGED_CONFIG = "config/config.yaml"  # the artifact a run logs its config in
MAX_LOGGED_CONFIG_BYTES = 1024 * 1024
MAX_LOGGED_CONFIG_DEPTH = 16
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where it is built in: 10x faster


def memory_needed(cfg: Any, whole: tuple[Optional[int], Optional[int]]) -> int:
    """Bytes the study holds at its peak, roughly: the data (raw and normalized), every layer's output and its
    gradient for the hand-written net and for autograd's reference, and the weights with their gradients (float32).
    `whole`: the dataset's (train, valid) rows."""
    n_train, n_valid = cfg.data.n_train or whole[0], cfg.data.n_valid or whole[1]
    widths = list(cfg.model.widths)
    data = (n_train + n_valid) * widths[0] * 2
    activations = n_train * sum(widths[1:]) * 2 * 2 * 2  # linear and ReLU outputs, their gradients, twice over
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:])) * 5  # weights, copies and gradients
    return 4 * (data + activations + weights)


def memory_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(cfg: Any, whole: tuple[Optional[int], Optional[int]]) -> None:
    needed, available = memory_needed(cfg, whole), memory_available()
    if available is not None and needed > available:
        raise ConfigError(
            f"model.widths: {list(cfg.model.widths)} on {cfg.data.name} needs about {needed / 2**30:.1f} GiB "
            f"(activations, gradients and autograd's copy, float32); {available / 2**30:.1f} GiB is available"
        )


def single_run(cfg: Any) -> None:
    """What only a multirun can do, refused for one run (the CLI without -m, or Python's `run`)."""
    for key in ("resume", "dry_run"):
        _require(not cfg.sweep[key], f"sweep.{key}", "false outside a multirun (-m): one run has nothing to list or "
                 "reuse", cfg.sweep[key])  # fmt: skip


def validate(cfg: Any) -> None:
    """Check values that the schema's types allow but the study cannot use; raise ConfigError on the first."""
    _require(0 <= cfg.seed <= MAX_SEED, "seed", "an integer from 0 to 2**64 - 1", cfg.seed)
    if "n_features" in cfg.data:  # generated data (synthetic, normal): its shape and moments are the config's
        _require(cfg.data.n_features > 0, "data.n_features", "a positive integer", cfg.data.n_features)
        _require(math.isfinite(cfg.data.mean), "data.mean", "a finite number", cfg.data.mean)
        _require(_finite_in(cfg.data.std, 0, math.inf), "data.std", "a finite number > 0", cfg.data.std)
    widths = list(cfg.model.widths)
    _require(len(widths) >= 2, "model.widths", "a list of at least 2 widths (inputs ... 1)", widths)
    _require(all(w > 0 for w in widths), "model.widths", "positive integers", widths)
    group = cfg.data
    data = dataset(group.name)  # the files it names, its width and its rows, asked once here
    data.check_files(group)
    features, whole = data.width(group), data.rows(group)
    _require(widths[0] == features, "model.widths[0]", f"{features} (the features of data={cfg.data.name})", widths[0])
    _require(widths[-1] == 1, "model.widths[-1]", "1 (MSE on the digit label as a float)", widths[-1])
    for key, rows in zip(("n_train", "n_valid"), whole):
        n = cfg.data[key]
        if rows is None:  # generated data has no whole split for null to take
            _require(n is not None and n > 0, f"data.{key}", f"a positive integer for data={cfg.data.name}", n)
        _require(n is None or n > 0, f"data.{key}", "a positive integer or null", n)
    _require(math.isfinite(cfg.model.relu_shift), "model.relu_shift", "a finite number", cfg.model.relu_shift)
    _require(_finite_in(cfg.init.gain, 0, math.inf), "init.gain", "a finite number > 0", cfg.init.gain)
    _require(_finite_in(cfg.data.near_zero_tol, 0, 1), "data.near_zero_tol", "> 0 and < 1", cfg.data.near_zero_tol)
    # below 1, autograd itself would fail; far above, a wrong backward would pass (a bug is off by 1e3 and more)
    _require(1 <= cfg.check.factor <= MAX_FACTOR, "check.factor", f"from 1 to {MAX_FACTOR:g}", cfg.check.factor)
    limit = cfg.impl.time_limit_s
    _require(_finite_in(limit, 0, math.inf), "impl.time_limit_s", "a finite number of seconds > 0", limit)
    memory = cfg.impl.memory_limit_gib
    _require(memory is None or _finite_in(memory, MIN_CHILD_GIB - 1e-9, math.inf), "impl.memory_limit_gib",
             f"null (3/4 of the free memory) or at least {MIN_CHILD_GIB:g} GiB (torch alone takes half of that)",
             memory)  # fmt: skip
    run_time = cfg.timing.min_run_time
    _require(0 < run_time <= MAX_MIN_RUN_TIME, "timing.min_run_time", f"> 0 and at most {MAX_MIN_RUN_TIME:g} seconds",
             run_time)  # fmt: skip
    threads = cfg.timing.num_threads
    _require(threads is None or 0 < threads <= MAX_THREADS, "timing.num_threads",
             f"an integer from 1 to {MAX_THREADS}, or null", threads)  # fmt: skip
    name = cfg.tracking.experiment
    shown = name if len(name) <= 40 else f"{name[:40]}... ({len(name)} characters)"
    allowed = f"a name of 1 to {MAX_EXPERIMENT_NAME} characters"
    _require(bool(name.strip()) and len(name) <= MAX_EXPERIMENT_NAME, "tracking.experiment", allowed, shown)
    cap = cfg.tracking.git_diff_max_bytes
    _require(cap >= 0, "tracking.git_diff_max_bytes", ">= 0", cap)
    if cfg.tracking.uri is not None:
        check_uri_syntax(cfg.tracking.uri)
    _check_memory(cfg, whole)


def _first_interpolation(node: Any, key: str = "") -> Optional[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            found = _first_interpolation(v, f"{key}.{k}" if key else str(k))
            if found:
                return found
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found = _first_interpolation(v, f"{key}[{i}]")
            if found:
                return found
    elif isinstance(node, str) and "${" in node:
        return key, node
    return None


def check_logged_bounds(text: str) -> None:
    """Refuse, before building anything, what a config this project logs never holds: more than
    MAX_LOGGED_CONFIG_BYTES, nesting deeper than MAX_LOGGED_CONFIG_DEPTH, a YAML anchor or alias (an alias bomb
    expands a few hundred bytes into billions of nodes; deep nesting overflows the recursive constructors). The events
    are read lazily, so a refusal comes at the first offending one (by the pure-Python parser: libyaml reads flow
    collections far ahead, and stops at its own depth limit with a message that names none of this)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_LOGGED_CONFIG_BYTES:
        raise ConfigError(f"{LOGGED_CONFIG}: {size:,} bytes; a logged config is at most {MAX_LOGGED_CONFIG_BYTES:,} "
                          "(the project writes about 1 KiB); refused, not parsed")  # fmt: skip
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            where = f"line {event.start_mark.line + 1}"
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ConfigError(f"{LOGGED_CONFIG}: a YAML anchor or alias at {where}; a logged config never holds "
                                  "one: refused, not expanded")  # fmt: skip
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_LOGGED_CONFIG_DEPTH:
                    raise ConfigError(f"{LOGGED_CONFIG}: nested deeper than {MAX_LOGGED_CONFIG_DEPTH} levels at "
                                      f"{where}; a logged config is 3 deep: refused")  # fmt: skip
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # not YAML up to here, within the bounds: reading it says where


def read_logged(text: str) -> dict:
    """A logged config (config/config.yaml) as plain data: bounded first, its interpolations refused.

    A logged config is data: anyone who can write to the store can write it. It was logged resolved, so it holds
    no interpolation; one that does (`${oc.env:SECRET}`, a custom resolver) is refused, never resolved, so that a
    store cannot pull the rerunning process's environment into a new run.
    """
    try:
        check_logged_bounds(text)
        logged = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise ConfigError(f"{LOGGED_CONFIG}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(logged, dict):
        raise ConfigError(f"{LOGGED_CONFIG}: must be a mapping of the config's groups, got {type(logged).__name__}")
    found = _first_interpolation(logged)
    if found:
        key, value = found
        raise ConfigError(f"{key}: the logged config holds an interpolation ({value[:80]!r}); refused, not resolved")
    return logged


def checked_logged(logged: dict) -> DictConfig:
    """A logged config, read by `read_logged`, checked against today's schema and values."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        name = logged["data"].get("name") if isinstance(logged.get("data"), dict) else None
        schema = OmegaConf.structured(Config)
        schema.data = OmegaConf.structured(dataset(name).schema)
        cfg = plain(OmegaConf.merge(schema, OmegaConf.create(logged)))
    except OmegaConfBaseException as e:
        raise ConfigError(one_line(e)) from None
    validate(cfg)
    return cfg


def from_logged(text: str) -> DictConfig:
    """A config as a run logged it (config/config.yaml): read as data, then checked against today's schema."""
    return checked_logged(read_logged(text))
