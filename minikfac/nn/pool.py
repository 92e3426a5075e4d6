"""Max and average pooling over KH×KW windows (no padding), looping over kernel offsets only.

Both see the input through the same strided slices as :func:`minikfac.nn.conv.im2col`:
for each kernel offset (i, j), ``x[..., i::stride, j::stride]`` cut to the OH×OW
output grid is one (N, C, OH, OW) view, and an element-wise operation between
such views handles that offset for every window of the batch at once. Rows or
columns left over when the window does not fit (H − KH not a multiple of the
stride) are ignored, as in PyTorch, and get zero gradient.

Max pooling sends the gradient to the first maximum of each window (in
row-major kernel order). Its index is found without a per-window argmax: it
equals the number of windows' offsets *before* the first one that holds the
maximum. When windows do not overlap (stride >= kernel, the usual 2×2 pooling),
every input belongs to at most one window and backward writes each offset's
gradient straight into its slice of dx; overlapping windows add them up.

Arrays keep the input's memory layout (e.g. the (H, W, N, C) storage of a
Conv2d output, see conv.py): the output, the argmax cache and dx are
stored like the input, and a dout stored otherwise is copied into that layout
first, as element-wise operations between differently stored arrays are slow.

Caches:

========================  ====================  =====================================
attribute                 shape                 meaning
========================  ====================  =====================================
``cache_input_shape``     (N, C, H, W)          both layers
``cache_argmax``          (N, C, OH, OW) uint8  MaxPool2d: which offset won (first on ties)
========================  ====================  =====================================

Forward mode (``jvp``, see module.py) sees dx through the same windows: MaxPool2d
takes, per window, dx at the cached argmax; AvgPool2d averages dx's windows.
"""

import numpy as np

from minikfac import backend
from minikfac.nn.conv import int_pair, output_size
from minikfac.nn.module import Module, check_grad_output
from minikfac.nn.tangents import jvp_inputs


def _in_layout_of(array, like):
    """``array``, or a copy of it stored in the axis order of ``like`` if the shapes match and the orders differ.

    An element-wise operation between arrays stored in different axis orders
    (say (N, C, H, W) and (C, H, W, N)) runs several times slower than between
    arrays stored alike; one copy first is cheaper.
    """
    if tuple(array.shape) != tuple(like.shape) or np.argsort(array.strides).tolist() == np.argsort(like.strides).tolist():
        return array
    copy = backend.get_array_module(like).empty_like(like, dtype=array.dtype)
    copy[...] = array
    return copy


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None):
        name = type(self).__name__
        self.kernel_size = int_pair(kernel_size, f"{name}: kernel_size")
        self.stride = int_pair(stride if stride is not None else kernel_size, f"{name}: stride")
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"{name}: kernel_size and stride must be >= 1, got {self.kernel_size}, {self.stride}")
        self.cache_input_shape = None

    def output_shape(self, input_shape):
        """(N, C, OH, OW) for an input of shape (N, C, H, W)."""
        n, c, h, w = input_shape
        return (n, c, output_size(h, self.kernel_size[0], self.stride[0], 0),
                output_size(w, self.kernel_size[1], self.stride[1], 0))

    def _offsets(self):
        """The kernel offsets (i, j) in row-major order (the order argmax refers to)."""
        return [(i, j) for i in range(self.kernel_size[0]) for j in range(self.kernel_size[1])]

    def _window(self, x, offset, out_hw):
        (i, j), (sh, sw), (oh, ow) = offset, self.stride, out_hw
        return x[..., i:i + sh * oh:sh, j:j + sw * ow:sw]

    def _check(self, x):
        if x.ndim != 4:
            raise ValueError(f"{self!r}: input has shape {tuple(x.shape)}, expected (N, C, H, W)")
        shape = self.output_shape(x.shape)
        if shape[2] < 1 or shape[3] < 1:
            raise ValueError(f"{self!r}: input of shape {tuple(x.shape)} is smaller than the window")
        return shape

    def _overlapping(self):
        """True if some input lies in several windows (stride < kernel along an axis)."""
        return any(s < k for s, k in zip(self.stride, self.kernel_size))

    def _tiles(self, out_hw):
        """True if the windows cover the input exactly once (stride = kernel, nothing left over)."""
        h, w = self.cache_input_shape[2:]
        return self.stride == self.kernel_size and (out_hw[0] * self.stride[0], out_hw[1] * self.stride[1]) == (h, w)

    def _backward_setup(self, dout, like=None):
        """Check dout; return dx (..., N, C, H, W) to fill, and (OH, OW).

        dx is zero, except when the windows tile the input and ``like`` is
        given: then every element is about to be written and dx is left
        uninitialised. ``like``, an (N, C, OH, OW) cache of the forward pass,
        gives dx the memory layout of the forward input (for an unstacked dout).
        """
        self._check_cached("cache_input_shape")
        out_shape = self.output_shape(self.cache_input_shape)
        check_grad_output(self, dout, out_shape)
        xp = backend.get_array_module(dout)
        shape = tuple(dout.shape[:-4]) + self.cache_input_shape
        if like is None or len(shape) != like.ndim:
            return xp.zeros(shape, dtype=dout.dtype), out_shape[2:]
        allocate = xp.empty_like if self._tiles(out_shape[2:]) else xp.zeros_like
        return allocate(like, dtype=dout.dtype, shape=shape), out_shape[2:]

    def _jvp_setup(self, dx, tangents, reference=None):
        """Check jvp's arguments; return (dx or None, (OH, OW))."""
        self._check_cached("cache_input_shape", method="jvp")
        dx, _, _ = jvp_inputs(self, dx, self.cache_input_shape, tangents, reference)
        return dx, self.output_shape(self.cache_input_shape)[2:]

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    """Maximum over each KH×KW window: (N, C, H, W) -> (N, C, OH, OW).

    The gradient flows to the winning input of each window (the first one on ties).
    ``stride`` defaults to ``kernel_size``; overlapping windows (stride < kernel)
    add up the gradients of every window an input wins.
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__(kernel_size, stride)
        self.cache_argmax = None

    def forward(self, x):
        out_hw = self._check(x)[2:]
        xp = backend.get_array_module(x)
        windows = [self._window(x, o, out_hw) for o in self._offsets()]  # KH·KW views (N, C, OH, OW)
        # The output is stored like the input ("K" order, as element-wise results are).
        out = xp.maximum(windows[0], windows[1]) if len(windows) > 1 else windows[0].copy(order="K")
        for window in windows[2:]:
            xp.maximum(out, window, out=out)
        if self.training:
            # argmax = how many offsets come before the first one that holds the
            # maximum: count, offset by offset, the windows still below it.
            argmax = xp.zeros_like(out, dtype=np.min_scalar_type(len(windows) - 1))
            below = xp.ones_like(out, dtype=bool)
            for window in windows[:-1]:
                below &= window < out
                argmax += below
            self.cache_argmax = argmax
            self.cache_input_shape = tuple(x.shape)
        return out

    def backward(self, dout, input_grad=True):
        """dout: (..., N, C, OH, OW) -> (..., N, C, H, W)."""
        if not input_grad:
            return None  # no parameters: nothing else to do
        self._check_cached("cache_argmax")
        dx, out_hw = self._backward_setup(dout, like=self.cache_argmax)
        xp = backend.get_array_module(dout)
        dout = _in_layout_of(dout, self.cache_argmax)
        for k, offset in enumerate(self._offsets()):
            won = self.cache_argmax == k
            if self._overlapping():
                self._window(dx, offset, out_hw)[...] += dout * won
            else:  # each input is in one window at most: write, don't add
                xp.multiply(dout, won, out=self._window(dx, offset, out_hw))
        return dx

    def jvp(self, dx, tangents=None):
        """dx: None, (N, C, H, W) or (K, N, C, H, W) -> dx at each window's cached argmax,
        (N, C, OH, OW) or (K, N, C, OH, OW); or None."""
        self._check_cached("cache_argmax", method="jvp")
        dx, out_hw = self._jvp_setup(dx, tangents, reference=self.cache_argmax)
        if dx is None:
            return None
        xp = backend.get_array_module(dx)
        offsets = self._offsets()
        out = self._window(dx, offsets[0], out_hw)
        for k in range(1, len(offsets)):
            out = xp.where(self.cache_argmax == k, self._window(dx, offsets[k], out_hw), out)
        return out


class AvgPool2d(_Pool2d):
    """Mean over each KH×KW window: (N, C, H, W) -> (N, C, OH, OW)."""

    def _window_mean(self, x, out_hw):
        """(..., N, C, H, W) -> (..., N, C, OH, OW): the mean of each window."""
        offsets = self._offsets()
        out = self._window(x, offsets[0], out_hw)
        for offset in offsets[1:]:
            out = out + self._window(x, offset, out_hw)
        return out / len(offsets)

    def forward(self, x):
        out_hw = self._check(x)[2:]
        if self.training:
            self.cache_input_shape = tuple(x.shape)
        return self._window_mean(x, out_hw)

    def backward(self, dout, input_grad=True):
        """dout: (..., N, C, OH, OW) -> (..., N, C, H, W)."""
        if not input_grad:
            return None  # no parameters: nothing else to do
        dx, out_hw = self._backward_setup(dout)
        share = dout / len(self._offsets())
        for offset in self._offsets():
            self._window(dx, offset, out_hw)[...] += share
        return dx

    def jvp(self, dx, tangents=None):
        """dx: None, (N, C, H, W) or (K, N, C, H, W) -> the mean of dx over each window,
        (N, C, OH, OW) or (K, N, C, OH, OW); or None (the layer is linear)."""
        dx, out_hw = self._jvp_setup(dx, tangents)
        return None if dx is None else self._window_mean(dx, out_hw)
