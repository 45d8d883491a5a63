"""The course's MNIST: the arrays its file holds, the pickle's reader, and a run's read of it (the named file
verified, else the course's fetched, its arrays from the array cache)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from backprop_lab.core.errors import DataError
from backprop_lab.datasets import array_cache, course_file
from backprop_lab.datasets.array_cache import ArrayDigest
from backprop_lab.datasets.bounded_reads import UNREADABLE, gunzip_bounded, read_verified, verify_sha256
from backprop_lab.datasets.registry import MNIST_FEATURES, MNIST_SHA256, refuse_another_hash_without_its_file
from backprop_lab.datasets.safe_pickle import load_numpy_pickle
from backprop_lab.datasets.split import Split

# The arrays the course's mnist.pkl.gz holds (what read_mnist_pkl returns from the file of MNIST_SHA256): a fact of
# the course's data, stated here so that a cache of them is checked against the code, never against itself.
MNIST_ARRAYS = {
    "x_train": ArrayDigest("<f4", (50000, 784), "776032e7e6a9793aa363ced48409f59393deff07333dbd953f3749bf80667d30"),
    "y_train": ArrayDigest("<i8", (50000,), "3fc61c21900fc0b58d42fdaf93c02687003667ff54f671496c1d367a95cae2ba"),
    "x_valid": ArrayDigest("<f4", (10000, 784), "04197cf3c7f94ed5f6b5f472b6be8368610bdccf10bfd78aa83bce8ca1f7c6a4"),
    "y_valid": ArrayDigest("<i8", (10000,), "bfddcd2fec1923668512623a71a47033ec687581bc04ac5708c8857aa0193630"),
}
KNOWN_ARRAYS = {MNIST_SHA256: MNIST_ARRAYS}  # by the SHA-256 of the file they are read from


def _check_mnist_split(split: Split) -> Split:
    """Plain numeric arrays, (rows, 784) inputs and (rows,) labels: what the study's models take."""
    for name, array in split._asdict().items():
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
            raise DataError(f"{name} is not a numeric array")
    for x_name, y_name in (("x_train", "y_train"), ("x_valid", "y_valid")):
        x, y = getattr(split, x_name), getattr(split, y_name)
        if x.ndim != 2 or x.shape[1] != MNIST_FEATURES:
            raise DataError(f"{x_name} has shape {x.shape}; expected (rows, {MNIST_FEATURES}), 28x28 pixels a row")
        if y.ndim != 1:
            raise DataError(f"{y_name} has shape {y.shape}; expected (rows,), one label a row")
        if len(x) != len(y):
            raise DataError(f"{x_name} has {len(x)} rows but {y_name} has {len(y)}")
    # torch takes arrays of this machine's byte order only; a file written on another is converted
    return Split(*(array.view(np.ndarray).astype(array.dtype.newbyteorder("="), copy=False) for array in split))


def read_mnist_pkl(path: Path, expected_sha256: str) -> Split:
    """The course's `mnist.pkl.gz`: ((train_x, train_y), (valid_x, valid_y), test), checked before it is unpickled."""
    raw = read_verified(path, expected_sha256)
    try:
        (x_train, y_train), (x_valid, y_valid), _ = load_numpy_pickle(gunzip_bounded(raw))
        return _check_mnist_split(Split(x_train, y_train, x_valid, y_valid))
    except DataError as e:
        raise DataError(f"{path}: {_one_line(str(e))}") from None
    except (*UNREADABLE, ValueError, TypeError) as e:  # not gzip; not a nest of pairs
        raise DataError(f"{path}: not a readable MNIST pickle ({_one_line(f'{type(e).__name__}: {e}')})") from None


def _one_line(text: str, limit: int = 300) -> str:
    # Messages about a crafted pickle can quote its bytes (newlines, control characters, megabytes of them).
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def read(cfg: Any, seed: int) -> tuple[Split, str]:
    return read_mnist(cfg), cfg.sha256


def read_mnist(cfg: Any) -> Split:
    """The arrays of the pickle data.path names (else the course's, fetched into the cache), its SHA-256 checked on
    every run, so a run uses the file it names or none. The course's arrays come from the array cache, checked against
    the digests this module states for them; the code knows no digests for another file's, so they are read from it,
    once per process."""
    cache = Path(cfg.cache_dir or course_file.default_cache_dir())
    if cfg.path:
        path = Path(cfg.path)
        verify_sha256(path, cfg.sha256)
    else:
        refuse_another_hash_without_its_file(cfg)
        path = course_file.fetch_mnist(cache)[0]  # verified as it is found or fetched
    known = KNOWN_ARRAYS.get(cfg.sha256)
    if known is None:
        return _read_pickle_once(path, cfg.sha256)
    return array_cache.cached(cache / f"arrays-{cfg.sha256}", known, lambda: read_mnist_pkl(path, cfg.sha256))


@functools.lru_cache(maxsize=1)
def _read_pickle_once(path: Path, sha256: str) -> Split:
    # the jobs of a sweep over data.n_train share one read; each still checks the file's hash first
    return read_mnist_pkl(path, sha256)
