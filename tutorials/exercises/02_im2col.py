"""Exercise 2: im2col — a convolution as one matrix product.

Read first: tutorial 03 (convolution as matrix product).

A 2-D convolution slides a C_in × KH × KW window over the (zero-padded) input
x (N, C_in, H, W). At every output position (oh, ow) it takes the dot product of
the window's C_in·KH·KW numbers with each of the C_out filters. im2col writes
those windows ("patches") as the rows of a matrix, so that the whole convolution
becomes one matrix product:

    patches : (N, OH·OW, C_in·KH·KW)     row oh·OW + ow of example n
    out     = patches @ W_matᵀ + b       W_mat = weight.reshape(C_out, C_in·KH·KW)

The columns of a patch must be in (channel, kernel row, kernel column) order —
the order of ``weight.reshape(C_out, -1)``. KFC (Grosse & Martens 2016), the
K-FAC of convolutions, builds its factor A from exactly these patches.

Conventions: kernel, stride and padding are pairs (rows, columns); padding adds
zeros on both sides; the convolution is a cross-correlation (no kernel flip), as
in every framework. Output size along one axis:

    OH = floor((H + 2·padding − KH) / stride) + 1

Use NumPy only (not ``minikfac.nn.conv``). Check your work with
``minikfac check 2`` (from the repository root). The checker uses random shapes,
non-square kernels, strides and paddings, a batch of one, and a kernel as large as
the input (a single output position).
"""

import numpy as np  # noqa: F401  (you will need it)


def output_size(size, kernel, stride, padding):
    """Number of window positions along one axis.

    Parameters
    ----------
    size, kernel, stride, padding : ints (the input length H, KH, the stride, the padding).

    Returns
    -------
    int : floor((size + 2·padding − kernel) / stride) + 1.
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

    Hints: pad with ``padded = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))``.
    Looping over every output position works but is slow; loop over the KH·KW
    kernel offsets (i, j) instead: ``padded[:, :, i:i + SH*OH:SH, j:j + SW*OW:SW]``
    is the entry (i, j) of every window at once, shape (N, C, OH, OW). Collect them
    in an (N, OH, OW, C, KH, KW) array and reshape.
    """
    raise NotImplementedError("Exercise 2.2: return the im2col patches, shape (N, OH·OW, C·KH·KW)")


def conv2d_forward(x, weight, bias, stride, padding):
    """A 2-D convolution as one matrix product over the im2col patches.

    Parameters
    ----------
    x : (N, C_in, H, W) array.
    weight : (C_out, C_in, KH, KW) array.
    bias : (C_out,) array, or None.
    stride, padding : pairs (rows, columns).

    Returns
    -------
    (N, C_out, OH, OW) array.

    Hints: use your ``im2col``; (N·OH·OW, C_in·KH·KW) @ (C_in·KH·KW, C_out) gives
    one row per position and one column per channel. Reshape to (N, OH, OW, C_out)
    first, then move the channel axis (``transpose(0, 3, 1, 2)``) — reshaping
    straight to (N, C_out, OH, OW) scrambles the numbers without any error.
    """
    raise NotImplementedError("Exercise 2.3: return the convolution of x with weight (+ bias), shape "
                              "(N, C_out, OH, OW)")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("2", __file__))
