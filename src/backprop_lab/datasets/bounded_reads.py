"""Reading a data file within bounds: only a regular file, never more than MAX_DATA_BYTES (read or decompressed),
and hashed as it is read, so that what is parsed is what was verified."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import zlib
from pathlib import Path

from backprop_lab.core.errors import DataError
from backprop_lab.datasets.registry import MNIST_SHA256

# The course's mnist.pkl.gz decompresses to about 220 MB and Fashion-MNIST's largest idx file to 47 MB. Nothing this
# study reads is larger, so a file that decompresses past this, or a header that claims more, is refused (a gzip bomb,
# a hostile header) before it can fill memory: a bomb costs about twice this before it is refused.
MAX_DATA_BYTES = 512 << 20
CHUNK = 1 << 20
UNREADABLE = (OSError, EOFError, zlib.error)  # what a corrupt or truncated gzip raises


def open_regular(path: Path):
    """A regular file (or a link to one), opened for reading; anything else is refused without waiting on it (opening
    a FIFO for reading would block until a writer came)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (data.path)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror})") from None
    f = open(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise DataError(f"{path}: not a regular file (data.path names a file)")
    return f


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(path: Path, actual: str, expected: str) -> None:
    if actual != expected:
        which = "the course's" if expected == MNIST_SHA256 else "the one data.sha256 names"
        raise DataError(f"{path}: SHA-256 is {actual}, expected {expected} (data.sha256); the file is not {which}")


def verify_sha256(path: Path, expected: str) -> None:
    _check_sha256(path, sha256_of(path), expected)


def read_at_most(f, limit: int) -> bytes:
    """Up to `limit` bytes of an open file, read in chunks: memory follows what the file holds, never what it claims
    (one big read would allocate the whole `limit` up front)."""
    chunks, total = [], 0
    while total < limit and (chunk := f.read(min(CHUNK, limit - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, read once and hashed as read: what is unpickled is what was verified."""
    with open_regular(path) as f:
        raw = read_at_most(f, MAX_DATA_BYTES + 1)
    if len(raw) > MAX_DATA_BYTES:
        raise DataError(f"{path}: larger than the {MAX_DATA_BYTES >> 20} MiB a data file may hold")
    _check_sha256(path, hashlib.sha256(raw).hexdigest(), expected_sha256)
    return raw


def gunzip_bounded(raw: bytes) -> bytes:
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        data = read_at_most(f, MAX_DATA_BYTES + 1)
    if len(data) > MAX_DATA_BYTES:
        raise DataError(
            f"decompresses to more than {MAX_DATA_BYTES >> 20} MiB, the most a data file may hold "
            "(the course's MNIST: 220 MB); a gzip bomb?"
        )
    return data

