"""A strict stand-in for CuPy that lives in host memory (backend ``"fakegpu"``).

CuPy mirrors NumPy's API, so minikfac writes its numerics once against that
API and runs them with ``xp = get_array_module(x)``. The usual bugs of such code
only show on a real GPU: a NumPy array that slips into a device computation, a
``np.something(x)`` call on a device array, a hidden transfer. This module lets
the test suite catch them on any machine. It offers NumPy's functions (as
``minikfac.fakegpu.<name>``, like ``cupy.<name>``) over :class:`DeviceArray`, a
wrapper around an ndarray in pretend device memory, and it is *stricter* than
CuPy:

- ``np.asarray(d)`` and any implicit conversion to NumPy raise ``TypeError``
  (CuPy does the same); move data with ``minikfac.to_numpy``/``d.get()``;
- an operation mixing a DeviceArray with a NumPy array raises ``TypeError``,
  including ``fakegpu.asarray(numpy_array)`` (CuPy would copy silently);
  Python and NumPy *scalars* are allowed, as on CuPy;
- calling a NumPy function on a DeviceArray (``np.exp(d)``, ``np.sum(d)``)
  raises ``TypeError`` (CuPy would dispatch it; we want the code to say ``xp``);
- reductions and scalar indexing return 0-d arrays, as on CuPy, not NumPy
  scalars — code that works here does not depend on NumPy's scalar types.

Only :func:`minikfac.backend.asarray` creates DeviceArrays from host data (via
:func:`from_host`).
"""

import types

import numpy as np

__all__ = ["DeviceArray", "from_host", "ndarray"]


def _mixing_error(what):
    return TypeError(
        f"fakegpu: {what} mixes a device array with a host (NumPy) array; move "
        "the host array with minikfac.asarray(x) or the device array with "
        "minikfac.to_numpy(x)"
    )


def _unwrap(obj):
    """Replace DeviceArrays by their host buffers; refuse NumPy arrays."""
    if type(obj) is DeviceArray:
        return obj._host
    if isinstance(obj, np.ndarray):
        raise _mixing_error(f"an argument of shape {obj.shape}")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    """Wrap results: arrays and NumPy scalars become DeviceArrays (0-d for scalars)."""
    if isinstance(obj, np.ndarray):
        return DeviceArray(obj)
    if isinstance(obj, np.generic):
        return DeviceArray(np.asarray(obj))
    if isinstance(obj, tuple):
        wrapped = [_wrap(o) for o in obj]
        return type(obj)(*wrapped) if hasattr(obj, "_fields") else tuple(wrapped)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    if isinstance(obj, np.random.Generator):
        return _Proxy(obj, "Generator")
    return obj


class _Proxy:
    """Forwards calls and attribute look-ups to a NumPy object, (un)wrapping arrays."""

    __slots__ = ("_target", "_name")

    def __init__(self, target, name):
        self._target = target
        self._name = name

    def __getattr__(self, name):
        return _adapt(getattr(self._target, name), f"{self._name}.{name}")

    def __call__(self, *args, **kwargs):
        return _wrap(self._target(*_unwrap(args), **_unwrap(kwargs)))

    def __repr__(self):
        return f"<fakegpu {self._name}>"


def _adapt(attr, name):
    if attr is np.ndarray:
        return DeviceArray
    if isinstance(attr, type):  # dtypes (float32, ...), exception classes
        return attr
    if isinstance(attr, types.ModuleType) or callable(attr):
        return _Proxy(attr, name)
    return attr  # constants: pi, inf, newaxis


def from_host(host):
    """A DeviceArray holding a copy of the NumPy array ``host`` (the one explicit way in)."""
    return DeviceArray(np.array(host, copy=True))


def _binary(name):
    def op(self, other):
        return _wrap(getattr(self._host, name)(_unwrap(other)))

    op.__name__ = name
    return op


def _inplace(name):
    def op(self, other):
        getattr(self._host, name)(_unwrap(other))
        return self

    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        return _wrap(getattr(self._host, name)())

    op.__name__ = name
    return op


class DeviceArray:
    """An ndarray in pretend device memory; see the module docstring for its rules."""

    __slots__ = ("_host",)
    __array_ufunc__ = None  # NumPy operators return NotImplemented -> our reflected ops
    __hash__ = None

    def __init__(self, host):
        self._host = host

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "fakegpu: implicit conversion of a device array to NumPy is not allowed; "
            "use minikfac.to_numpy(x) at the edge of the computation"
        )

    def __array_function__(self, func, types_, args, kwargs):
        raise TypeError(
            f"fakegpu: numpy.{func.__name__} was called on a device array; call "
            f"xp.{func.__name__} with xp = minikfac.get_array_module(x)"
        )

    def get(self):
        """A NumPy copy on the host (CuPy's name for it)."""
        return self._host.copy()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._host, name)
        return _Proxy(attr, f"ndarray.{name}") if callable(attr) else _wrap(attr)

    def __getitem__(self, key):
        return _wrap(self._host[_unwrap(key)])

    def __setitem__(self, key, value):
        self._host[_unwrap(key)] = _unwrap(value)

    def __len__(self):
        return len(self._host)

    def __iter__(self):
        return (_wrap(row) for row in self._host)

    def __float__(self):
        return float(self._host)

    def __int__(self):
        return int(self._host)

    def __index__(self):
        return self._host.__index__()

    def __bool__(self):
        return bool(self._host)

    def __repr__(self):
        return "fakegpu." + repr(self._host)

    def __format__(self, spec):
        return format(self._host, spec) if self._host.ndim == 0 else repr(self)

    def __copy__(self):
        return DeviceArray(self._host.copy())

    def __deepcopy__(self, memo):
        return DeviceArray(self._host.copy())

    def __reduce__(self):
        return (from_host, (self._host,))


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
              "and", "or", "xor", "lshift", "rshift"):
    for _form in ("__{}__", "__r{}__"):
        setattr(DeviceArray, _form.format(_name), _binary(_form.format(_name)))
    setattr(DeviceArray, f"__i{_name}__", _inplace(f"__i{_name}__"))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(DeviceArray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(DeviceArray, f"__{_name}__", _unary(f"__{_name}__"))

ndarray = DeviceArray


def __getattr__(name):
    """``fakegpu.<name>`` is NumPy's ``<name>`` working on DeviceArrays."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        attr = getattr(np, name)
    except AttributeError:
        raise AttributeError(f"module 'minikfac.fakegpu' has no attribute {name!r}") from None
    return _adapt(attr, name)
