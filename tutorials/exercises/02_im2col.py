"""Exercise 2: im2col — a convolution as one matrix product.

Read first: tutorial 03 (convolution as matrix product), sections "What a patch
is" and "The convolution is one matrix product".

A 2-D convolution slides a C_in × KH × KW window over the (zero-padded) input
x (N, C_in, H, W). At every output position (oh, ow) it takes the dot product of
the window's C_in·KH·KW numbers with each of the C_out filters. im2col writes
those windows ("patches") as the rows of a matrix, so that the whole convolution
becomes one matrix product with the weight's matrix view:

    patches : (N, OH·OW, C_in·KH·KW)     row oh·OW + ow of example n
    W_mat   = weight.reshape(C_out, C_in·KH·KW)

The columns of a patch must be in (channel, kernel row, kernel column) order —
the order of ``weight.reshape(C_out, -1)``. KFC (Grosse & Martens 2016), the
K-FAC of convolutions, builds its factor A from exactly these patches (exercise 10).

Conventions: kernel, stride and padding are pairs (rows, columns); padding adds
that many zeros on both sides of an axis; a window may start every ``stride``
entries and must lie inside the padded input entirely; the convolution is a
cross-correlation (no kernel flip), as in every framework.

Use NumPy only (not ``minikfac.nn.conv``). Check your work with
``minikfac check 2`` (from the repository root; ``--hints 2`` for more help). The
checker uses random shapes, non-square kernels, strides and paddings, a batch of
one, and a kernel as large as the input (a single output position).
"""

import numpy as np  # noqa: F401  (you will need it)


def output_size(size, kernel, stride, padding):
    """The number of window positions along one axis.

    Parameters
    ----------
    size, kernel, stride, padding : ints (the input length H, the kernel length KH, the stride, the padding
        added on each side).

    Returns
    -------
    int : how many windows of length ``kernel``, starting every ``stride`` entries, fit in the padded axis.
    """
    raise NotImplementedError("Exercise 2.1: return the number of output positions along one axis")


def im2col(x, kernel, stride, padding):
    """The patches of x under a sliding window.

    Parameters
    ----------
    x : (N, C, H, W) array.
    kernel, stride, padding : pairs (rows, columns) of ints: (KH, KW), (SH, SW), (PH, PW).

    Returns
    -------
    (N, OH·OW, C·KH·KW) array: row oh·OW + ow of example n is the window under
    output position (oh, ow), flattened in (c, kh, kw) order.

    A loop over every output position works but is slow; think about what a
    loop over the KH·KW kernel offsets could do with strided slices instead.
    """
    raise NotImplementedError("Exercise 2.2: return the im2col patches, shape (N, OH·OW, C·KH·KW)")


def conv2d_forward(x, weight, bias, stride, padding):
    """A 2-D convolution, computed as one matrix product over the im2col patches.

    Parameters
    ----------
    x : (N, C_in, H, W) array.
    weight : (C_out, C_in, KH, KW) array.
    bias : (C_out,) array, or None.
    stride, padding : pairs (rows, columns).

    Returns
    -------
    (N, C_out, OH, OW) array: out[n, c, oh, ow] is the dot product of filter c with
    the window of example n under (oh, ow), plus bias[c].

    Use your ``im2col``. Reshaping a result and moving an axis are different
    operations: NumPy accepts both without complaint.
    """
    raise NotImplementedError("Exercise 2.3: return the convolution of x with weight (+ bias), shape "
                              "(N, C_out, OH, OW)")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("2", __file__))
