"""A cache of a data split whose arrays the code knows, as .npy files, memory-mapped.

The course's pickle takes over a second to decompress and unpickle on every run; its arrays, kept as .npy files, load
in milliseconds. Each array is checked on every load against the dtype, shape and SHA-256 the caller gives (for the
course's MNIST, constants in datasets/mnist.py), never against anything the cache holds: a cache that was changed, cut
short, or holds anything but regular files is read again from the source. Hashing the 188 MB of arrays is most of
a warm load. Writing the cache is an optimisation: a directory that cannot be written costs the speed, nothing else.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import stat
import tempfile
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from backprop_lab.datasets.split import Split

# What a cache file that is not a whole .npy of the expected array raises while it is opened and mapped: gone,
# unreadable, a link or a FIFO (refused below), a malformed header (numpy's ValueError, or the TokenError of the
# tokenizer numpy reads a version 1 or 2 header with), a size that does not match.
_NOT_A_CACHE = (OSError, ValueError, TypeError, tokenize.TokenError)
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class ArrayDigest(NamedTuple):
    dtype: str  # numpy's dtype.str, byte order included
    shape: tuple[int, ...]
    sha256: str  # of the array's bytes in C order


def digest(array: np.ndarray) -> ArrayDigest:
    raw = memoryview(np.ascontiguousarray(array)).cast("B")
    return ArrayDigest(array.dtype.str, tuple(array.shape), hashlib.sha256(raw).hexdigest())


def _map(path: Path, expected: ArrayDigest) -> np.ndarray:
    """The .npy file memory-mapped copy-on-write (the pages are the file's until written, and torch gets an array it
    may take as writable), if its header is the expected array's and the file holds exactly its bytes. Opened
    without following a link or waiting on a FIFO, and checked to be a regular file before anything is read."""
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as f:
        size = os.fstat(f.fileno())
        if not stat.S_ISREG(size.st_mode):
            raise OSError(f"{path} is not a regular file")
        version = np.lib.format.read_magic(f)
        if version not in _HEADER_READERS:  # np.save writes 1.0 for arrays like these
            raise ValueError(f"{path} is a .npy of version {version}")
        shape, fortran_order, dtype = _HEADER_READERS[version](f)
        if (dtype.str, shape, fortran_order) != (expected.dtype, expected.shape, False):
            raise ValueError(f"{path} holds {dtype.str} {shape}, not the expected array")
        offset = f.tell()
        if size.st_size != offset + dtype.itemsize * math.prod(shape):
            raise ValueError(f"{path} is not as long as its array")
        return np.memmap(f, dtype=dtype, mode="c", offset=offset, shape=shape)


def _load(directory: Path, expected: dict[str, ArrayDigest]) -> Optional[Split]:
    try:
        arrays = {name: _map(directory / f"{name}.npy", expected[name]) for name in Split._fields}
    except _NOT_A_CACHE:
        return None
    if any(digest(arrays[name]) != expected[name] for name in Split._fields):
        return None
    return Split(**arrays)


def _store(directory: Path, split: Split) -> None:
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)  # a cache that failed its check
        with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
            for name, array in split._asdict().items():
                np.save(Path(tmp) / f"{name}.npy", np.ascontiguousarray(array))
            os.replace(tmp, directory)  # atomic: readers see no cache or a whole one
            os.mkdir(tmp)  # for TemporaryDirectory's cleanup, which expects it
    except OSError:
        pass  # another process stored it first, or the directory cannot be written: the next run reads the source


def cached(directory: Path, expected: dict[str, ArrayDigest], read: Callable[[], Split]) -> Split:
    """The split whose arrays are `expected`: from the cache in `directory` when it holds exactly them, else `read()`,
    stored for the next run if it is what was expected (a source that is not is the caller's to refuse)."""
    split = _load(directory, expected)
    if split is None:
        split = read()
        if all(digest(getattr(split, name)) == expected[name] for name in Split._fields):
            _store(directory, split)
    return split
