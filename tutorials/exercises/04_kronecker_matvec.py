"""Exercise 4: the Kronecker product without forming it.

Read first: tutorial 01 (the Kronecker product).

K-FAC approximates a layer's Fisher block, a (D_out·D_in)² matrix, by a Kronecker
product A ⊗ G of two small factors: A (n, n) from the layer's inputs and G (m, m)
from its output gradients. The whole point is never to form A ⊗ G, which needs
the identity (Van Loan 2000; Martens & Grosse 2015, §3)

    (A ⊗ G) vec(X) = vec(G X Aᵀ)         X: (m, n),

with **vec stacking columns**: vec(X)[j·m + i] = X[i, j]. This is the convention
of the papers and of minikfac; NumPy is row-major, so ``X.reshape(-1)`` stacks
*rows* and gives the wrong order.

Shapes: A (n, n), G (m, m), X (m, n), vec(X) (m·n,). In K-FAC, X is a layer's
gradient matrix ∇W̄ of shape (D_out, D_in + 1): m = D_out, n = D_in + 1.

Use NumPy, but not ``np.kron`` in 4.3 and 4.4 (use it to test your answers on
small cases!) and not ``minikfac.curvature.kron``. Check with ``minikfac check 4``.
The checker uses non-square X and non-symmetric A and G, so A and Aᵀ (or G X Aᵀ and
Aᵀ X G) give different results.
"""

import numpy as np  # noqa: F401  (you will need it)


def vec(X):
    """Column-stacking vec.

    Parameters
    ----------
    X : (m, n) array.

    Returns
    -------
    (m·n,) array with entry j·m + i equal to X[i, j].
    """
    raise NotImplementedError("Exercise 4.1: return vec(X), the columns of X stacked into a vector (m·n,)")


def unvec(v, rows):
    """The inverse of vec.

    Parameters
    ----------
    v : (m·n,) array.
    rows : m, the number of rows of the matrix.

    Returns
    -------
    (m, n) array X with vec(X) = v.
    """
    raise NotImplementedError("Exercise 4.2: return the (rows, len(v) // rows) matrix X with vec(X) = v")


def kron_matvec(A, G, X):
    """(A ⊗ G) vec(X), returned as an (m, n) matrix, without forming A ⊗ G.

    Parameters
    ----------
    A : (n, n) array.  G : (m, m) array.  X : (m, n) array.

    Returns
    -------
    (m, n) array Y with vec(Y) = (A ⊗ G) vec(X).

    Hint: block (i, j) of A ⊗ G is A[i, j]·G. Work out column j of Y from
    that, then recognise a product of three matrices. Costs O(m·n·(m + n))
    instead of O(m²n²).
    """
    raise NotImplementedError("Exercise 4.3: return Y (m, n) with vec(Y) = (A ⊗ G) vec(X), without np.kron")


def kron_solve(A, G, X):
    """(A ⊗ G)⁻¹ vec(X), returned as an (m, n) matrix, without forming A ⊗ G.

    Parameters
    ----------
    A : (n, n) symmetric positive definite array.
    G : (m, m) symmetric positive definite array.
    X : (m, n) array.

    Returns
    -------
    (m, n) array Y with (A ⊗ G) vec(Y) = vec(X).

    Hints: (A ⊗ G)⁻¹ = A⁻¹ ⊗ G⁻¹, then use 4.3. Prefer ``np.linalg.solve`` to
    ``np.linalg.inv``; solving from the right, Y = Z A⁻¹, is
    ``np.linalg.solve(A.T, Z.T).T``.
    """
    raise NotImplementedError("Exercise 4.4: return Y (m, n) with (A ⊗ G) vec(Y) = vec(X), without np.kron")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("4", __file__))
