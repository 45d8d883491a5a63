"""What the MLflow UI shows of a run before it is opened: its name, its params, its one-line description.

Names lead with what a sweep varies (the UI cuts long names at the end, so two children named "module·kaiming…"
could not be told apart); params are the experiment's variables only (where the store is, is not one), with the
model's widths written short; the description is the run's verdict in a line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any, Optional

SWEPT_ENV = "BACKPROP_LAB_SWEPT"  # the keys a sweep varies, comma-separated, handed to its jobs like the parent's id
NAME_KEYS = {"impl": "impl.name", "init": "init.scheme", "data": "data.name", "model": "model.name", "bug": "bug.name"}
NOT_PARAMS = ("tracking", "device", "sweep")  # where and how it is logged; the device is logged once resolved


def compact_widths(widths: list[int]) -> str:
    """[784, 100, ..., 100, 1] -> "784-100x8-1"."""
    parts = []
    for width, run in itertools.groupby(widths):
        count = len(list(run))
        parts.append(f"{width}x{count}" if count > 1 else str(width))
    return "-".join(parts)


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


def swept_keys() -> list[str]:
    return [k for k in os.environ.get(SWEPT_ENV, "").split(",") if k]


def run_name(cfg: Any, swept: Optional[list[str]] = None) -> str:
    """The swept choices first, then implementation, init, data and (when not the notebook's) model."""
    keys = list(swept or [])
    keys += [k for k in ("impl", "init", "data") if k not in keys and not (k == "impl" and "impl.code" in keys)]
    keys += ["model"] if cfg.model.name != "seed" and "model" not in keys and "model.widths" not in keys else []
    keys += ["bug"] if cfg.bug.name != "none" and "bug" not in keys else []
    return "·".join(_value(cfg, k) for k in keys)


def parent_name(overrides: list[str], swept: list[str]) -> str:
    """A study by its preset's name (`+experiment=init_study`), else the swept overrides."""
    studies = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("experiment=")]
    if studies:
        return studies[0]
    chosen = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    return " ".join(chosen) or "sweep"


def params(config: dict) -> dict:
    """The config's variables, as params: no tracking.*, the widths compact."""
    out = {k: v for k, v in config.items() if k not in NOT_PARAMS}
    out["model"] = dict(out["model"], widths=compact_widths(out["model"]["widths"]))
    return out


def config_digest(config: dict) -> str:
    """What makes two jobs the same job: their params (so not where they are logged), hashed."""
    return hashlib.sha256(json.dumps(params(config), sort_keys=True, default=str).encode()).hexdigest()


def shape_digest(config: dict) -> str:
    """Jobs that take about as long: the same implementation, model, data size and timing budget."""
    shape = [config["impl"], config["model"]["widths"], config["data"]["name"], config["data"].get("n_train"),
             config["timing"], config.get("dtype")]  # fmt: skip
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()


def description(name: str, verdict: str, ratio: Optional[float]) -> str:
    """The check's verdict line and the speed, for the run's description (`mlflow.note.content`)."""
    speed = "" if ratio is None else f"; backward {ratio:.2f} × autograd's"
    return f"{name}: {verdict}{speed}"
