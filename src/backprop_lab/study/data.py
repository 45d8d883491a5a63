"""Stage 1, data: read the chosen split and normalize both halves with the *training* mean and std."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from backprop_lab.core.errors import DataError
from backprop_lab.core.names import (
    DATA_TRAIN_MEAN,
    DATA_TRAIN_MEAN_RAW,
    DATA_TRAIN_STD,
    DATA_TRAIN_STD_RAW,
    DATA_VALID_MEAN,
    DATA_VALID_MEAN_RAW,
    DATA_VALID_STD,
    DATA_VALID_STD_RAW,
)
from backprop_lab.datasets import registry
from backprop_lab.datasets.split import Split


@dataclass
class Data:
    x_train: torch.Tensor  # normalized
    y_train: torch.Tensor  # digit labels as floats, (n,)
    x_valid: torch.Tensor  # normalized with the training statistics; only its statistics are used
    stats: dict[str, float]  # the data/ metrics: raw and normalized mean/std of each split
    normalized_ok: bool
    sha256: Optional[str] = None  # of the file read, where there is one


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean) / std


def all_finite(x: torch.Tensor) -> bool:
    """A NaN or an Inf anywhere makes the sum NaN or Inf, so the elementwise test (a mask as large as the data, a
    tenth of a second on MNIST) runs only when the sum is not finite: a sum can also overflow."""
    return math.isfinite(x.sum().item()) or bool(torch.isfinite(x).all())


def near_zero(value: float, tol: float) -> bool:
    return abs(value) < tol


def read_split(cfg: Any, seed: int) -> tuple[Split, Optional[str]]:
    """The raw split the data config names, and the SHA-256 of the files it came from (None: generated)."""
    return registry.dataset(cfg.name).read(cfg, seed)


def _take(x: torch.Tensor, n: Optional[int], key: str, dataset: str) -> torch.Tensor:
    if n is None:
        return x
    if n > len(x):
        raise DataError(f"{key}: {n} is more than the {len(x)} rows of {dataset}")
    return x[:n]


def prepare(cfg: Any, seed: int, device: torch.device) -> Data:
    split, sha256 = read_split(cfg, seed)
    x_train = _take(torch.from_numpy(split.x_train), cfg.n_train, "data.n_train", cfg.name).float()
    y_train = _take(torch.from_numpy(split.y_train), cfg.n_train, "data.n_train", cfg.name).float()
    x_valid = _take(torch.from_numpy(split.x_valid), cfg.n_valid, "data.n_valid", cfg.name).float()
    for name, x in (("train", x_train), ("valid", x_valid)):
        if not all_finite(x):
            raise DataError(f"data ({cfg.name}): the {name} inputs hold NaN or Inf")
    x_train, y_train, x_valid = (t.to(device) for t in (x_train, y_train, x_valid))

    train_mean, train_std = x_train.mean(), x_train.std()
    stats = {
        DATA_TRAIN_MEAN_RAW: train_mean.item(),
        DATA_TRAIN_STD_RAW: train_std.item(),
        DATA_VALID_MEAN_RAW: x_valid.mean().item(),
        DATA_VALID_STD_RAW: x_valid.std().item(),
    }
    # important: the validation split is normalized with the *training* statistics, as in the course
    x_train = normalize(x_train, train_mean, train_std)
    x_valid = normalize(x_valid, train_mean, train_std)
    stats |= {
        DATA_TRAIN_MEAN: x_train.mean().item(),
        DATA_TRAIN_STD: x_train.std().item(),
        DATA_VALID_MEAN: x_valid.mean().item(),
        DATA_VALID_STD: x_valid.std().item(),
    }
    ok = near_zero(stats[DATA_TRAIN_MEAN], cfg.near_zero_tol) and near_zero(
        1 - stats[DATA_TRAIN_STD], cfg.near_zero_tol
    )
    return Data(x_train, y_train, x_valid, stats, ok, sha256)


def prepare_once(cfg: Any, seed: int, device: torch.device) -> Data:
    """`prepare`, remembered per process: the jobs of a sweep share one read, verification and normalization.
    Keyed on the data config (and the seed, which only seeded data reads); callers must not modify the tensors."""
    key = json.dumps(OmegaConf.to_container(cfg), sort_keys=True)
    return _prepare_cached(key, seed if registry.dataset(cfg.name).seeded else 0, str(device))


@functools.lru_cache(maxsize=2)
def _prepare_cached(key: str, seed: int, device: str) -> Data:
    return prepare(OmegaConf.create(json.loads(key)), seed, torch.device(device))


def dataset_input(cfg: DictConfig, seed: int, d: Data) -> tuple[str, str, str, dict, dict]:
    """(name, digest, source, schema, profile) of the training split read by the data config `cfg` (and `seed`),
    for the runs table's Dataset column."""
    schema = {"x": {"dtype": str(d.x_train.dtype), "shape": [-1, d.x_train.shape[1]]},
              "y": {"dtype": str(d.y_train.dtype), "shape": [-1], "meaning": "the digit, as a float"}}  # fmt: skip
    profile = {"train_rows": d.x_train.shape[0], "valid_rows": d.x_valid.shape[0], "sha256": d.sha256 or "none"}
    digest = d.sha256 or hashlib.sha256(f"synthetic {seed} {d.x_train.shape}".encode()).hexdigest()
    name = cfg.name
    return name, digest, str(registry.dataset(name).source(cfg, seed)), schema, profile | d.stats
