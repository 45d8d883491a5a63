"""A run's params, the experiment's variables only (where the store is, is not one), with the model's widths written
short; and their digests, which tell the same job (a resumed sweep, a rerun's check) and jobs of the same shape (a dry
run's estimate)."""

from __future__ import annotations

import hashlib
import itertools
import json

from backprop_lab.core.names import WHERE_AND_HOW

NOT_PARAMS = (*WHERE_AND_HOW, "device")  # and the device, logged once resolved
# options whose param is what the run did, logged once it is known: the notebook's four compute the input's gradient
# whatever `impl.compute_input_grad` says, and a user's code may or may not (the check finds out); a learner's process
# gets the memory the machine can spare when `impl.memory_limit_gib` is null (the lab's own code runs under none)
COMPUTED = {"impl": ("compute_input_grad", "memory_limit_gib")}


def compact_widths(widths: list[int]) -> str:
    """[784, 100, ..., 100, 1] -> "784-100x8-1"."""
    parts = []
    for width, run in itertools.groupby(widths):
        count = len(list(run))
        parts.append(f"{width}x{count}" if count > 1 else str(width))
    return "-".join(parts)


def params(config: dict) -> dict:
    """The config's variables, as params: no tracking.*, the widths compact."""
    out = {k: v for k, v in config.items() if k not in NOT_PARAMS}
    out["model"] = dict(out["model"], widths=compact_widths(out["model"]["widths"]))
    return out


def requested(config: dict) -> dict:
    """The params a run logs when it starts (and a sweep's parent for what its jobs share): `params` less the
    COMPUTED ones, which the option does not settle."""
    out = params(config)
    for group, keys in COMPUTED.items():
        out[group] = {k: v for k, v in out[group].items() if k not in keys}
    return out


def computed(input_grad: bool) -> dict:
    """The COMPUTED params, as the run did them: `input_grad`, whether the implementation computed x.g."""
    return {"impl": {"compute_input_grad": input_grad}}


def own_process(memory_limit_gib: float) -> dict:
    """The memory limit a learner's process ran under, in GiB (two decimals)."""
    return {"impl": {"memory_limit_gib": round(memory_limit_gib, 2)}}


def config_digest(config: dict) -> str:
    """What makes two jobs the same job: their params (so not where they are logged), hashed."""
    return hashlib.sha256(json.dumps(params(config), sort_keys=True, default=str).encode()).hexdigest()


def shape_digest(config: dict) -> str:
    """Jobs that take about as long: the same implementation, model, data size and timing budget."""
    shape = [config["impl"], config["model"]["widths"], config["data"]["name"], config["data"].get("n_train"),
             config["timing"], config.get("dtype")]  # fmt: skip
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()
