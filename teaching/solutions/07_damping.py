"""Model solution of exercise 7: Tikhonov damping, exact and factored with π (plain NumPy)."""

import numpy as np


def trace_norm_pi(A, G):
    """π = sqrt((tr(A)/n) / (tr(G)/m)): the ratio of the factors' mean eigenvalues, square-rooted."""
    return float(np.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G))))


def damped_factors(A, G, damping):
    """(A + π√λ I (n, n), G + (√λ/π) I (m, m))."""
    pi, root = trace_norm_pi(A, G), np.sqrt(damping)
    return A + pi * root * np.eye(len(A)), G + root / pi * np.eye(len(G))


def factored_damped_solve(A, G, V, damping):
    """((A + π√λ I) ⊗ (G + √λ/π I))⁻¹ vec(V) as an (m, n) matrix: two small solves (exercise 4.4)."""
    A_damped, G_damped = damped_factors(A, G, damping)
    Z = np.linalg.solve(G_damped, V)  # (G + √λ/π I)⁻¹ V
    return np.linalg.solve(A_damped.T, Z.T).T  # ... (A + π√λ I)⁻¹ (A_damped is symmetric)


def exact_damped_solve(A, G, V, damping):
    """(A ⊗ G + λI)⁻¹ vec(V) as an (m, n) matrix, through the factors' eigendecompositions."""
    a, U_A = np.linalg.eigh(A)  # A = U_A diag(a) U_Aᵀ
    g, U_G = np.linalg.eigh(G)
    # A ⊗ G + λI = (U_A ⊗ U_G) diag(a_j g_i + λ) (U_A ⊗ U_G)ᵀ: rotate, divide entrywise, rotate back.
    rotated = U_G.T @ V @ U_A  # (U_A ⊗ U_G)ᵀ vec(V), as an (m, n) matrix
    return U_G @ (rotated / (np.outer(g, a) + damping)) @ U_A.T
