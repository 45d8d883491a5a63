"""Fashion-MNIST's idx files (unsigned bytes, plain or gzipped), read within bounds."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from backprop_lab.core.errors import DataError
from backprop_lab.datasets.bounded_reads import MAX_DATA_BYTES, UNREADABLE, read_at_most, sha256_of
from backprop_lab.datasets.split import Split

_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes; 3 dims for images, 1 for labels


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes, plain or gzipped. The size its header declares is checked against the cap and,
    for a plain file, against the file's size before the payload is read; a gzipped one is read one byte past it,
    no further, to tell a file holding more."""
    header_size = 4 + 4 * ndim
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            shape = _idx_shape(path, f.read(header_size), ndim)
            if opener is open:
                _check_idx_size(path, shape, os.fstat(f.fileno()).st_size - header_size)
            payload = read_at_most(f, math.prod(shape) + 1)
    except UNREADABLE as e:
        raise DataError(f"{path}: unreadable idx file ({e})") from None
    _check_idx_size(path, shape, len(payload))
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _idx_shape(path: Path, header: bytes, ndim: int) -> tuple[int, ...]:
    if len(header) < 4 + 4 * ndim or struct.unpack(">I", header[:4])[0] != _IDX_MAGIC[ndim]:
        raise DataError(f"{path}: bad idx magic number, expected {_IDX_MAGIC[ndim]:#010x} (unsigned bytes, {ndim}-d)")
    shape = struct.unpack(f">{ndim}I", header[4:])
    if 0 in shape:
        raise DataError(f"{path}: header says shape {shape}: no items")
    if math.prod(shape) > MAX_DATA_BYTES:  # Python's ints: a product of four-byte sizes cannot overflow here
        raise DataError(
            f"{path}: header says shape {shape} = {math.prod(shape)} bytes, "
            f"more than the {MAX_DATA_BYTES >> 20} MiB a data file may hold"
        )
    return shape


def _check_idx_size(path: Path, shape: tuple[int, ...], held: int) -> None:
    if held != math.prod(shape):
        holds = "more" if held > math.prod(shape) else held
        raise DataError(f"{path}: header says shape {shape} = {math.prod(shape)} bytes, file holds {holds}")


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
        if images.shape[1:] != (28, 28):
            raise DataError(f"{paths[0]}: images are {images.shape[1]}x{images.shape[2]}; Fashion-MNIST's are 28x28")
        if len(images) != len(labels):
            raise DataError(f"{directory}: {prefix} has {len(images)} images but {len(labels)} labels")
        arrays += [images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)]
        for path in paths:
            digests.update(sha256_of(path).encode())
    return Split(*arrays), digests.hexdigest()


def read(cfg: Any, seed: int) -> tuple[Split, str]:
    return read_fashion_mnist(Path(cfg.path))
