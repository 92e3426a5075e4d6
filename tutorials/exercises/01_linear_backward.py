"""Exercise 1: a Linear layer, forward and backward.

Read first: tutorial 02 (layers and caches).

A Linear layer computes s = W a + b for one input column a. minikfac stores W with
shape (D_out, D_in), exactly as written in that formula, and processes a batch of
N inputs stacked as the *rows* of x (N, D_in):

    s = x Wᵀ + b            s: (N, D_out),  b: (D_out,) broadcast over the rows.

Backward receives dout = dL/ds (N, D_out) — for a mean loss it already contains
the 1/N — and returns the three gradients of the chain rule:

    dL/dx = dout W          (N, D_in)
    dL/dW = doutᵀ x         (D_out, D_in)   the shape of W
    dL/db = Σ_n dout[n]     (D_out,)        a sum over the batch, not a mean

These are the quantities K-FAC works with: dL/dW is a sum over examples of outer
products g_n a_nᵀ of the output gradient g_n and the input a_n.

Use NumPy only (not minikfac's Linear). Check your work with

    minikfac check 1            (from the repository root)
    python tutorials/exercises/01_linear_backward.py

The checker calls your functions on random shapes (D_in ≠ D_out, so a transposed
result is caught), on a batch of one example and on a layer without bias.
"""

import numpy as np  # noqa: F401  (you will need it)


def linear_forward(x, W, b):
    """The output s = x Wᵀ + b of a Linear layer for a batch.

    Parameters
    ----------
    x : (N, D_in) array, one input per row.
    W : (D_out, D_in) array.
    b : (D_out,) array, or None for a layer without bias.

    Returns
    -------
    s : (N, D_out) array.

    Hint: ``x @ W.T``; add b only when it is not None.
    """
    raise NotImplementedError("Exercise 1.1: return the layer's output s = x Wᵀ + b, shape (N, D_out)")


def linear_backward(dout, x, W, b):
    """The gradients of a Linear layer, given dout = dL/ds.

    Parameters
    ----------
    dout : (N, D_out) array, the gradient of the loss w.r.t. the layer's output s.
    x : (N, D_in) array, the input of the forward pass (what the layer caches).
    W : (D_out, D_in) array.
    b : (D_out,) array, or None for a layer without bias.

    Returns
    -------
    (dx, dW, db) : dx (N, D_in), dW (D_out, D_in), db (D_out,) — db is None when b is None.

    Hints: write s_no = Σ_i W[o, i] x[n, i] + b[o] and differentiate entry by
    entry; every gradient has the shape of the thing it is the gradient of. db
    sums over the batch: dout already holds the loss's 1/N.
    """
    raise NotImplementedError("Exercise 1.2: return (dx, dW, db), the gradients of the loss w.r.t. x, W and b "
                              "(db None without bias)")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("1", __file__))
