"""Datasets and mini-batches: the real sets in ``data/``, seeded toy sets, a loader.

Real datasets (``data/README.md`` has their credits and licences)::

    ds = load("mnist16")            # a Dataset of host NumPy arrays
    ds.X_train.shape                # (4000, 256); flat=False gives (4000, 1, 16, 16)

Synthetic datasets all return a pair ``(X, y)`` of host NumPy arrays — X of
shape (N, D_in) in the requested float dtype, y int64 class labels (N,) or, for
regression, float targets (N, 1) — drawn from ``numpy.random.default_rng(seed)``
so that they are the same on every machine and backend. They are small enough to
split by hand (``X[:k]``) when a test set is wanted.

Mini-batches come from :class:`DataLoader`, which moves the whole dataset to the
backend once and afterwards only moves one index array per epoch.
"""

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minikfac.backend import asarray, get_backend, get_default_dtype, is_array, module_of

#: The folder of minikfac's __init__.py (this file sits in it).
_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_dir(packaged, checkout):
    """The folder of files that ship with minikfac but live outside its code: a Path, or None.

    One copy of each file is kept, in the repository folder ``checkout`` (relative
    to the repository root: "data", "tutorials/exercises"); setup.cfg's
    package_dir maps it to the package ``minikfac.<packaged>``, so an installed
    wheel holds the same files in ``minikfac/<packaged>/``. That folder is tried
    first, then ``<repository>/<checkout>`` next to the package (a checkout: an
    editable install, or the source tree on sys.path).
    """
    for folder in (_PACKAGE_DIR / packaged, _PACKAGE_DIR.parent / checkout):
        if folder.is_dir():
            return folder
    return None


#: The datasets' folder: the repository's data/, or minikfac/_data/ in an installed wheel.
DATA_DIR = bundled_dir("_data", "data") or _PACKAGE_DIR.parent / "data"

# name -> (file in data/, largest pixel value, image side, one-line description)
_REAL = {
    "digits": ("digits.npz", 16, 8,
               "UCI optical digits (Alpaydin & Kaynak 1998), 8x8, 10 classes"),
    "mnist": ("mnist_5k.npz", 255, 28,
              "MNIST 5000-image subset (LeCun, Cortes & Burges), 28x28, 10 classes"),
    "mnist16": ("mnist_5k.npz", 255, 16,
                "MNIST 5000-image subset resampled 28x28 -> 16x16 by area averaging"),
}


@dataclass(frozen=True, repr=False, eq=False)
class Dataset:
    """A train/test split of host NumPy arrays.

    X_train (N_train, D) or (N_train, 1, H, W), float; y_train (N_train,) int64;
    X_test, y_test likewise; ``image_shape`` is (1, H, W); ``num_classes`` C.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple
    name: str
    description: str

    def __repr__(self):
        return (f"Dataset({self.name!r}: train X{self.X_train.shape} y{self.y_train.shape}, "
                f"test X{self.X_test.shape} y{self.y_test.shape}, {self.X_train.dtype}, "
                f"{self.num_classes} classes)")


def _float_dtype(dtype):
    """Resolve ``dtype`` (None -> the default dtype) and insist on float32/float64."""
    try:
        resolved = get_default_dtype() if dtype is None else np.dtype(dtype)
    except TypeError:
        resolved = np.dtype(object)  # not a dtype at all: refused below
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved


# --------------------------------------------------------------------------- #
# Real datasets
# --------------------------------------------------------------------------- #
@functools.cache
def _read_npz(filename):
    """The arrays of ``data/<filename>`` (read once per process, then read-only)."""
    path = DATA_DIR / filename
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; minikfac's datasets live in the repository's data/ folder "
            "(minikfac/_data/ once installed; make them with `python data/convert.py`, see data/README.md)")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in ("X", "y", "test_index")}
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def resample_matrix(n_in, n_out):
    """Area-weighted resampling matrix R (n_out, n_in) for a length-n_in signal.

    Output pixel i covers the source interval [i·s, (i+1)·s) with s = n_in/n_out
    and averages the source pixels j (each covering [j, j+1)) weighted by their
    overlap with it: R[i, j] = |[i·s, (i+1)·s) ∩ [j, j+1)| / s. Every row sums
    to 1 (an average, so values stay in [0, 1]) and every column to n_out/n_in
    (every source pixel is used exactly once in total), hence an image's mean
    intensity is unchanged. A 2-D image resamples as X_out = R X Rᵀ. For 28 → 16,
    s = 1.75: output pixel 0 takes source pixel 0 whole and 3/4 of pixel 1.
    """
    scale = n_in / n_out
    low = np.arange(n_out)[:, None] * scale
    source = np.arange(n_in)[None, :]
    overlap = np.minimum(low + scale, source + 1) - np.maximum(low, source)
    return np.clip(overlap, 0.0, None) / scale


@functools.cache
def _resampled01(filename, max_value, side):
    """All images of ``data/<filename>`` resized to side x side: float64 (N, side²) in [0, 1]."""
    pixels = _read_npz(filename)["X"]
    source_side = math.isqrt(pixels.shape[1])
    # Martens & Grosse 2015 trained on 16x16 MNIST; we make it from 28x28 by
    # area averaging (see resample_matrix), which keeps each image's mean.
    R = resample_matrix(source_side, side)
    images = R @ (pixels.reshape(-1, source_side, source_side) / float(max_value)) @ R.T
    images = images.reshape(len(pixels), side * side)
    images.setflags(write=False)
    return images


def _pixels01(name, rows, dtype):
    """A fresh (len(rows), H·W) array of ``dtype`` in [0, 1]: images ``rows`` of ``name``."""
    filename, max_value, side, _ = _REAL[name]
    pixels = _read_npz(filename)["X"]
    if pixels.shape[1] != side * side:
        return _resampled01(filename, max_value, side)[rows].astype(dtype, copy=False)
    X = pixels[rows].astype(dtype)  # gather the small uint8 rows first, scale in place
    X /= max_value
    return X


def load(name, flat=True, dtype=None):
    """Load a real dataset with its fixed, stratified train/test split (20% test).

    name: "digits" (1797 images 8x8, 359 test), "mnist" (5000 images 28x28,
    1000 test) or "mnist16" (the same MNIST images resampled to 16x16 by area
    averaging, as used by Martens & Grosse 2015 for their exact-Fisher figure;
    see :func:`resample_matrix`). Pixels are scaled to [0, 1].
    flat: True gives X of shape (N, H·W) (64, 784 or 256 features), False gives
    images (N, 1, H, W). dtype: float32 or float64 (default: the default dtype).
    Returns a :class:`Dataset` of host NumPy arrays (fresh copies, yours to
    modify); labels are int64. The files are read once per process.
    """
    if name not in _REAL:
        raise ValueError(f"unknown dataset {name!r}; valid names are {sorted(_REAL)}")
    if not isinstance(flat, bool):
        raise TypeError(f"flat must be True or False, got {flat!r}")
    dtype = _float_dtype(dtype)
    raw, side = _read_npz(_REAL[name][0]), _REAL[name][2]
    test_rows = raw["test_index"].astype(np.intp)
    train_rows = np.setdiff1d(np.arange(len(raw["y"])), test_rows)
    shape = (-1, side * side) if flat else (-1, 1, side, side)
    X_train, X_test = (_pixels01(name, rows, dtype).reshape(shape)
                       for rows in (train_rows, test_rows))
    y_train, y_test = (raw["y"][rows].astype(np.int64) for rows in (train_rows, test_rows))
    return Dataset(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                   num_classes=10, image_shape=(1, side, side),
                   name=name, description=_REAL[name][3])


# --------------------------------------------------------------------------- #
# Synthetic datasets: (X, y) pairs of host NumPy arrays
# --------------------------------------------------------------------------- #
def _check_count(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_noise(noise):
    if not noise >= 0:  # also refuses NaN
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    return float(noise)


def spirals(n_per_class=100, classes=3, noise=0.2, seed=0, dtype=None):
    """Interleaved spiral arms in 2-D, one arm per class (the cs231n toy problem).

    Arm k has points at radius r ∈ [0, 1] (evenly spaced) and angle
    2πk/C + 4r + noise·ε (ε standard normal): each arm turns by 4 radians.
    Returns X (C·n_per_class, 2) float and y (C·n_per_class,) int64, sorted by
    class (arm 0 first).
    """
    n = _check_count(n_per_class, "n_per_class")
    classes = _check_count(classes, "classes", minimum=2)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, n), classes)
    y = np.repeat(np.arange(classes, dtype=np.int64), n)
    angle = 2 * np.pi * y / classes + 4.0 * radius + noise * rng.standard_normal(n * classes)
    X = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return X.astype(_float_dtype(dtype)), y


def two_moons(n=200, noise=0.1, seed=0, dtype=None):
    """Two interleaving half circles in 2-D (two classes).

    Class 0 (n // 2 points): (cos t, sin t), t evenly spaced in [0, π]; class 1
    (the other n - n // 2): (1 − cos t, 0.5 − sin t). Gaussian noise of standard
    deviation ``noise`` is added to every coordinate. Returns X (n, 2) float and
    y (n,) int64, sorted by class.
    """
    n = _check_count(n, "n", minimum=2)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    n0 = n // 2
    t0, t1 = np.linspace(0.0, np.pi, n0), np.linspace(0.0, np.pi, n - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    X = np.concatenate([upper, lower]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n - n0, dtype=np.int64)])
    return X.astype(_float_dtype(dtype)), y


def kunstner_linear_regression(n=1000, seed=0, dtype=None):
    """The linear-regression problem of Kunstner et al. 2019, Fig. 1.

    Their vector-field figure compares the directions of gradient descent,
    natural gradient and the empirical-Fisher method on it. As in their code
    (fKunstner/limitations-empirical-fisher,
    ``eftk.toydata.gradient_field_problem``): x ~ LogNormal(0, 0.75),
    y = θ*ᵀ(1, x) + ε with θ* = (2, 2) (intercept, slope) and ε ~ N(0, 1);
    the model is y ~ N(θᵀ(1, x), 1) (our MSELoss), N = 1000.

    Returns X (n, 2) — the design matrix with columns (1, x), so that
    ``Linear(2, 1, bias=False)`` has exactly their θ = (intercept, slope); use
    ``X[:, 1:]`` with ``Linear(1, 1)`` for θ in our [W | b] order (slope,
    intercept) — and y (n, 1) float. Differences from the paper: we draw with
    ``default_rng(seed)``, they with ``np.random.seed(0)``, so the points differ
    (same distribution). What their figure does with it (``experiments/vecfield``
    in their code), for whoever redraws it (tutorial 04): the loss adds a
    Gaussian prior of variance 0.1, i.e. ‖θ‖²/(2·0.1·N); the three vector fields
    are −∇L, −(F + I/(0.1·N))⁻¹∇L (the Fisher plus the prior's Hessian, which is
    ∇²L) and −F_emp⁻¹∇L (the empirical Fisher of the data term alone), each
    matrix damped by 1e-8·I, and the fields are *scaled* by 1/3 (GD), 1 (NGD)
    and 3 (EF) — these factors are not step sizes of a few discrete steps. Each
    path is the flow of its scaled field from θ ∈ {(2, 4.5), (1, 0), (4.5, 3),
    (−0.5, 3)}, traced with 49,999 Euler steps of size 0.001, so every path
    reaches the optimum.
    """
    n = _check_count(n, "n")
    rng = np.random.default_rng(seed)
    X = np.stack([np.ones(n), rng.lognormal(0.0, 0.75, n)], axis=1)
    y = X @ np.array([2.0, 2.0]) + rng.standard_normal(n)
    dtype = _float_dtype(dtype)
    return X.astype(dtype), y[:, None].astype(dtype)


# variant -> (mean of class 0 (class 1 is its negative), M0, M1): x = mean + z M, z ~ N(0, I)
_KUNSTNER_LOGREG = {
    "correct": (1.0, 2.0 * np.eye(2), 2.0 * np.eye(2)),
    "misspecified_noise": (1.5, 3.0 * np.eye(2), np.eye(2)),
    "misspecified_model": (1.0, 1.5 * np.array([[1.0, -0.6], [-0.6, 1.0]]),
                           1.5 * np.array([[1.0, 0.6], [0.6, 1.0]])),
}


def kunstner_logistic_regression(n=1000, variant="correct", seed=0, dtype=None):
    """The 2-D logistic-regression problems of Kunstner et al. 2019, Fig. 2.

    Two Gaussian classes, n // 2 points each; class 0 centred at (m, m), class 1
    at (−m, −m); points are x = centre + z M with z ~ N(0, I₂) (so Cov = MᵀM),
    following their code (``eftk.toydata``); model p(y=1 | x) = σ(θᵀx), θ ∈ R²,
    no bias. variant:
      "correct"            m = 1,   M₀ = M₁ = 2·I (well specified);
      "misspecified_noise" m = 1.5, M₀ = 3·I, M₁ = I ("Misspecified (A)");
      "misspecified_model" m = 1,   M₀ = 1.5·[[1, −.6], [−.6, 1]],
                           M₁ = 1.5·[[1, .6], [.6, 1]] ("Misspecified (B)").
    In the paper these show how the empirical Fisher's quadratic model at the
    minimum departs from the Fisher's as the model becomes misspecified.
    Returns X (2·(n // 2), 2) float and y (2·(n // 2),) int64, class 0 first.
    We draw with ``default_rng(seed)`` (they use ``np.random.seed(0)``). Their
    code (``experiments/misspec``; its README calls the figure Fig. 2) fits
    these without a prior and draws the Fisher's and the empirical Fisher's
    quadratic models at the minimum.
    """
    n = _check_count(n, "n", minimum=2)
    if variant not in _KUNSTNER_LOGREG:
        raise ValueError(f"variant must be one of {sorted(_KUNSTNER_LOGREG)}, got {variant!r}")
    m, M0, M1 = _KUNSTNER_LOGREG[variant]
    half = n // 2
    rng = np.random.default_rng(seed)
    X0 = m + rng.standard_normal((half, 2)) @ M0
    X1 = -m + rng.standard_normal((half, 2)) @ M1
    y = np.repeat(np.array([0, 1], dtype=np.int64), half)
    return np.concatenate([X0, X1]).astype(_float_dtype(dtype)), y


# --------------------------------------------------------------------------- #
# Mini-batches
# --------------------------------------------------------------------------- #
class DataLoader:
    """Shuffled mini-batches ``(X_batch, y_batch)`` on a backend.

    X: (N, ...) array (any backend, or host data) converted to ``dtype`` (default:
    the default dtype); y: (N,) integer labels (kept integer, as int64) or float
    targets (N, ...) (converted to ``dtype``). Both move to ``backend`` (default:
    the current backend at construction) once, here; batches are then gathered
    on the backend. Epoch e visits the examples in the order
    ``numpy.random.default_rng([seed, e]).permutation(N)`` (drawn on the host,
    moved as one index array per epoch), so the order is the same on every
    backend and a run resumed by setting ``loader.epoch = e`` continues exactly.
    With ``shuffle=False`` the order is 0..N-1. ``epoch`` counts finished epochs
    (an epoch finishes when its iteration is exhausted); ``len(loader)`` is the
    number of batches per epoch (the last one smaller unless ``drop_last``).
    """

    def __init__(self, X, y, batch_size, shuffle=True, seed=0, drop_last=False,
                 backend=None, dtype=None):
        X = X if is_array(X) else np.asarray(X)
        y = y if is_array(y) else np.asarray(y)
        if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
            raise ValueError(f"X and y must have the same length N, got X of shape "
                             f"{tuple(X.shape)} and y of shape {tuple(y.shape)}")
        for name, array in (("X", X), ("y", y)):
            if np.dtype(array.dtype).kind not in "biuf":
                raise TypeError(f"DataLoader: {name} has dtype {array.dtype}; expected real numbers (integer class "
                                "labels, or float inputs and targets)")
        self.batch_size = _check_count(batch_size, "batch_size")

        self.seed = _check_count(seed, "seed", minimum=0)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.backend = backend or get_backend()
        module_of(self.backend)  # an unknown or unavailable backend fails here
        dtype = _float_dtype(dtype)
        self.X = asarray(X, backend=self.backend, dtype=dtype)
        # Class labels stay integer (losses index with them); float targets follow X.
        integer_labels = np.dtype(y.dtype).kind in "biu"
        self.y = asarray(y, backend=self.backend, dtype=np.int64 if integer_labels else dtype)
        self.num_examples = len(X)
        self._epoch = 0

    @property
    def epoch(self):
        """Number of finished epochs; set it to resume at that epoch's order."""
        return self._epoch

    @epoch.setter
    def epoch(self, value):
        self._epoch = _check_count(value, "epoch", minimum=0)

    def __len__(self):
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def order(self, epoch=None):
        """The host permutation (N,) int64 of epoch ``epoch`` (default: the next one)."""
        epoch = self._epoch if epoch is None else _check_count(epoch, "epoch", minimum=0)
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def __iter__(self):
        # Without shuffling, plain slices avoid the gather; with it, one host ->
        # backend copy of N indices per epoch, then every batch indexes on the backend.
        index = asarray(self.order(), backend=self.backend) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            rows = slice(start, start + self.batch_size)
            if index is not None:
                rows = index[rows]
            yield self.X[rows], self.y[rows]
        self._epoch += 1

    def __repr__(self):
        return (f"DataLoader(N={self.num_examples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
                f"backend={self.backend!r}, epoch={self._epoch})")
