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

Damping (§6.5). Every T₁ steps the reduction ratio

    ρ = (h(θ + δ) − h(θ)) / M_h(δ),     M_h(δ) = ½ δᵀ (F + η I) δ + ∇hᵀ δ,

compares the actual change of h with the change the model predicts. We leave
the trust-region term λ out of M_h: it is not part of h's curvature, and ρ
should say how well F describes h. Then λ ← ω₁λ if ρ > 3/4 (the model is good:
trust it more), λ ← λ/ω₁ if ρ < 1/4, with ω₁ = (19/20)^T₁.

Everything here works on small host numbers (the device has already reduced
the products to a few scalars), so it is plain Python and NumPy.
"""

import math

import numpy as np

#: ρ above this: the model predicted the change well, so λ shrinks (Martens & Grosse 2015, §6.5).
RHO_HIGH = 0.75
#: ρ below this (or not a number): the model was too optimistic, so λ grows.
RHO_LOW = 0.25


def solve_step(curvature, gradient_dots):
    """α (and μ) minimising M(αΔ + μδ₀) = ½ xᵀ C x + bᵀ x with x = (α, μ) (Martens & Grosse 2015, §7).

    Parameters
    ----------
    curvature : (K, K) array-like, C_ij = d_iᵀ (F + (λ+η) I) d_j for the directions
        d_1 = Δ and, if K = 2, d_2 = δ₀. Symmetric; C_11 > 0.
    gradient_dots : (K,) array-like, b_i = ∇hᵀ d_i.

    Returns
    -------
    (coefficients, model_change): coefficients is a float64 array (K,) = (α,) or
    (α, μ) solving C x = −b, and model_change = M(x) = ½ bᵀ x, the change of the
    model, < 0 when the step goes downhill. If C is singular or not positive
    definite on the plane (Δ and δ₀ parallel, rounding), μ is set to 0 and
    α = −b_1 / C_11. Raises ValueError for shapes that do not match or C_11 <= 0.
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
    else:
        x[0] = -b[0] / C[0, 0]
    return x, 0.5 * float(b @ x)


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


def levenberg_marquardt(damping, rho, decay, low=RHO_LOW, high=RHO_HIGH):
    """The Levenberg–Marquardt rule of Martens & Grosse 2015, §6.5: the new λ.

    damping : λ > 0. rho : the reduction ratio (NaN counts as bad).
    decay : ω₁ in (0, 1), M&G's (19/20)^T₁. Returns ω₁·λ if ρ > high, λ/ω₁ if
    ρ < low or NaN, λ otherwise.
    """
    if not 0 < decay < 1:
        raise ValueError(f"levenberg_marquardt: decay must be in (0, 1), got {decay!r}")
    if math.isnan(rho) or rho < low:
        return damping / decay
    if rho > high:
        return damping * decay
    return damping
