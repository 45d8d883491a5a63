"""What several test modules share."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest


def require(available: bool, what: str, install: str) -> None:
    """For a test that needs something pip cannot install: where it is missing the test skips and says how to get
    it; under CI=true, whose `.ci/run` installs it, its absence fails the test instead."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must provide {what} ({install}); see .ci/run")
    pytest.skip(f"needs {what} ({install})")


def write_idx(path, array, magic=None):
    header = struct.pack(">I", magic if magic is not None else 0x800 + array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fashion_dir(tmp_path, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return tmp_path
