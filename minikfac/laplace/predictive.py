"""The linearised (GLM) predictive of a Laplace posterior.

Linearise the network around the MAP θ*: f(x, θ) ≈ f(x, θ*) + J(x)(θ − θ*),
with J(x) = ∂f/∂θ (D_out, P). Under the Gaussian posterior N(θ*, Σ) the
outputs are then Gaussian too (Immer et al. 2021; laplace-torch's
``pred_type="glm"``):

    f(x) ~ N(f(x, θ*), J(x) Σ J(x)ᵀ),     Σ = (N·F̂ + δI)⁻¹ = (1/N)(F̂ + (δ/N) I)⁻¹.

The rows of J(x) are the parameter gradients of the outputs f_k, which the
layers' own backward gives by pulling back the unit cotangents e_k — exactly
the cotangents of ``kind="ggn"`` (:mod:`minikfac.curvature.statistics`). So
``J(x) Σ J(x)ᵀ`` is K solves with F̂'s own ``solve`` per input, never Σ itself
(:func:`functional_covariance`). Where F̂ is diagonal in a Kronecker-factored
basis — K-FAC, EKFAC, the diagonal, whose ``eigenbasis(l)`` says so — even the
Jacobian is never formed: each layer's share is two small products per input
in that basis (:func:`layer_covariance`), the cost of a forward pass, so the
predictive works wherever K-FAC does.

A class probability needs E[softmax(f)] under that Gaussian, which has no
closed form. Two approximations, as in laplace-torch:

- ``"probit"`` (MacKay 1992c; Spiegelhalter & Lauritzen 1990): each logit is
  shrunk by κ_k = 1/√(1 + π/8 · Var f_k), then softmax(κ ⊙ E f) (sigmoid for
  a Bernoulli output);
- ``"mc"``: the mean of softmax(f_s) over S samples f_s of the Gaussian,
  drawn with the full (D_out, D_out) covariance.
"""

import math

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.nn.activation import logistic
from minikfac.nn.likelihoods import softmax


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


def layer_covariance(stats, U_A, U_G, precision):
    """One layer's part of J Σ Jᵀ, (n, K, K), when Σ_l⁻¹ = diag(vec(precision)) in the basis U_A ⊗ U_G.

    stats : the layer's :class:`~minikfac.curvature.statistics.LayerStatistics`
        from a ``kind="ggn"`` pass (ā (n, n_A) or (n, L, n_A); g (K, n, m) or (K, n, L, m)).
    U_A (n_A, n_A), U_G (m, m) : the basis (``None``: the identity, for the diagonal).
    precision : (m, n_A), N·values + δ (entry (i, j) belongs to U_G[:, i] ⊗ ... U_A[:, j]).

    The Jacobian rows are never formed. Rotated, the row of output k is
    U_Gᵀ g_k āᵀ U_A = g̃_k ãᵀ (an outer product for a Linear layer), so

        (J Σ Jᵀ)[k, k'] = Σ_ij g̃_ki g̃_k'i ã_j² / precision_ij = Σ_i g̃_ki w_i g̃_k'i,
        w = (ã ⊙ ã) (1/precision)ᵀ,

    two small products per example instead of a solve with P unknowns. For a
    Conv2d layer the rotated row Σ_t g̃_kt ã_tᵀ is summed over positions first.
    """
    xp = backend.get_array_module(stats.inputs)
    a = stats.inputs if U_A is None else stats.inputs @ U_A
    g = stats.grads if U_G is None else stats.grads @ U_G
    if a.ndim == 2:
        weights = (a * a) @ (1 / precision).T  # (n, m)
        rows = xp.swapaxes(g, 0, 1)  # (n, K, m)
        return (rows * weights[:, None, :]) @ xp.swapaxes(rows, 1, 2)
    rotated = xp.matmul(xp.swapaxes(g, -1, -2), a[None])  # (K, n, m, n_A), summed over the L positions
    k, n = rotated.shape[:2]
    rows = xp.swapaxes(rotated, 0, 1).reshape(n, k, -1)
    return (rows / precision.reshape(1, 1, -1)) @ xp.swapaxes(rows, 1, 2)


def probit(mean, covariance, link):
    """The probit approximation of E[link(f)], f ~ N(mean, covariance): (n, K) from (n, K) and (n, K, K).

    ``link`` is "softmax" (categorical) or "sigmoid" (independent Bernoulli outputs).
    """
    xp = backend.get_array_module(mean)
    variances = xp.diagonal(covariance, axis1=1, axis2=2)
    scaled = mean / xp.sqrt(1 + (math.pi / 8) * variances)
    return softmax(scaled) if link == "softmax" else logistic(scaled)[0]


def monte_carlo(mean, covariance, link, samples, seed, block=64):
    """E[link(f)] by the mean over ``samples`` draws f_s ~ N(mean, covariance): (n, K).

    The square root of each (K, K) covariance comes from its eigendecomposition
    (negative rounding clipped), so a singular covariance is fine. The draws
    depend on ``seed`` and the backend (:func:`minikfac.backend.default_rng`);
    they are made ``block`` samples at a time, so memory is block·n·K numbers
    however many samples are asked for.
    """
    xp = backend.get_array_module(mean)
    values, vectors = xp.linalg.eigh(covariance)
    root = vectors * xp.sqrt(xp.maximum(values, 0))[:, None, :]  # (n, K, K), root rootᵀ = covariance
    rng = backend.default_rng(seed, like=mean)
    total = xp.zeros(mean.shape, dtype=mean.dtype)
    for start in range(0, samples, block):
        count = min(block, samples - start)
        noise = rng.standard_normal((count,) + tuple(mean.shape), dtype=mean.dtype)
        draws = mean[None] + xp.einsum("nkj,snj->snk", root, noise)
        total += xp.sum(softmax(draws) if link == "softmax" else logistic(draws)[0], axis=0)
    return total / samples
