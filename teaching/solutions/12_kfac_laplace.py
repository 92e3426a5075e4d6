"""Model solution of exercise 12: the Kronecker-factored Laplace posterior and its predictive (plain NumPy)."""

import numpy as np


def precision_eigenvalues(A, G, n_data, prior_precision):
    """N·g_i·a_j + δ (m, n): the eigenvalues of N·(A ⊗ G) + δI, rows for G's eigenvalues, columns for A's."""
    # (A ⊗ G) kron(u_a, u_g) = kron(A u_a, G u_g) = a_j g_i kron(u_a, u_g): the eigenvalues of a Kronecker
    # product are the products of the factors' eigenvalues. δI adds δ to each, N scales the product only:
    # A and G are means over the N examples, Λ holds the summed curvature.
    a = np.linalg.eigh(A)[0]  # (n,) ascending
    g = np.linalg.eigh(G)[0]  # (m,) ascending
    # kron(U_A[:, j], U_G[:, i]) is column j·m + i of U_A ⊗ U_G, i.e. entry (i, j) of an (m, n) grid in vec order.
    return n_data * np.outer(g, a) + prior_precision


def log_evidence(factors, n_data, prior_precision, log_likelihood, theta):
    """(log det Λ, log p(D|θ*) − ½δ‖θ*‖² − ½ log det Λ + ½P log δ)."""
    # Λ is block diagonal and each block's eigenvalues are 12.1's grid: log det is the sum of their logs.
    log_det = sum(float(np.sum(np.log(precision_eigenvalues(A, G, n_data, prior_precision)))) for A, G in factors)
    size = theta.shape[0]
    # The Laplace method: log p(D, θ) ≈ log p(D, θ*) − ½ (θ − θ*)ᵀ Λ (θ − θ*), and the Gaussian integral gives
    # (2π)^(P/2) det(Λ)^(-1/2). log p(θ*) = −½δ‖θ*‖² + ½P log δ − ½P log 2π; the two (2π)^(P/2) cancel.
    log_prior = -0.5 * prior_precision * float(theta @ theta) + 0.5 * size * np.log(prior_precision)
    return log_det, float(log_likelihood + log_prior - 0.5 * log_det)


def functional_covariance(factors, a_bars, gradients, n_data, prior_precision):
    """J Σ Jᵀ (K, K) = Σ_l Σ_ij (U_Aᵀ ā)_j² (U_Gᵀ g_k)_i (U_Gᵀ g_k')_i / (N g_i a_j + δ)."""
    covariance = 0.0
    for (A, G), a_bar, g in zip(factors, a_bars, gradients):
        a, U_A = np.linalg.eigh(A)
        w, U_G = np.linalg.eigh(G)
        # Σ_l = (U_A ⊗ U_G) diag(1/vec(grid)) (U_A ⊗ U_G)ᵀ, and output k's row of J is vec(g_k āᵀ).
        # Its coordinates in the eigenbasis: (U_A ⊗ U_G)ᵀ vec(g_k āᵀ) = vec(U_Gᵀ g_k āᵀ U_A) = vec(r_k ρᵀ),
        # an outer product of the rotated vectors r_k = U_Gᵀ g_k (m,) and ρ = U_Aᵀ ā (n,).
        grid = n_data * np.outer(w, a) + prior_precision  # (m, n), 12.1
        rho = U_A.T @ a_bar  # (n,)
        r = g @ U_G  # (K, m): row k is U_Gᵀ g_k
        # Σ_ij r_ki ρ_j r_k'i ρ_j / grid_ij = Σ_i r_ki r_k'i c_i with c_i = Σ_j ρ_j² / grid_ij.
        c = (rho ** 2 / grid).sum(axis=1)  # (m,)
        covariance = covariance + (r * c) @ r.T  # K-FAC's Σ is block diagonal: one term per layer
    return covariance


def probit_probabilities(f, covariance):
    """softmax(κ ⊙ f) with κ_k = 1/√(1 + π/8·Var f_k)."""
    # σ(t) ≈ Φ(λt) with λ = √(π/8) (slopes at 0: 1/4 = λ/√(2π)), and E[Φ(λf)] = Φ(λμ/√(1 + λ²s²))
    # = Φ(λ κ μ) ≈ σ(κ μ) with κ = 1/√(1 + λ²s²). Each logit is shrunk by its own variance.
    kappa = 1 / np.sqrt(1 + np.pi / 8 * np.diag(covariance))
    z = kappa * f
    z = z - z.max()  # stable: logits around 1000 would overflow exp
    e = np.exp(z)
    return e / e.sum()
