"""Exercise 4: the Kronecker product without forming it.

Read first: tutorial 01 (the Kronecker product), sections "vec stacks columns",
"The product rule" and "Inverse and eigenpairs come from the factors".

K-FAC approximates a layer's Fisher block, a (D_out·(D_in + 1))² matrix, by a Kronecker
product A ⊗ G of two small factors: A (n, n) from the layer's inputs and G (m, m)
from its output gradients. The whole point is never to form A ⊗ G, a matrix of
(m·n)² numbers: its products and solves can be computed from A and G alone
(Van Loan 2000; Martens & Grosse 2015, §3). This exercise finds out how.

Conventions: A ⊗ G is the block matrix whose block (i, j) is A[i, j]·G (np.kron(A, G)).
**vec stacks columns**: vec(X)[j·m + i] = X[i, j] for X (m, n). This is the
convention of the papers and of minikfac; NumPy is row-major, so
``X.reshape(-1)`` stacks *rows* and gives the wrong order.

Shapes: A (n, n), G (m, m), X (m, n), vec(X) (m·n,). In K-FAC, X is a layer's
gradient matrix ∇W̄ of shape (D_out, D_in + 1): m = D_out, n = D_in + 1.

Use NumPy, but not ``np.kron`` in 4.3 and 4.4 (use it to test your answers on
small cases!) and not ``minikfac.curvature.kron``. Check with ``minikfac check 4``
(``--hints 2`` for more help). The checker uses non-square X and non-symmetric A
and G, so a transposed factor gives a different result (or shape).
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

    It can be done in O(m·n·(m + n)) operations instead of the O(m²n²) of
    the product with A ⊗ G.
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

    Prefer ``np.linalg.solve`` to ``np.linalg.inv``; solving from the right,
    Y = Z B⁻¹, is ``np.linalg.solve(B.T, Z.T).T``.
    """
    raise NotImplementedError("Exercise 4.4: return Y (m, n) with (A ⊗ G) vec(Y) = vec(X), without np.kron")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("4", __file__))
