"""Datasets (real and synthetic) and the DataLoader.

Real data are checked against the shared source CSVs (when present) and the
stored split; 16x16 MNIST against a brute-force area average computed another
way; the loader on every backend (on "fakegpu" any hidden NumPy mixing raises).
"""

import gzip
from pathlib import Path

import numpy as np
import pytest

from minikfac import backend, data
from minikfac.data import DataLoader

SOURCES = Path("/work/shared/data")
FILES = {"digits": ("digits.npz", "digits.csv.gz", 16, 8),
         "mnist": ("mnist_5k.npz", "mnist_5k.csv.gz", 255, 28)}


def _raw(name):
    with np.load(data.DATA_DIR / FILES[name][0]) as npz:
        return npz["X"], npz["y"], npz["test_index"]


# --------------------------------------------------------------------------- #
# Real datasets
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name, n, side", [("digits", 1797, 8), ("mnist", 5000, 28),
                                           ("mnist16", 5000, 16)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_dtypes_ranges(name, n, side, dtype):
    flat = data.load(name, dtype=dtype)
    images = data.load(name, flat=False, dtype=dtype)
    assert flat.X_train.shape[1:] == (side * side,)
    assert images.X_train.shape[1:] == images.image_shape == (1, side, side)
    assert len(flat.X_train) + len(flat.X_test) == n
    assert len(flat.X_test) == len(flat.y_test) and len(flat.X_train) == len(flat.y_train)
    for X in (flat.X_train, flat.X_test, images.X_test):
        assert X.dtype == np.dtype(dtype) and X.min() >= 0 and X.max() <= 1
    assert flat.X_train.max() == 1  # scaled by the true maximum, not by some other constant
    for y in (flat.y_train, flat.y_test):
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert flat.num_classes == 10 and flat.name == name and "\n" not in flat.description
    np.testing.assert_array_equal(images.X_train.reshape(len(images.X_train), -1), flat.X_train)


def test_default_dtype_is_followed():
    backend.set_default_dtype("float32")
    assert data.load("digits").X_train.dtype == np.float32


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_split_is_stratified_disjoint_and_covers_all(name):
    X, y, test_index = _raw(name)
    assert np.all(np.diff(test_index.astype(np.int64)) > 0)  # sorted, no repeats
    assert test_index.max() < len(y)
    counts = np.bincount(y, minlength=10)
    np.testing.assert_array_equal(np.bincount(y[test_index], minlength=10),
                                  np.round(counts / 5).astype(int))
    ds = data.load(name, dtype="float64")
    max_value = FILES[name][2]
    train_rows = np.setdiff1d(np.arange(len(y)), test_index)
    assert len(train_rows) + len(test_index) == len(y)
    np.testing.assert_array_equal(ds.X_test * max_value, X[test_index])
    np.testing.assert_array_equal(ds.X_train * max_value, X[train_rows])
    np.testing.assert_array_equal(ds.y_test, y[test_index])
    np.testing.assert_array_equal(ds.y_train, y[train_rows])


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_files_match_the_source_csv(name):
    path = SOURCES / FILES[name][1]
    if not path.exists():
        pytest.skip(f"{path} not available")
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    X, y, _ = _raw(name)
    np.testing.assert_array_equal(X, table[:, :-1])
    np.testing.assert_array_equal(y, table[:, -1])


def _brute_force_16(X28):
    """Each 28x28 pixel becomes a 16x16 block (448x448 image), then 28x28 blocks are averaged."""
    fine = np.repeat(np.repeat(X28, 16, axis=1), 16, axis=2)
    return fine.reshape(-1, 16, 28, 16, 28).mean(axis=(2, 4))


def test_mnist16_is_an_area_average():
    big = data.load("mnist", flat=False, dtype="float64")
    small = data.load("mnist16", flat=False, dtype="float64")
    for X28, X16 in ((big.X_train, small.X_train), (big.X_test, small.X_test)):
        np.testing.assert_allclose(X16.mean(axis=(1, 2, 3)), X28.mean(axis=(1, 2, 3)),
                                   rtol=0, atol=1e-13)
        # every 10th image, 20 at a time: a 448x448 float64 image is 1.6 MB
        for start in range(0, len(X28), 200):
            rows = slice(start, start + 200, 10)
            np.testing.assert_allclose(X16[rows, 0], _brute_force_16(X28[rows, 0]),
                                       rtol=0, atol=1e-13)


def test_resample_matrix_properties():
    R = data.resample_matrix(28, 16)
    assert R.shape == (16, 28) and R.min() >= 0
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(R.sum(axis=0), 16 / 28, atol=1e-15)
    np.testing.assert_allclose(R[0, :3], [1 / 1.75, 0.75 / 1.75, 0.0], atol=1e-15)
    # an integer factor is plain average pooling
    np.testing.assert_allclose(data.resample_matrix(28, 14), np.kron(np.eye(14), [[0.5, 0.5]]))


def test_load_errors():
    with pytest.raises(ValueError, match="digits.*mnist.*mnist16"):
        data.load("cifar")
    for dtype in ("int32", "bogus"):
        with pytest.raises(ValueError, match="dtype"):
            data.load("digits", dtype=dtype)
    with pytest.raises(TypeError, match="flat"):
        data.load("digits", flat="yes")


def test_files_are_read_once_and_results_are_fresh(monkeypatch):
    reads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, **kw: reads.append(Path(path).name) or
                        real_load(path, **kw))
    data._read_npz.cache_clear()
    data._resampled01.cache_clear()
    first = data.load("mnist")
    data.load("mnist", flat=False, dtype="float32")
    data.load("mnist16")
    assert reads == ["mnist_5k.npz"]
    first.X_train[:] = -1  # the caller's copy; the next load is unaffected
    assert data.load("mnist").X_train.min() == 0


# --------------------------------------------------------------------------- #
# Synthetic datasets
# --------------------------------------------------------------------------- #
SYNTHETIC = [
    (data.spirals, {"n_per_class": 50, "classes": 4}, (200, 2), 4),
    (data.two_moons, {"n": 101}, (101, 2), 2),
    (data.kunstner_logistic_regression, {"n": 200, "variant": "misspecified_model"}, (200, 2), 2),
    (data.kunstner_linear_regression, {"n": 50}, (50, 2), None),
]


@pytest.mark.parametrize("make, kwargs, shape, classes", SYNTHETIC)
def test_synthetic_shapes_and_reproducibility(make, kwargs, shape, classes):
    X, y = make(**kwargs, seed=3)
    X2, y2 = make(**kwargs, seed=3)
    X3, _ = make(**kwargs, seed=4)
    assert X.shape == shape and X.dtype == np.float64 and len(y) == len(X)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, X3)
    assert make(**kwargs, dtype="float32")[0].dtype == np.float32
    if classes is None:
        assert y.shape == (shape[0], 1) and y.dtype == np.float64
    else:
        assert y.dtype == np.int64
        assert np.abs(np.bincount(y, minlength=classes) - len(y) / classes).max() <= 1


def test_spirals_radii_and_two_moons_geometry():
    X, y = data.spirals(n_per_class=30, classes=3, noise=0.5)
    for k in range(3):  # noise moves the angle only: radii are evenly spaced in [0, 1]
        np.testing.assert_allclose(np.sort(np.linalg.norm(X[y == k], axis=1)),
                                   np.linspace(0, 1, 30), atol=1e-12)
    X, y = data.two_moons(n=40, noise=0.0)
    np.testing.assert_allclose(np.linalg.norm(X[y == 0], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(X[y == 1] - [1.0, 0.5], axis=1), 1.0)
    assert X[y == 0, 1].min() >= 0 and X[y == 1, 1].max() <= 0.5


def test_kunstner_linear_regression_statistics():
    X, y = data.kunstner_linear_regression(n=20000)
    np.testing.assert_array_equal(X[:, 0], 1.0)
    logx = np.log(X[:, 1])
    assert abs(logx.mean()) < 0.03 and abs(logx.std() - 0.75) < 0.03
    theta, residual, *_ = np.linalg.lstsq(X, y[:, 0], rcond=None)
    np.testing.assert_allclose(theta, [2.0, 2.0], atol=0.05)
    assert abs(residual[0] / len(y) - 1.0) < 0.05  # unit noise variance


@pytest.mark.parametrize("variant, m, M0, M1", [
    ("correct", 1.0, 2 * np.eye(2), 2 * np.eye(2)),
    ("misspecified_noise", 1.5, 3 * np.eye(2), np.eye(2)),
    ("misspecified_model", 1.0, 1.5 * np.array([[1, -0.6], [-0.6, 1]]),
     1.5 * np.array([[1, 0.6], [0.6, 1]])),
])
def test_kunstner_logistic_regression_statistics(variant, m, M0, M1):
    X, y = data.kunstner_logistic_regression(n=40000, variant=variant)
    for label, centre, M in ((0, m, M0), (1, -m, M1)):
        points = X[y == label]
        assert len(points) == 20000
        np.testing.assert_allclose(points.mean(axis=0), [centre, centre], atol=0.05)
        np.testing.assert_allclose(np.cov(points.T), M.T @ M, atol=0.15)
    with pytest.raises(ValueError, match="variant"):
        data.kunstner_logistic_regression(variant="wrong")


def test_synthetic_argument_errors():
    with pytest.raises(ValueError, match="n_per_class"):
        data.spirals(n_per_class=0)
    with pytest.raises(ValueError, match="noise"):
        data.two_moons(noise=-1)


# --------------------------------------------------------------------------- #
# DataLoader
# --------------------------------------------------------------------------- #
def _epoch(loader):
    """One epoch as host arrays: list of (X_batch, y_batch)."""
    return [(backend.to_numpy(xb), backend.to_numpy(yb)) for xb, yb in loader]


def _ids(N=23):
    """X whose first column is the example's id, y the id as a label."""
    X = np.stack([np.arange(N), -np.arange(N)], axis=1).astype(np.float64)
    return X, np.arange(N)


def test_loader_visits_every_example_once_on_the_backend(backend_name):
    X, y = _ids()
    loader = DataLoader(X, y.astype(np.int32), batch_size=5, seed=1)
    assert len(loader) == 5 and loader.epoch == 0
    seen = []
    for xb, yb in loader:
        assert backend.backend_of(xb) == backend_name == backend.backend_of(yb)
        assert xb.dtype == np.float64 and yb.dtype == np.int64
        xh, yh = backend.to_numpy(xb), backend.to_numpy(yb)
        np.testing.assert_array_equal(xh[:, 0], yh)  # rows stay paired with their labels
        seen.append(yh)
    assert [len(s) for s in seen] == [5, 5, 5, 5, 3] and loader.epoch == 1
    order = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(order), np.arange(23))
    np.testing.assert_array_equal(order, np.random.default_rng([1, 0]).permutation(23))


def test_loader_orders_seeds_epochs_and_resuming(backend_name):
    X, y = _ids()
    a, b = DataLoader(X, y, 4, seed=7), DataLoader(X, y, 4, seed=7)
    epochs_a = [np.concatenate([yb for _, yb in _epoch(a)]) for _ in range(3)]
    epochs_b = [np.concatenate([yb for _, yb in _epoch(b)]) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(epochs_a[0], epochs_a[1])
    other = np.concatenate([yb for _, yb in _epoch(DataLoader(X, y, 4, seed=8))])
    assert not np.array_equal(other, epochs_a[0])
    resumed = DataLoader(X, y, 4, seed=7)
    resumed.epoch = 2
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in _epoch(resumed)]), epochs_a[2])
    assert resumed.epoch == 3 and a.epoch == 3


def test_loader_drop_last_and_no_shuffle(backend_name):
    X, y = _ids(10)
    loader = DataLoader(X, y, batch_size=3, drop_last=True, seed=2)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 3 and all(len(yb) == 3 for _, yb in batches)
    ids = np.concatenate([yb for _, yb in batches])
    assert len(np.unique(ids)) == 9
    np.testing.assert_array_equal(ids, np.random.default_rng([2, 0]).permutation(10)[:9])
    plain = _epoch(DataLoader(X, y, batch_size=4, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in plain]), np.arange(10))
    assert len(DataLoader(X, y, batch_size=20, drop_last=True)) == 0


def test_loader_moves_data_once_and_one_index_array_per_epoch(backend_name, monkeypatch):
    calls = []
    real_asarray = data.asarray
    monkeypatch.setattr(data, "asarray", lambda *a, **k: calls.append(1) or real_asarray(*a, **k))
    X, y = _ids(50)
    loader = DataLoader(X, y, batch_size=2)
    assert len(calls) == 2  # X and y, at construction
    for _ in range(2):
        assert len(_epoch(loader)) == 25
    assert len(calls) == 4  # plus one index array per epoch, none per batch


def test_loader_backend_dtype_and_targets():
    X, y = _ids(6)
    loader = DataLoader(X, y.astype(np.float64)[:, None], 4, backend="fakegpu", dtype="float32")
    xb, yb = next(iter(loader))
    assert backend.backend_of(xb) == "fakegpu" and xb.dtype == np.float32
    assert yb.dtype == np.float32 and yb.shape == (4, 1)  # float targets follow X's dtype


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "4"])
def test_loader_rejects_bad_batch_size(batch_size):
    X, y = _ids(6)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(X, y, batch_size)


def test_loader_rejects_mismatched_lengths_and_bad_epoch():
    X, y = _ids(6)
    with pytest.raises(ValueError, match=r"\(6, 2\).*\(5,\)"):
        DataLoader(X, y[:5], 2)
    loader = DataLoader(X, y, 2)
    with pytest.raises(ValueError, match="epoch"):
        loader.epoch = -1
