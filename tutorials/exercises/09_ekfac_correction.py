"""Exercise 9: EKFAC — K-FAC's eigenbasis with corrected eigenvalues.

Read first: tutorial 06 (exact Fisher vs K-FAC), where EKFAC is measured against
K-FAC; exercises 4 and 7 (Kronecker products, the damped solve through
eigendecompositions) help. The paper: George et al. 2018, §3.

K-FAC approximates a layer's Fisher block by A ⊗ G. With the eigendecompositions
A = U_A diag(a) U_Aᵀ (n, n) and G = U_G diag(g) U_Gᵀ (m, m), the Kronecker product
is diagonal in the *Kronecker eigenbasis* Q = U_A ⊗ U_G (an orthogonal (m·n, m·n)
matrix), with the eigenvalues a_j·g_i that the Kronecker structure imposes.
EKFAC (eigenvalue-corrected K-FAC) keeps the basis Q and re-estimates the
eigenvalues from the per-example gradients: the new eigenvalue of each basis
vector is the second moment, over the examples, of the gradient's coordinate
along it. Among all matrices Q diag(s) Qᵀ this is the closest to the exact block
(in the Frobenius norm), and it is never farther than K-FAC.

Conventions, as in minikfac:

- One Linear layer, N examples. ā_n (n,) is the input with the 1 of the bias
  appended last (n = D_in + 1; n = D_in without bias), g_n = ∂ℓ_n/∂s (m,) the
  per-example output gradient (m = D_out), and D_n = g_n ā_nᵀ (m, n) the
  per-example gradient of W̄ = [W | b].
- vec stacks columns (exercise 4). Coordinates in the basis Q are arranged as an
  (m, n) matrix: entry (i, j) is the coordinate along column j·m + i of Q, which is
  kron(U_A[:, j], U_G[:, i]); the eigenvalues s (m, n) are arranged the same way,
  so EKFAC's block is F̂ = Q diag(vec(s)) Qᵀ.
- The eigenvectors are the *columns* of U_A and U_G.

Use NumPy only (not ``minikfac.curvature``). Check with ``minikfac check 9``
(``--hints 2`` for more help). The checker uses n ≠ m, and batches smaller than n,
whose A is singular with a repeated eigenvalue 0.
"""

import numpy as np  # noqa: F401  (you will need it)


def eigenbases(A, G):
    """The eigenvectors of K-FAC's two factors.

    Parameters
    ----------
    A : (n, n) symmetric positive semi-definite array.
    G : (m, m) symmetric positive semi-definite array.

    Returns
    -------
    (U_A, U_G) : orthogonal arrays (n, n) and (m, m) whose columns are eigenvectors
    of A and of G. Any order and any signs are accepted.
    """
    raise NotImplementedError("Exercise 9.1: return (U_A, U_G), orthonormal eigenvectors of A and G as columns")


def project_gradients(D, U_A, U_G):
    """The per-example gradients expressed in the Kronecker eigenbasis Q = U_A ⊗ U_G.

    Parameters
    ----------
    D : (N, m, n) array, D[k] = g_k ā_kᵀ the gradient of W̄ for example k.
    U_A : (n, n) orthogonal array.  U_G : (m, m) orthogonal array.

    Returns
    -------
    (N, m, n) array: entry [k, i, j] is the coordinate of vec(D[k]) along column
    j·m + i of Q, i.e. the (m, n) matrix whose vec is Qᵀ vec(D[k]).

    Do not form Q (an (m·n, m·n) matrix) except to test your answer on a small case.
    """
    raise NotImplementedError("Exercise 9.2: return the coordinates of every D[n] in the basis U_A ⊗ U_G, "
                              "shape (N, m, n)")


def corrected_scalings(a_bar, g, U_A, U_G):
    """EKFAC's corrected eigenvalues s (m, n).

    Parameters
    ----------
    a_bar : (N, n) array, the inputs ā_n (with the 1 of the bias already appended where there is one).
    g : (N, m) array, the per-example output gradients g_n = ∂ℓ_n/∂s.
    U_A : (n, n) orthogonal array.  U_G : (m, m) orthogonal array.

    Returns
    -------
    (m, n) array: s[i, j] is the mean over the N examples of the squared coordinate
    (i, j) of the per-example gradient g_n ā_nᵀ in the basis U_A ⊗ U_G (9.2).
    """
    raise NotImplementedError("Exercise 9.3: return EKFAC's corrected eigenvalues s, shape (m, n)")


def ekfac_solve(V, U_A, U_G, s, damping):
    """(F̂ + λI)⁻¹ vec(V) as an (m, n) matrix, for EKFAC's block F̂ = Q diag(vec(s)) Qᵀ, Q = U_A ⊗ U_G.

    Parameters
    ----------
    V : (m, n) array (a layer's gradient ∇W̄, say).
    U_A : (n, n) orthogonal array.  U_G : (m, m) orthogonal array.
    s : (m, n) array of eigenvalues >= 0 (9.3).
    damping : λ > 0.

    Returns
    -------
    (m, n) array Y with (F̂ + λI) vec(Y) = vec(V).

    Do not form F̂ (check against np.linalg.solve of the dense matrix on a small case).
    """
    raise NotImplementedError("Exercise 9.4: return Y (m, n) with (F̂ + λI) vec(Y) = vec(V), without forming F̂")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("9", __file__))
