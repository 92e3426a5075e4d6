"""Exercise 12: the Kronecker-factored Laplace posterior and its predictive.

Read first: tutorial 14 (the Laplace approximation), section "The posterior,
the GGN, and where N enters"; tutorial 07 (cheap inversion), section "Damping:
exact Tikhonov vs factored", for solves in the factors' eigenbasis. Exercises 4
(vec), 5.1 (a layer's gradient), 7.4 and 9.4 (solves in the eigenbasis) help. The papers: MacKay 1992a and 1992c (the Laplace evidence and
the probit approximation); Ritter et al. 2018a (the Kronecker-factored
Laplace); Immer et al. 2021 (the linearised predictive); Daxberger et
al. 2021 (laplace-torch, whose conventions ``minikfac.laplace`` follows).

The Laplace approximation turns a trained network into a Bayesian one. Around
the MAP θ* (P,) of the data's negative log-likelihood plus the prior's
−log N(θ; 0, δ⁻¹I), the posterior over the weights is approximated by the
Gaussian N(θ*, Σ), with Σ = Λ⁻¹ and the *posterior precision*

    Λ = N·F̂ + δI        (P, P),

where F̂ is the curvature (the GGN) of the *mean* loss over the N training
examples, so that N·F̂ is the curvature of their summed negative log-likelihood,
and δ > 0 is the prior precision. With K-FAC, F̂ is block diagonal with one
block A_l ⊗ G_l per layer, so Λ is block diagonal too, with the blocks
N·(A_l ⊗ G_l) + δI. Nothing of size P × P (or (m·n) × (m·n) for one layer) needs
to be formed: everything below goes through the small factors.

- **The evidence** (12.2) is the log marginal likelihood
  log p(D | δ) = log ∫ p(D | θ) p(θ) dθ with the prior p(θ) = N(0, δ⁻¹I) in P
  dimensions, normalising constant included. The Laplace method expands the log
  of the integrand to second order around θ*, where its gradient vanishes and
  its Hessian is taken to be −Λ, and integrates the resulting Gaussian exactly.
  You are given log p(D | θ*) = Σ_n log p(y_n | x_n, θ*).
- **The linearised predictive** (12.3): f(x, θ) ≈ f(x, θ*) + J (θ − θ*) with
  J = ∂f/∂θ (K, P) at θ*, for the K outputs of the net. Under the posterior the
  outputs are then Gaussian, f ~ N(f(x, θ*), J Σ Jᵀ).
- **The probit approximation** (12.4) of the class probabilities E[softmax(f)],
  which have no closed form. For one logit, the logistic sigmoid σ(t) is
  approximated by Φ(λt), Φ the standard normal CDF, with λ chosen so that both
  have the same slope at t = 0; and for f ~ N(μ, s²), E[Φ(λf)] = Φ(λμ / √(1 + λ²s²)),
  which is again σ of a shrunk logit. For K classes each mean logit f_k is shrunk
  in the same way by its own variance, and the softmax is taken of the shrunk
  logits.

Conventions, as in minikfac:

- Layer l has the input ā (n,) with the 1 of the bias appended last
  (n = D_in + 1; n = D_in without bias) and the pre-activations s = W̄ ā (m,),
  W̄ = [W | b] of shape (m, n), m = D_out. Its parameters sit in θ as vec(W̄),
  the layers one after the other. vec stacks columns (exercise 4).
- A_l (n, n) and G_l (m, m) are K-FAC's factors of the GGN, both *means* over
  the N training examples (you get them as they are; exercise 6 computed such
  factors).
- For one input x, the gradient of the output f_k w.r.t. W̄ of layer l is
  g_k āᵀ (m, n), with g_k = ∂f_k/∂s (m,); so output k's row of J, restricted to
  layer l, is vec(g_k āᵀ) (exercise 5.1).
- Eigenvalues and eigenvectors: use ``np.linalg.eigh`` (ascending eigenvalues,
  eigenvectors as columns). In 12.1, entry (i, j) of the result belongs to the
  eigenvector kron(U_A[:, j], U_G[:, i]) of A ⊗ G, column j·m + i of U_A ⊗ U_G
  (as in exercise 9).

Use NumPy only (not ``minikfac.laplace`` nor ``minikfac.curvature``). Check with
``minikfac check 12`` (``--hints 2`` for more help). The checker's nets are a
classifier and a regression net with one hidden layer, one with a layer without
bias trained on N = 2 examples (fewer than n: A is singular, and only δ keeps Λ
invertible) and a single Linear layer with N = 1; the predictive is asked for an
input far from the data too, and for logits around 1000.
"""

import numpy as np  # noqa: F401  (you will need it)


def precision_eigenvalues(A, G, n_data, prior_precision):
    """The eigenvalues of one layer's block N·(A ⊗ G) + δI of the posterior precision Λ.

    Parameters
    ----------
    A : (n, n) symmetric positive semi-definite array, the mean input factor.
    G : (m, m) symmetric positive semi-definite array, the mean gradient factor.
    n_data : N, the number of training examples (an int >= 1).
    prior_precision : δ > 0.

    Returns
    -------
    (m, n) array: entry (i, j) is the eigenvalue of N·(A ⊗ G) + δI whose
    eigenvector is kron(U_A[:, j], U_G[:, i]), the eigenvectors U_A of A and U_G
    of G (and their eigenvalues) in the order of ``np.linalg.eigh``.

    Do not form A ⊗ G (except with np.kron to test your answer on a small case).
    """
    raise NotImplementedError("Exercise 12.1: return the eigenvalues of N·(A ⊗ G) + δI as an (m, n) grid")


def log_evidence(factors, n_data, prior_precision, log_likelihood, theta):
    """log det Λ and the Laplace approximation of the log marginal likelihood log p(D | δ).

    Parameters
    ----------
    factors : list of (A_l (n_l, n_l), G_l (m_l, m_l)), one pair per layer, in order.
    n_data : N, the number of training examples.
    prior_precision : δ > 0.
    log_likelihood : log p(D | θ*) = Σ_n log p(y_n | x_n, θ*), a float.
    theta : (P,) array, θ* (P = Σ_l n_l·m_l).

    Returns
    -------
    (log_det, log_evidence) : two floats, log det Λ for Λ = N·diag(A_l ⊗ G_l) + δI,
    and log p(D | δ) as the module docstring defines it (the constants of every
    Gaussian included).
    """
    raise NotImplementedError("Exercise 12.2: return (log det Λ, log p(D | δ)), two floats")


def functional_covariance(factors, a_bars, gradients, n_data, prior_precision):
    """The covariance J Σ Jᵀ of the linearised outputs for one input, Σ = Λ⁻¹ with K-FAC's Λ.

    Parameters
    ----------
    factors : list of (A_l (n_l, n_l), G_l (m_l, m_l)), one pair per layer, in order.
    a_bars : list of (n_l,) arrays, layer l's input ā for this input (the 1 of the bias last).
    gradients : list of (K, m_l) arrays: row k is g_k = ∂f_k/∂s_l, the gradient of
        output k w.r.t. layer l's pre-activations, for this input.
    n_data : N. prior_precision : δ > 0.

    Returns
    -------
    (K, K) array J Σ Jᵀ, symmetric positive definite.

    Do not form Σ, Λ or J (form them only to test your answer on a small case).
    """
    raise NotImplementedError("Exercise 12.3: return J Σ Jᵀ (K, K) for this input, without forming Σ")


def probit_probabilities(f, covariance):
    """The probit approximation of the class probabilities E[softmax(f)], f ~ N(f, covariance).

    Parameters
    ----------
    f : (K,) array, the mean logits f(x, θ*) of one input.
    covariance : (K, K) array, their covariance J Σ Jᵀ (12.3).

    Returns
    -------
    (K,) array of probabilities (non-negative, summing to 1).
    """
    raise NotImplementedError("Exercise 12.4: return the probit-approximated class probabilities, shape (K,)")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("12", __file__))
