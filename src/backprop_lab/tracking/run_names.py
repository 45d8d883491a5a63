"""What the MLflow UI shows of a run before it is opened: its name and its one-line description.

Names lead with what a sweep varies (the UI cuts long names at the end, so two children named "module·kaiming…"
could not be told apart); the description is the run's verdict in a line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from backprop_lab.config.run_params import compact_widths
from backprop_lab.core.names import NONE, USER_IMPL, WHERE_AND_HOW

HOW_NOT_WHAT = tuple(f"{group}." for group in WHERE_AND_HOW)  # overrides not in a sweep's name
NAME_KEYS = {"impl": "impl.name", "init": "init.scheme", "data": "data.name", "model": "model.name", "bug": "bug.name"}


def _value(cfg: Any, key: str) -> str:
    node = cfg
    for part in NAME_KEYS.get(key, key).split("."):
        node = node[part]
    if key == "model.widths":
        return compact_widths(list(node))
    if key in ("impl", "impl.code") and cfg.impl.name == USER_IMPL:  # a user's code by its file's (or module's) name
        return Path(cfg.impl.code).stem if cfg.impl.code.endswith(".py") else cfg.impl.code
    if isinstance(node, (int, float)) and not isinstance(node, bool):  # a swept number says what it is
        return f"{key.rsplit('.', 1)[-1]}={node if isinstance(node, int) else format(node, '.4g')}"
    return str(node)


def run_name(cfg: Any, swept: Optional[list[str]] = None) -> str:
    """The swept choices first, then implementation, init, data (and its training rows, when not the dataset's
    default), (when not the notebook's) model, the bug put in and the deep stack's weight scale."""
    keys = list(swept or [])
    keys += [k for k in ("impl", "init", "data") if k not in keys and not (k == "impl" and "impl.code" in keys)]
    keys += ["data.n_train"] if "data.n_train" not in keys and _rows_chosen(cfg) else []
    keys += ["model"] if cfg.model.name != "seed" and "model" not in keys and "model.widths" not in keys else []
    keys += ["bug"] if cfg.bug.name != NONE and "bug" not in keys else []
    keys += ["scale"] if cfg.get("scale") is not None and "scale" not in keys else []  # a deep stack's (conf/scale/)
    return "·".join(_value(cfg, k) for k in keys)


def _rows_chosen(cfg: Any) -> bool:
    """Whether the run reads another number of training rows than its dataset's default (all, for MNIST)."""
    from backprop_lab.datasets.registry import dataset

    return cfg.data.n_train != dataset(cfg.data.name).schema.n_train


def parent_name(overrides: list[str], swept: list[str]) -> str:
    """A study by what it was asked: its preset's name (`+experiment=init_study`), then what the command changed
    besides, so that two sweeps of one preset are told apart (`init_study data.n_train=500`); without a preset, the
    swept overrides first. Where runs are logged and how the sweep runs (`tracking.*`, `sweep.*`) name nothing."""
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    asked = [o for o in overrides if not key(o).startswith(HOW_NOT_WHAT)]
    presets = [o.split("=", 1)[1] for o in asked if key(o) == "experiment"]
    rest = [o for o in asked if key(o) != "experiment"]
    swept_first = sorted(rest, key=lambda o: key(o) not in swept)  # stable: the command's order otherwise
    return " ".join(presets[:1] + (rest if presets else swept_first)) or "sweep"


def description(name: str, verdict: str, speed: Optional[str]) -> str:
    """The check's verdict line and the speed (timing.Timing.ratio_line: each ratio with its baseline, and whether
    it is firm), for the run's description (`mlflow.note.content`)."""
    return f"{name}: {verdict}" + ("" if speed is None else f"; {speed}")
