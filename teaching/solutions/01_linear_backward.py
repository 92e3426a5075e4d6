"""Model solution of exercise 1: a Linear layer, forward and backward (plain NumPy)."""


def linear_forward(x, W, b):
    """s = x Wᵀ + b: x (N, D_in), W (D_out, D_in), b (D_out,) or None -> (N, D_out)."""
    # W acts on a column a (s = W a); with the inputs as rows, s[n] = W x[n] is row n of x Wᵀ.
    s = x @ W.T
    if b is not None:
        s = s + b  # broadcast over the N rows
    return s


def linear_backward(dout, x, W, b):
    """(dx (N, D_in), dW (D_out, D_in), db (D_out,) or None) from dout = dL/ds (N, D_out)."""
    # s[n, o] = Σ_i W[o, i] x[n, i] + b[o], so
    #   dL/dx[n, i] = Σ_o dout[n, o] W[o, i]   -> dout W
    #   dL/dW[o, i] = Σ_n dout[n, o] x[n, i]   -> doutᵀ x (the shape of W)
    #   dL/db[o]    = Σ_n dout[n, o]           -> a sum: dout already holds the loss's 1/N
    dx = dout @ W
    dW = dout.T @ x
    db = None if b is None else dout.sum(axis=0)
    return dx, dW, db
