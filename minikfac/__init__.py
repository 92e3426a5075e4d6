"""minikfac: natural-gradient methods made visible, in NumPy and CuPy.

    import minikfac as mk
    net = mk.nn.Sequential(mk.nn.Linear(4, 5), mk.nn.Tanh(), mk.nn.Linear(5, 3))

See README.md for the tour and docs/design.md for the conventions. The
parts, from the bottom up: ``backend`` ← ``nn`` ← ``curvature`` ← ``optim``, ``laplace``, ``influence``, ``continual`` ←
``training`` ← ``studies`` ← ``jobs`` ← ``cli`` (docs/design.md draws them all).
Each loads on first use (``mk.curvature`` imports ``minikfac.curvature`` the
first time it is read), so ``import minikfac`` costs only the backend, and a
part that is never used is never imported: the exercises' grader relies on
that to keep the library's answers out of a student's process.
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

__version__ = "0.1.0"

__all__ = [
    "asarray", "get_array_module", "get_backend", "get_default_dtype",
    "set_backend", "set_default_dtype", "to_numpy", "curvature", "data", "gradcheck", "models", "nn", "optim",
    "studies", "threads", "training", "checkpoint", "jobs", "plot", "exercises", "cli", "laplace", "influence",
    "continual",
]

#: The parts, each imported the first time it is read as an attribute.
_LAZY = ("checkpoint", "curvature", "data", "gradcheck", "models", "nn", "optim", "studies", "threads", "training",
         "jobs", "plot", "exercises", "cli", "fakegpu", "laplace", "influence", "continual")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"minikfac.{name}")
    raise AttributeError(f"module 'minikfac' has no attribute {name!r}")
