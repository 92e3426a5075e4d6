"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024).

Vyas, Morwani, Zhao, Shapira, Brandfonbrener, Janson & Kakade 2024, *SOAP:
Improving and stabilizing Shampoo using Adam* (its algorithm for one m × n layer); the defaults and the
order of operations are those of the authors' reference code
(github.com/nikhilvyas/SOAP, ``soap.py``). Shampoo's statistics L and R are
accumulated as in :mod:`minikfac.optim.shampoo`
(:func:`~minikfac.optim.shampoo.accumulate_statistic`), their eigenbases by
:func:`minikfac.curvature.linalg.psd_eigh`, Adam's update by the same
formula as :class:`~minikfac.optim.Adam`.
"""

import math

import numpy as np

from minikfac.backend import get_array_module
from minikfac.curvature.linalg import psd_eigh
from minikfac.optim.adam import adam_update, new_adam_entry
from minikfac.optim.matrix_optimizer import MatrixOptimizer, all_finite
from minikfac.optim.optimizer import Optimizer, flag, optional, positive_int, unit_interval
from minikfac.optim.shampoo import accumulate_statistic


def eigenbasis(S):
    """Q (k, k): the eigenvectors of the symmetric PSD S (k, k), columns, by *decreasing* eigenvalue.

    The SOAP reference's order (``torch.flip`` of ``eigh``'s): Adam's second
    moment V' keeps, column by column, the same rank of eigenvalue from one
    refresh to the next. A non-finite S (a diverged run) gives a NaN Q
    instead of LAPACK's error.
    """
    xp = get_array_module(S)
    if not all_finite(S):
        return xp.full(S.shape, np.nan, dtype=S.dtype)
    _, vectors = psd_eigh(S)
    return vectors[:, ::-1]


def _rotate(X, Q_L, Q_R, back=False):
    """Q_Lᵀ X Q_R (into the eigenbasis) or Q_L X Q_Rᵀ (``back``), X (m, n); a None Q is the identity."""
    if Q_L is not None:
        X = (Q_L @ X) if back else (Q_L.T @ X)
    if Q_R is not None:
        X = (X @ Q_R.T) if back else (X @ Q_R)
    return X


class SOAP(MatrixOptimizer):
    r"""SOAP: AdamW run in the eigenbasis of Shampoo's preconditioner, refreshed every k steps.

    For each parameter W with a matrix view (m, n) (Linear weights; Conv2d
    weights as (C_out, C_in·KH·KW)) and gradient G (Vyas et al. 2024):

    - first step (the reference code's): L = (1 − β_s) G Gᵀ, R = (1 − β_s) Gᵀ G,
      Q_L, Q_R their eigenbases (:func:`eigenbasis`); W does not move ("so
      that we never use the current gradients in the projection");
    - then, update t = 1, 2, ...:

          G'  ← Q_Lᵀ G Q_R                                        (rotate into the eigenbasis)
          M'  ← β₁ M' + (1 − β₁) G',   V' ← β₂ V' + (1 − β₂) G'²   (Adam's moments, there)
          N'  ← M̂' / (√V̂' + ε)          (M̂' = M'/(1 − β₁ᵗ), V̂' = V'/(1 − β₂ᵗ), as in Adam)
          W   ← W · (1 − lr · wd)                                  (decoupled weight decay)
          W   ← W − lr · Q_L N' Q_Rᵀ                               (rotate back)
          L   ← β_s L + (1 − β_s) G Gᵀ,   R ← β_s R + (1 − β_s) Gᵀ G
          if t ≡ 0 mod k:  Q_L, Q_R ← eigenbases of L, R, and M' ← Q_L,newᵀ Q_L,old M' Q_R,oldᵀ Q_R,new

    The first moment is rotated into each new basis, as the paper does (its
    algorithm keeps M in W's coordinates and projects it each step; the reference
    code projects it back and forth around each refresh: the same M'). V' is
    not rotated (it is not a matrix of the basis): its columns follow the
    eigenvalues' order, largest first, as the reference's sort keeps them.

    Two departures from the reference code, both of order ε or lr²·wd: the
    bias correction is Adam's (ε added to √V̂', where the reference adds it to
    √V' and corrects the step), and the weight decay shrinks W before the step,
    as AdamW does (the reference's first version decays after it). The
    reference refreshes Q by one power iteration and a QR factorisation from
    the previous Q; here by a full ``eigh`` (as the paper's algorithm states it).

    With ``rotate=False`` the bases are the identity and never computed (and
    no first step is skipped: there is no projection to protect): SOAP is then
    AdamW exactly (:class:`~minikfac.optim.Adam` with ``decoupled=True``), the
    check of the formula above. A side longer than ``max_preconditioner_dim``
    is not rotated (the reference's ``max_precond_dim``). A parameter without
    a matrix view (a bias) is updated by AdamW with the same lr, betas, eps and
    weight decay (the reference's default ``precondition_1d=False``).

    Parameters
    ----------
    params : iterable of Parameter (e.g. ``net.parameters()``), any shapes.
    lr : float > 0 (default 3e-3, the reference's).
    betas : (β₁, β₂) in [0, 1), Adam's (default (0.95, 0.95), the reference's README).
    shampoo_beta : β_s in [0, 1) for L and R, or None = β₂ (the reference's −1).
    eps : float > 0, Adam's ε (default 1e-8).
    weight_decay : float >= 0, decoupled (default 0.01, the reference's).
    precondition_frequency : int k >= 1, steps between refreshes of Q_L, Q_R (default 10).
    max_preconditioner_dim : int, the longest side that is rotated (default 10000, the reference's).
    rotate : bool, False freezes the bases at the identity (AdamW).

    State (per parameter): ``"step"`` (int t, Adam's updates), ``"exp_avg"``
    (M', in the eigenbasis) and ``"exp_avg_sq"`` (V'), of the parameter's
    shape; for a rotated matrix also ``"L"``, ``"Q_L"`` (m, m), ``"R"``,
    ``"Q_R"`` (n, n) (the sides that are rotated). All on the parameter's
    backend and dtype.
    """

    hyper_rules = {
        **Optimizer.hyper_rules,
        "shampoo_beta": optional(unit_interval),
        "precondition_frequency": positive_int,
        "max_preconditioner_dim": positive_int,
        "rotate": flag,
    }
    state_names = ("step", "exp_avg", "exp_avg_sq", "L", "R", "Q_L", "Q_R")

    def __init__(self, params, lr=3e-3, betas=(0.95, 0.95), shampoo_beta=None, eps=1e-8, weight_decay=0.01,
                 precondition_frequency=10, max_preconditioner_dim=10000, rotate=True):
        super().__init__(params, lr=lr, betas=betas, shampoo_beta=shampoo_beta, eps=eps, weight_decay=weight_decay,
                         precondition_frequency=precondition_frequency,
                         max_preconditioner_dim=max_preconditioner_dim, rotate=rotate)

    def _sides(self, i, hyper):
        """{"L": m, "R": n} for the rotated sides of parameter ``i`` ({} for a vector, or with rotate=False)."""
        view = self.matrix_shape(i)
        if view is None or not hyper["rotate"]:
            return {}
        return {side: k for side, k in zip(("L", "R"), view, strict=True) if k <= hyper["max_preconditioner_dim"]}

    def state_shapes(self, i, hyper):
        """The names and shapes of parameter ``i``'s state (class docstring) under ``hyper``."""
        shape = self.params[i].shape
        shapes = {"step": None, "exp_avg": shape, "exp_avg_sq": shape}
        for side, k in self._sides(i, hyper).items():
            shapes[side] = shapes["Q_" + side] = (k, k)
        return shapes

    def shampoo_beta(self):
        """β_s, the decay of L and R (``shampoo_beta``, None = β₂)."""
        beta = self.hyper["shampoo_beta"]
        return self.hyper["betas"][1] if beta is None else beta

    def step(self):
        """Apply one SOAP update (class docstring) to every parameter with a gradient, in place."""
        h = self.hyper
        lr, eps, weight_decay = h["lr"], h["eps"], h["weight_decay"]
        beta1, beta2 = h["betas"]
        for i, p, g in self._grads():
            sides = self._sides(i, h)
            view = self.matrix_shape(i)
            if view is None:
                entry = self.state.get(i) or self.state.setdefault(i, new_adam_entry(p.data))
                adam_update(p, g, entry, lr, beta1, beta2, eps, weight_decay)
                continue
            G = g.reshape(view)
            entry = self.state.get(i)
            if entry is None:
                entry = self.state[i] = new_adam_entry(p.data)
                if sides:
                    self._update_statistics(entry, G, sides, first=True)
                    continue  # the reference's first step: bases from G, no update
            Q_L, Q_R = entry.get("Q_L"), entry.get("Q_R")
            rotated = _rotate(G, Q_L, Q_R)
            entry["step"] += 1
            t = entry["step"]
            m, v = entry["exp_avg"].reshape(view), entry["exp_avg_sq"].reshape(view)
            m *= beta1
            m += (1 - beta1) * rotated
            v *= beta2
            v += (1 - beta2) * (rotated * rotated)
            xp = get_array_module(v)
            # Adam's lr·M̂'/(√V̂' + ε), written as Adam writes it (the corrections are Python floats).
            normalised = m / (xp.sqrt(v) / math.sqrt(1 - beta2**t) + eps)
            if weight_decay != 0:
                p.data *= 1 - lr * weight_decay
            p.data -= (lr / (1 - beta1**t)) * _rotate(normalised, Q_L, Q_R, back=True).reshape(p.shape)
            if sides:
                self._update_statistics(entry, G, sides, refresh=t % h["precondition_frequency"] == 0)
        self.steps += 1

    def _update_statistics(self, entry, G, sides, first=False, refresh=False):
        """L, R ← β_s·(L, R) + (1 − β_s)·(G Gᵀ, Gᵀ G) (created on the ``first`` step), then on the first step
        or a ``refresh`` new bases Q_L, Q_R, with the first moment M' rotated into them."""
        xp = get_array_module(G)
        beta = self.shampoo_beta()
        for side in sides:
            product = G @ G.T if side == "L" else G.T @ G
            if first:
                entry[side] = xp.zeros_like(product)
            accumulate_statistic(entry[side], product, beta)
        if not (first or refresh):
            return
        new = {side: eigenbasis(entry[side]) for side in sides}
        if not first:
            m = entry["exp_avg"].reshape(G.shape)
            old_L, old_R = entry.get("Q_L"), entry.get("Q_R")
            m[...] = _rotate(_rotate(m, old_L, old_R, back=True), new.get("L"), new.get("R"))
        for side, Q in new.items():
            entry["Q_" + side] = xp.ascontiguousarray(Q)
