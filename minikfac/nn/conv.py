"""2-D convolution as one matrix product over im2col patches.

Every output position (oh, ow) of example n sees a patch of the padded input:
C_in·KH·KW numbers, ordered (channel, kernel row, kernel column) — the same
order as the weight's matrix view ``W.reshape(C_out, C_in*KH*KW)`` (DESIGN.md).
Stacking the L = OH·OW patches of the N examples gives a (N·L, C_in·KH·KW)
matrix, and the convolution is ``patches @ W_matᵀ + b``. The patches are the
inputs ``a`` that KFC (Grosse & Martens 2016) builds its factor A from, one per
position, so the layer caches them.

im2col and its adjoint col2im loop over the KH·KW kernel offsets only; each
offset moves one strided slice of the whole batch.

What it caches:

==========================  ==============================  ====================================
attribute                   shape                           meaning
==========================  ==============================  ====================================
``cache_input``             (N, L, C_in·KH·KW)              the im2col patches, L = OH·OW
``cache_input_shape``       (N, C_in, H, W)                 the input's shape (for col2im)
``cache_grad_output``       (N, C_out, OH, OW) or           dL/d(output) from the last backward
                            (K, N, C_out, OH, OW)
==========================  ==============================  ====================================

Forward mode (``jvp``, see module.py) is the same matrix product with tangents:
im2col(dx) W_matᵀ + patches dW_matᵀ + db, read from the cached patches.
"""

import numpy as np

from minikfac import backend
from minikfac.nn import init as initializers
from minikfac.nn.module import Module, check_grad_output, check_input, jvp_inputs, new_parameter, sum_tangents


def _pair(value, name):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair


def output_size(size, kernel, stride, padding):
    """Output length of a sliding window: floor((size + 2·padding − kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel, stride, padding):
    """Patches of ``x`` for a sliding window.

    Parameters
    ----------
    x : (N, C, H, W) array.
    kernel, stride, padding : pairs (rows, columns).

    Returns
    -------
    (N, OH·OW, C·KH·KW) array; row ``oh·OW + ow`` of example n is the patch under
    output position (oh, ow), ordered (channel, kernel row, kernel column).
    """
    xp = backend.get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]  # (N, C, OH, OW)
            cols[:, :, :, :, i, j] = window.transpose(0, 2, 3, 1)
    return cols.reshape(n, oh * ow, c * kh * kw)


def col2im(dpatches, input_shape, kernel, stride, padding):
    """Adjoint of :func:`im2col`: add patch gradients back onto the input grid.

    Parameters
    ----------
    dpatches : (..., N, OH·OW, C·KH·KW) array (leading axes are stacked cotangents).
    input_shape : (N, C, H, W).

    Returns
    -------
    (..., N, C, H, W) array.
    """
    xp = backend.get_array_module(dpatches)
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    lead = tuple(dpatches.shape[:-3])
    cols = dpatches.reshape(lead + (n, oh, ow, c, kh, kw))
    dx = xp.zeros(lead + (n, c, h + 2 * ph, w + 2 * pw), dtype=dpatches.dtype)
    for i in range(kh):
        for j in range(kw):
            # (..., N, OH, OW, C) -> (..., N, C, OH, OW)
            dx[..., i:i + sh * oh:sh, j:j + sw * ow:sw] += xp.moveaxis(cols[..., i, j], -1, -3)
    return dx[..., ph:ph + h, pw:pw + w]


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in every framework) via im2col.

    Parameters
    ----------
    in_channels, out_channels : C_in and C_out.
    kernel_size, stride, padding : ints or (rows, columns) pairs; zero padding.
    bias : whether to add one bias per output channel.
    init : initialiser of W (fan_in = C_in·KH·KW, fan_out = C_out·KH·KW).
    rng : None (global init generator), an int seed or a numpy Generator.

    Attributes
    ----------
    weight : Parameter (C_out, C_in, KH, KW); its matrix view (C_out, C_in·KH·KW)
        acts on the patches.
    bias : Parameter (C_out,) or None.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, init="xavier", rng=None):
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {value!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "Conv2d: kernel_size")
        self.stride = _pair(stride, "Conv2d: stride")
        self.padding = _pair(padding, "Conv2d: padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        kh, kw = self.kernel_size
        shape = (out_channels, in_channels, kh, kw)
        dtype = backend.get_default_dtype()
        self.weight = new_parameter(initializers.initial_weight(
            init, shape, in_channels * kh * kw, out_channels * kh * kw, rng, dtype))
        self.bias = new_parameter(np.zeros(out_channels)) if bias else None
        self.cache_input = None
        self.cache_input_shape = None
        self.cache_grad_output = None

    def output_shape(self, input_shape):
        """(N, C_out, OH, OW) for an input of shape (N, C_in, H, W)."""
        n, _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, output_size(h, kh, sh, ph), output_size(w, kw, sw, pw))

    def forward(self, x):
        """x: (N, C_in, H, W) -> (N, C_out, OH, OW)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: input has shape {tuple(x.shape)}, expected (N, {self.in_channels}, H, W)")
        check_input(self, x, x.shape[1:])
        n, _, oh, ow = self.output_shape(x.shape)
        if oh < 1 or ow < 1:
            raise ValueError(f"{self!r}: input of shape {tuple(x.shape)} is smaller than the kernel")
        patches = im2col(x, self.kernel_size, self.stride, self.padding)
        weight_matrix = self.weight.data.reshape(self.out_channels, -1)
        out = patches.reshape(n * oh * ow, -1) @ weight_matrix.T  # (N·L, C_out)
        if self.bias is not None:
            out += self.bias.data  # in place: out is the product's fresh array
        if self.training:
            self.cache_input = patches
            self.cache_input_shape = tuple(x.shape)
        return out.reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, dout, input_grad=True):
        """dout: (..., N, C_out, OH, OW) -> (..., N, C_in, H, W) (or None if not
        ``input_grad``); accumulates dW, db."""
        self._check_cached("cache_input")
        patches, input_shape = self.cache_input, self.cache_input_shape
        out_shape = self.output_shape(input_shape)
        check_grad_output(self, dout, out_shape)
        self.cache_grad_output = dout
        n, c_out, oh, ow = out_shape
        lead = tuple(dout.shape[:-4])
        # (..., N, C_out, OH, OW) -> (..., N·L, C_out): rows in the patches' order.
        g = backend.get_array_module(dout).moveaxis(dout, -3, -1).reshape(lead + (n * oh * ow, c_out))
        g_summed = g if not lead else g.reshape(-1, n * oh * ow, c_out).sum(axis=0)
        weight_matrix = self.weight.data.reshape(c_out, -1)
        self.weight.accumulate((g_summed.T @ patches.reshape(n * oh * ow, -1)).reshape(self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate(g_summed.sum(axis=0))
        if not input_grad:
            return None
        dpatches = (g @ weight_matrix).reshape(lead + (n, oh * ow, weight_matrix.shape[1]))
        return col2im(dpatches, input_shape, self.kernel_size, self.stride, self.padding)

    def jvp(self, dx, tangents=None):
        """Tangent of the output at the last forward: im2col(dx) W_matᵀ + patches dW_matᵀ + db.

        dx: None, (N, C_in, H, W) or (K, N, C_in, H, W); ``tangents[self.weight]``
        (C_out, C_in, KH, KW) or with a leading K; ``tangents[self.bias]``
        (C_out,) or (K, C_out). Returns (N, C_out, OH, OW), (K, N, C_out, OH, OW)
        or None (see :meth:`Module.jvp`).
        """
        self._check_cached("cache_input", method="jvp")
        patches, input_shape = self.cache_input, self.cache_input_shape
        dx, own, k = jvp_inputs(self, dx, input_shape, tangents, reference=self.weight.data)
        d_weight, d_bias = own["weight"], own.get("bias")
        n, c_out, oh, ow = self.output_shape(input_shape)
        weight_matrix = self.weight.data.reshape(c_out, -1)
        rows = (n * oh * ow, weight_matrix.shape[1])  # the patches as one (N·L, C_in·KH·KW) matrix
        from_input = from_weight = None
        if dx is not None:
            lead = tuple(dx.shape[:-4])
            # K stacked tangents are K·N more images for im2col.
            d_patches = im2col(dx.reshape((-1,) + input_shape[1:]), self.kernel_size, self.stride, self.padding)
            from_input = d_patches.reshape(lead + rows) @ weight_matrix.T
        if d_weight is not None:
            d_weight_matrix = d_weight.reshape(tuple(d_weight.shape[:-4]) + (c_out, rows[1]))
            from_weight = patches.reshape(rows) @ d_weight_matrix.swapaxes(-1, -2)
        if d_bias is not None and d_bias.ndim == 2:
            d_bias = d_bias[:, None, :]  # (K, 1, C_out): one row for every position of every example
        ds = sum_tangents((from_input, from_weight, d_bias), (rows[0], c_out), k)
        if ds is None:
            return None
        lead = tuple(ds.shape[:-2])
        # (..., N·L, C_out) -> (..., N, C_out, OH, OW), as in forward.
        return backend.get_array_module(ds).moveaxis(ds.reshape(lead + (n, oh, ow, c_out)), -1, -3)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")
