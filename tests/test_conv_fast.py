"""im2col, col2im and pooling against plain loops: strided views, memory layouts, ties.

The layers compute with strided views and batch-last buffers; these tests hold
them to the obvious loop definitions, for inputs stored in any axis order, on
every backend.
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac.nn.conv import col2im, columns_of, im2col, sliding_windows
from tests.conftest import on

nn = mk.nn

# (input shape (N, C, H, W), kernel, stride, padding)
CONV_GEOMETRIES = [
    ((2, 3, 5, 6), (3, 3), (1, 1), (1, 1)),
    ((3, 2, 7, 6), (3, 2), (2, 1), (1, 0)),
    ((1, 1, 4, 4), (1, 1), (1, 1), (0, 0)),
    ((2, 2, 6, 7), (2, 3), (3, 2), (2, 1)),
]

# Memory orders of an (N, C, H, W) array, as the axis order in memory.
LAYOUTS = {"NCHW": (0, 1, 2, 3), "NHWC": (0, 2, 3, 1), "CHWN": (1, 2, 3, 0), "CNHW": (1, 0, 2, 3)}


def stored(array, layout):
    """``array`` (N, C, H, W) with the same values, stored in the axis order ``layout``."""
    order = LAYOUTS[layout]
    return np.ascontiguousarray(array.transpose(order)).transpose(np.argsort(order))


def loop_im2col(x, kernel, stride, padding):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    patches = np.zeros((n, oh * ow, c * kh * kw))
    for e in range(n):
        for i in range(oh):
            for j in range(ow):
                patches[e, i * ow + j] = padded[e, :, i * sh:i * sh + kh, j * sw:j * sw + kw].reshape(-1)
    return patches


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_im2col_equals_the_loop_definition(geometry, layout, backend_name):
    shape, kernel, stride, padding = geometry
    x = stored(np.random.default_rng(0).standard_normal(shape), layout)
    expected = loop_im2col(x, kernel, stride, padding)
    np.testing.assert_array_equal(mk.to_numpy(im2col(on(backend_name, x), kernel, stride, padding)), expected)


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(geometry, backend_name):
    """<im2col(x), P> = <x, col2im(P)>, for stacked P too, whatever P's memory order."""
    shape, kernel, stride, padding = geometry
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    patches_shape = loop_im2col(x, kernel, stride, padding).shape
    for lead in ((), (3,)):
        P = rng.standard_normal(lead + patches_shape)
        for P_stored in (P, np.ascontiguousarray(np.swapaxes(P, -1, -3)).swapaxes(-1, -3)):
            dx = mk.to_numpy(col2im(on(backend_name, P_stored), shape, kernel, stride, padding))
            assert dx.shape == lead + shape
            for index in np.ndindex(*lead):
                left = np.sum(loop_im2col(x, kernel, stride, padding) * P[index])
                right = np.sum(x * dx[index])
                assert abs(left - right) < 1e-12 * max(1.0, abs(left))


def test_sliding_windows_is_a_view_of_every_window():
    x = np.arange(2 * 7 * 8, dtype=float).reshape(2, 7, 8)
    windows = sliding_windows(x, (3, 2), (2, 3))
    assert windows.shape == (2, 3, 3, 3, 2) and np.shares_memory(windows, x)
    for index in np.ndindex(*windows.shape):
        lead, oh, ow, i, j = index
        assert windows[index] == x[lead, oh * 2 + i, ow * 3 + j]


def test_im2col_patches_are_a_view_of_the_columns_matrix():
    x = np.random.default_rng(2).standard_normal((3, 2, 5, 5))
    patches = im2col(x, (3, 3), (1, 1), (1, 1))  # (N, L, C·KH·KW)
    columns = columns_of(patches)
    assert columns.shape == (2 * 9, 25 * 3) and columns.flags.c_contiguous and np.shares_memory(columns, patches)
    # column l·N + n is the patch of example n at position l
    np.testing.assert_array_equal(columns[:, 7 * 3 + 2], patches[2, 7])
    copy = np.ascontiguousarray(patches)
    np.testing.assert_array_equal(columns_of(copy), columns)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_does_not_depend_on_how_input_and_output_gradient_are_stored(layout, backend_name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 6, 5))
    dout = rng.standard_normal((3, 4, 3, 3))
    results = []
    for x_layout, dout_layout in (("NCHW", "NCHW"), (layout, layout), ("NCHW", layout)):
        mk.nn.init.manual_seed(0)
        conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        out = conv(on(backend_name, stored(x, x_layout)))
        dx = conv.backward(on(backend_name, stored(dout, dout_layout)))
        results.append([mk.to_numpy(a) for a in (out, dx, conv.weight.grad, conv.bias.grad)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- #
# Pooling
# --------------------------------------------------------------------------- #
def loop_max_pool(x, dout, kernel, stride):
    """Output and input gradient of max pooling; the gradient goes to the first maximum (row-major)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out, dx = np.zeros((n, c, oh, ow)), np.zeros_like(x)
    for e, ch, i, j in np.ndindex(n, c, oh, ow):
        window = x[e, ch, i * sh:i * sh + kh, j * sw:j * sw + kw]
        first = np.argmax(window)  # NumPy's argmax returns the first maximum
        out[e, ch, i, j] = window.flat[first]
        dx[e, ch, i * sh + first // kw, j * sw + first % kw] += dout[e, ch, i, j]
    return out, dx


# kernel, stride, input (H, W): tiling, tiling with leftover rows and columns,
# gaps (stride > kernel), overlapping windows, a 1×1 window.
POOL_GEOMETRIES = [((2, 2), (2, 2), (6, 8)), ((2, 2), (2, 2), (7, 5)), ((2, 3), (3, 4), (8, 9)),
                   ((3, 3), (2, 2), (7, 6)), ((3, 2), (1, 2), (5, 5)), ((1, 1), (1, 1), (3, 2))]


@pytest.mark.parametrize("kernel, stride, hw", POOL_GEOMETRIES)
@pytest.mark.parametrize("layout", ["NCHW", "CHWN"])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_equals_the_loop_definition(kernel, stride, hw, layout, ties, backend_name):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3) + hw)
    if ties:  # ReLU outputs: many exact zeros, and repeated values
        x = np.maximum(np.round(x), 0.0)
    pool = nn.MaxPool2d(kernel, stride)
    out = pool(on(backend_name, stored(x, layout)))
    dout = rng.standard_normal(tuple(out.shape))
    expected_out, expected_dx = loop_max_pool(x, dout, kernel, stride)
    np.testing.assert_array_equal(mk.to_numpy(out), expected_out)
    for dout_layout in ("NCHW", layout):  # overlapping windows add in another order: 1e-15
        dx = pool.backward(on(backend_name, stored(dout, dout_layout)))
        np.testing.assert_allclose(mk.to_numpy(dx), expected_dx, rtol=1e-15, atol=1e-15)
    stacked = mk.to_numpy(pool.backward(on(backend_name, np.stack([dout, 2 * dout]))))
    np.testing.assert_allclose(stacked, np.stack([expected_dx, 2 * expected_dx]), rtol=1e-15, atol=1e-15)


def test_max_pool_ties_go_to_the_first_offset_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5.0  # two maxima in the first window: (0, 1) comes first
    x[0, 0, 3, 3] = x[0, 0, 2, 3] = 1.0  # and in the last: (0, 1) of that window, i.e. (2, 3)
    pool = nn.MaxPool2d(2)
    pool(x)
    dx = pool.backward(np.ones((1, 1, 2, 2)))
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[0, 2] = expected[2, 0] = expected[2, 3] = 1.0  # all-zero windows: their first input
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_max_pool_caches_the_first_winning_offset():
    x = np.array([[[[1.0, 3.0, 2.0, 2.0], [3.0, 0.0, 2.0, 2.0]]]])
    pool = nn.MaxPool2d(2)
    pool(x)
    np.testing.assert_array_equal(pool.cache_argmax, [[[[1, 0]]]])
