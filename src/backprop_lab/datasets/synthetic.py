"""Seeded synthetic data: Gaussian pixels, digit labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from backprop_lab.datasets.split import Split


def make_synthetic(n_train: int, n_valid: int, n_features: int, mean: float, std: float, seed: int) -> Split:
    """Gaussian pixels with MNIST-like raw statistics and digit labels 0-9, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    x = rng.normal(mean, std, size=(n, n_features)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def read(cfg: Any, seed: int) -> tuple[Split, None]:
    return make_synthetic(cfg.n_train, cfg.n_valid, cfg.n_features, cfg.mean, cfg.std, seed), None
