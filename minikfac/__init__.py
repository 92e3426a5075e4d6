"""minikfac: natural-gradient methods made visible, in NumPy and CuPy.

    import minikfac as mk
    net = mk.nn.Sequential(mk.nn.Linear(4, 5), mk.nn.Tanh(), mk.nn.Linear(5, 3))

See README.md for the tour and DESIGN notes.
"""

from minikfac.backend import (
    asarray,
    get_array_module,
    get_backend,
    get_default_dtype,
    set_backend,
    set_default_dtype,
    to_numpy,
)
from minikfac import curvature, data, gradcheck, models, nn, optim, studies, threads, training  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "asarray", "get_array_module", "get_backend", "get_default_dtype",
    "set_backend", "set_default_dtype", "to_numpy", "curvature", "data", "gradcheck", "models", "nn", "optim",
    "studies", "threads", "training",
]
