"""Continual learning with curvature penalties: the Laplace view of "do not forget".

After a task t with data D_t (N_t examples) the net sits at a mode θ*_t. The
Laplace approximation replaces the posterior p(θ | D_1, ..., D_t) by a
Gaussian centred at that mode whose precision is the curvature of the negative
log-likelihood *summed* over the data, N_t·F̂_t, where F̂_t is one of
:mod:`minikfac.curvature`'s approximations of the GGN (a mean over examples,
like every matrix of the package). Used as the prior of the next task, the
Gaussian becomes a quadratic penalty added to the next task's loss:

    penalty(θ) = ½ Σ_t λ N_t (θ − c_t)ᵀ F̂_t (θ − c_t)          (a 0-d array, nats)
    gradient   =   Σ_t λ N_t F̂_t (θ − c_t)                      (P,)

λ is the ``strength``, the hyper-parameter that both papers put in front of
the data term, and c_t is the centre, chosen by ``centres``:

- ``"last"``, the online Laplace approximation of Ritter et al.
  2018b: the precisions add up, Λ_t = λ N_t F̂_t + Λ_{t−1}, and the single
  quadratic is centred at the latest mode, c_t = θ*_T for every t (the
  posterior after T tasks is N(θ*_T, Λ_T⁻¹)). With F̂ = K-FAC this is their
  Kronecker-factored online Laplace; Λ_0 = 0 here (they add a Gaussian prior;
  here weight decay of the optimizer plays that part, if any).
- ``"each"``, elastic weight consolidation (EWC, Kirkpatrick et al. 2017,
  eq. (3)): one penalty per task, each centred at its own mode, c_t = θ*_t. With
  F̂ = the diagonal it is their method; with our mean-normalised F̂ and all tasks
  of equal size N, scale 1/N (below) gives their "L_B + Σ λ/2 F_i (θ_i − θ*_i)²".

A sum of Kronecker products is not a Kronecker product, so the precision of
several tasks is never formed: the penalty keeps each task's
:class:`~minikfac.curvature.Approximation` and sums their ``matvec``\\ s
(Ritter et al. 2018b note the same: the penalty needs only products, never an
inverse). Every curvature-vector product goes through ``Approximation.matvec``.

**Scale.** ``value`` and ``gradient`` are on the scale of the negative log
prior, i.e. of a loss *summed* over examples. The losses of :mod:`minikfac.nn`
are means, so a training step on the new task's mean loss over N_new examples
adds ``add_gradient(net, scale=1 / N_new)``: then the step minimises
(1/N_new)·(−log p(D_new | θ) + penalty(θ)), the negative log posterior per
example of the new task.
"""

import math
import numbers

from minikfac import backend
from minikfac.curvature import approximate, flatten
from minikfac.curvature.params import check_finite, layer_slices, parametrised_layers, split_augmented, unflatten
from minikfac.curvature.statistics import check_kind
from minikfac.curvature.structures import STRUCTURES, check_structure

#: How each task's quadratic is centred: "last" (online Laplace, Ritter et al. 2018b) or "each" (EWC).
CENTRES = ("last", "each")


def _check_positive(name, value, caller):
    """``value`` as a float > 0, or TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{caller}: {name} must be a real number > 0, got {type(value).__name__} {value!r}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{caller}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


class LaplacePenalty:
    """A quadratic penalty ½ Σ_t λ N_t (θ − c_t)ᵀ F̂_t (θ − c_t) that keeps a net near earlier tasks' modes.

    Parameters
    ----------
    structure : "full", "block", "kfac", "ekfac" or "diag", the structure of
        each F̂_t (:func:`minikfac.curvature.approximate`). "kfac" with
        ``centres="last"`` is Ritter et al. 2018b's Kronecker-factored online
        Laplace; "diag" with ``centres="each"`` is Kirkpatrick et al. 2017's EWC.
    strength : λ > 0, multiplying every task's data term λ N_t F̂_t
        (Ritter et al. 2018b: the trade-off between old and new tasks).
        Constant over tasks, so Λ_T = λ Σ_t N_t F̂_t; it may be changed between
        calls (``penalty.strength = 10.0``).
    centres : "last" (online Laplace: one centre, the latest mode) or "each"
        (EWC: every task's quadratic centred at its own mode).
    kind : the curvature matrix, "ggn" (default; for the losses of
        :mod:`minikfac.nn.likelihoods` the true Fisher), "true", "mc" or "empirical".

    Attributes
    ----------
    tasks : list of dicts ``{"approximation", "centre" (P,), "num_examples"}``, one per
        consolidated task, in order.
    """

    def __init__(self, structure="kfac", strength=1.0, centres="last", kind="ggn"):
        self.structure = check_structure(structure, "LaplacePenalty")
        self.strength = strength  # checked by the setter
        if centres not in CENTRES:
            raise ValueError(f"LaplacePenalty: centres must be one of {CENTRES}, got {centres!r}")
        self.centres = centres
        self.kind = check_kind(kind)
        self.tasks = []

    def __repr__(self):
        return (f"LaplacePenalty(structure={self.structure!r}, strength={self.strength!r}, "
                f"centres={self.centres!r}, tasks={len(self.tasks)})")

    @property
    def strength(self):
        """λ, a float > 0."""
        return self._strength

    @strength.setter
    def strength(self, value):
        self._strength = _check_positive("strength", value, "LaplacePenalty")

    @property
    def size(self):
        """P, the number of parameters of the consolidated net (None before the first task)."""
        return self.tasks[0]["approximation"].size if self.tasks else None

    # -- after a task ------------------------------------------------------- #
    def consolidate(self, net, loss_fn, X, y=None, num_examples=None, **options):
        """Store θ* = ``flatten(net)`` (P,) and F̂ of the task just learnt, on the inputs X (N, ...).

        ``y`` is needed only for ``kind="empirical"``. ``num_examples`` is
        N_t, the size of the task's data (default: len(X)); pass it when F̂ is
        estimated on a subset. ``options`` go to
        :func:`minikfac.curvature.approximate` (``samples``, ``seed``,
        ``chunk_size``). Returns the task's :class:`~minikfac.curvature.Approximation`.
        """
        if not hasattr(X, "shape") or len(X.shape) < 1 or X.shape[0] == 0:
            got = tuple(X.shape) if hasattr(X, "shape") else type(X).__name__
            raise ValueError(f"LaplacePenalty.consolidate: X must be (N, ...) inputs with N >= 1, got {got}")
        count = X.shape[0] if num_examples is None else num_examples
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise ValueError(f"LaplacePenalty.consolidate: num_examples must be an int >= 1, got {count!r}")
        if self.tasks:
            self._check_net(net, "consolidate")
        check_finite(net, "LaplacePenalty.consolidate", X=X)
        approximation = approximate(net, loss_fn, X, self.structure, y=y, kind=self.kind, **options)
        centre = flatten(net).copy()
        self.tasks.append({"approximation": approximation, "centre": centre, "num_examples": int(count)})
        return approximation

    # -- while learning the next ---------------------------------------------- #
    def _check_net(self, net, caller):
        if not self.tasks:
            raise ValueError(f"LaplacePenalty.{caller}: no task consolidated yet; call "
                             "consolidate(net, loss_fn, X_task) after training on a task")
        slices = layer_slices(net)
        if [(s.start, s.stop) for s in slices] != [(s.start, s.stop) for s in self.tasks[0]["approximation"].slices]:
            raise ValueError(f"LaplacePenalty.{caller}: net has layers of {[s.stop - s.start for s in slices]} "
                             f"parameters (P = {slices[-1].stop}), expected the consolidated net's "
                             f"{[s.stop - s.start for s in self.tasks[0]['approximation'].slices]} (P = {self.size})")
        theta = flatten(net)
        backend.check_same_backend(net=theta, consolidated=self.tasks[0]["centre"])
        return theta

    def _terms(self, theta):
        """[(N_t, Δ_t (P,), F̂_t Δ_t (P,))] with Δ_t = θ − c_t; one matvec per task."""
        last = self.tasks[-1]["centre"]
        terms = []
        for task in self.tasks:
            delta = theta - (last if self.centres == "last" else task["centre"])
            terms.append((task["num_examples"], delta, task["approximation"].matvec(delta)))
        return terms

    def value(self, net):
        """½ Σ_t λ N_t Δ_tᵀ F̂_t Δ_t at the net's parameters, a 0-d array (the negative log prior, nats)."""
        theta = self._check_net(net, "value")
        xp = backend.get_array_module(theta)
        return 0.5 * self.strength * sum(n * xp.dot(delta, product) for n, delta, product in self._terms(theta))

    def gradient(self, net):
        """Σ_t λ N_t F̂_t Δ_t, the penalty's gradient in the canonical order, (P,)."""
        theta = self._check_net(net, "gradient")
        return self.strength * sum(n * product for n, _, product in self._terms(theta))

    def add_gradient(self, net, scale=1.0):
        """Add ``scale`` × :meth:`gradient` into the parameters' ``.grad``; returns the added (P,) vector.

        Call it between ``net.backward(...)`` and ``optimizer.step()``, with
        ``scale = 1 / N_new`` when the loss is the mean over the new task's
        N_new examples (module docstring). Gradients already present are kept
        and the penalty's is added (new arrays, cast to each parameter's
        dtype); a ``.grad`` that is None becomes the penalty's alone.
        """
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
            raise ValueError(f"LaplacePenalty.add_gradient: scale must be a finite real number (1/N_new for a mean "
                             f"loss), got {scale!r}")
        step = float(scale) * self.gradient(net)
        for layer, matrix in zip(parametrised_layers(net), unflatten(net, step)):
            weight, bias = split_augmented(layer, matrix)
            for parameter, part in ((layer.weight, weight), (layer.bias, bias)):
                if part is None:
                    continue
                part = part.astype(parameter.data.dtype)
                parameter.grad = part if parameter.grad is None else parameter.grad + part
        return step


def quadratic_forms(approximations, directions):
    """dᵀ F̂ d for each approximation and each direction, through ``matvec``: (k, m).

    approximations : k :class:`~minikfac.curvature.Approximation` of the same P.
    directions : (P, m) columns d_j (or one (P,) vector, then m = 1).

    What a penalty "sees" when the parameters move by d: the tutorial compares
    these with the exact GGN's on the directions a new task moves along.
    """
    xp = backend.get_array_module(directions)
    columns = directions if directions.ndim == 2 else directions[:, None]
    return xp.stack([xp.sum(columns * approximation.matvec(columns), axis=0) for approximation in approximations])


__all__ = ["CENTRES", "LaplacePenalty", "STRUCTURES", "quadratic_forms"]
