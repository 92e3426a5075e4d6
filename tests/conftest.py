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
