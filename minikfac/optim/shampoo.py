"""Shampoo (Gupta et al. 2018) with the choices of distributed Shampoo (Shi et al. 2023), grafted.

Gupta, Koren & Singer 2018, *Shampoo: Preconditioned stochastic tensor
optimization*, Alg. 1 (the matrix case); Shi et al. 2023, *A distributed
data-parallel PyTorch implementation of the distributed Shampoo optimizer for
training neural networks at-scale* (exponential moving averages of the
statistics, bias correction, the inverse-root override, a start step, grafting,
decoupled weight decay), the method that won the external-tuning track of the
AlgoPerf benchmark (Kasimbeg et al. 2025); Agarwal et al. 2020, *Disentangling
adaptive gradient methods from learning rates* (grafting). The inverse roots
are :func:`minikfac.curvature.polar.matrix_power_psd`.
"""

import math

import numpy as np

from minikfac.backend import get_array_module
from minikfac.curvature.polar import matrix_power_psd
from minikfac.optim.matrix_optimizer import MatrixOptimizer, all_finite
from minikfac.optim.optimizer import (
    Optimizer,
    _real,
    choice,
    fraction,
    nonnegative,
    optional,
    positive,
    positive_int,
    unit_interval,
)

#: Shampoo's grafting methods (``grafting``): whose per-layer step norm Shampoo's direction takes.
GRAFTINGS = ("adam", "adagrad", "sgd", None)


def shampoo_betas(owner, name, value):
    """Rule: (β₁, β₂) with β₁ in [0, 1) and β₂ in [0, 1] (β₂ = 1: the statistics are sums, as in Gupta et al.)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{owner}: {name} must be a pair (beta1, beta2), got {value!r}")
    beta1 = unit_interval(owner, f"{name}[0]", value[0])
    beta2 = _real(owner, f"{name}[1]", value[1])
    if not 0 <= beta2 <= 1:
        raise ValueError(f"{owner}: {name}[1] must be in [0, 1] (1: plain sums, as in Gupta et al. 2018), "
                         f"got {beta2!r}")
    return beta1, beta2


def accumulate_statistic(S, product, beta2):
    """S ← β₂ S + (1 − β₂) product, or S ← S + product when β₂ = 1 (Gupta et al. 2018, Alg. 1), in place.

    S, product : (k, k); the running L (product G Gᵀ) or R (Gᵀ G) of Shampoo and SOAP.
    """
    if beta2 == 1:
        S += product
    else:
        S *= beta2
        S += (1 - beta2) * product


class Shampoo(MatrixOptimizer):
    r"""Shampoo: each weight matrix preconditioned on both sides, L^{-p} G R^{-p}, its step norm grafted.

    For each parameter W with a matrix view (m, n) (Linear weights; Conv2d
    weights as (C_out, C_in·KH·KW)) and gradient G, its t-th update:

        L ← β₂ L + (1 − β₂) G Gᵀ,  R ← β₂ R + (1 − β₂) Gᵀ G       (β₂ = 1: L ← L + G Gᵀ, ...)
        M ← β₁ M + (1 − β₁) G,  M̂ = M / (1 − β₁ᵗ)                  (M_0 = 0)
        every k-th step from t₀ on:                                 (t − t₀ ≡ 0 mod k)
            P_L ← (L/c + εI)^{−p},  P_R ← (R/c + εI)^{−p}           (c = 1 − β₂ᵗ, or 1 when β₂ = 1)
        D_s = P_L M̂ P_R                                             (once t >= t₀)
        D_g = the grafted method's direction from M̂ (below)
        D   = D_s · ‖D_g‖_F / ‖D_s‖_F  (D = D_s with grafting None; D = D_g before t₀)
        W   ← W · (1 − lr · wd)                                      (decoupled weight decay)
        W   ← W − lr · D

    With p = 1/4, β₂ = 1 and no grafting this is Gupta et al. 2018, Alg. 1:
    G_t's preconditioned form L^{−1/4} G R^{−1/4}. For a single gradient
    (β₂ = 0, or t = 1) L = G Gᵀ, R = Gᵀ G and P_L G P_R = U Vᵀ, the polar
    factor of G = U Σ Vᵀ (up to ε): Muon's direction.

    Grafting (Agarwal et al. 2020; ``grafting_config`` of Shi et al. 2023):
    Shampoo gives the direction, the grafted method the per-layer step size.
    "adam": v ← β_g v + (1 − β_g) G², D_g = M̂ / (√(v / (1 − β_gᵗ)) + ε_g) (Adam
    grafting, Shi et al.'s ``AdamGraftingConfig``); "adagrad": v ← v + G²,
    D_g = M̂ / (√v + ε_g); "sgd": D_g = M̂; None: no grafting, D = D_s.

    A parameter without a matrix view (a bias) is not preconditioned: it takes
    the grafted method's step D = D_g (M̂ with grafting None). A side longer
    than ``max_preconditioner_dim`` is not preconditioned either (P = I on that
    side), as SOAP's ``max_precond_dim`` does; distributed Shampoo instead
    cuts such a matrix into blocks (not done here).

    The roots are taken in float64 (``eigh`` of the statistics, through
    :func:`~minikfac.curvature.polar.matrix_power_psd`) and stored in the
    parameter's dtype. When a statistic is not finite (a diverged run), the
    new roots are NaN: the run carries NaN on, as Adam's does, rather than
    stopping with a LinAlgError.

    Parameters
    ----------
    params : iterable of Parameter (e.g. ``net.parameters()``), any shapes.
    lr : float > 0, the learning rate (default 1e-3, the AdamW-grafted example of
        distributed Shampoo's README, Shi et al. 2023).
    betas : (β₁, β₂), β₁ in [0, 1) for the gradient's moving average M (Shi et
        al.'s ``betas[0]``), β₂ in [0, 1] for the statistics L and R (``betas[1]``;
        1 = Gupta et al.'s sums) (default (0.9, 0.999), Shi et al.'s README).
    epsilon : float > 0, ε added to L and R before the root (Gupta et al.'s ε;
        default 1e-12, Shi et al.'s).
    weight_decay : float >= 0, decoupled (Loshchilov & Hutter 2019; Shi et al.'s
        ``use_decoupled_weight_decay=True``) (default 0).
    exponent : p in (0, 1], the inverse root of each side (default 1/4,
        Gupta et al. 2018, Alg. 1, for a matrix: 1/(2·order)). Shi et al.'s
        ``inv_root_override=2`` is p = 1/2 on each side, the setting of their
        AlgoPerf runs.
    precondition_frequency : int k >= 1, steps between two recomputations of
        the roots (Shi et al.'s ``precondition_frequency``; default 10).
    start_preconditioning_step : int t₀ >= 1, the first step that uses Shampoo's
        direction (before it: the grafted method's); None = k (Shi et al.'s
        ``start_preconditioning_step=-1``).
    grafting : "adam", "adagrad", "sgd" or None (default "adam", Shi et al.'s README).
    grafting_beta2, grafting_eps : β_g in [0, 1) and ε_g > 0 of the grafted
        method (default 0.999 and 1e-8, ``AdamGraftingConfig``'s).
    max_preconditioner_dim : int, the longest side that is preconditioned
        (default 1024, Shi et al.'s block size).

    State (per parameter): ``"step"`` (int t), ``"exp_avg"`` (M, the parameter's
    shape), ``"graft_sq"`` (v, with grafting "adam" or "adagrad"), and for a
    matrix ``"L"``, ``"L_root"`` (m, m) and ``"R"``, ``"R_root"`` (n, n) (for
    the sides that are preconditioned). All on the parameter's backend and dtype.
    """

    hyper_rules = {
        **Optimizer.hyper_rules,
        "betas": shampoo_betas,
        "epsilon": positive,
        "exponent": fraction,
        "precondition_frequency": positive_int,
        "start_preconditioning_step": optional(positive_int),
        "grafting": choice(GRAFTINGS),
        "grafting_beta2": unit_interval,
        "grafting_eps": positive,
        "max_preconditioner_dim": positive_int,
        "weight_decay": nonnegative,
    }
    state_names = ("step", "exp_avg", "graft_sq", "L", "R", "L_root", "R_root")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), epsilon=1e-12, weight_decay=0.0, exponent=0.25,
                 precondition_frequency=10, start_preconditioning_step=None, grafting="adam",
                 grafting_beta2=0.999, grafting_eps=1e-8, max_preconditioner_dim=1024):
        super().__init__(params, lr=lr, betas=betas, epsilon=epsilon, weight_decay=weight_decay, exponent=exponent,
                         precondition_frequency=precondition_frequency,
                         start_preconditioning_step=start_preconditioning_step, grafting=grafting,
                         grafting_beta2=grafting_beta2, grafting_eps=grafting_eps,
                         max_preconditioner_dim=max_preconditioner_dim)

    def _sides(self, i, hyper):
        """{"L": m, "R": n} for the preconditioned sides of parameter ``i`` ({} for a vector)."""
        view = self.matrix_shape(i)
        if view is None:
            return {}
        return {side: k for side, k in zip(("L", "R"), view, strict=True) if k <= hyper["max_preconditioner_dim"]}

    def state_shapes(self, i, hyper):
        """The names and shapes of parameter ``i``'s state (class docstring) under ``hyper``."""
        shape = self.params[i].shape
        shapes = {"step": None, "exp_avg": shape}
        if hyper["grafting"] in ("adam", "adagrad"):
            shapes["graft_sq"] = shape
        for side, k in self._sides(i, hyper).items():
            shapes[side] = shapes[side + "_root"] = (k, k)
        return shapes

    def start_step(self):
        """t₀, the first step that uses Shampoo's direction (``start_preconditioning_step``, None = k)."""
        start = self.hyper["start_preconditioning_step"]
        return self.hyper["precondition_frequency"] if start is None else start

    def _entry(self, i, p):
        entry = self.state.get(i)
        if entry is None:
            xp = get_array_module(p.data)
            entry = {name: 0 if shape is None else xp.zeros(shape, dtype=p.data.dtype)
                     for name, shape in self.state_shapes(i, self.hyper).items()}
            self.state[i] = entry
        return entry

    def _grafted_direction(self, entry, g, m_hat, t):
        """D_g from M̂ (the parameter's shape), updating the grafted method's v in place; None without grafting."""
        grafting, eps = self.hyper["grafting"], self.hyper["grafting_eps"]
        if grafting is None:
            return None
        if grafting == "sgd":
            return m_hat
        xp = get_array_module(g)
        v = entry["graft_sq"]
        if grafting == "adagrad":
            v += g * g
            return m_hat / (xp.sqrt(v) + eps)
        beta = self.hyper["grafting_beta2"]
        v *= beta
        v += (1 - beta) * (g * g)
        return m_hat / (xp.sqrt(v) / math.sqrt(1 - beta**t) + eps)

    def _refresh_roots(self, entry, t):
        """P ← (S/c + εI)^{−p} for each preconditioned side, in float64, stored in the statistic's dtype."""
        beta2 = self.hyper["betas"][1]
        correction = 1.0 if beta2 == 1 else 1 - beta2**t
        for side in ("L", "R"):
            if side not in entry:
                continue
            S = entry[side]
            if not all_finite(S):
                entry[side + "_root"][...] = np.nan
                continue
            root = matrix_power_psd(S.astype(np.float64) / correction, -self.hyper["exponent"], self.hyper["epsilon"])
            entry[side + "_root"][...] = root.astype(S.dtype)

    def step(self):
        """Apply one Shampoo update (class docstring) to every parameter with a gradient, in place."""
        h = self.hyper
        lr, weight_decay = h["lr"], h["weight_decay"]
        beta1, beta2 = h["betas"]
        start, frequency = self.start_step(), h["precondition_frequency"]
        for i, p, g in self._grads():
            entry = self._entry(i, p)
            entry["step"] += 1
            t = entry["step"]
            view = self.matrix_shape(i)
            if view is not None:
                G = g.reshape(view)
                if "L" in entry:
                    accumulate_statistic(entry["L"], G @ G.T, beta2)
                if "R" in entry:
                    accumulate_statistic(entry["R"], G.T @ G, beta2)
            m = entry["exp_avg"]
            m *= beta1
            m += (1 - beta1) * g
            m_hat = m / (1 - beta1**t)
            grafted = self._grafted_direction(entry, g, m_hat, t)
            if view is None or t < start:
                direction = m_hat if grafted is None else grafted
            else:
                if (t - start) % frequency == 0:
                    self._refresh_roots(entry, t)
                D = m_hat.reshape(view)
                if "L_root" in entry:
                    D = entry["L_root"] @ D
                if "R_root" in entry:
                    D = D @ entry["R_root"]
                direction = D.reshape(p.shape)
                if grafted is not None:
                    xp = get_array_module(D)
                    norm = xp.linalg.norm(direction)
                    tiny = np.finfo(direction.dtype).tiny
                    direction = direction * (xp.linalg.norm(grafted) / xp.maximum(norm, tiny))
            if weight_decay != 0:
                p.data *= 1 - lr * weight_decay
            p.data -= lr * direction
        self.steps += 1
