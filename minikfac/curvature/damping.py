"""Damping: how K-FAC keeps (F̂ + λI)⁻¹ well defined and cheap (Martens & Grosse 2015, §6).

A layer's block A ⊗ G (A (n, n), G (m, m), symmetric PSD) is damped in one of
two ways (Martens & Grosse 2015, §6.3):

- **exact Tikhonov damping**, (A ⊗ G + λI)⁻¹ vec(X). With the factors'
  eigendecompositions A = U_A diag(a) U_Aᵀ and G = U_G diag(g) U_Gᵀ,

      (A ⊗ G + λI)⁻¹ vec(X) = vec(U_G [(U_Gᵀ X U_A) / (g aᵀ + λ)] U_Aᵀ),

  the division elementwise (:func:`exact_denominator`, :func:`eigenbasis_solve`);
- **factored Tikhonov damping**, which keeps the Kronecker form:

      ((A + π√λ I) ⊗ (G + (√λ/π) I))⁻¹ vec(X) = vec((G + (√λ/π) I)⁻¹ X (A + π√λ I)⁻¹).

  The damped factors' product is A ⊗ G + λI plus the cross terms
  (√λ/π) A ⊗ I + π√λ I ⊗ G; π balances them. The trace-norm choice
  π = sqrt((tr A / n) / (tr G / m)) (:func:`factored_pi`) gives both factors
  the same damping relative to their mean eigenvalue. The shifts are
  :func:`factored_shifts`; the solve goes through the eigenbasis
  (:func:`factored_denominator`) or through the damped factors' inverses
  (:func:`factored_inverses`, :func:`inverse_solve`), which a Cholesky
  factorisation gives at a ninth of the cost of ``eigh``.

The K-FAC optimizer, the approximation objects and the exercises' reference
all call these functions; λ here is whatever damping the caller adds (the
optimizer's γ² = λ + η).
"""

import numbers

from minikfac import backend
from minikfac.curvature.linalg import check_square, damped_inverse, inverse_from_eigen


def factored_pi(A, G, floor=False):
    """Trace-norm π = sqrt((tr(A)/n) / (tr(G)/m)) (Martens & Grosse 2015, §6.3), a 0-d array.

    A: (n, n); G: (m, m). Raises ValueError unless both traces are positive
    (this reads one number back from the device), or with ``floor=True`` takes
    a zero trace as the smallest positive number of the dtype instead (no
    sync): the optimizer's choice, so that a layer whose inputs or gradients
    are all zero still gets a finite π and a damped inverse.
    """
    check_square("A", A, "factored_pi")
    check_square("G", G, "factored_pi")
    backend.check_same_backend(A=A, G=G)
    xp = backend.get_array_module(A)
    mean_a = xp.trace(A) / A.shape[0]
    mean_g = xp.trace(G) / G.shape[0]
    if floor:
        tiny = xp.finfo(A.dtype).tiny
        mean_a, mean_g = xp.maximum(mean_a, tiny), xp.maximum(mean_g, tiny)
    elif not bool((mean_a > 0) & (mean_g > 0)):
        raise ValueError(f"factored_pi: tr(A) and tr(G) must be positive, got mean eigenvalues "
                         f"{float(mean_a):.3g} (A) and {float(mean_g):.3g} (G)")
    return xp.sqrt(mean_a / mean_g)


def factored_shifts(damping, pi):
    """(π√λ, √λ/π): what factored damping adds to the diagonals of A and of G (Martens & Grosse 2015, §6.3)."""
    root = damping ** 0.5
    return pi * root, root / pi


def exact_denominator(a_eigs, g_eigs, damping):
    """g aᵀ + λ, (m, n): the eigenvalues of A ⊗ G + λI as a matrix (entry (i, j) = a_j g_i + λ).

    a_eigs (n,), g_eigs (m,): the factors' eigenvalues.
    """
    return g_eigs[:, None] * a_eigs[None, :] + damping


def factored_denominator(a_eigs, g_eigs, damping, pi):
    """(g + √λ/π)(a + π√λ)ᵀ, (m, n): the eigenvalues of the factored-damped (A + π√λ I) ⊗ (G + (√λ/π) I)."""
    shift_a, shift_g = factored_shifts(damping, pi)
    return (g_eigs + shift_g)[:, None] * (a_eigs + shift_a)[None, :]


def eigenbasis_solve(U_A, U_G, X, denominator, out=None):
    """U_G [(U_Gᵀ X U_A) / D] U_Aᵀ: a solve with a matrix that is diagonal in the basis U_A ⊗ U_G.

    U_A (n, n), U_G (m, m): orthogonal eigenvectors (columns); X (..., m, n);
    D (m, n): the eigenvalues, vec(D) pairing with the basis' columns
    (:func:`exact_denominator`, :func:`factored_denominator`, or EKFAC's
    damped scalings). Equals (U_A ⊗ U_G) diag(1/vec(D)) (U_A ⊗ U_G)ᵀ vec(X)
    without forming the (m·n, m·n) basis. ``out``: an (m, n) array to write into.
    """
    rotated = U_G.T @ X @ U_A
    if out is None:
        return U_G @ (rotated / denominator) @ U_A.T
    return backend.get_array_module(X).matmul(U_G @ (rotated / denominator), U_A.T, out=out)


def factored_inverses(A, G, damping):
    """((A + π√λ I)⁻¹, (G + (√λ/π) I)⁻¹): factored Tikhonov damping's inverses (Martens & Grosse 2015, §6.3).

    A: (n, n), G: (m, m), symmetric PSD; damping λ > 0 (a Python number).
    π is :func:`factored_pi` with ``floor=True``. The preconditioned gradient
    of the layer is then (G + (√λ/π) I)⁻¹ ∇W̄ (A + π√λ I)⁻¹
    (:func:`inverse_solve`). Returns (A_inverse, G_inverse), or None when
    either damped factor is not finite or not positive definite
    (:func:`.linalg.damped_inverse`).
    """
    shift_a, shift_g = factored_shifts(damping, factored_pi(A, G, floor=True))
    A_inverse = damped_inverse(A, shift_a)
    G_inverse = None if A_inverse is None else damped_inverse(G, shift_g)
    return None if G_inverse is None else (A_inverse, G_inverse)


def inverse_solve(A_inverse, G_inverse, X, out=None):
    """G⁻¹ X A⁻¹ for X (m, n) (or stacks), the solve with A ⊗ G from its factors' (damped) inverses.

    (A ⊗ G)⁻¹ vec(X) = (A⁻¹ ⊗ G⁻¹) vec(X) = vec(G⁻¹ X A⁻¹) (A, G symmetric).
    ``out``: an (m, n) array to write into.
    """
    if out is None:
        return G_inverse @ X @ A_inverse
    return backend.get_array_module(X).matmul(G_inverse @ X, A_inverse, out=out)


def factored_inverse_dense(a_eigs, U_A, g_eigs, U_G, damping, pi):
    """kron((A + π√λ I)⁻¹, (G + (√λ/π) I)⁻¹), dense (m·n, m·n), from the factors' eigendecompositions.

    Forms the big matrix: for comparisons and small cases only.
    """
    shift_a, shift_g = factored_shifts(damping, pi)
    xp = backend.get_array_module(U_A)
    return xp.kron(inverse_from_eigen(a_eigs + shift_a, U_A), inverse_from_eigen(g_eigs + shift_g, U_G))


def check_pi(pi, caller="solve_factored"):
    """A Python/NumPy number > 0, or a 0-d backend array (taken as given: no sync)."""
    if backend.is_array(pi) and pi.ndim == 0:
        return pi
    if backend.is_array(pi) or not isinstance(pi, numbers.Real) or not 0 < pi < float("inf"):
        raise ValueError(f"{caller}: pi must be a finite number > 0 or a 0-d array, got {pi!r}")
    return pi


def layer_pis(pi, count, caller):
    """π per layer: ``None`` (each layer's trace norm), one number for all, or a sequence of ``count``."""
    single = pi is None or backend.is_array(pi) and pi.ndim == 0 or isinstance(pi, numbers.Real)
    pis = [pi] * count if single else list(pi)
    if len(pis) != count:
        raise ValueError(f"{caller}: pi must be None, a number or one value per layer ({count}), got {len(pis)}")
    for p in pis:
        if backend.is_array(p):
            if p.ndim != 0:
                raise ValueError(f"{caller}: pi must be a scalar, got shape {tuple(p.shape)}")
        elif p is not None and not (isinstance(p, numbers.Real) and 0 < p < float("inf")):
            raise ValueError(f"{caller}: pi must be a finite number > 0, got {p!r}")
    return pis
