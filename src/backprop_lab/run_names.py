"""What the MLflow UI shows of a run before it is opened: its name and its one-line description.

Names lead with what a sweep varies (the UI cuts long names at the end, so two children named "module·kaiming…"
could not be told apart); the description is the run's verdict in a line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from backprop_lab.names import NONE
from backprop_lab.run_params import compact_widths

NAME_KEYS = {"impl": "impl.name", "init": "init.scheme", "data": "data.name", "model": "model.name", "bug": "bug.name"}


def _value(cfg: Any, key: str) -> str:
    node = cfg
    for part in NAME_KEYS.get(key, key).split("."):
        node = node[part]
    if key == "model.widths":
        return compact_widths(list(node))
    if key in ("impl", "impl.code") and cfg.impl.name == "user":  # a user's code by its file's (or module's) name
        return Path(cfg.impl.code).stem if cfg.impl.code.endswith(".py") else cfg.impl.code
    if isinstance(node, (int, float)) and not isinstance(node, bool):  # a swept number says what it is
        return f"{key.rsplit('.', 1)[-1]}={node if isinstance(node, int) else format(node, '.4g')}"
    return str(node)


def run_name(cfg: Any, swept: Optional[list[str]] = None) -> str:
    """The swept choices first, then implementation, init, data and (when not the notebook's) model."""
    keys = list(swept or [])
    keys += [k for k in ("impl", "init", "data") if k not in keys and not (k == "impl" and "impl.code" in keys)]
    keys += ["model"] if cfg.model.name != "seed" and "model" not in keys and "model.widths" not in keys else []
    keys += ["bug"] if cfg.bug.name != NONE and "bug" not in keys else []
    return "·".join(_value(cfg, k) for k in keys)


def parent_name(overrides: list[str], swept: list[str]) -> str:
    """A study by its preset's name (`+experiment=init_study`), else the swept overrides."""
    studies = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("experiment=")]
    if studies:
        return studies[0]
    chosen = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    return " ".join(chosen) or "sweep"


def description(name: str, verdict: str, ratio: Optional[float]) -> str:
    """The check's verdict line and the speed, for the run's description (`mlflow.note.content`)."""
    speed = "" if ratio is None else f"; backward {ratio:.2f} × autograd's"
    return f"{name}: {verdict}{speed}"
