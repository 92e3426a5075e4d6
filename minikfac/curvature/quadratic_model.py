"""The quadratic model behind K-FAC's step size, momentum and damping (Martens & Grosse 2015, §6.5 and §7).

Around the current parameters θ, the objective h (the mean loss plus the L2
term (η/2)‖θ‖²) is modelled by

    M(δ) = ½ δᵀ (F + (λ + η) I) δ + ∇hᵀ δ          (M(0) = 0),

where F is the exact Fisher (= GGN for our losses) of the mini-batch, applied
through Jacobian-vector products rather than formed, η the weight decay and λ
the Levenberg–Marquardt damping, a trust-region term.

Step and momentum (§7). K-FAC's proposal Δ = −F̂⁻¹∇h and the previous update
δ₀ span a plane; the update δ = αΔ + μδ₀ minimises M on that plane:

    [ΔᵀCΔ   ΔᵀCδ₀ ] [α]     [∇hᵀΔ ]
    [δ₀ᵀCΔ  δ₀ᵀCδ₀] [μ] = − [∇hᵀδ₀],      C = F + (λ + η) I,

and at the minimum M(δ) = ½ (α ∇hᵀΔ + μ ∇hᵀδ₀). Without a previous update μ = 0
and α = −∇hᵀΔ / ΔᵀCΔ.

Damping (§6.5). The reduction ratio

    ρ = (h(θ + δ) − h(θ)) / M_h(δ),     M_h(δ) = ½ δᵀ (F + η I) δ + ∇hᵀ δ,

compares the actual change of h with the change the model predicts (the
optimizer has both at every step, from its guard). We leave the trust-region
term λ out of M_h: it is not part of h's curvature, and ρ should say how well
F describes h. Every T₁ steps, with ρ the ratio of the interval's summed
changes, λ ← ω₁λ if ρ > 3/4 (the model is good: trust it more), λ ← λ/ω₁ if
ρ < 1/4, with ω₁ = (19/20)^T₁.

KL-clipping (Ba et al. 2017, §5), the alternative to the model's α: a fixed
learning rate η_lr scaled by ν = min(1, sqrt(κ / (η_lr² |∇hᵀΔ|))) so that the
step's predicted change of the outputs stays below κ (:func:`kl_clip_scale`).

The guard (:func:`far_above_promise`). A step whose h rose by more than the
model promised it would fall (ρ < −1) is refused: the model is wrong there.

Everything here but :func:`model_numbers` (the one transfer from the device)
works on small host numbers, so it is plain Python and NumPy.
"""

import math
from typing import NamedTuple

import numpy as np

from minikfac import backend
from minikfac.curvature.params import split_augmented

#: ρ above this: the model predicted the change well, so λ shrinks (Martens & Grosse 2015, §6.5).
RHO_HIGH = 0.75
#: ρ below this (or not a number): the model was too optimistic, so λ grows.
RHO_LOW = 0.25
#: A rise of h smaller than this fraction of h is never "far above the promise" (rounding).
REFUSE_TOLERANCE = 1e-3


def model_terms(net, loss_fn, layers, directions, gradients, output=None):
    """Device arrays (F (K, K) or None, dots (K, K), b (K,)) of the model on K directions.

    directions : per layer of ``layers``, the directions stacked as W̄
    matrices (K, D_out, D_in + 1) (Δ, and δ₀ if there is one); gradients :
    per layer, ∇h as a W̄ matrix. F_ij = (1/n) Σ_n (J_n d_i)ᵀ H_n (J_n d_j) is
    the exact Fisher of the n rows of the last forward, whose network
    ``output`` (n, D_out) is given (None: no F), through Jacobian-vector
    products of the layers' caches (``net.jvp``); dots_ij = d_iᵀ d_j; b_i = ∇hᵀ d_i.
    """
    xp = backend.get_array_module(gradients[0])
    rows = [stacked.reshape(stacked.shape[0], -1) for stacked in directions]  # (K, P_l) each
    dots = sum(d @ d.T for d in rows)
    b = sum(d @ g.reshape(-1) for d, g in zip(rows, gradients))
    if output is None:
        return None, dots, b
    tangents = {}  # the stacked directions as parameter tangents: {Parameter: (K, *shape)} (views)
    for layer, stacked in zip(layers, directions):
        tangents[layer.weight], bias = split_augmented(layer, stacked)
        if bias is not None:
            tangents[layer.bias] = bias
    jvp = net.jvp(None, tangents)  # (K, n, D_out)
    weighted = loss_fn.output_hessian_product(output, jvp)
    return xp.einsum("knd,jnd->kj", jvp, weighted) / jvp.shape[1], dots, b


def solve_step(curvature, gradient_dots, max_momentum=None):
    """α (and μ) minimising M(αΔ + μδ₀) = ½ xᵀ C x + bᵀ x with x = (α, μ) (Martens & Grosse 2015, §7).

    Parameters
    ----------
    curvature : (K, K) array-like, C_ij = d_iᵀ (F + (λ+η) I) d_j for the directions
        d_1 = Δ and, if K = 2, d_2 = δ₀. Symmetric; C_11 > 0.
    gradient_dots : (K,) array-like, b_i = ∇hᵀ d_i.
    max_momentum : None (μ free, as in Martens & Grosse 2015) or a bound: μ is kept in
        [0, max_momentum]. M is convex on the plane, so when the free
        minimiser's μ is outside, the constrained minimiser has μ at the
        nearer end and α = −(b_1 + μ C_12) / C_11.

    Returns
    -------
    (coefficients, model_change): coefficients is a float64 array (K,) = (α,) or
    (α, μ), and model_change = M(x) = ½ xᵀ C x + bᵀ x, the change of the
    model, < 0 when the step goes downhill (= ½ bᵀ x at the free minimiser).
    If C is singular or not positive definite on the plane (Δ and δ₀
    parallel, rounding), μ is set to 0 and α = −b_1 / C_11. Raises ValueError
    for shapes that do not match or C_11 <= 0.
    """
    C = np.asarray(curvature, dtype=np.float64)
    b = np.asarray(gradient_dots, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] not in (1, 2) or b.shape != (C.shape[0],):
        raise ValueError(f"solve_step: curvature must be (K, K) and gradient_dots (K,) with K = 1 or 2, got "
                         f"{C.shape} and {b.shape}")
    if not C[0, 0] > 0:
        raise ValueError(f"solve_step: ΔᵀCΔ must be > 0, got {C[0, 0]!r}")
    x = np.zeros(C.shape[0])
    determinant = C[0, 0] * C[-1, -1] - C[0, -1] * C[-1, 0] if C.shape[0] == 2 else 0.0
    # Positive definite on the plane: det > 0 relative to the diagonal's size (else the plane is a line).
    if C.shape[0] == 2 and determinant > 1e-12 * C[0, 0] * C[1, 1]:
        x = np.linalg.solve(C, -b)
        if max_momentum is not None and not 0 <= x[1] <= max_momentum:
            x[1] = min(max(x[1], 0.0), max_momentum)
            x[0] = -(b[0] + x[1] * C[0, 1]) / C[0, 0]
    else:
        x[0] = -b[0] / C[0, 0]
    return x, 0.5 * float(x @ C @ x) + float(b @ x)


class ModelNumbers(NamedTuple):
    """The quadratic model's numbers on the host (float64), read from the device in one transfer.

    fisher : (K, K) d_iᵀ F d_j on the statistics rows, or None when not computed;
    dots : (K, K) d_iᵀ d_j; b : (K,) ∇hᵀ d_i; objective : h(θ) on the statistics
    rows; finite : whether all of them, and the step's new statistics, are finite.
    """

    fisher: object
    dots: np.ndarray
    b: np.ndarray
    objective: float
    finite: bool


def model_numbers(fisher, dots, b, objective, statistics_finite):
    """Bring the model's device arrays to the host at once (one sync): a :class:`ModelNumbers`.

    fisher : (K, K) device array or None; dots : (K, K); b : (K,); objective : 0-d;
    statistics_finite : 0-d bool, whether the new curvature statistics are finite.
    """
    xp = backend.get_array_module(b)
    parts = [dots.reshape(-1), b, objective.reshape(1), statistics_finite.reshape(1)]
    parts += [] if fisher is None else [fisher.reshape(-1)]
    host = backend.to_numpy(xp.concatenate([p.astype(xp.float64) for p in parts]))
    count = b.shape[0]
    dots_h, b_h = host[:count * count].reshape(count, count), host[count * count:count * count + count]
    objective_h, finite = host[count * count + count], host[count * count + count + 1] == 1
    fisher_h = None if fisher is None else host[count * count + count + 2:].reshape(count, count)
    return ModelNumbers(fisher_h, dots_h, b_h, float(objective_h), bool(finite and np.all(np.isfinite(host))))


def model_change(numbers, coefficients, damping):
    """M(δ) = ½ xᵀ (F + γ² D) x + bᵀ x for δ = Σ x_i d_i (γ² = ``damping``); None without F."""
    if numbers.fisher is None:
        return None
    x = np.asarray(coefficients, dtype=np.float64)
    return float(0.5 * x @ (numbers.fisher + damping * numbers.dots) @ x + numbers.b @ x)


def predicted_change(numbers, coefficients, weight_decay):
    """M_h(δ) = ½ xᵀ (F + η D) x + bᵀ x: the model of h without the trust-region term λ; None without F."""
    return model_change(numbers, coefficients, weight_decay)


def predicted_kl(numbers, coefficients):
    """½ xᵀ F x: the predicted KL divergence of the step δ = Σ x_i d_i (nats per example); None without F.

    For our losses F is the Fisher of the output distribution pulled back
    through the network, so ½ δᵀ F δ is the second-order KL divergence
    between the model's predictive distributions before and after the step,
    averaged over the statistics rows (Martens 2020, §9).
    """
    if numbers.fisher is None:
        return None
    x = np.asarray(coefficients, dtype=np.float64)
    return float(0.5 * x @ numbers.fisher @ x)


def within_kl(coefficients, fisher, bound):
    """The coefficients x scaled by min(1, sqrt(bound / KL)), KL = ½ xᵀ F x: a trust region in function space.

    coefficients : (K,) x; fisher : (K, K) F on the host; bound : the largest
    KL allowed (> 0). Scaling x keeps the direction the model chose and makes
    ½ xᵀ F x = bound when it was above (Ba et al. 2017 clip the same quantity
    for their fixed learning rate). Returns a new float64 array.
    """
    x = np.asarray(coefficients, dtype=np.float64)
    kl = 0.5 * float(x @ np.asarray(fisher, dtype=np.float64) @ x)
    return x * math.sqrt(bound / kl) if kl > bound else x.copy()


def kl_clip_scale(kl_clip, lr, gradient_dot):
    """ν = min(1, sqrt(κ / (lr² |∇hᵀΔ|))), KL-clipping's factor on the step lr·Δ (Ba et al. 2017, §5).

    kl_clip : κ > 0; lr : the learning rate; gradient_dot : ∇hᵀΔ (a float,
    < 0 for a descent direction). lr²|∇hᵀΔ| estimates the step's ΔᵀF̂Δ·lr², the
    KL divergence it would cause under the approximate Fisher; ν shrinks the
    step when that is above κ.
    """
    return min(1.0, math.sqrt(kl_clip / (lr * lr * abs(gradient_dot))))


def far_above_promise(actual, predicted, objective):
    """Whether a step's actual change of h is far above what its model promised: the guard's test.

    actual : h(θ+δ) − h(θ); predicted : M_h(δ) (< 0: a promised decrease), or
    None (no model: nothing to compare); objective : h(θ). "Far above" means h
    rose by more than the model promised it would fall (ρ < −1), and by more
    than :data:`REFUSE_TOLERANCE` · |h(θ)|, so that rounding near a minimum
    (h and M tiny) never refuses a step.
    """
    if predicted is None:
        return False
    return actual > max(-predicted, REFUSE_TOLERANCE * abs(objective))


def reduction_ratio(h_before, h_after, model_change):
    """ρ = (h(θ+δ) − h(θ)) / M(δ): the actual change of h over the change the model predicted.

    h_before, h_after, model_change : floats. ρ ≈ 1 when the quadratic model
    is accurate; ρ < 0 when h went up. Returns NaN when the model predicts no
    decrease (model_change >= 0) or a value is not finite, which the damping
    rule treats as a bad step.
    """
    if not (math.isfinite(h_before) and math.isfinite(h_after) and math.isfinite(model_change)):
        return float("nan")
    if model_change >= 0:
        return float("nan")
    return (h_after - h_before) / model_change


def damping_decay(interval):
    """ω₁ = (19/20)^T₁, the Levenberg–Marquardt rule's factor for a rule applied every T₁ = ``interval``
    steps (Martens & Grosse 2015, §6.5)."""
    return (19 / 20) ** interval


def levenberg_marquardt(damping, rho, decay, low=RHO_LOW, high=RHO_HIGH):
    """The Levenberg–Marquardt rule of Martens & Grosse 2015, §6.5: the new λ.

    damping : λ > 0. rho : the reduction ratio (NaN counts as bad).
    decay : ω₁ in (0, 1), Martens & Grosse's (19/20)^T₁. Returns ω₁·λ if ρ > high, λ/ω₁ if
    ρ < low or NaN, λ otherwise.
    """
    if not 0 < decay < 1:
        raise ValueError(f"levenberg_marquardt: decay must be in (0, 1), got {decay!r}")
    if math.isnan(rho) or rho < low:
        return damping / decay
    if rho > high:
        return damping * decay
    return damping
