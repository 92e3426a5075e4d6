"""Influence functions: how much one training example moves the loss on another example.

Train by minimising the MEAN loss J(θ) = (1/N) Σ_n ℓ_n(θ). Give example m
the extra weight ε, J_ε = J + ε ℓ_m, and re-optimise: to first order the
minimiser moves by dθ/dε = −H⁻¹ ∇ℓ_m with H = ∇²J (Koh & Liang 2017, §2.1),
so the loss on a test example z changes at the rate

    I(z_m, z) = dℓ_z/dε = −∇ℓ_zᵀ (F̂ + λI)⁻¹ ∇ℓ_m,

where F̂ stands in for H: the GGN of J (a MEAN over the N training examples,
``kind="ggn"``, like every matrix of :mod:`minikfac.curvature`) in a chosen
structure, and λ ≥ 0 is the damping. Sign and scale, precisely:

- I > 0: giving z_m more weight *raises* the test loss (z_m is harmful to z);
  I < 0: it lowers it (z_m is helpful).
- ε is a weight in the mean, next to each example's 1/N. Removing z_m is
  ε = −1/N, so the predicted change of ℓ_z when z_m is left out is −I/N.
- With the exact Hessian and λ read as an L2 penalty (λ/2)‖θ‖² in J, the
  formula is exact to first order in ε; for a linear model with a squared
  error the GGN *is* the Hessian (tests/test_influence.py checks both against
  re-optimising).

The **self-influence** of z_m is ∇ℓ_mᵀ (F̂ + λI)⁻¹ ∇ℓ_m ≥ 0 (= −I(z_m, z_m)):
how much the example's own loss would drop if it counted more — large for
examples the rest of the data disagrees with, such as mislabelled ones.

Grosse et al. 2023 ("Studying Large Language Model Generalization with
Influence Functions") use the EK-FAC structure (George et al. 2018) with
exact Tikhonov damping: that is ``structure="ekfac"`` here, whose solve is
the EKFAC approximation's own damped solve, diagonal in K-FAC's eigenbasis.
Their reference code (kronfluence) chooses λ, when none is given, as 0.1 ×
the mean eigenvalue of each layer's block; :func:`damping_heuristic` offers
the same rule with one mean over all P eigenvalues (tr(F̂)/P), which is what
the per-layer rule reduces to for a single block.

Vectorised throughout: test gradients are solved once as (P, T) columns and
multiplied by the (N, P) training gradients; self-influences go through the
training gradients ``chunk_size`` columns at a time (memory P × chunk_size).
Arrays stay on the backend they came on; :func:`rank_correlation` alone
converts to NumPy (for SciPy).
"""

import numpy as np
import scipy.stats

from minikfac import backend
from minikfac.curvature.approximation import Approximation
from minikfac.curvature.linalg import check_damping
from minikfac.curvature.params import check_finite, layer_slices
from minikfac.curvature.statistics import per_example_gradients
from minikfac.curvature.structures import approximate, check_structure

#: The factor of :func:`damping_heuristic`: kronfluence's λ = 0.1 × mean eigenvalue.
HEURISTIC_FACTOR = 0.1

#: Columns per solve in :func:`self_influences` when no ``chunk_size`` is given.
DEFAULT_CHUNK = 256


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #
def _check_approximation(approximation, caller):
    if not isinstance(approximation, Approximation):
        raise TypeError(f"{caller}: approximation must be a minikfac.curvature Approximation (from "
                        f"mk.curvature.approximate), got {type(approximation).__name__}")
    return approximation


def _check_gradients(name, gradients, size, caller):
    """``gradients`` must be a floating (N, P) backend array with P = ``size``."""
    if not backend.is_array(gradients) or gradients.ndim != 2 or gradients.shape[1] != size \
            or gradients.shape[0] < 1:
        got = tuple(gradients.shape) if backend.is_array(gradients) else type(gradients).__name__
        raise ValueError(f"{caller}: {name} must be an (N, P) array with N >= 1 and P = {size} "
                         f"(the approximation's parameters), got {got}")
    if np.dtype(gradients.dtype).kind != "f":
        raise TypeError(f"{caller}: {name} must be a floating array, got dtype {gradients.dtype}")
    return gradients


def _check_chunk(chunk_size, caller):
    if chunk_size is None:
        return DEFAULT_CHUNK
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"{caller}: chunk_size must be a positive int or None, got {chunk_size!r}")
    return int(chunk_size)


def _check_damping_early(damping, caller):
    """Refuse a bad λ before the curvature and the gradients are computed ("heuristic" is resolved later)."""
    if not (isinstance(damping, str) and damping == "heuristic"):
        if isinstance(damping, str):
            raise ValueError(f"{caller}: damping must be a number >= 0 or 'heuristic', got {damping!r}")
        check_damping(damping, caller)


def resolve_damping(approximation, damping, caller="influence"):
    """λ as a number or 0-d array: ``damping`` itself (>= 0), or :func:`damping_heuristic` for "heuristic"."""
    if isinstance(damping, str):
        if damping != "heuristic":
            raise ValueError(f"{caller}: damping must be a number >= 0 or 'heuristic', got {damping!r}")
        return damping_heuristic(approximation)
    return check_damping(damping, caller)


# --------------------------------------------------------------------------- #
# The formulas
# --------------------------------------------------------------------------- #
def damping_heuristic(approximation, factor=HEURISTIC_FACTOR):
    """λ = factor × mean eigenvalue of F̂ = factor · tr(F̂) / P, a 0-d array (no device sync).

    kronfluence, Grosse et al. 2023's code, uses factor 0.1 and takes the mean
    per layer (each layer its own λ_l); here one λ serves every layer, so for a
    net with several layers the two differ unless their blocks have equal mean
    eigenvalues. tr(F̂) is cheap in every structure (:meth:`Approximation.trace`).
    """
    _check_approximation(approximation, "damping_heuristic")
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.floating)) or not factor > 0 \
            or not np.isfinite(factor):
        raise ValueError(f"damping_heuristic: factor must be a finite number > 0, got {factor!r}")
    return factor * approximation.trace() / approximation.size


def influences(approximation, train_gradients, test_gradients, damping):
    """The influence matrix I (N, T), I[m, t] = −∇ℓ_tᵀ (F̂ + λI)⁻¹ ∇ℓ_m (module docstring for the sign).

    Parameters
    ----------
    approximation : an :class:`~minikfac.curvature.Approximation` F̂ (P, P).
    train_gradients : (N, P) per-example training-loss gradients ∇ℓ_m
        (:func:`minikfac.curvature.per_example_gradients`, not divided by N).
    test_gradients : (T, P) gradients of the test losses, same order.
    damping : λ >= 0, or "heuristic" (:func:`damping_heuristic`).

    One solve with the T test gradients as columns, (F̂ + λI)⁻¹ Gᵀ (P, T),
    then one (N, P) @ (P, T) product: F̂ is symmetric, so solving on the test
    side gives the same numbers as solving for every training example.
    """
    _check_approximation(approximation, "influences")
    size = approximation.size
    _check_gradients("train_gradients", train_gradients, size, "influences")
    _check_gradients("test_gradients", test_gradients, size, "influences")
    backend.check_same_backend(train_gradients=train_gradients, test_gradients=test_gradients)
    damping = resolve_damping(approximation, damping, "influences")
    solved = approximation.solve(test_gradients.T, damping)  # (P, T)
    return -(train_gradients @ solved)


def self_influences(approximation, train_gradients, damping, chunk_size=None):
    """Self-influences s (N,), s[m] = ∇ℓ_mᵀ (F̂ + λI)⁻¹ ∇ℓ_m >= 0 (= −I(z_m, z_m)).

    Parameters as in :func:`influences`; ``chunk_size`` columns are solved at
    a time (default :data:`DEFAULT_CHUNK`), so the memory beyond the gradients
    is P × chunk_size whatever N is. The result does not depend on it.
    """
    _check_approximation(approximation, "self_influences")
    _check_gradients("train_gradients", train_gradients, approximation.size, "self_influences")
    chunk_size = _check_chunk(chunk_size, "self_influences")
    damping = resolve_damping(approximation, damping, "self_influences")
    xp = backend.get_array_module(train_gradients)
    result = xp.empty(train_gradients.shape[0], dtype=train_gradients.dtype)
    for start in range(0, train_gradients.shape[0], chunk_size):
        columns = train_gradients[start:start + chunk_size].T  # (P, c)
        result[start:start + chunk_size] = xp.sum(columns * approximation.solve(columns, damping), axis=0)
    return result


# --------------------------------------------------------------------------- #
# From a net and its data
# --------------------------------------------------------------------------- #
def _prepare(net, loss_fn, X_train, y_train, structure, kind, approximation, chunk_size, caller):
    """F̂ (built, or checked against the net) and the (N, P) training gradients."""
    size = layer_slices(net)[-1].stop
    check_finite(net, caller, X_train=X_train)
    if approximation is None:
        check_structure(structure, caller)
        approximation = approximate(net, loss_fn, X_train, structure, y=y_train, kind=kind, chunk_size=chunk_size)
    elif _check_approximation(approximation, caller).size != size:
        raise ValueError(f"{caller}: the approximation has P = {approximation.size} parameters but the net has "
                         f"{size}; build it from this net (mk.curvature.approximate)")
    return approximation, per_example_gradients(net, loss_fn, X_train, y_train, chunk_size)


def train_test_influences(net, loss_fn, X_train, y_train, X_test, y_test, damping, structure="full", kind="ggn",
                          approximation=None, chunk_size=None):
    """I (N, T) of every training example on every test example, for ``net`` at its current parameters.

    Parameters
    ----------
    net, loss_fn : the trained network and its loss (mean NLL).
    X_train (N, ...), y_train (N, ...) : the training set F̂ and ∇ℓ_m come from.
    X_test (T, ...), y_test (T, ...) : the examples whose loss is watched.
    damping : λ >= 0 or "heuristic".
    structure : "full", "block", "kfac", "ekfac" or "diag" (:func:`minikfac.curvature.approximate`).
    kind : the curvature, "ggn" by default (the Hessian's PSD stand-in).
    approximation : an F̂ already built from this net and X_train (then
        ``structure`` and ``kind`` are not used): build it once to try several λ.
    chunk_size : rows per pass of the curvature and gradient computations.
    """
    _check_damping_early(damping, "train_test_influences")
    if not backend.is_array(X_test) or not backend.is_array(y_test) or X_test.shape[0] != y_test.shape[0]:
        got = [tuple(a.shape) if backend.is_array(a) else type(a).__name__ for a in (X_test, y_test)]
        raise ValueError(f"train_test_influences: X_test and y_test must be arrays with the same number of rows, "
                         f"got X_test {got[0]} and y_test {got[1]}")
    approximation, train = _prepare(net, loss_fn, X_train, y_train, structure, kind, approximation, chunk_size,
                                    "train_test_influences")
    test = per_example_gradients(net, loss_fn, X_test, y_test, chunk_size)
    return influences(approximation, train, test, damping)


def train_self_influences(net, loss_fn, X_train, y_train, damping, structure="full", kind="ggn",
                          approximation=None, chunk_size=None):
    """Self-influences (N,) of the training examples of ``net`` (parameters as :func:`train_test_influences`)."""
    _check_damping_early(damping, "train_self_influences")
    approximation, train = _prepare(net, loss_fn, X_train, y_train, structure, kind, approximation, chunk_size,
                                    "train_self_influences")
    return self_influences(approximation, train, damping)


# --------------------------------------------------------------------------- #
# Comparing two sets of scores
# --------------------------------------------------------------------------- #
def rank_correlation(approximate_scores, exact_scores):
    """Spearman's rank correlation between two influence results, a float in [−1, 1].

    (N,) arrays: one correlation over the N training examples. (N, T) arrays:
    the correlation over the N training examples for each test example, then
    the mean over the T test examples (the comparison of Grosse et al. 2023,
    who compare approximations this way). Arrays of any backend; they are copied to the host for SciPy.
    """
    a, b = backend.to_numpy(approximate_scores), backend.to_numpy(exact_scores)
    if a.shape != b.shape or a.ndim not in (1, 2) or a.shape[0] < 2:
        raise ValueError(f"rank_correlation: the scores must have the same shape (N,) or (N, T) with N >= 2, got "
                         f"approximate_scores {a.shape} and exact_scores {b.shape}")
    a, b = (a[:, None], b[:, None]) if a.ndim == 1 else (a, b)
    return float(np.mean([scipy.stats.spearmanr(a[:, t], b[:, t]).statistic for t in range(a.shape[1])]))
