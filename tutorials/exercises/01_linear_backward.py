"""Exercise 1: a Linear layer, forward and backward.

Read first: tutorial 02 (layers and caches), sections "Forward: what each layer
keeps" and "One Linear layer's backward, by hand".

A Linear layer computes s = W a + b for one input column a. minikfac stores W with
shape (D_out, D_in), exactly as written in that formula, and processes a batch of
N inputs stacked as the *rows* of x (N, D_in); the outputs are the rows of
s (N, D_out), and b (D_out,) is added to every one of them.

1.1 computes the batch of outputs. 1.2 is the backward pass: given
dout = dL/ds (N, D_out), the gradient of the loss with respect to the layer's
output, return the gradients of the loss with respect to the input x, the weight
W and the bias b. Derive them with the chain rule, entry by entry. Two facts to
use: every gradient has the shape of the thing it is the gradient of, and for a
mean loss L = (1/N) Σ_n ℓ_n, dout already contains the 1/N.

These are the quantities K-FAC works with: the weight gradient, written out per
example, is what its factors are built from (tutorial 05).

Use NumPy only (not minikfac's Linear). Check your work with

    minikfac check 1            (from the repository root; --hints 2 for more help)
    python tutorials/exercises/01_linear_backward.py

The checker calls your functions on random shapes (D_in ≠ D_out, so a transposed
result is caught), on a batch of one example and on a layer without bias.
"""

import numpy as np  # noqa: F401  (you will need it)


def linear_forward(x, W, b):
    """The output s of a Linear layer, s = W a + b, for every input row a of x.

    Parameters
    ----------
    x : (N, D_in) array, one input per row.
    W : (D_out, D_in) array.
    b : (D_out,) array, or None for a layer without bias.

    Returns
    -------
    s : (N, D_out) array; row n is W x[n] + b.
    """
    raise NotImplementedError("Exercise 1.1: return the layer's outputs s (N, D_out), one row per input row")


def linear_backward(dout, x, W, b):
    """The gradients of the loss w.r.t. a Linear layer's input, weight and bias, given dout = dL/ds.

    Parameters
    ----------
    dout : (N, D_out) array, the gradient of the loss w.r.t. the layer's output s.
    x : (N, D_in) array, the input of the forward pass (what the layer caches).
    W : (D_out, D_in) array.
    b : (D_out,) array, or None for a layer without bias.

    Returns
    -------
    (dx, dW, db) : dL/dx (N, D_in), dL/dW (D_out, D_in), dL/db (D_out,) — db is None when b is None.

    Write one entry of the output, s[n, o] = Σ_i W[o, i] x[n, i] + b[o], and
    differentiate it with the chain rule.
    """
    raise NotImplementedError("Exercise 1.2: return (dx, dW, db), the gradients of the loss w.r.t. x, W and b "
                              "(db None without bias)")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("1", __file__))
