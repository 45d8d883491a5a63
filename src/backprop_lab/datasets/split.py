"""What every reader returns: a dataset's two halves as numpy arrays, raw (unnormalized)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    x_train: np.ndarray  # (n, features) float32 in [0, 1]
    y_train: np.ndarray  # (n,) digit labels
    x_valid: np.ndarray
    y_valid: np.ndarray
