"""Unit tests of the datasets (bundled, IDX, CIFAR-10 batches) and of their partition across companies."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.errors import DataError, FedLedgerError
from fedledger.fl.data import (
    label_skew,
    load_breast_cancer,
    load_cifar10,
    load_digits,
    load_mnist_idx,
    load_mnist_subset,
    partition_dirichlet,
    partition_iid,
    read_idx,
    train_test_split,
)

# --- helpers: tiny dataset files written the way the published ones are ------------------------

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
              np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: npt.NDArray[np.generic]) -> bytes:
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: npt.NDArray[np.generic]) -> None:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_mnist(root: Path, *, n_train: int = 6, n_test: int = 3, gz: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(root / (name + (".gz" if gz else "")), array)
    return arrays


def write_cifar(root: Path, *, per_batch: int = 4, protocol: int = 2, str_keys: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        keys = ("data", "labels", "batch_label") if str_keys else (b"data", b"labels", b"batch_label")
        batch = dict(zip(keys, (data, labels, name.encode())))
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = data
        written[name + ".labels"] = np.asarray(labels)
    return written


# --- bundled datasets --------------------------------------------------------------------------

def test_the_mnist_subset_is_5000_images_in_the_unit_interval_split_by_class() -> None:
    ds = load_mnist_subset(seed=0)

    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.99
    assert np.bincount(ds.y_test, minlength=10).tolist() == [100] * 10
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10


def test_breast_cancer_is_standardized_with_training_statistics_only() -> None:
    from sklearn.datasets import load_breast_cancer as sklearn_load

    ds = load_breast_cancer(seed=3)
    raw = sklearn_load().data
    train, test = train_test_split(sklearn_load().target, test_fraction=0.2, seed=3)

    assert ds.x_train.shape == (len(train), 30) and ds.x_test.shape == (len(test), 30)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-4)
    expected_test = (raw[test] - raw[train].mean(axis=0)) / raw[train].std(axis=0)
    np.testing.assert_allclose(ds.x_test, expected_test, rtol=1e-5, atol=1e-5)


def test_digits_are_64_features_in_the_unit_interval() -> None:
    ds = load_digits(seed=0)

    assert ds.x_train.shape[1:] == (64,) and len(ds.y_train) + len(ds.y_test) == 1797
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() == 1.0


@given(seed=st.integers(0, 2**32 - 1), fraction=st.floats(0.05, 0.95))
def test_a_split_is_disjoint_covering_stratified_and_fixed_by_its_seed(seed: int, fraction: float) -> None:
    labels = np.repeat(np.arange(5), 40)

    train, test = train_test_split(labels, test_fraction=fraction, seed=seed)

    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    assert len(set(np.bincount(labels[test], minlength=5).tolist())) == 1
    again = train_test_split(labels, test_fraction=fraction, seed=seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_bundled_splits_depend_on_the_seed() -> None:
    a, b = load_breast_cancer(seed=0), load_breast_cancer(seed=1)

    assert not np.array_equal(a.y_test, b.y_test) or not np.array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(load_breast_cancer(seed=0).x_test, a.x_test)


# --- IDX files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_returns_the_array_written(tmp_path: Path, dtype: type[np.generic], suffix: str) -> None:
    array = (np.arange(24) - 5).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)

    got = read_idx(path)

    assert got.shape == (2, 3, 4) and got.dtype.kind == np.dtype(dtype).kind
    np.testing.assert_array_equal(got, array)


def test_full_mnist_loads_from_the_four_idx_files(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, n_train=6, n_test=3)

    ds = load_mnist_idx(tmp_path)

    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(ds.x_train[:, 0], arrays["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.y_train.dtype == np.int64 and ds.x_train.dtype == np.float32


def test_full_mnist_loads_gzipped_and_dot_spelled_files(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").rename(tmp_path / "t10k-images.idx3-ubyte.gz")

    ds = load_mnist_idx(tmp_path)

    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    assert ds.x_test.shape == (3, 1, 28, 28)


def test_a_missing_mnist_file_is_named_with_what_is_expected(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()

    with pytest.raises(DataError, match=r"MNIST test labels not found in .*: expected t10k-labels-idx1-ubyte "
                                        r"or t10k-labels-idx1-ubyte\.gz") as info:
        load_mnist_idx(tmp_path)
    assert isinstance(info.value, FedLedgerError)


def test_a_missing_mnist_directory_lists_the_files_it_should_hold(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*train-images-idx3-ubyte"):
        load_mnist_idx(tmp_path / "nowhere")


def test_an_idx_file_with_a_bad_magic_number_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"PK\x03\x04not an idx file")

    with pytest.raises(DataError, match=r"is not an IDX file.*50 4b 03 04"):
        read_idx(path)


def test_a_truncated_idx_file_is_refused_with_its_sizes(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))[:-10])

    with pytest.raises(DataError, match=r"holds 1558 bytes of data but its header declares shape \(2, 28, 28\)"):
        read_idx(path)


def test_a_corrupt_gzip_idx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b\x08garbage")

    with pytest.raises(DataError, match=r"cannot read IDX file"):
        read_idx(path)


def test_mnist_images_of_the_wrong_size_are_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 27, 27), dtype=np.uint8))

    with pytest.raises(DataError, match=r"train images .* shape \(6, 27, 27\).*expected N x 28 x 28"):
        load_mnist_idx(tmp_path)


def test_mnist_labels_that_do_not_match_the_images_are_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))

    with pytest.raises(DataError, match=r"test labels .* shape \(5,\); expected \(3,\)"):
        load_mnist_idx(tmp_path)


# --- CIFAR-10 batches --------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_loads_from_the_python_batches(tmp_path: Path, protocol: int) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=4, protocol=protocol)

    ds = load_cifar10(tmp_path)  # the parent of cifar-10-batches-py works too

    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    # Rows are channel-major: the first 1024 bytes are the red plane.
    np.testing.assert_allclose(ds.x_train[4, 0].reshape(-1), written["data_batch_2"][0, :1024] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, written["test_batch.labels"])


def test_cifar10_batches_pickled_by_numpy_1_load(tmp_path: Path) -> None:
    # The published batches name numpy.core.multiarray, which numpy 2 renamed numpy._core.multiarray.
    written = write_cifar(tmp_path)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = (tmp_path / name).read_bytes()
        assert b"numpy._core.multiarray\n" in data
        (tmp_path / name).write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))

    ds = load_cifar10(tmp_path)

    np.testing.assert_allclose(ds.x_test.reshape(4, -1), written["test_batch"] / 255.0, rtol=1e-6)


def test_cifar10_batches_with_str_keys_load(tmp_path: Path) -> None:
    write_cifar(tmp_path, str_keys=True)

    assert load_cifar10(tmp_path).x_test.shape == (4, 3, 32, 32)


def test_a_missing_cifar10_batch_is_named_with_what_is_expected(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()

    with pytest.raises(DataError, match=r"batch file\(s\) data_batch_3 missing in .*expected data_batch_1 "
                                        r"\.\.\. data_batch_5 and test_batch"):
        load_cifar10(tmp_path)


def test_a_missing_cifar10_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CIFAR-10 directory .*nowhere does not exist"):
        load_cifar10(tmp_path / "nowhere")


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.target),)


def test_a_cifar10_batch_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(marker)}, protocol=2))

    with pytest.raises(DataError, match=r"cannot read CIFAR-10 batch .*test_batch: refusing to load"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_a_cifar10_batch_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    bad = {b"data": np.zeros((4, 1024), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(bad, protocol=2))

    with pytest.raises(DataError, match=r"data_batch_1 has data of shape \(4, 1024\).*expected N x 3072"):
        load_cifar10(tmp_path)


def test_a_cifar10_file_that_is_not_a_pickle_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(b"hello")

    with pytest.raises(DataError, match=r"cannot read CIFAR-10 batch .*data_batch_5"):
        load_cifar10(tmp_path)


# --- partitions --------------------------------------------------------------------------------

def _assert_partition(parts: list[np.ndarray], n: int) -> None:
    assert all(p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert len(joined) == n, "parts overlap or miss examples"
    assert np.array_equal(np.sort(joined), np.arange(n))


@given(n=st.integers(1, 500), k=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_iid_parts_are_disjoint_cover_the_data_are_equal_and_fixed_by_the_seed(n: int, k: int, seed: int) -> None:
    parts = partition_iid(n, k, seed=seed)

    assert len(parts) == k
    _assert_partition(parts, n)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, partition_iid(n, k, seed=seed)))


@given(labels=st.lists(st.integers(0, 9), min_size=20, max_size=400), k=st.integers(1, 8),
       alpha=st.sampled_from([0.05, 0.1, 0.5, 1.0, 100.0]), seed=st.integers(0, 2**32 - 1))
def test_dirichlet_parts_are_disjoint_cover_the_data_and_are_fixed_by_the_seed(
        labels: list[int], k: int, alpha: float, seed: int) -> None:
    parts = partition_dirichlet(labels, k, alpha=alpha, seed=seed, min_size=0)

    assert len(parts) == k
    _assert_partition(parts, len(labels))
    again = partition_dirichlet(labels, k, alpha=alpha, seed=seed, min_size=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


_BALANCED = np.repeat(np.arange(10), 200)


@given(k=st.integers(2, 10), alpha=st.sampled_from([0.1, 0.5, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_every_company_gets_at_least_min_size_examples(k: int, alpha: float, seed: int) -> None:
    parts = partition_dirichlet(_BALANCED, k, alpha=alpha, seed=seed, min_size=20)

    _assert_partition(parts, len(_BALANCED))
    assert min(map(len, parts)) >= 20


@given(k=st.integers(2, 10), seed=st.integers(0, 2**32 - 1))
def test_dirichlet_with_small_alpha_is_more_skewed_than_iid(k: int, seed: int) -> None:
    iid = label_skew(_BALANCED, partition_iid(len(_BALANCED), k, seed=seed))
    skewed = label_skew(_BALANCED, partition_dirichlet(_BALANCED, k, alpha=0.1, seed=seed))
    near_iid = label_skew(_BALANCED, partition_dirichlet(_BALANCED, k, alpha=1000.0, seed=seed))

    assert iid < 0.1 and near_iid < 0.1
    assert skewed > iid + 0.25


def test_label_skew_is_zero_for_identical_mixes_and_large_for_one_class_each() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])

    assert label_skew(labels, [np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7])]) == 0.0
    assert label_skew(labels, [np.array([0, 2, 4, 6]), np.array([1, 3, 5, 7])]) == 0.5


def test_more_companies_than_min_size_allows_is_refused() -> None:
    with pytest.raises(DataError, match=r"cannot give each of 11 companies 10 examples: the dataset has only 100"):
        partition_dirichlet(np.zeros(100, dtype=np.int64), 11, alpha=1.0, seed=0, min_size=10)


def test_an_unreachable_min_size_is_reported_with_what_to_change() -> None:
    one_class = np.zeros(100, dtype=np.int64)

    with pytest.raises(DataError, match=r"in 3 attempts .*raise alpha or lower min_size"):
        partition_dirichlet(one_class, 5, alpha=0.001, seed=0, min_size=5, max_attempts=3)


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": -1.0}, {"alpha": 1.0, "max_attempts": 0}])
def test_invalid_dirichlet_arguments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        partition_dirichlet(np.zeros(10, dtype=np.int64), 2, seed=0, **kwargs)  # type: ignore[arg-type]
