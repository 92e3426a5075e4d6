"""The NumPy/CuPy switch: which array module, moving arrays, default dtype.

This is the only module that imports CuPy. Everything else asks

    xp = get_array_module(x)

for the module of the arrays it received and calls ``xp.<function>``; it never
converts backend arrays to NumPy in a hot path. Data moves between backends only
at the edges (``net.to(...)``, the data loader, saving, plotting) through
:func:`asarray` and :func:`to_numpy`.

Three backends are known:

``"numpy"``   host memory, the default.
``"cupy"``    a CUDA GPU through CuPy (``pip install 'minikfac[gpu]'``).
``"fakegpu"`` a strict stand-in for CuPy that lives in host memory
              (:mod:`minikfac.fakegpu`). It refuses what CuPy refuses (implicit
              conversion to NumPy, mixing with NumPy arrays) and also any NumPy
              function applied to its arrays, so the test suite can prove on a
              machine without a GPU that the framework keeps backends apart.
"""

import contextlib

import numpy as np

_BACKENDS = ("numpy", "cupy", "fakegpu")
_state = {"backend": "numpy", "dtype": np.dtype(np.float64)}


# --------------------------------------------------------------------------- #
# The backends' modules and array types (imported lazily)
# --------------------------------------------------------------------------- #
def _import_cupy():
    try:
        import cupy
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "backend 'cupy' needs CuPy, which is not installed: install it with "
            "pip install 'minikfac[gpu]' (or the cupy-cudaXXx wheel matching your "
            f"CUDA), or use set_backend('numpy'). ({err})"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "backend 'cupy': CuPy is installed but no CUDA device can be used "
            f"({err}); check the driver with nvidia-smi, or use set_backend('numpy')."
        ) from None
    if count == 0:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "backend 'cupy': CuPy is installed but this machine has no CUDA GPU; "
            "use set_backend('numpy')."
        )
    return cupy


def _import_fakegpu():
    from minikfac import fakegpu

    return fakegpu


def module_of(name):
    """The array module of backend ``name`` ("numpy", "cupy" or "fakegpu").

    Raises ``ValueError`` for an unknown name and ``RuntimeError`` (saying why
    and how to fix it) when CuPy is not installed or no GPU is present.
    """
    if name == "numpy":
        return np
    if name == "cupy":
        return _import_cupy()
    if name == "fakegpu":
        return _import_fakegpu()
    raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")


def backend_of(x):
    """Name of the backend that holds array ``x``, or ``None`` if ``x`` is not an array.

    NumPy scalars (``np.float64``) and Python numbers count as scalars, not
    arrays: every backend accepts them as operands.
    """
    if isinstance(x, np.ndarray):
        return "numpy"
    module = type(x).__module__
    if module.startswith("cupy") and hasattr(x, "shape"):
        return "cupy"
    if module == "minikfac.fakegpu" and hasattr(x, "shape"):
        return "fakegpu"
    return None


def is_array(x):
    """True if ``x`` is an array of one of the known backends."""
    return backend_of(x) is not None


def _describe(x):
    return f"{backend_of(x)} array of shape {tuple(x.shape)} and dtype {x.dtype}"


def get_array_module(*arrays):
    """The array module (``numpy``, ``cupy`` or ``minikfac.fakegpu``) of ``arrays``.

    Non-array arguments (``None``, Python or NumPy scalars) are ignored; with no
    array at all, the current backend's module is returned. Arrays on two
    different backends raise a ``ValueError`` that names both and says how to
    move them.
    """
    first = None
    for position, x in enumerate(arrays):
        name = backend_of(x)
        if name is None:
            continue
        if first is None:
            first = (position, name, x)
        elif name != first[1]:
            raise ValueError(
                "arrays on different backends: argument "
                f"{first[0]} is a {_describe(first[2])}, argument {position} is a "
                f"{_describe(x)}; move one with minikfac.asarray(x, backend=...) "
                "or net.to(...)"
            )
    return module_of(first[1] if first else _state["backend"])


def check_same_backend(**named_arrays):
    """Raise a ``ValueError`` naming the arguments if they are on different backends.

    ``named_arrays`` maps argument names to arrays (non-arrays are ignored).
    Returns the backend name (or the current backend if no array is given).
    """
    seen = None
    for name, x in named_arrays.items():
        where = backend_of(x)
        if where is None:
            continue
        if seen is None:
            seen = (name, where, x)
        elif where != seen[1]:
            raise ValueError(
                f"{seen[0]} is a {_describe(seen[2])} but {name} is a "
                f"{_describe(x)}; move one with minikfac.asarray(x, backend=...) "
                "or net.to(...)"
            )
    return seen[1] if seen else _state["backend"]


# --------------------------------------------------------------------------- #
# The current backend and default dtype
# --------------------------------------------------------------------------- #
def set_backend(name):
    """Make ``name`` ("numpy", "cupy" or "fakegpu") the current backend.

    New parameters and data-loader batches are created there. Raises
    ``ValueError`` for an unknown name and ``RuntimeError`` if the backend
    cannot be used on this machine (the message says why and how to fix it).
    """
    module_of(name)  # fails loudly before anything changes
    _state["backend"] = name


def get_backend():
    """Name of the current backend ("numpy" unless :func:`set_backend` was called)."""
    return _state["backend"]


def array_module():
    """The current backend's array module."""
    return module_of(_state["backend"])


def set_default_dtype(dtype):
    """Set the floating dtype of parameters and data created afterwards.

    ``dtype`` is "float32" or "float64" (or the NumPy dtype). float64 is the
    default: gradient checks and exact-Fisher work need it; float32 is fine
    for training.
    """
    allowed = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
    # np.dtype(None) is float64, so resolve by name rather than through np.dtype.
    name = None if dtype is None else getattr(dtype, "__name__", None) or str(dtype)
    if name not in allowed:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    _state["dtype"] = allowed[name]


def get_default_dtype():
    """The current default floating dtype (a ``numpy.dtype``)."""
    return _state["dtype"]


@contextlib.contextmanager
def using(name=None, dtype=None):
    """Within the block, ``name`` is the current backend and ``dtype`` the default dtype (None: unchanged).

    Both are restored on leaving, also after an error, whatever the block set
    (DeZero's ``using_config`` is the model)::

        with minikfac.backend.using("cupy", "float32"):
            net = models.mlp(64, 10)         # parameters on the GPU, in float32

    Raises like :func:`set_backend` and :func:`set_default_dtype`, before
    anything changes, for a name or dtype that cannot be used.
    """
    previous = dict(_state)
    try:
        if name is not None:
            set_backend(name)
        if dtype is not None:
            set_default_dtype(dtype)
        yield
    finally:
        _state.update(previous)


# --------------------------------------------------------------------------- #
# Moving arrays (the edges only)
# --------------------------------------------------------------------------- #
def to_numpy(x):
    """Return ``x`` as a NumPy array on the host (a copy when it lives elsewhere).

    Accepts arrays of any backend, NumPy scalars and Python numbers/lists.
    """
    where = backend_of(x)
    if where == "cupy":
        return x.get()
    if where == "fakegpu":
        return x.get()
    return np.asarray(x)


def asarray(x, backend=None, dtype=None):
    """Return ``x`` as an array on ``backend`` (default: the current one).

    ``x`` may be an array of any backend, a NumPy array or a nested list.
    ``dtype`` converts at the same time (``None`` keeps the dtype). Arrays
    already on the target backend with the right dtype are returned as they are.
    """
    target = backend or _state["backend"]
    xp = module_of(target)
    where = backend_of(x)
    if where == target:
        return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)
    host = to_numpy(x) if where is not None else np.asarray(x)
    if dtype is not None:
        host = host.astype(dtype, copy=False)
    if target == "numpy":
        return host
    if target == "fakegpu":
        return xp.from_host(host)
    return xp.asarray(host)


def synchronize(x=None):
    """Wait until the device has finished its queued work (no-op on the host).

    Benchmarks call this before reading a clock; ``x`` picks the backend (default
    the current one).
    """
    where = backend_of(x) if x is not None else _state["backend"]
    if where == "cupy":
        module_of("cupy").cuda.get_current_stream().synchronize()


def default_rng(seed=None, like=None):
    """A random generator that makes arrays on the backend of ``like`` (or the current one).

    Returns ``numpy.random.Generator`` on the host and ``cupy.random.Generator``
    on the GPU. Their streams differ: the same seed gives different numbers on
    different backends. Use it for sampling inside computations (e.g. targets
    for the Monte-Carlo Fisher); initialisation draws on the host instead
    (:mod:`minikfac.nn.init`) so that it is identical everywhere.
    """
    xp = get_array_module(like) if like is not None else array_module()
    return xp.random.default_rng(seed)
