"""Model solution of exercise 11: the polar factor, Newton–Schulz and Shampoo with one gradient (plain NumPy)."""

import numpy as np


def polar_factor(M):
    """U Vᵀ (m, n) from the thin SVD M = U Σ Vᵀ."""
    # full_matrices=False: U is (m, r) and Vt is (r, n), r = min(m, n); the full SVD's square U or Vt
    # would not multiply to an (m, n) matrix. Vt is Vᵀ already: U @ Vt, not U @ Vt.T.
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    return U @ Vt


def newton_schulz_step(X, coefficients):
    """a X + (b A + c A²) X with A = X Xᵀ: every singular value σ goes to a σ + b σ³ + c σ⁵."""
    # With X = U Σ Vᵀ: A = U Σ² Uᵀ, so A X = U Σ³ Vᵀ and A² X = U Σ⁵ Vᵀ. The singular vectors stay,
    # the odd polynomial acts on the singular values. For a wide X, A is the smaller Gram matrix.
    a, b, c = coefficients
    A = X @ X.T
    return a * X + (b * A + c * (A @ A)) @ X


def newton_schulz(M, steps, coefficients, eps):
    """Muon's iteration: the wide orientation, X / max(‖X‖_F, eps), ``steps`` steps, back to M's orientation."""
    tall = M.shape[0] > M.shape[1]
    X = M.T if tall else M  # the step is the same math either way; the wide one forms the smaller A
    # The Frobenius norm is at least the largest singular value, so every σ/‖X‖_F is in [0, 1], where the
    # polynomial pushes it towards 1 -- and it costs no SVD. The floor keeps M = 0 at 0 instead of 0/0.
    X = X / max(np.linalg.norm(X), eps)
    for _ in range(steps):
        X = newton_schulz_step(X, coefficients)
    return X.T if tall else X


def _power(S, power, eps):
    """(S + εI)^power of a symmetric PSD S, through its eigendecomposition."""
    values, vectors = np.linalg.eigh(S)
    values = np.clip(values, 0.0, None) + eps  # rounding can leave tiny negative eigenvalues
    return (vectors * values ** power) @ vectors.T


def shampoo_one_gradient(G, eps):
    """L^{-1/4} G R^{-1/4} with L = G Gᵀ + εI and R = Gᵀ G + εI."""
    # With G = U Σ Vᵀ this is U diag(σ / √(σ² + ε)) Vᵀ: for a small ε, nearly the polar factor U Vᵀ of 11.1
    # (Shampoo without accumulation is Muon's direction; Bernstein & Newhouse 2024).
    return _power(G @ G.T, -0.25, eps) @ G @ _power(G.T @ G, -0.25, eps)
