"""minikfac: natural-gradient methods made visible, in NumPy and CuPy.

    import minikfac as mk
    net = mk.nn.Sequential(mk.nn.Linear(4, 5), mk.nn.Tanh(), mk.nn.Linear(5, 3))

See README.md for the tour and docs/design.md for the conventions. The
subpackages, from the bottom up: ``backend`` ← ``nn`` ← ``curvature`` ←
``optim`` ← ``training`` ← ``studies`` ← ``jobs`` ← ``cli``; ``jobs``,
``plot`` (matplotlib), ``exercises`` and ``cli`` load on first use.
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
from minikfac import (  # noqa: E402  (after the backend: they use it)
    checkpoint, curvature, data, gradcheck, models, nn, optim, studies, threads, training,
)

__version__ = "0.1.0"

__all__ = [
    "asarray", "get_array_module", "get_backend", "get_default_dtype",
    "set_backend", "set_default_dtype", "to_numpy", "curvature", "data", "gradcheck", "models", "nn", "optim",
    "studies", "threads", "training", "checkpoint", "jobs", "plot", "exercises", "cli",
]

#: Loaded on first use: jobs and the command line import more (plot imports matplotlib).
_LAZY = ("jobs", "plot", "exercises", "cli", "fakegpu")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"minikfac.{name}")
    raise AttributeError(f"module 'minikfac' has no attribute {name!r}")
