"""Model solution of exercise 4: the Kronecker product without forming it (plain NumPy)."""

import numpy as np


def vec(X):
    """Column-stacking vec: (m, n) -> (m·n,), entry j·m + i = X[i, j]."""
    return X.T.reshape(-1)  # the rows of Xᵀ are the columns of X


def unvec(v, rows):
    """The inverse of vec: (m·n,) -> (m, n) with m = rows."""
    return v.reshape(-1, rows).T  # fill columns of length m


def kron_matvec(A, G, X):
    """(A ⊗ G) vec(X) as an (m, n) matrix: G X Aᵀ."""
    # Block (j, i) of A ⊗ G is A[j, i] G, so column j of the result is Σ_i A[j, i] G X[:, i] = (G X Aᵀ)[:, j].
    return G @ X @ A.T


def kron_solve(A, G, X):
    """(A ⊗ G)⁻¹ vec(X) as an (m, n) matrix, for symmetric positive definite A and G: G⁻¹ X A⁻¹."""
    # (A ⊗ G)⁻¹ = A⁻¹ ⊗ G⁻¹, so by kron_matvec the result is G⁻¹ X A⁻ᵀ; solve instead of inverting.
    Z = np.linalg.solve(G, X)  # G⁻¹ X
    return np.linalg.solve(A.T, Z.T).T  # Z A⁻ᵀ (= Z A⁻¹ for a symmetric A)
