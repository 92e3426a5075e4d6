"""Model solution of exercise 9: EKFAC's eigenvalue correction (George et al. 2018, §3; plain NumPy)."""

import numpy as np


def eigenbases(A, G):
    """(U_A (n, n), U_G (m, m)): orthonormal eigenvectors of the symmetric factors, as columns."""
    # eigh, not eig: for a symmetric matrix it returns an orthonormal basis even for a repeated eigenvalue.
    return np.linalg.eigh(A)[1], np.linalg.eigh(G)[1]


def project_gradients(D, U_A, U_G):
    """Qᵀ vec(D_n) for Q = U_A ⊗ U_G, as (N, m, n) matrices: U_Gᵀ D_n U_A."""
    # (U_A ⊗ U_G)ᵀ = U_Aᵀ ⊗ U_Gᵀ and (B ⊗ C) vec(X) = vec(C X Bᵀ) (exercise 4.3).
    return U_G.T @ D @ U_A  # broadcast over the N gradients


def corrected_scalings(a_bar, g, U_A, U_G):
    """s (m, n) = (1/N) Σ_n (U_Gᵀ g_n ā_nᵀ U_A)², squared entrywise."""
    # The projected gradient of a Linear layer is an outer product, (U_Gᵀ g_n)(U_Aᵀ ā_n)ᵀ, so its
    # entrywise square is the outer product of the squares: no (N, m, n) array is needed.
    rotated_g = (g @ U_G) ** 2  # (N, m): row n is (U_Gᵀ g_n)²
    rotated_a = (a_bar @ U_A) ** 2  # (N, n): row n is (U_Aᵀ ā_n)²
    return rotated_g.T @ rotated_a / len(a_bar)  # the mean of the squares, not the square of the mean


def ekfac_solve(V, U_A, U_G, s, damping):
    """(F̂ + λI)⁻¹ vec(V) as an (m, n) matrix, F̂ = (U_A ⊗ U_G) diag(vec(s)) (U_A ⊗ U_G)ᵀ."""
    rotated = U_G.T @ V @ U_A  # into the eigenbasis, where F̂ + λI is diag(s + λ)
    return U_G @ (rotated / (s + damping)) @ U_A.T  # divide entrywise, rotate back
