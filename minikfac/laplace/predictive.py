"""The linearised (GLM) predictive of a Laplace posterior.

Linearise the network around the MAP θ*: f(x, θ) ≈ f(x, θ*) + J(x)(θ − θ*),
with J(x) = ∂f/∂θ (D_out, P). Under the Gaussian posterior N(θ*, Σ) the
outputs are then Gaussian too (Immer, Korzepa & Bauer 2021; laplace-torch's
``pred_type="glm"``):

    f(x) ~ N(f(x, θ*), J(x) Σ J(x)ᵀ),     Σ = (N·F̂ + δI)⁻¹ = (1/N)(F̂ + (δ/N) I)⁻¹.

The rows of J(x) are the parameter gradients of the outputs f_k, which the
layers' own backward gives by pulling back the unit cotangents e_k — exactly
the cotangents of ``kind="ggn"`` (:mod:`minikfac.curvature.statistics`). So
``J(x) Σ J(x)ᵀ`` is K solves with F̂'s own ``solve`` per input, never Σ itself:
for K-FAC each solve is two small products per layer in the factors'
eigenbasis, so the predictive works wherever K-FAC does.

A class probability needs E[softmax(f)] under that Gaussian, which has no
closed form. Two approximations, as in laplace-torch:

- ``"probit"`` (MacKay 1992; Spiegelhalter & Lauritzen 1990): each logit is
  shrunk by κ_k = 1/√(1 + π/8 · Var f_k), then softmax(κ ⊙ E f) (sigmoid for
  a Bernoulli output);
- ``"mc"``: the mean of softmax(f_s) over S samples f_s of the Gaussian,
  drawn with the full (D_out, D_out) covariance.
"""

import math

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.nn.activation import logistic


def output_jacobians(net, loss_fn, X, chunk_size=None):
    """Yield (start, stop, f, J) for chunks of X: outputs f (n, K) and Jacobians J = ∂f/∂θ (n, K, P).

    θ in the canonical order of :func:`minikfac.curvature.flatten`. Memory is
    bounded by the chunk (default: K·n·P numbers within
    :data:`minikfac.curvature.statistics.CHUNK_BYTES`).
    """
    xp = backend.get_array_module(X)
    for chunk in statistics.chunks(net, loss_fn, X, kind="ggn", chunk_size=chunk_size):
        rows = [statistics.layer_gradients(stats) for stats in chunk.layers]  # (K, n, P_l) each
        jacobian = xp.concatenate(rows, axis=2) if len(rows) > 1 else rows[0]
        yield chunk.start, chunk.stop, chunk.output.copy(), xp.ascontiguousarray(xp.swapaxes(jacobian, 0, 1))


def functional_covariance(jacobian, curvature, n_data, prior_precision):
    """J Σ Jᵀ per input with Σ = (N·F̂ + δI)⁻¹: (n, K, K) from J (n, K, P).

    ``curvature`` is the :class:`~minikfac.curvature.approximation.Approximation`
    of the mean F̂; one solve with n·K columns, (F̂ + (δ/N) I)⁻¹ Jᵀ / N.
    """
    n, k, size = jacobian.shape
    columns = jacobian.reshape(n * k, size).T
    solved = curvature.solve(columns, prior_precision / n_data) / n_data  # (P, n·K)
    solved = backend.get_array_module(jacobian).swapaxes(solved.T.reshape(n, k, size), 1, 2)
    return jacobian @ solved


def _softmax(f):
    xp = backend.get_array_module(f)
    shifted = f - xp.max(f, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=-1, keepdims=True)


def probit(mean, covariance, link):
    """The probit approximation of E[link(f)], f ~ N(mean, covariance): (n, K) from (n, K) and (n, K, K).

    ``link`` is "softmax" (categorical) or "sigmoid" (independent Bernoulli outputs).
    """
    xp = backend.get_array_module(mean)
    variances = xp.diagonal(covariance, axis1=1, axis2=2)
    scaled = mean / xp.sqrt(1 + (math.pi / 8) * variances)
    return _softmax(scaled) if link == "softmax" else logistic(scaled)[0]


def monte_carlo(mean, covariance, link, samples, seed):
    """E[link(f)] by the mean over ``samples`` draws f_s ~ N(mean, covariance): (n, K).

    The square root of each (K, K) covariance comes from its eigendecomposition
    (negative rounding clipped), so a singular covariance is fine. The draws
    depend on ``seed`` and the backend (:func:`minikfac.backend.default_rng`).
    """
    xp = backend.get_array_module(mean)
    values, vectors = xp.linalg.eigh(covariance)
    root = vectors * xp.sqrt(xp.maximum(values, 0))[:, None, :]  # (n, K, K), root rootᵀ = covariance
    noise = backend.default_rng(seed, like=mean).standard_normal((samples,) + tuple(mean.shape), dtype=mean.dtype)
    draws = mean[None] + xp.einsum("nkj,snj->snk", root, noise)
    probabilities = _softmax(draws) if link == "softmax" else logistic(draws)[0]
    return xp.mean(probabilities, axis=0)
