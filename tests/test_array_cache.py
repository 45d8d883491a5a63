"""The array cache on tiny splits: a cache is used only when it holds exactly the arrays the caller expects."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from helpers import tiny_mnist

from backprop_lab.datasets import array_cache
from backprop_lab.datasets.split import Split


def tiny_split():
    (x_train, y_train), (x_valid, y_valid), _ = tiny_mnist()
    return Split(x_train, y_train, x_valid, y_valid)


EXPECTED = {name: array_cache.digest(array) for name, array in tiny_split()._asdict().items()}


class Source:
    """The source a cache stands in for, counting its reads."""

    def __init__(self, split=None):
        self.split, self.reads = split or tiny_split(), 0

    def __call__(self):
        self.reads += 1
        return self.split


def warm(directory):
    source = Source()
    array_cache.cached(directory, EXPECTED, source)
    assert source.reads == 1 and (directory / "x_train.npy").is_file()
    return directory


def assert_is_the_source(split):
    for got, want in zip(split, tiny_split()):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype and got.shape == want.shape


def test_the_source_is_read_once_then_its_arrays_are_mapped(tmp_path):
    directory = warm(tmp_path / "arrays")
    source = Source()
    split = array_cache.cached(directory, EXPECTED, source)
    assert source.reads == 0 and isinstance(split.x_train, np.memmap)
    assert_is_the_source(split)
    split.x_train[0, 0] = 7  # copy-on-write: torch may take the array as writable, the file stays as it was
    assert_is_the_source(array_cache.cached(directory, EXPECTED, source))


def _halve_pixels(directory):
    np.save(directory / "x_train.npy", tiny_split().x_train / 2)  # a valid .npy of the same shape and dtype


def _flip_last_byte(directory):
    path = directory / "x_train.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def _same_bytes_other_shape(directory):
    np.save(directory / "x_train.npy", tiny_split().x_train.reshape(784, -1))


def _same_bytes_other_dtype(directory):
    np.save(directory / "y_train.npy", tiny_split().y_train.view(np.float64))


def _fortran_order(directory):
    np.save(directory / "x_train.npy", np.asfortranarray(tiny_split().x_train))


def _one_byte_more(directory):
    with open(directory / "y_valid.npy", "ab") as f:
        f.write(b"\0")


def _one_byte_less(directory):
    path = directory / "y_valid.npy"
    path.write_bytes(path.read_bytes()[:-1])


def _npy_header(text, name):
    def write(directory):
        header = text.encode() + b" " * (-(10 + len(text) + 1) % 64) + b"\n"
        (directory / "x_valid.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)

    write.__name__ = f"_header_{name}"
    return write


def _not_npy(directory):
    (directory / "x_valid.npy").write_text("hello")


def _missing(directory):
    (directory / "y_train.npy").unlink()


def _a_directory(directory):
    (directory / "y_train.npy").unlink()
    (directory / "y_train.npy").mkdir()


def _a_link_to_a_good_copy(directory):
    good = directory.parent / "elsewhere.npy"
    (directory / "x_train.npy").rename(good)
    (directory / "x_train.npy").symlink_to(good)


def _object_array(directory):
    np.save(directory / "y_train.npy", np.array([None] * 20, dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    "edit",
    [
        _halve_pixels,
        _flip_last_byte,
        _same_bytes_other_shape,
        _same_bytes_other_dtype,
        _fortran_order,
        _one_byte_more,
        _one_byte_less,
        _npy_header("{'descr': [[[[[[}", "unclosed"),  # numpy's tokenizer raises its own error, not a ValueError
        _npy_header("[]", "not_a_dict"),
        _npy_header("{" + "(" * 3000 + ")" * 3000 + "}", "nested_3000_deep"),
        _npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 784)}", "negative_shape"),
        _npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (6, 10**10**5)}", "huge_shape"),
        _not_npy,
        _missing,
        _a_directory,
        _a_link_to_a_good_copy,
        _object_array,
    ],
)
def test_a_cache_that_is_not_exactly_the_expected_arrays_is_read_again_and_replaced(tmp_path, edit):
    directory = warm(tmp_path / "arrays")
    edit(directory)
    source = Source()
    assert_is_the_source(array_cache.cached(directory, EXPECTED, source))
    assert source.reads == 1
    assert_is_the_source(array_cache.cached(directory, EXPECTED, source))
    assert source.reads == 1  # stored again, whole


@pytest.mark.parametrize("content", ["[]", "null", "{}", '{"x_train": "rehashed"}', "not json"])
def test_a_manifest_left_in_the_cache_is_neither_trusted_nor_fatal(tmp_path, content):
    """Caches written before the digests moved into the code held a manifest.json of their own digests: whatever it
    says, an edited array is still read again."""
    directory = warm(tmp_path / "arrays")
    (directory / "manifest.json").write_text(content)
    source = Source()
    assert_is_the_source(array_cache.cached(directory, EXPECTED, source))
    assert source.reads == 0
    _halve_pixels(directory)
    manifest = {name: array_cache.digest(np.load(directory / f"{name}.npy")).sha256 for name in Split._fields}
    (directory / "manifest.json").write_text(json.dumps(manifest))  # the edit, its manifest rehashed to match
    assert_is_the_source(array_cache.cached(directory, EXPECTED, source))
    assert source.reads == 1


def test_a_fifo_in_place_of_an_array_is_not_waited_on(tmp_path):
    directory = warm(tmp_path / "arrays")
    (directory / "x_train.npy").unlink()
    os.mkfifo(directory / "x_train.npy")
    source, result = Source(), []
    loader = threading.Thread(target=lambda: result.append(array_cache.cached(directory, EXPECTED, source)))
    loader.start()
    loader.join(timeout=20)
    if loader.is_alive():  # unblock the open so that the thread can end, then fail
        with open(directory / "x_train.npy", "wb"):
            pass
        pytest.fail("the cache waited on a FIFO")
    assert source.reads == 1
    assert_is_the_source(result[0])


def test_a_source_that_is_not_what_was_expected_is_returned_but_never_stored(tmp_path):
    other = tiny_split()._replace(x_train=tiny_split().x_train / 2)
    source = Source(other)
    split = array_cache.cached(tmp_path / "arrays", EXPECTED, source)
    assert split is other and not (tmp_path / "arrays").exists()


def test_an_unwritable_cache_costs_the_speed_only(tmp_path):
    (tmp_path / "afile").write_text("")
    source = Source()
    assert_is_the_source(array_cache.cached(tmp_path / "afile" / "arrays", EXPECTED, source))
    assert_is_the_source(array_cache.cached(tmp_path / "afile" / "arrays", EXPECTED, source))
    assert source.reads == 2
