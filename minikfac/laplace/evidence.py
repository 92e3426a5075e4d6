"""The Laplace evidence (log marginal likelihood) and the prior precision that maximises it.

With the Gaussian prior p(θ) = N(0, δ⁻¹ I) and the posterior precision
Λ = N·F̂ + δI, the Laplace approximation of the evidence at the MAP θ* is
(MacKay 1992a; Daxberger et al. 2021, as laplace-torch's ``log_marginal_likelihood``)

    log p(D | δ) ≈ log p(D | θ*) − ½ δ ‖θ*‖² − ½ log det Λ + ½ P log δ,

where log p(D | θ*) = −Σ_n ℓ_n(θ*) is the data's log-likelihood (a SUM over
the N examples, with the likelihood's own constant) and the two log
determinants are of the posterior and prior precisions (their ratio,
laplace-torch's ``log_det_ratio``). Every structure of F̂ gives its
eigenvalues λ_k cheaply (for K-FAC the products a_i g_j of its factors'
eigenvalues, Martens & Grosse 2015, §6.3), and then log det Λ = Σ_k log(N λ_k + δ)
for any δ without a new factorisation. The derivative in δ is

    d/dδ log p(D | δ) = ½ (−‖θ*‖² + Σ_k [1/δ − 1/(N λ_k + δ)]) = ½ (γ(δ)/δ − ‖θ*‖²),

with γ(δ) = Σ_k N λ_k / (N λ_k + δ) the effective number of parameters
(MacKay 1992a). Each term 1/δ − 1/(c + δ) falls as δ grows, so the evidence is
concave in δ and has one maximiser whenever θ* ≠ 0 and some λ_k > 0:
the root of that derivative, found by Brent's method on log δ. At the root
δ = γ(δ)/‖θ*‖², which is MacKay's fixed-point update.

Arrays in, numbers out: the functions take the eigenvalues λ_k (mean F̂, as
:meth:`~minikfac.curvature.approximation.Approximation.eigenvalues` returns
them), N, the squared norm ‖θ*‖² and the log-likelihood.
"""

import math

import numpy as np
import scipy.optimize

from minikfac import backend


def check_prior_precision(delta, caller):
    """δ as a Python float if it is a finite number > 0, else ValueError/TypeError naming ``caller``."""
    if isinstance(delta, (bool, str, bytes)) or (backend.is_array(delta) and delta.ndim != 0):
        raise TypeError(f"{caller}: prior_precision must be a number > 0, got {delta!r}")
    try:
        value = float(delta)
    except (TypeError, ValueError):
        raise TypeError(f"{caller}: prior_precision must be a number > 0, got {delta!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{caller}: prior_precision must be a finite number > 0 (the prior N(0, 1/δ·I) "
                         f"needs δ > 0), got {delta!r}")
    return value


def _float64(eigenvalues):
    """The eigenvalues in float64 (clipped at 0): a δ far below float32's range must not round to 0 in a log."""
    xp = backend.get_array_module(eigenvalues)
    return xp.maximum(eigenvalues.astype(xp.float64), 0)


def log_det_precision(eigenvalues, n_data, delta):
    """log det(N·F̂ + δI) = Σ_k log(N λ_k + δ), a float64 0-d array; ``eigenvalues`` (P,) of the mean F̂."""
    xp = backend.get_array_module(eigenvalues)
    return xp.sum(xp.log(n_data * _float64(eigenvalues) + delta))


def effective_parameters(eigenvalues, n_data, delta):
    """γ(δ) = Σ_k N λ_k / (N λ_k + δ) in [0, P]: how many directions the data determine (MacKay 1992a)."""
    xp = backend.get_array_module(eigenvalues)
    scaled = n_data * _float64(eigenvalues)
    return xp.sum(scaled / (scaled + delta))


def log_marginal_likelihood(log_likelihood, squared_norm, eigenvalues, n_data, delta):
    """log p(D | δ) ≈ log p(D|θ*) − ½ δ‖θ*‖² − ½ Σ_k log(N λ_k + δ) + ½ P log δ (module docstring).

    log_likelihood : Σ_n log p(y_n | x_n, θ*), a 0-d array or number.
    squared_norm : ‖θ*‖² (prior mean 0). eigenvalues : (P,) of the mean F̂.
    n_data : N. delta : δ > 0. Returns a 0-d array.
    """
    size = eigenvalues.shape[0]
    return (log_likelihood - 0.5 * delta * squared_norm - 0.5 * log_det_precision(eigenvalues, n_data, delta)
            + 0.5 * size * math.log(delta))


def log_marginal_likelihood_derivative(squared_norm, eigenvalues, n_data, delta):
    """d/dδ of :func:`log_marginal_likelihood`: ½ (γ(δ)/δ − ‖θ*‖²), a 0-d array."""
    return 0.5 * (effective_parameters(eigenvalues, n_data, delta) / delta - squared_norm)


def maximise_evidence(squared_norm, eigenvalues, n_data, bounds=(1e-8, 1e8)):
    """The δ in ``bounds`` that maximises the evidence: a Python float (module docstring).

    The evidence is concave in δ, so the maximiser is the root of its
    derivative if that changes sign inside ``bounds``, else the bound where
    it is largest. Works on host copies of the P eigenvalues. Raises
    ValueError when there is no maximiser: θ* = 0 (the evidence then grows
    without bound in δ) or F̂ = 0.
    """
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"maximise_evidence: bounds must be a pair (low, high) of numbers, got {bounds!r}") from None
    if not 0 < low < high < math.inf:
        raise ValueError(f"maximise_evidence: bounds must be 0 < low < high < inf, got {bounds!r}")
    values = np.asarray(backend.to_numpy(eigenvalues), dtype=np.float64)
    norm = float(squared_norm)
    if not norm > 0 or not np.any(values > 0):
        raise ValueError(f"maximise_evidence: no maximiser: ‖θ*‖² = {norm:.3g} and the largest eigenvalue is "
                         f"{float(values.max()):.3g}; the evidence keeps growing in δ when θ* = 0 or F̂ = 0")

    def slope(log_delta):
        return float(log_marginal_likelihood_derivative(norm, values, n_data, math.exp(log_delta)))

    if slope(math.log(low)) <= 0:
        return low
    if slope(math.log(high)) >= 0:
        return high
    return math.exp(scipy.optimize.brentq(slope, math.log(low), math.log(high), xtol=1e-12, rtol=1e-12))
