"""Stochastic gradient descent with (Nesterov) momentum and L2 weight decay.

The update is PyTorch's ``torch.optim.SGD`` without dampening (Sutskever et
al. 2013 for the momentum forms), so results can be compared one to one.
"""

from minikfac.optim.optimizer import Optimizer


class SGD(Optimizer):
    r"""Gradient descent, optionally with momentum, Nesterov momentum and weight decay.

    For each parameter θ with gradient ∇L(θ) (``p.grad``), step t = 1, 2, ...:

        g   ← ∇L(θ) + wd · θ                    (coupled L2 weight decay)
        b_t ← μ b_{t-1} + g,   with b_1 = g      (momentum buffer, if μ > 0)
        d   ← g + μ b_t   if nesterov else b_t   (d = g when μ = 0)
        θ   ← θ − lr · d

    With μ = 0 this is plain gradient descent θ ← θ − lr·g. The weight decay
    is added to the gradient (an L2 penalty ½·wd·‖θ‖² on the loss), so it is
    also accumulated by the momentum buffer.

    Parameters
    ----------
    params : iterable of Parameter (e.g. ``net.parameters()``), any shapes.
    lr : float > 0, the learning rate.
    momentum : float in [0, 1), μ.
    nesterov : bool, use Nesterov's look-ahead form (needs ``momentum > 0``).
    weight_decay : float >= 0, wd.

    State (per parameter, only when μ > 0): ``"momentum_buffer"``, b, an array
    of the parameter's shape, backend and dtype.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def _check_hyper(self, hyper):
        hyper = super()._check_hyper(hyper)
        if hyper["nesterov"] and hyper["momentum"] == 0:
            raise ValueError(f"SGD: nesterov=True needs momentum > 0, got momentum={hyper['momentum']!r}")
        return hyper

    def step(self):
        """Move every parameter that has a gradient by −lr·d (see the class docstring), in place."""
        lr = self.hyper["lr"]
        momentum = self.hyper["momentum"]
        weight_decay = self.hyper["weight_decay"]
        for i, p, g in self._grads():
            if weight_decay != 0:
                g = g + weight_decay * p.data  # a new array: p.grad is left as it was
            direction = g if momentum == 0 else self._momentum_direction(i, p, g, momentum)
            p.data -= lr * direction
        self.steps += 1

    def _momentum_direction(self, i, p, g, momentum):
        """Update parameter ``i``'s buffer b ← μ b + g and return b, or g + μ b for Nesterov."""
        entry = self.state.setdefault(i, {})
        buffer = entry.get("momentum_buffer")
        if buffer is None:
            # A copy in the parameter's dtype: p.grad may later be accumulated into in place.
            buffer = g.astype(p.data.dtype, copy=True)
            entry["momentum_buffer"] = buffer
        else:
            buffer *= momentum
            buffer += g
        return g + momentum * buffer if self.hyper["nesterov"] else buffer
