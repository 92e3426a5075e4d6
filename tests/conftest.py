"""Shared fixtures: every backend-dependent test runs on NumPy, on the strict
host-memory stand-in ``fakegpu`` (which refuses mixing and NumPy calls on its
arrays), and on CuPy when a GPU is present (marker ``gpu``, skipped otherwise).
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend


def _gpu_available():
    try:
        backend.module_of("cupy")
    except RuntimeError:
        return False
    return True


GPU = _gpu_available()


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not GPU:
            item.add_marker(skip)


BACKENDS = ["numpy", "fakegpu", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Run the test on each backend; the current backend is set for its duration."""
    previous = backend.get_backend()
    backend.set_backend(request.param)
    yield request.param
    backend.set_backend(previous)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Every test starts on NumPy, float64, with the initialisation seed reset."""
    backend.set_backend("numpy")
    backend.set_default_dtype("float64")
    mk.nn.init.manual_seed(0)
    yield
    backend.set_backend("numpy")
    backend.set_default_dtype("float64")


def on(name, array):
    """Move host ``array`` to backend ``name`` (test helper)."""
    return backend.asarray(np.asarray(array), backend=name)


def inputs_and_targets(shape, loss, n=6, classes=3, seed=0):
    """Random host data for a loss named "ce", "mse" or "bce": X (n, *shape) and y.

    y: labels in [0, classes) for "ce"; (n, classes) reals for "mse"; 0/1
    floats for "bce" (test helper).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n,) + tuple(shape))
    if loss == "ce":
        y = rng.integers(0, classes, size=n)
    elif loss == "mse":
        y = rng.standard_normal((n, classes))
    else:
        y = (rng.random((n, classes)) < 0.5).astype(np.float64)
    return X, y
