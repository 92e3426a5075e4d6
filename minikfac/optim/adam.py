"""Adam (Kingma & Ba 2015) and its decoupled-weight-decay variant AdamW.

Kingma & Ba 2015, *Adam: A method for stochastic optimization*, Alg. 1;
Loshchilov & Hutter 2019, *Decoupled weight decay regularization*, Alg. 2.
The update matches PyTorch's ``torch.optim.Adam`` (``decoupled=False``) and
``torch.optim.AdamW`` (``decoupled=True``).
"""

import math

from minikfac.backend import get_array_module
from minikfac.optim.optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam: steps scaled by running estimates of the gradient's first and second moments.

    For each parameter θ with gradient ∇L(θ) (``p.grad``), at its t-th update
    (t = 1, 2, ...; Kingma & Ba 2015, Alg. 1, all operations elementwise):

        g   ← ∇L(θ) + wd · θ              (coupled L2 decay, only if not decoupled)
        m_t ← β₁ m_{t-1} + (1 − β₁) g      (m_0 = 0)
        v_t ← β₂ v_{t-1} + (1 − β₂) g²     (v_0 = 0)
        m̂   ← m_t / (1 − β₁ᵗ),   v̂ ← v_t / (1 − β₂ᵗ)   (bias correction)
        θ   ← θ − lr · wd · θ              (decoupled decay, only if decoupled)
        θ   ← θ − lr · m̂ / (√v̂ + ε)

    Coupled decay (PyTorch's Adam) adds an L2 penalty to the loss, which Adam
    then rescales per coordinate; decoupled decay (AdamW) shrinks θ directly,
    using θ from before this step. Loshchilov & Hutter scale the decay by the
    schedule multiplier η_t rather than by lr; like PyTorch we use lr · wd.

    t counts the updates *of that parameter* (a step where its ``grad`` is
    ``None`` does not count), so the bias correction stays right for
    parameters that are not always trained; it is a Python int, so the
    correction factors are computed on the host without a device sync.

    Parameters
    ----------
    params : iterable of Parameter (e.g. ``net.parameters()``), any shapes.
    lr : float > 0, the step size α.
    betas : pair (β₁, β₂) in [0, 1), decay rates of the moment estimates.
    eps : float > 0, ε, keeps the step bounded where v̂ ≈ 0.
    weight_decay : float >= 0, wd.
    decoupled : bool, AdamW's decoupled weight decay instead of L2.

    State (per parameter): ``"step"`` (int t), ``"exp_avg"`` (m) and
    ``"exp_avg_sq"`` (v), arrays of the parameter's shape, backend and dtype.
    """

    state_names = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled)

    def step(self):
        """Apply one Adam update (see the class docstring) to every parameter with a gradient, in place."""
        lr, eps = self.hyper["lr"], self.hyper["eps"]
        beta1, beta2 = self.hyper["betas"]
        weight_decay, decoupled = self.hyper["weight_decay"], self.hyper["decoupled"]
        for i, p, g in self._grads():
            adam_update(p, g, self._entry(i, p), lr, beta1, beta2, eps, weight_decay, decoupled)
        self.steps += 1

    def _entry(self, i, p):
        """Parameter ``i``'s state, created with zero moments on its first update."""
        entry = self.state.get(i)
        if entry is None:
            entry = new_adam_entry(p.data)
            self.state[i] = entry
        return entry


def new_adam_entry(data):
    """Adam's state for a parameter array ``data`` (any shape): ``{"step": 0, "exp_avg": 0s, "exp_avg_sq": 0s}``,
    the moments of ``data``'s shape, backend and dtype."""
    xp = get_array_module(data)
    return {"step": 0, "exp_avg": xp.zeros_like(data), "exp_avg_sq": xp.zeros_like(data)}


def adam_update(p, g, entry, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=True):
    """One Adam update of Parameter ``p`` from its gradient ``g`` (p's shape), in place (Kingma & Ba 2015, Alg. 1).

    ``entry`` is p's state (:func:`new_adam_entry`), updated in place: t, m and v
    as in :class:`Adam`'s docstring; ``weight_decay`` is coupled (added to g)
    unless ``decoupled`` (AdamW). The one home of Adam's update: :class:`Adam`
    and the optimizers that fall back on AdamW for their non-matrix parameters
    (Muon, SOAP) call it.
    """
    if weight_decay != 0 and not decoupled:
        g = g + weight_decay * p.data  # a new array: p.grad is left as it was
    entry["step"] += 1
    t = entry["step"]
    m, v = entry["exp_avg"], entry["exp_avg_sq"]
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    if weight_decay != 0 and decoupled:
        p.data *= 1 - lr * weight_decay
    # lr·m̂/(√v̂ + ε) with m̂, v̂ written out: the corrections are Python floats.
    xp = get_array_module(v)
    denom = xp.sqrt(v) / math.sqrt(1 - beta2**t) + eps
    p.data -= (lr / (1 - beta1**t)) * (m / denom)
