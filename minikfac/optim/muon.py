"""Muon: momentum orthogonalised by Newton–Schulz (Jordan et al. 2024), as ``torch.optim.Muon`` defines it.

Keller Jordan et al. 2024, *Muon: An optimizer for hidden layers in neural
networks* (https://kellerjordan.github.io/posts/muon/); the learning-rate
adjustment "match_rms_adamw" is from Liu et al. 2025, *Muon is scalable for
LLM training*. The definition and every default follow PyTorch's
``torch.optim.Muon`` (``torch/optim/_muon.py``); the orthogonalisation is
:func:`minikfac.curvature.polar.newton_schulz`.
"""

import math

from minikfac.backend import get_array_module
from minikfac.curvature.polar import MUON_COEFFICIENTS, newton_schulz
from minikfac.optim.adam import adam_update, new_adam_entry
from minikfac.optim.matrix_optimizer import MatrixOptimizer, triple
from minikfac.optim.optimizer import (
    Optimizer,
    choice,
    flag,
    nonnegative,
    positive,
    unit_interval,
    unit_interval_pair,
)

#: Muon's learning-rate adjustments (``adjust_lr_fn``), as torch names them; None is "original".
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def _ns_steps(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 100:
        raise ValueError(f"{owner}: {name} must be an integer in [1, 100) (torch refuses 100 or more), got {value!r}")
    return int(value)


def adjusted_lr(lr, adjust_lr_fn, m, n):
    """Muon's step size for a matrix (m, n) (torch's ``_adjust_lr``, with A, B = m, n).

    m, n : the matrix view's sizes (torch takes A, B = ``shape[:2]`` and refuses
    parameters that are not 2-D; for a conv weight the view is (C_out, C_in·KH·KW)).

    None or "original" (Jordan et al. 2024): lr·√max(1, m/n), so that the
    update's RMS does not shrink for tall matrices; "match_rms_adamw" (Liu et
    al. 2025): 0.2·√max(m, n)·lr, an update RMS of about 0.2, AdamW's,
    so that AdamW's lr and weight decay carry over.
    """
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, m / n))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(m, n))
    raise ValueError(f"adjusted_lr: adjust_lr_fn must be one of {ADJUST_LR_FNS}, got {adjust_lr_fn!r}")


class Muon(MatrixOptimizer):
    r"""Muon: SGD with Nesterov momentum whose update is orthogonalised, per weight matrix.

    For each parameter W with a matrix view (m, n) (Linear weights; Conv2d
    weights (C_out, C_in, KH, KW) as (C_out, C_in·KH·KW)) and gradient G, step
    t (torch's ``_single_tensor_muon``):

        B_t ← lerp(B_{t−1}, G, 1 − μ) = μ B_{t−1} + (1 − μ) G     (B_0 = 0)
        U   ← lerp(G, B_t, μ) = (1 − μ) G + μ B_t  if nesterov, else B_t
        O   ← NS_k^{(a,b,c)}(U; ε)                 (:func:`~minikfac.curvature.polar.newton_schulz`)
        W   ← W · (1 − lr · wd)                     (decoupled weight decay, unadjusted lr)
        W   ← W − AdjustLR(lr; m, n) · O            (:func:`adjusted_lr`)

    O has the singular vectors of U and singular values in about [0.7, 1.2]
    (:data:`~minikfac.curvature.polar.MUON_SINGULAR_VALUE_BAND`): nearly the
    polar factor, the steepest-descent direction under the spectral norm
    (Bernstein & Newhouse 2024). torch writes the momentum as a lerp; its
    docstring's B_t ← μB + g is the same direction up to the factor (1 − μ),
    which the normalisation inside Newton–Schulz removes. torch runs
    Newton–Schulz in bfloat16; here it runs in the parameter's dtype.

    Parameters other than matrices (biases, and any vector or scalar) are not
    Muon's: torch refuses them, and Jordan et al. recommend AdamW for them.
    Here they are updated by AdamW (:func:`~minikfac.optim.adam.adam_update`,
    decoupled decay) with its own keywords ``adam_lr``, ``adam_betas``,
    ``adam_eps``, ``adam_weight_decay``, whose defaults are those of the
    AdamW groups of Jordan's ``MuonWithAuxAdam`` (lr 3e-4, betas (0.9, 0.95),
    eps 1e-10, no decay). Jordan et al. also leave the first and last layers (embeddings,
    the classifier head) to AdamW; here every matrix is Muon's — give the
    head to another optimizer if you follow that advice.

    Parameters
    ----------
    params : iterable of Parameter (e.g. ``net.parameters()``), any shapes.
    lr : float > 0, the learning rate (torch's default 1e-3; Jordan's reference uses 0.02).
    weight_decay : float >= 0, decoupled weight decay (torch: 0.1).
    momentum : float in [0, 1), μ (torch: 0.95).
    nesterov : bool, Nesterov's look-ahead U = lerp(G, B, μ) (torch: True).
    ns_coefficients : (a, b, c), the quintic's coefficients (torch: (3.4445, −4.7750, 2.0315)).
    eps : float > 0, the floor of ‖U‖_F in Newton–Schulz's normalisation (torch: 1e-7).
    ns_steps : int in [1, 100), Newton–Schulz iterations (torch: 5).
    adjust_lr_fn : None/"original" or "match_rms_adamw" (torch: None, i.e. "original").
    adam_lr, adam_betas, adam_eps, adam_weight_decay : the AdamW of the non-matrix parameters.

    State (per parameter): a matrix has ``"momentum_buffer"`` (B, the
    parameter's shape); any other parameter has AdamW's ``"step"``,
    ``"exp_avg"``, ``"exp_avg_sq"``. All on the parameter's backend and dtype.
    """

    hyper_rules = {
        **Optimizer.hyper_rules,
        "ns_coefficients": triple,
        "ns_steps": _ns_steps,
        "adjust_lr_fn": choice(ADJUST_LR_FNS),
        "adam_lr": positive,
        "adam_betas": unit_interval_pair,
        "adam_eps": positive,
        "adam_weight_decay": nonnegative,
        "momentum": unit_interval,
        "nesterov": flag,
    }
    state_names = ("momentum_buffer", "step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=MUON_COEFFICIENTS, eps=1e-7, ns_steps=5, adjust_lr_fn=None,
                 adam_lr=3e-4, adam_betas=(0.9, 0.95), adam_eps=1e-10, adam_weight_decay=0.0):
        super().__init__(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                         ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
                         adam_lr=adam_lr, adam_betas=adam_betas, adam_eps=adam_eps,
                         adam_weight_decay=adam_weight_decay)

    def state_shapes(self, i, hyper):
        """A matrix: {"momentum_buffer": its shape}; otherwise AdamW's {"step": None, "exp_avg", "exp_avg_sq"}."""
        shape = self.params[i].shape
        if self.matrix_shape(i) is not None:
            return {"momentum_buffer": shape}
        return {"step": None, "exp_avg": shape, "exp_avg_sq": shape}

    def step(self):
        """Apply one Muon update (class docstring) to every parameter with a gradient, in place."""
        h = self.hyper
        for i, p, g in self._grads():
            view = self.matrix_shape(i)
            if view is None:
                entry = self.state.get(i) or self.state.setdefault(i, new_adam_entry(p.data))
                adam_update(p, g, entry, h["adam_lr"], *h["adam_betas"], h["adam_eps"], h["adam_weight_decay"])
                continue
            entry = self.state.get(i)
            if entry is None:
                entry = self.state[i] = {"momentum_buffer": get_array_module(p.data).zeros_like(p.data)}
            buffer, mu = entry["momentum_buffer"], h["momentum"]
            buffer += (1 - mu) * (g - buffer)  # torch's buf.lerp_(g, 1 − μ)
            update = g + mu * (buffer - g) if h["nesterov"] else buffer  # torch's g.lerp(buf, μ)
            orthogonal = newton_schulz(update.reshape(view), h["ns_steps"], h["ns_coefficients"], h["eps"])
            if h["weight_decay"] != 0:
                p.data *= 1 - h["lr"] * h["weight_decay"]
            p.data -= adjusted_lr(h["lr"], h["adjust_lr_fn"], *view) * orthogonal.reshape(p.shape)
        self.steps += 1
