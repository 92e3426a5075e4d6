"""Model solution of exercise 5: the exact Fisher of a tiny network (plain NumPy)."""

import numpy as np


def per_example_gradient(a, g, bias):
    """Rows vec(g_n ā_nᵀ) = ā_n ⊗ g_n: (N, (D_in + 1)·D_out), or (N, D_in·D_out) without bias."""
    n = len(a)
    a_bar = np.concatenate([a, np.ones((n, 1))], axis=1) if bias else a  # the 1 of the bias last
    # vec stacks the columns of g āᵀ (D_out, D_in + 1): column i is ā_i g, so entry i·D_out + o is ā_i g_o,
    # which is the C-order flattening of the (D_in + 1, D_out) array of products ā_i g_o.
    return np.einsum("ni,no->nio", a_bar, g).reshape(n, -1)


def fisher_from_jacobians(J, output_fisher):
    """F = (1/N) Σ_n J_nᵀ F_out,n J_n (P, P) from J (N, D_out, P) and F_out (N, D_out, D_out)."""
    # ∇_θ ℓ_n = J_nᵀ ∇_f ℓ_n, and E_y[∇_f ℓ ∇_f ℓᵀ] = F_out,n: the expectation needs no sampling.
    return np.einsum("nkp,nkl,nlq->pq", J, output_fisher, J) / len(J)


def empirical_fisher(grads):
    """(1/N) Σ_n ∇ℓ_n ∇ℓ_nᵀ (P, P) from per-example gradients (N, P): a second moment, not np.cov."""
    return grads.T @ grads / len(grads)
