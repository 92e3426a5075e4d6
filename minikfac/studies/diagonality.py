"""How close to diagonal are K-FAC's factors? Off-diagonal mass and the diagonal Kronecker model.

A claim often made for orthogonal weights (W Wᵀ = I) is that they make the
factors A = E[ā āᵀ] and G = E[g gᵀ] nearly diagonal, so that K-FAC's inverse
(A ⊗ G)⁻¹ "becomes an element-wise division". Three pieces measure exactly that:

- :func:`off_diagonal_mass` ‖M − Diag(M)‖_F / ‖M‖_F of one factor, in [0, 1]:
  0 for a diagonal matrix, √(1 − 1/n) for the (n, n) matrix of ones;
- :func:`diagonal_kron_error`, the relative Frobenius distance between A ⊗ G
  and the Kronecker product of the factors' diagonals, computed from the two
  masses without forming either product (the identity below);
- :func:`diagonal_kron_solve`, the element-wise division itself: the solve
  with Diag(A) ⊗ Diag(G) in place of A ⊗ G, to compare with K-FAC's
  :func:`minikfac.curvature.kron.kron_solve`.

The identity: with D_A = Diag(A), ⟨A, D_A⟩_F = ‖D_A‖²_F, and the Frobenius
inner product of Kronecker products factorises (⟨A ⊗ G, B ⊗ H⟩ = ⟨A, B⟩⟨G, H⟩;
Van Loan 2000, §2), so

    ‖A ⊗ G − D_A ⊗ D_G‖² = ‖A‖²‖G‖² − ‖D_A‖²‖D_G‖²
    ⇒ ‖A ⊗ G − D_A ⊗ D_G‖ / ‖A ⊗ G‖ = √(1 − (1 − m_A²)(1 − m_G²)),

m_A, m_G the off-diagonal masses. A nearly diagonal A ⊗ G needs *both* factors
nearly diagonal. Everything stays on the factors' backend (0-d results, no host
sync except the undamped solve's check).
"""

from minikfac import backend
from minikfac.curvature.damping import exact_denominator
from minikfac.curvature.linalg import check_damping, check_square, is_zero


def off_diagonal_mass(M):
    """‖M − Diag(M)‖_F / ‖M‖_F, the share of M's Frobenius norm off its diagonal.

    M : (n, n) array, e.g. a K-FAC factor A (D_in + 1, D_in + 1) or G (D_out, D_out).
    Returns a 0-d array on M's backend (a NumPy scalar on the host), in [0, 1] (0 for diagonal M; NaN for
    M = 0, where the ratio is undefined: checking would cost a host sync).
    Raises ``ValueError`` for a non-square M.
    """
    check_square("M", M, "off_diagonal_mass")
    xp = backend.get_array_module(M)
    # Square the off-diagonal entries themselves: total − Σ diag² would cancel
    # catastrophically for a nearly diagonal M (an error of √eps ≈ 1e-8 in the mass).
    off_diagonal = M * (1 - xp.eye(M.shape[0], dtype=M.dtype))
    return xp.sqrt(xp.sum(off_diagonal * off_diagonal) / xp.sum(M * M))


def diagonal_kron_error(A, G):
    """‖A ⊗ G − Diag(A) ⊗ Diag(G)‖_F / ‖A ⊗ G‖_F from the two off-diagonal masses (module docstring).

    A : (n, n), G : (m, m) on one backend. Returns a 0-d array in [0, 1]; the
    (n·m, n·m) products are never formed.
    """
    check_square("A", A, "diagonal_kron_error")
    check_square("G", G, "diagonal_kron_error")
    backend.check_same_backend(A=A, G=G)
    xp = backend.get_array_module(A, G)
    kept = (1.0 - off_diagonal_mass(A) ** 2) * (1.0 - off_diagonal_mass(G) ** 2)
    return xp.sqrt(xp.maximum(1.0 - kept, 0.0))


def diagonal_kron_solve(A, G, X, damping=0.0):
    """The element-wise division: (Diag(A) ⊗ Diag(G) + λI)⁻¹ vec(X), as a matrix.

    A : (n, n) input factor, G : (m, m) output-gradient factor, X : (m, n), e.g. a
    layer's gradient ∇W̄ (D_out, D_in + 1); damping λ >= 0. Since
    (D_A ⊗ D_G) vec(X) = vec(D_G X D_A), the solve divides entry (i, j) by
    G_ii A_jj + λ. Returns an (m, n) array; with diagonal A and G it equals
    :func:`minikfac.curvature.kron.kron_solve` (K-FAC with exact Tikhonov damping). Without
    damping a non-positive product raises ``ValueError`` (that check reads one
    number from the device, so it runs only when λ = 0, as in :mod:`minikfac.curvature.kron`).
    """
    check_square("A", A, "diagonal_kron_solve")
    check_square("G", G, "diagonal_kron_solve")
    if X.ndim != 2 or X.shape != (G.shape[0], A.shape[0]):
        raise ValueError(f"diagonal_kron_solve: X must have shape (m, n) = {(G.shape[0], A.shape[0])}, "
                         f"got {tuple(X.shape)}")
    damping = check_damping(damping, "diagonal_kron_solve")
    backend.check_same_backend(A=A, G=G, X=X)
    xp = backend.get_array_module(A, G, X)
    denominator = exact_denominator(xp.diagonal(A), xp.diagonal(G), damping)  # G_ii A_jj + λ
    if is_zero(damping) and not bool(xp.all(denominator > 0)):
        raise ValueError("diagonal_kron_solve: a diagonal product G_ii A_jj + λ is not positive; add damping")
    return X / denominator
