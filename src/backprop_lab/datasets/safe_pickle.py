"""Unpickling numpy arrays and nothing else: a hostile pickle is refused before it can run code or allocate more
than it holds."""

from __future__ import annotations

import codecs
import io
import math
import pickle
import pickletools

import numpy as np

from backprop_lab.core.errors import DataError

# A pickle of MNIST's six arrays has under 200 opcodes (numpy writes a few per array). Each opcode can cost the
# unpickler a stack slot and a memo entry, so bounding them bounds those too.
MAX_PICKLE_OPCODES = 10_000


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


def load_numpy_pickle(data: bytes):
    _check_pickle_opcodes(data)
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin-1").load()
    except _UNPICKLING as e:
        raise DataError(f"not a readable MNIST pickle ({type(e).__name__}: {e})") from None

