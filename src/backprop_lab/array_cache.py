"""A verified cache of a data split as .npy files, memory-mapped.

The course's pickle takes about 1.5 s to decompress and unpickle on every run; its arrays, kept as .npy files, load
in milliseconds. The cache is keyed by the SHA-256 of the file the split was read from, and each array is checked
against the SHA-256 its manifest recorded (hashing 220 MB takes about 0.1 s): a cache that was changed or cut short
is read again from the source, never trusted. Writing it is an optimisation: a cache directory that cannot be
written costs the speed, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from backprop_lab.datasets import Split

MANIFEST = "manifest.json"


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def _load(directory: Path) -> Optional[Split]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        # copy-on-write: the pages are the file's until written, and torch gets an array it may take as writable
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="c") for name in Split._fields}
    except (OSError, ValueError):
        return None
    if any(_digest(arrays[name]) != manifest.get(name) for name in Split._fields):
        return None
    return Split(**arrays)


def _store(directory: Path, split: Split) -> None:
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)  # a cache that failed its check
        with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
            for name, array in split._asdict().items():
                np.save(Path(tmp) / f"{name}.npy", array)
            manifest = {name: _digest(array) for name, array in split._asdict().items()}
            (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=1))
            os.replace(tmp, directory)  # atomic: readers see no cache or a whole one
            os.mkdir(tmp)  # for TemporaryDirectory's cleanup, which expects it
    except OSError:
        pass  # another process stored it first, or the directory cannot be written: the next run reads the source


def cached(cache_root: Path, source_sha256: str, read: Callable[[], Split]) -> Split:
    """The split of the source whose SHA-256 is given: from the cache when it is there and intact, else `read()`,
    stored for the next run."""
    directory = cache_root / f"arrays-{source_sha256}"
    split = _load(directory)
    if split is None:
        split = read()
        _store(directory, split)
    return split
