"""2-D convolution as one matrix product over im2col patches.

Every output position (oh, ow) of example n sees a patch of the padded input:
C_in·KH·KW numbers, ordered (channel, kernel row, kernel column) — the same
order as the weight's matrix view ``W.reshape(C_out, C_in*KH*KW)`` (docs/design.md).
Stacking the L = OH·OW patches of the N examples gives a (N·L, C_in·KH·KW)
matrix P, and the convolution is ``P W_matᵀ + b``. The patches are the inputs
``a`` that KFC (Grosse & Martens 2016) builds its factor A from, one per
position, so the layer caches them.

im2col costs one copy: :func:`sliding_windows` shows every KH×KW window of the
padded input as a view (N, C, OH, OW, KH, KW) that shares the input's memory
(only the strides change), and that view is copied once into a matrix. col2im,
its adjoint, loops over the KH·KW kernel offsets, each adding one strided slice
of the whole batch.

Memory layout: the batch is stored innermost, or next to the channels. The
padded input is stored (C, H, W, N) and the copy writes Pᵀ, the "columns"
matrix (C_in·KH·KW, OH·OW·N), whose column oh·OW·N + ow·N + n is the patch of
example n at (oh, ow). A shifted slice of such an array is a run of OW·N
contiguous numbers per image row instead of OW, and NumPy's cost goes by the
run: a 14×14 map gives runs of 14 numbers stored (N, C, H, W) but of 1792
stored (C, H, W, N) with a batch of 128 (cuda-convnet stored its images
(C, H, W, N) too, for contiguous access across the batch). The output is the
product P W_matᵀ, (OH·OW·N, C_out) — of its two orientations the one OpenBLAS
runs faster — i.e. it is stored (OH, OW, N, C_out), where shifted slices are
runs of N·C_out numbers. The element-wise layers and pooling after a Conv2d
keep that layout, so the gradient that comes back has it too and backward
reads it as a matrix without a copy. The patches (N, L, C_in·KH·KW) are a
transposed view of the columns (reshaping them to (N·L, C_in·KH·KW) copies;
:func:`columns_of` gives the matrix without copying).

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
from minikfac.nn.module import (
    Module,
    check_grad_output,
    check_input,
    new_parameter,
    parameter_grads_enabled,
)
from minikfac.nn.tangents import jvp_inputs, sum_tangents


def int_pair(value, name, minimum=None):
    """``value`` as a pair of ints (rows, cols): an int k means (k, k); each at least ``minimum`` if given.

    ValueError naming ``name`` otherwise. Kernel sizes, strides and paddings
    use it, and so do the factor shapes of :mod:`minikfac.curvature.nearest_kronecker`.
    """
    kind = "an int" if minimum is None else "a positive int" if minimum == 1 else f"an int >= {minimum}"
    try:
        pair = (value, value) if isinstance(value, int) else tuple(value)
    except TypeError:  # a float, None, ...: not an int and not a pair
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and (minimum is None or v >= minimum)
                                 for v in pair):
        raise ValueError(f"{name} must be {kind} or a pair of them (rows, cols), got {value!r}")
    return pair


def output_size(size, kernel, stride, padding):
    """Output length of a sliding window: floor((size + 2·padding − kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def sliding_windows(x, kernel, stride):
    """Every KH×KW window of ``x`` as a view, without copying anything.

    Parameters
    ----------
    x : (..., H, W) array (already padded), stored in any order.
    kernel, stride : pairs (rows, columns).

    Returns
    -------
    (..., OH, OW, KH, KW) view of ``x``: element [..., oh, ow, i, j] is
    ``x[..., oh·SH + i, ow·SW + j]``. Moving one output row down moves SH input
    rows, moving one kernel row down moves one input row, so the view's
    strides are the input's row and column strides, each used twice. Windows
    overlap when the stride is smaller than the kernel: never write to the view.
    """
    xp = backend.get_array_module(x)
    *lead, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = output_size(h, kh, sh, 0), output_size(w, kw, sw, 0)
    *lead_strides, row, column = x.strides  # in bytes
    return xp.lib.stride_tricks.as_strided(
        x, shape=(*lead, oh, ow, kh, kw), strides=(*lead_strides, sh * row, sw * column, row, column))


def im2col(x, kernel, stride, padding):
    """Patches of ``x`` for a sliding window.

    Parameters
    ----------
    x : (N, C, H, W) array.
    kernel, stride, padding : pairs (rows, columns).

    Returns
    -------
    (N, OH·OW, C·KH·KW) array; row ``oh·OW + ow`` of example n is the patch under
    output position (oh, ow), ordered (channel, kernel row, kernel column). It
    is a transposed view of the C-contiguous columns matrix (C·KH·KW, OH·OW·N)
    (see :func:`columns_of`).
    """
    xp = backend.get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (ph, pw) = kernel, padding
    padded = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=x.dtype)  # stored batch last
    padded[:, ph:ph + h, pw:pw + w, :] = x.transpose(1, 2, 3, 0)
    windows = sliding_windows(padded.transpose(3, 0, 1, 2), kernel, stride)  # (N, C, OH, OW, KH, KW), a view
    _, _, oh, ow, _, _ = windows.shape
    # The one copy, in the order (C, KH, KW, OH, OW, N): runs of OW·N numbers.
    columns = xp.ascontiguousarray(windows.transpose(1, 4, 5, 2, 3, 0))
    return columns.reshape(c * kh * kw, oh * ow, n).transpose(2, 1, 0)


def columns_of(patches):
    """The columns matrix Pᵀ of patches (N, L, C·KH·KW): (C·KH·KW, L·N), column l·N + n.

    A view for the patches :func:`im2col` returns (a copy for others).
    """
    n, positions, features = patches.shape
    return patches.transpose(2, 1, 0).reshape(features, positions * n)


def col2im(dpatches, input_shape, kernel, stride, padding):
    """Adjoint of :func:`im2col`: add patch gradients back onto the input grid.

    Parameters
    ----------
    dpatches : (..., N, OH·OW, C·KH·KW) array (leading axes are stacked cotangents).
    input_shape : (N, C, H, W).

    Returns
    -------
    (..., N, C, H, W) array, stored (..., C, H, W, N) like im2col's padded copy
    (a view that crops the padding).
    """
    xp = backend.get_array_module(dpatches)
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    lead = tuple(dpatches.shape[:-3])
    # (..., N, OH, OW, C, KH, KW) -> (..., C, KH, KW, OH, OW, N): for the patches
    # of a Conv2d, a view of its C-contiguous buffer.
    cols = xp.moveaxis(dpatches.reshape(lead + (n, oh, ow, c, kh, kw)), -6, -1)
    cols = xp.moveaxis(cols, (-6, -5), (-3, -2))
    dx = xp.zeros(lead + (c, h + 2 * ph, w + 2 * pw, n), dtype=dpatches.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[..., i:i + sh * oh:sh, j:j + sw * ow:sw, :] += cols[..., i, j, :, :, :]  # (..., C, OH, OW, N)
    return xp.moveaxis(dx, -1, -4)[..., ph:ph + h, pw:pw + w]


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
        self.kernel_size = int_pair(kernel_size, "Conv2d: kernel_size")
        self.stride = int_pair(stride, "Conv2d: stride")
        self.padding = int_pair(padding, "Conv2d: padding")
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
        out = columns_of(patches).T @ weight_matrix.T  # P W_matᵀ: (OH·OW·N, C_out)
        if self.bias is not None:
            # In place (out is the product's fresh array), one row per position:
            # NumPy adds far faster along rows N·C_out long than C_out long.
            out.reshape(oh * ow, -1)[...] += backend.get_array_module(out).tile(self.bias.data, n)
        if self.training:
            self.cache_input = patches
            self.cache_input_shape = tuple(x.shape)
        return out.reshape(oh, ow, n, self.out_channels).transpose(2, 3, 0, 1)

    def backward(self, dout, input_grad=True):
        """dout: (..., N, C_out, OH, OW) -> (..., N, C_in, H, W) (or None if not
        ``input_grad``); accumulates dW, db (unless inside :func:`~minikfac.nn.module.no_parameter_grads`)."""
        self._check_cached("cache_input")
        patches, input_shape = self.cache_input, self.cache_input_shape
        out_shape = self.output_shape(input_shape)
        check_grad_output(self, dout, out_shape)
        self.cache_grad_output = dout
        xp = backend.get_array_module(dout)
        n, c_out, oh, ow = out_shape
        lead = tuple(dout.shape[:-4])
        # (..., N, C_out, OH, OW) -> (..., OH·OW·N, C_out), rows in the order of
        # the columns of Pᵀ (a view when dout is stored like forward's output).
        g = xp.moveaxis(dout, (-4, -3), (-2, -1)).reshape(lead + (oh * ow * n, c_out))
        weight_matrix = self.weight.data.reshape(c_out, -1)
        if parameter_grads_enabled():
            g_summed = g if not lead else g.reshape(-1, oh * ow * n, c_out).sum(axis=0)
            columns = columns_of(patches)  # Pᵀ: (C_in·KH·KW, OH·OW·N)
            d_weight = (columns @ g_summed).T  # dW = gᵀ P = (Pᵀ g)ᵀ
            self.weight.accumulate(xp.ascontiguousarray(d_weight).reshape(self.weight.shape))
            if self.bias is not None:
                # db = the sum of g's rows, as a product with ones: one BLAS call is
                # several times faster than NumPy's sum over N·L rows C_out long.
                self.bias.accumulate(xp.ones(oh * ow * n, dtype=g.dtype) @ g_summed)
        if not input_grad:
            return None
        d_columns = weight_matrix.T @ g.swapaxes(-1, -2)  # dPᵀ = W_matᵀ gᵀ: (..., C_in·KH·KW, OH·OW·N)
        dpatches = d_columns.reshape(lead + (weight_matrix.shape[1], oh * ow, n)).swapaxes(-1, -3)
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
        features, positions = weight_matrix.shape[1], oh * ow
        # As in forward, rows ordered (oh, ow, n): (..., OH·OW·N, C_out).
        from_input = from_weight = None
        if dx is not None:
            # K stacked tangents are K·N more images for im2col, whose columns of Pᵀ
            # come ordered (l, k, n). The product is taken first and its rows, C_out
            # numbers each instead of C_in·KH·KW, regrouped into K matrices (L·N, C_out).
            d_columns = columns_of(im2col(dx.reshape((-1,) + input_shape[1:]), self.kernel_size, self.stride,
                                          self.padding))
            if dx.ndim == 5:
                xp = backend.get_array_module(dx)
                stacked = (weight_matrix @ d_columns).reshape(c_out, positions, dx.shape[0], n)
                from_input = xp.ascontiguousarray(stacked.transpose(2, 1, 3, 0)).reshape(
                    dx.shape[0], positions * n, c_out)
            else:
                from_input = d_columns.T @ weight_matrix.T
        if d_weight is not None:
            d_weight_matrix = d_weight.reshape(tuple(d_weight.shape[:-4]) + (c_out, features))
            from_weight = columns_of(patches).T @ d_weight_matrix.swapaxes(-1, -2)
        if d_bias is not None and d_bias.ndim == 2:
            d_bias = d_bias[:, None, :]  # (K, 1, C_out): one row for every position of every example
        ds = sum_tangents((from_input, from_weight, d_bias), (positions * n, c_out), k)
        if ds is None:
            return None
        lead = tuple(ds.shape[:-2])
        # (..., OH·OW·N, C_out) -> (..., N, C_out, OH, OW), as in forward.
        return backend.get_array_module(ds).moveaxis(ds.reshape(lead + (oh, ow, n, c_out)), (-2, -1), (-4, -3))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")
