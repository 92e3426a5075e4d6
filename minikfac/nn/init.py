"""Weight initialisers, drawn on the host so that every backend starts identically.

An initialiser is a callable ``init(shape, fan_in, fan_out, rng) -> numpy array``;
layers take one (or its name) as ``init=``. ``fan_in`` is the number of inputs
of one output unit (``D_in`` for Linear, ``C_in*KH*KW`` for Conv2d) and
``fan_out`` the number of units one input feeds (``D_out``, ``C_out*KH*KW``).

Names accepted by layers: ``"normal"``, ``"xavier"`` (= ``"glorot"`` =
``"xavier_uniform"``), ``"xavier_normal"``, ``"kaiming"`` (= ``"he"`` =
``"kaiming_normal"``), ``"kaiming_uniform"``, ``"orthogonal"``, ``"sparse"``.

Randomness: a layer built with ``rng=None`` draws from one global host
generator, reset by :func:`manual_seed`; pass ``rng=`` (an int seed or a
``numpy.random.Generator``) to a layer to make it independent of the others.
"""

import numpy as np

_global = {"rng": np.random.default_rng(0)}


def manual_seed(seed):
    """Reset the global host generator used by layers created without ``rng=``."""
    _global["rng"] = np.random.default_rng(seed)


def host_rng(rng=None):
    """Resolve ``rng`` (None, an int seed, or a Generator) to a ``numpy.random.Generator``."""
    if rng is None:
        return _global["rng"]
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")


def normal(std=0.01):
    """N(0, std²) entries."""
    def init(shape, fan_in, fan_out, rng):
        return rng.normal(0.0, std, size=shape)
    return init


def xavier_uniform(gain=1.0):
    """Glorot & Bengio 2010: U(-a, a) with a = gain·sqrt(6 / (fan_in + fan_out))."""
    def init(shape, fan_in, fan_out, rng):
        bound = gain * np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=shape)
    return init


def xavier_normal(gain=1.0):
    """Glorot & Bengio 2010: N(0, gain²·2 / (fan_in + fan_out))."""
    def init(shape, fan_in, fan_out, rng):
        return rng.normal(0.0, gain * np.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    return init


def kaiming_normal(gain=np.sqrt(2.0)):
    """He et al. 2015: N(0, gain² / fan_in); gain √2 suits ReLU."""
    def init(shape, fan_in, fan_out, rng):
        return rng.normal(0.0, gain / np.sqrt(fan_in), size=shape)
    return init


def kaiming_uniform(gain=np.sqrt(2.0)):
    """He et al. 2015, uniform: U(-a, a) with a = gain·sqrt(3 / fan_in)."""
    def init(shape, fan_in, fan_out, rng):
        bound = gain * np.sqrt(3.0 / fan_in)
        return rng.uniform(-bound, bound, size=shape)
    return init


def orthogonal(gain=1.0):
    """Saxe et al. 2014: the matrix view (shape[0], prod(shape[1:])) has orthonormal
    rows or columns (whichever are fewer), times ``gain``.

    Drawn as the Q factor of a Gaussian matrix, with the signs of R's diagonal
    folded in so that Q is uniform (Haar) on the orthogonal group.
    """
    def init(shape, fan_in, fan_out, rng):
        rows, cols = shape[0], int(np.prod(shape[1:]))
        gaussian = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(gaussian)
        q = q * np.sign(np.diag(r))
        matrix = q if rows >= cols else q.T
        return gain * matrix.reshape(shape)
    return init


def sparse(connections=15, std=1.0):
    """The sparse initialisation of Martens 2010, §5:
    each output unit gets ``connections`` non-zero incoming weights drawn from
    N(0, std²) (all of them if it has fewer inputs); the rest are zero.
    """
    def init(shape, fan_in, fan_out, rng):
        rows, cols = shape[0], int(np.prod(shape[1:]))
        k = min(connections, cols)
        weights = np.zeros((rows, cols))
        chosen = np.argsort(rng.random((rows, cols)), axis=1)[:, :k]
        np.put_along_axis(weights, chosen, rng.normal(0.0, std, size=(rows, k)), axis=1)
        return weights.reshape(shape)
    return init


_BY_NAME = {
    "normal": normal,
    "xavier": xavier_uniform, "glorot": xavier_uniform, "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "kaiming": kaiming_normal, "he": kaiming_normal, "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "orthogonal": orthogonal,
    "sparse": sparse,
}


def resolve(init):
    """An initialiser callable from ``init`` (a name listed above, or a callable)."""
    if callable(init):
        return init
    if init in _BY_NAME:
        return _BY_NAME[init]()
    raise ValueError(f"init must be a callable or one of {sorted(_BY_NAME)}, got {init!r}")


def initial_weight(init, shape, fan_in, fan_out, rng, dtype):
    """Draw a weight of ``shape`` with ``init`` on the host; returns a NumPy array of ``dtype``."""
    values = np.asarray(resolve(init)(tuple(shape), fan_in, fan_out, host_rng(rng)))
    if values.shape != tuple(shape):
        raise ValueError(f"initialiser returned shape {values.shape}, expected {tuple(shape)}")
    return values.astype(dtype)
