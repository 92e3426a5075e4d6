"""Make data/digits.npz and data/mnist_5k.npz from the project's shared CSV files.

Run from the repository root (nothing is downloaded):

    python data/convert.py                       # reads /work/shared/data
    python data/convert.py path/to/csv/folder    # or another folder with the CSVs

Each CSV (gzip) has one image per row: the pixels row-major, then the label, no
header. Each output ``.npz`` (uncompressed by ``numpy.load``, no pickle) holds

    X           uint8 (N, D)   pixels as in the CSV (digits: 0..16, MNIST: 0..255)
    y           uint8 (N,)     labels 0..9, in the CSV's row order
    test_index  uint16 (T,)    sorted row numbers of the fixed test split
    split_seed  int64 ()       the seed the split was drawn with (for the record)

The split is stratified: for every class c with n_c examples, round(n_c / 5)
of them (20%) go to the test set, the rest to training. It is drawn once here
with ``numpy.random.default_rng(SPLIT_SEED)`` (PCG64), one permutation per class
in class order 0..9, and then *stored*: loading never draws random numbers, so
the split cannot change with a NumPy version.
"""

import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

SPLIT_SEED = 0
TEST_FRACTION = 0.2
SOURCES = {
    # output name: (CSV file, number of pixels, largest pixel value)
    "digits": ("digits.csv.gz", 64, 16),
    "mnist_5k": ("mnist_5k.csv.gz", 784, 255),
}


def read_csv(path, num_pixels, max_value):
    """Read a gzip CSV of rows (pixels..., label) -> X uint8 (N, num_pixels), y uint8 (N,)."""
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != num_pixels + 1:
        raise ValueError(f"{path}: expected {num_pixels + 1} columns, got {table.shape[1]}")
    X, y = table[:, :-1], table[:, -1]
    if X.min() < 0 or X.max() > max_value:
        raise ValueError(f"{path}: pixels must lie in [0, {max_value}], got [{X.min()}, {X.max()}]")
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"{path}: labels must lie in [0, 9], got [{y.min()}, {y.max()}]")
    return X.astype(np.uint8), y.astype(np.uint8)


def stratified_test_index(y, test_fraction=TEST_FRACTION, seed=SPLIT_SEED):
    """Sorted row numbers (T,) with round(test_fraction * n_c) examples of each class c."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        n_test = round(test_fraction * len(rows))
        picked.append(rows[rng.permutation(len(rows))[:n_test]])
    return np.sort(np.concatenate(picked)).astype(np.uint16)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv):
    source_dir = Path(argv[1]) if len(argv) > 1 else Path("/work/shared/data")
    out_dir = Path(__file__).resolve().parent
    for name, (filename, num_pixels, max_value) in SOURCES.items():
        source = source_dir / filename
        X, y = read_csv(source, num_pixels, max_value)
        test_index = stratified_test_index(y)
        target = out_dir / f"{name}.npz"
        # Compressed: the MNIST subset shrinks from 3.9 MB to about 1 MB and
        # still decodes in a few milliseconds.
        np.savez_compressed(target, X=X, y=y, test_index=test_index,
                            split_seed=np.int64(SPLIT_SEED))
        counts = np.bincount(y[test_index], minlength=10)
        print(f"{target.name}: X {X.shape} y {y.shape} test {len(test_index)} "
              f"(per class {counts.tolist()}), {target.stat().st_size} bytes")
        print(f"  source sha256 {sha256(source)}")
        print(f"  output sha256 {sha256(target)}")


if __name__ == "__main__":
    main(sys.argv)
