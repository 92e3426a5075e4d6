"""Model solution of exercise 2: im2col and convolution as one matrix product (plain NumPy)."""

import numpy as np


def output_size(size, kernel, stride, padding):
    """Window positions along one axis: floor((size + 2·padding − kernel) / stride) + 1."""
    # The padded axis has size + 2·padding entries; a window may start at 0, stride, 2·stride, ...
    # as long as its last entry, start + kernel − 1, is inside.
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel, stride, padding):
    """Patches (N, OH·OW, C·KH·KW) of x (N, C, H, W), columns in (c, kh, kw) order."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # zeros on the two spatial axes only
    windows = np.empty((n, c, oh, ow, kh, kw), dtype=x.dtype)
    for i in range(kh):  # loop over the kernel offsets, not over the OH·OW positions
        for j in range(kw):
            # entry (i, j) of every window at once: rows i, i + SH, ..., columns j, j + SW, ...
            windows[:, :, :, :, i, j] = padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    # (N, OH, OW, C, KH, KW): rows ordered (oh, ow), columns (c, kh, kw) like weight.reshape(C_out, -1)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh * ow, c * kh * kw)


def conv2d_forward(x, weight, bias, stride, padding):
    """The convolution (N, C_out, OH, OW) of x (N, C_in, H, W) with weight (C_out, C_in, KH, KW) plus bias."""
    c_out, _, kh, kw = weight.shape
    n, _, h, w = x.shape
    oh = output_size(h, kh, stride[0], padding[0])
    ow = output_size(w, kw, stride[1], padding[1])
    patches = im2col(x, (kh, kw), stride, padding).reshape(n * oh * ow, -1)  # (N·OH·OW, C_in·KH·KW)
    out = patches @ weight.reshape(c_out, -1).T  # one row per position, one column per filter
    if bias is not None:
        out = out + bias
    # (N, OH, OW, C_out) first; then move the channels to axis 1 (a plain reshape would scramble them)
    return out.reshape(n, oh, ow, c_out).transpose(0, 3, 1, 2)
