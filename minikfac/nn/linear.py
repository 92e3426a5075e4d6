"""Linear layer: s = W a + b, the building block K-FAC was first derived for.

What it caches (read by backward, and by the curvature module after a backward):

==========================  ===================  ========================================
attribute                   shape                meaning
==========================  ===================  ========================================
``cache_input``             (N, D_in)            a, the layer's input (Martens & Grosse's a)
``cache_grad_output``       (N, D_out) or        g = dL/ds from the last backward
                            (K, N, D_out)        (K stacked cotangents, see module.py)
==========================  ===================  ========================================

Forward mode (``jvp``, see module.py) reads the same ``cache_input``:
ds = dx Wᵀ + a dWᵀ + db for tangents dx of the input and dW, db of the parameters.
"""

import numpy as np

from minikfac import backend
from minikfac.nn import init as initializers
from minikfac.nn.module import (
    Module,
    check_grad_output,
    check_input,
    check_unchanged,
    input_stamp,
    new_parameter,
    parameter_grads_enabled,
)
from minikfac.nn.tangents import jvp_inputs, sum_tangents


class Linear(Module):
    """Fully connected layer ``s = a Wᵀ + b`` for a batch of rows a.

    Parameters
    ----------
    in_features, out_features : D_in and D_out.
    bias : whether to add b.
    init : initialiser of W (a name or callable, see :mod:`minikfac.nn.init`);
        b starts at zero.
    rng : None (global init generator), an int seed or a numpy Generator.

    Attributes
    ----------
    weight : Parameter (D_out, D_in) — W acts as s = W a (docs/design.md).
    bias : Parameter (D_out,) or None.
    """

    def __init__(self, in_features, out_features, bias=True, init="xavier", rng=None):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Linear: {name} must be a positive int, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        shape = (out_features, in_features)
        dtype = backend.get_default_dtype()
        self.weight = new_parameter(
            initializers.initial_weight(init, shape, in_features, out_features, rng, dtype))
        self.bias = new_parameter(np.zeros(out_features)) if bias else None
        self.cache_input = None
        self._input_stamp = None
        self.cache_grad_output = None

    def forward(self, x):
        """x: (N, D_in) -> s: (N, D_out)."""
        check_input(self, x, (self.in_features,))
        out = x @ self.weight.data.T
        if self.bias is not None:
            out += self.bias.data  # in place: out is the product's fresh array
        if self.training:
            self.cache_input = x
            self._input_stamp = input_stamp(x)  # a guard, not a cache: backward checks x is unchanged
        return out

    def backward(self, dout, input_grad=True):
        """dout: (..., N, D_out) -> dL/da: (..., N, D_in) (or None if not ``input_grad``);
        accumulates dW (D_out, D_in), db (D_out,) (unless inside :func:`~minikfac.nn.module.no_parameter_grads`)."""
        self._check_cached("cache_input")
        a = self.cache_input
        check_unchanged(self, a, self._input_stamp)
        check_grad_output(self, dout, (a.shape[0], self.out_features))
        self.cache_grad_output = dout
        if parameter_grads_enabled():
            # Stacked cotangents share the same a, so sum g over them before the product.
            g = dout if dout.ndim == 2 else dout.reshape(-1, *a.shape[:1], self.out_features).sum(axis=0)
            self.weight.accumulate(g.T @ a)
            if self.bias is not None:
                self.bias.accumulate(g.sum(axis=0))
        return dout @ self.weight.data if input_grad else None

    def jvp(self, dx, tangents=None):
        """Tangent of s = a Wᵀ + b at the last forward: ds = dx Wᵀ + a dWᵀ + db.

        dx: None, (N, D_in) or (K, N, D_in); ``tangents[self.weight]``
        (D_out, D_in) or (K, D_out, D_in); ``tangents[self.bias]`` (D_out,) or
        (K, D_out). Returns (N, D_out), (K, N, D_out) or None (see :meth:`Module.jvp`).
        """
        self._check_cached("cache_input", method="jvp")
        a = self.cache_input
        dx, own, k = jvp_inputs(self, dx, a.shape, tangents, reference=self.weight.data)
        d_weight, d_bias = own["weight"], own.get("bias")
        from_input = None if dx is None else dx @ self.weight.data.T
        # a (N, D_in) @ (K, D_in, D_out) broadcasts a over the K tangents.
        from_weight = None if d_weight is None else a @ d_weight.swapaxes(-1, -2)
        if d_bias is not None and d_bias.ndim == 2:
            d_bias = d_bias[:, None, :]  # (K, 1, D_out): one row for all N examples
        return sum_tangents((from_input, from_weight, d_bias), (a.shape[0], self.out_features), k)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
