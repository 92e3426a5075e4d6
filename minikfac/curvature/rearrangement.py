"""The Frobenius-nearest Kronecker product A ⊗ G to a matrix (Van Loan & Pitsianis 1993).

How Kronecker-shaped is a layer's exact Fisher block? The rearrangement R of
:func:`rearrange` turns every Kronecker product into a rank-1 matrix,
R(A ⊗ G) = vec(A) vec(G)ᵀ, and keeps the Frobenius norm; so the best A ⊗ G is
the best rank-1 approximation of R(B), its top singular pair (Eckart–Young),
and the singular values of R(B) say how far B is from any Kronecker product
(:func:`kronecker_spectrum`). K-FAC's A ⊗ G can be no closer to the block
than :func:`nearest_kronecker`'s.
"""

from minikfac import backend
from minikfac.curvature.kron import unvec
from minikfac.nn.conv import int_pair


def rearrange(B, n, m):
    """Van Loan–Pitsianis rearrangement R(B), with R(A ⊗ G) = vec(A) vec(G)ᵀ.

    B: (n·m, n·m) seen as n × n blocks B_ij of shape (m, m) (the block (i, j) of
    kron(A, G) is A[i, j]·G). Row j·n + i of R(B) is vec(B_ij)ᵀ, blocks in
    column-stacking order like vec(A). Returns (n², m²). n and m may be pairs
    (rows, cols) for rectangular factors. R only permutes entries, so
    ‖R(B)‖_F = ‖B‖_F (Van Loan & Pitsianis 1993, §2; Van Loan 2000, §3).
    """
    (n1, n2), (m1, m2) = int_pair(n, "rearrange: n", minimum=1), int_pair(m, "rearrange: m", minimum=1)
    if not backend.is_array(B) or tuple(B.shape) != (n1 * m1, n2 * m2):
        got = tuple(B.shape) if backend.is_array(B) else type(B).__name__
        raise ValueError(f"rearrange: B must have shape ({n1 * m1}, {n2 * m2}) for A ({n1}, {n2}) "
                         f"and G ({m1}, {m2}), got {got}")
    xp = backend.get_array_module(B)
    blocks = xp.reshape(B, (n1, m1, n2, m2))  # blocks[i, k, j, l] = B_ij[k, l]
    return xp.reshape(xp.transpose(blocks, (2, 0, 3, 1)), (n2 * n1, m2 * m1))


def nearest_kronecker(B, shape_A, shape_G):
    """The Frobenius-nearest Kronecker product A ⊗ G to B (Van Loan & Pitsianis 1993).

    B: (n·m, n·m); shape_A: n or (n, n); shape_G: m or (m, m) (pairs may be
    rectangular). Returns (A, G, singular_values): ‖B − A ⊗ G‖_F is minimal
    because ‖B − A ⊗ G‖_F = ‖R(B) − vec(A) vec(G)ᵀ‖_F (:func:`rearrange`) and
    the best rank-1 matrix is the top singular pair σ₁ u₁ v₁ᵀ of R(B)
    (Eckart–Young). singular_values are all of R(B)'s, descending.

    The scale is split evenly (‖A‖_F = ‖G‖_F = √σ₁) and the sign chosen so
    that tr(A) >= 0; for a symmetric PSD B, A and G then come out symmetric PSD
    (Van Loan & Pitsianis 1993, §5), up to rounding.
    """
    shape_A = int_pair(shape_A, "nearest_kronecker: shape_A", minimum=1)
    shape_G = int_pair(shape_G, "nearest_kronecker: shape_G", minimum=1)
    R = rearrange(B, shape_A, shape_G)
    xp = backend.get_array_module(B)
    U, singular_values, Vt = xp.linalg.svd(R, full_matrices=False)
    scale = xp.sqrt(singular_values[0])
    A = unvec(U[:, 0] * scale, shape_A[0])
    G = unvec(Vt[0, :] * scale, shape_G[0])
    sign = xp.where(xp.trace(A) < 0, -1.0, 1.0).astype(B.dtype)  # u₁, v₁ are defined up to a joint sign
    return A * sign, G * sign, singular_values


def kronecker_spectrum(B, shape_A, shape_G):
    """How Kronecker-shaped B is: the normalised singular values σ_k / ‖σ‖ of R(B), descending.

    B, shape_A, shape_G as in :func:`nearest_kronecker`. Returns (min(n², m²),)
    for square factors; [1, 0, 0, ...] exactly when B is a Kronecker product.
    Since ‖R(B)‖_F = ‖B‖_F and the best rank-1 error is the remaining σ's,

        σ₁² / Σ σ_k² = 1 − (‖B − A ⊗ G‖_F / ‖B‖_F)²

    with A ⊗ G the nearest Kronecker product (Van Loan & Pitsianis 1993). B = 0 gives NaN.
    """
    xp = backend.get_array_module(B)
    singular_values = xp.linalg.svd(rearrange(B, shape_A, shape_G), compute_uv=False)
    return singular_values / xp.sqrt(xp.sum(singular_values ** 2))
