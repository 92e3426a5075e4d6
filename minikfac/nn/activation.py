"""Element-wise activations, Identity and Flatten: layers without parameters.

Caches (each exactly what its backward needs):

==================  ====================  ==========================================
layer               attribute             meaning
==================  ====================  ==========================================
ReLU                ``cache_mask``        x > 0 (bool, input's shape)
Tanh, Sigmoid       ``cache_output``      y = f(x); f' is a function of y
Flatten             ``cache_input_shape`` (N, ...) to restore in backward
Identity            —
==================  ====================  ==========================================

Every backward accepts stacked cotangents ``(K, *output_shape)``: the cached
arrays broadcast over the leading axis. ``jvp`` (forward mode, see module.py)
reads the same caches and multiplies by the same diagonal Jacobian: ReLU
``dx * mask``, Tanh/Sigmoid ``dx * f'(y)``; Flatten reshapes dx, Identity returns
it. Without parameters, a ``None`` dx gives ``None``.
"""

from minikfac import backend
from minikfac.nn.module import Module, check_grad_output
from minikfac.nn.tangents import jvp_inputs


class ReLU(Module):
    """max(x, 0); the derivative at exactly 0 is taken as 0."""

    def __init__(self):
        self.cache_mask = None

    def forward(self, x):
        if self.training:
            self.cache_mask = x > 0
        return backend.get_array_module(x).maximum(x, 0)

    def backward(self, dout, input_grad=True):
        if not input_grad:
            return None  # no parameters: nothing else to do
        self._check_cached("cache_mask")
        check_grad_output(self, dout, self.cache_mask.shape)
        return dout * self.cache_mask

    def jvp(self, dx, tangents=None):
        """dx: None or (..., *input_shape) -> dx * mask (same shape) or None."""
        self._check_cached("cache_mask", method="jvp")
        dx, _, _ = jvp_inputs(self, dx, self.cache_mask.shape, tangents, reference=self.cache_mask)
        return None if dx is None else dx * self.cache_mask


class _ActivationOfOutput(Module):
    """An element-wise y = f(x) whose derivative is a function of y: cache y only."""

    def __init__(self):
        self.cache_output = None

    def function(self, x):
        raise NotImplementedError

    def derivative(self, y):
        """f'(x) written in terms of y = f(x), as a new array."""
        raise NotImplementedError

    def forward(self, x):
        y = self.function(x)
        if self.training:
            self.cache_output = y
        return y

    def backward(self, dout, input_grad=True):
        if not input_grad:
            return None  # no parameters: nothing else to do
        self._check_cached("cache_output")
        check_grad_output(self, dout, self.cache_output.shape)
        derivative = self.derivative(self.cache_output)  # a new array: ours to overwrite
        if derivative.shape != dout.shape or derivative.dtype != dout.dtype:  # e.g. stacked cotangents
            return dout * derivative
        return backend.get_array_module(dout).multiply(dout, derivative, out=derivative)

    def jvp(self, dx, tangents=None):
        """dx: None or (..., *input_shape) -> dx * f'(x) (same shape) or None."""
        self._check_cached("cache_output", method="jvp")
        dx, _, _ = jvp_inputs(self, dx, self.cache_output.shape, tangents, reference=self.cache_output)
        return None if dx is None else dx * self.derivative(self.cache_output)


class Tanh(_ActivationOfOutput):
    """tanh(x); backward uses tanh' = 1 − y²."""

    def function(self, x):
        return backend.get_array_module(x).tanh(x)

    def derivative(self, y):
        squares = y * y
        return backend.get_array_module(y).subtract(1, squares, out=squares)  # 1 − y², no second temporary


def logistic(x):
    """σ(x) = 1 / (1 + e^(−x)) elementwise, with the pieces the Bernoulli formulas reuse.

    x: any shape. Returns (σ(x), e, r), each of x's shape, with e = exp(−|x|) in
    (0, 1] and r = 1 / (1 + e): σ(x) = exp(min(x, 0))·r, i.e. r for x >= 0 and
    e·r for x < 0. Nothing overflows, σ has full relative accuracy in both
    tails (σ(−30) ≈ 9.4e-14, not 0), and there is no branch (``where`` over an
    array is several times slower than these element-wise functions). The
    Bernoulli variance σ(1 − σ) is e·r² (:mod:`minikfac.nn.likelihoods`).
    """
    xp = backend.get_array_module(x)
    x = xp.asarray(x)
    if x.ndim == 0:  # the in-place steps below need an array, not the scalar a 0-d operation returns
        return tuple(v.reshape(()) for v in logistic(x.reshape(1)))
    if x.dtype.kind != "f":
        x = x.astype(xp.float64)
    e = xp.abs(x)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    r = e + 1
    xp.reciprocal(r, out=r)
    sigma = xp.minimum(x, 0)
    xp.exp(sigma, out=sigma)
    sigma *= r
    return sigma, e, r


class Sigmoid(_ActivationOfOutput):
    """σ(x) = 1 / (1 + e^(−x)) (:func:`logistic`); backward uses σ' = y (1 − y)."""

    def function(self, x):
        return logistic(x)[0]

    def derivative(self, y):
        one_minus = 1 - y
        return backend.get_array_module(y).multiply(y, one_minus, out=one_minus)  # y (1 − y), no second temporary


class Identity(Module):
    """Returns its input; backward returns dout and jvp returns dx unchanged (the same array)."""

    def forward(self, x):
        return x

    def backward(self, dout, input_grad=True):
        if not input_grad:
            return None  # no parameters: nothing else to do
        return dout

    def jvp(self, dx, tangents=None):
        """dx (any shape, or None) -> dx: nothing is cached, so nothing is checked but the tangents."""
        jvp_inputs(self, None, (), tangents)
        return dx


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1·d2·...), row-major (C, H, W order for images)."""

    def __init__(self):
        self.cache_input_shape = None

    def forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"Flatten: input has shape {tuple(x.shape)}, expected (N, ...) with at least 2 axes")
        if self.training:
            self.cache_input_shape = tuple(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, input_grad=True):
        if not input_grad:
            return None  # no parameters: nothing else to do
        self._check_cached("cache_input_shape")
        shape = self.cache_input_shape
        features = 1
        for d in shape[1:]:
            features *= d
        check_grad_output(self, dout, (shape[0], features))
        return dout.reshape(tuple(dout.shape[:-2]) + shape)

    def jvp(self, dx, tangents=None):
        """dx: None, (N, d1, ...) or (K, N, d1, ...) -> (N, d1·...) or (K, N, d1·...) or None."""
        self._check_cached("cache_input_shape", method="jvp")
        shape = self.cache_input_shape
        dx, _, _ = jvp_inputs(self, dx, shape, tangents)
        if dx is None:
            return None
        return dx.reshape(tuple(dx.shape[:dx.ndim - len(shape)]) + (shape[0], -1))
