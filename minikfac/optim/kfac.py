"""K-FAC, the optimizer: natural-gradient steps through Kronecker-factored curvature.

Martens & Grosse 2015, *Optimizing neural networks with Kronecker-factored
approximate curvature*; Grosse & Martens 2016 (KFC, convolutions); Ba et al.
2017 (KL-clipping); George et al. 2018 (EKFAC). One step, for a batch
(X, y) whose gradient ∇L is already in the parameters' ``.grad``:

1. **Statistics** (Martens & Grosse 2015, §5). The first n rows of the batch (``stats_fraction``,
   at least ``min_stats_examples``) go forward once more and back with
   cotangents of ``kind``: targets *sampled from the model* ("mc", the true
   Fisher; the default), every output weighted by its probability ("true"),
   the data labels ("empirical" — the empirical Fisher, a different matrix;
   Kunstner et al. 2019) or the GGN ("ggn"). Each layer's A = E[ā āᵀ] and
   G = E[g gᵀ] come from its caches, inside one ``statistics.one_pass`` block, and
   enter (:func:`.kfac_state.with_statistics`) exponential moving averages A ← εA + (1−ε)A_new, ε = min(1 − 1/k, ``factor_decay``).
2. **Inverses** (Martens & Grosse 2015, §8), every ``inverse_interval`` = T steps, and also as
   soon as λ has moved by more than a factor :data:`REFORM_FACTOR` since the
   last ones (after a refused step, say). Factored damping (the default) needs
   only the damped factors' inverses, (A + πγI)⁻¹ and (G + γ/π I)⁻¹, from a
   Cholesky factorisation (:func:`minikfac.curvature.damping.factored_inverses`,
   π = sqrt((tr A / n)/(tr G / m)), Martens & Grosse 2015, §6.3). Exact damping and EKFAC need
   the eigendecompositions A = U_A diag(a) U_Aᵀ, G = U_G diag(g) U_Gᵀ.
3. **Proposal** Δ_l = −(damped F̂_l)⁻¹ ∇h_l per layer, γ² = λ + η:

   - factored Tikhonov damping (Martens & Grosse 2015, §6.3, default): Δ = −(G + γ/π I)⁻¹ ∇W̄ (A + πγ I)⁻¹;
   - exact Tikhonov damping (``factored=False``): −(A ⊗ G + γ²I)⁻¹ vec(∇W̄)
     = −U_G [(U_Gᵀ ∇W̄ U_A) / (g aᵀ + γ²)] U_Aᵀ;
   - EKFAC (``preconditioner="ekfac"``): the same with g aᵀ replaced by s, the
     second moments of the per-example gradients in the eigenbasis, averaged
     like A and G.

   γ² = λ + η: the LM damping λ plus the weight decay η (Martens & Grosse 2015, §6.2, §6.6).
4. **Update** (``update="quadratic"``, Martens & Grosse 2015, §7): δ = αΔ + μδ₀ (δ₀ the previous
   update) minimising the quadratic model M(δ) = ½δᵀ(F + γ²I)δ + ∇hᵀδ with
   the exact Fisher of the n statistics rows, through Jacobian-vector products
   of the layers (``net.jvp``; :mod:`minikfac.curvature.quadratic_model`), with the
   momentum kept in [0, ``max_momentum``], and shrunk if needed so that its
   predicted KL divergence ½δᵀFδ is at most ``kl_per_example`` × B × V (V
   output variables per example), a trust region whose radius grows with the
   batch. Or (``update="kl_clip"``, Ba et
   al. 2017, §5): δ = μδ₀ + lr·ν·Δ with ν = min(1, sqrt(κ / (lr² |∇hᵀΔ|))).
5. **Guard**: the objective h is evaluated again on the n rows at θ + δ. The
   step is refused — parameters, factors, inverses and δ₀ left exactly as they
   were, λ multiplied by :data:`REFUSED_DAMPING_FACTOR`, ``refused`` counted —
   when the statistics, the inverses, the model's numbers, θ + δ or the new h
   are not finite, or when h rose by more than the model promised it would
   fall (ρ < −1 below, beyond rounding: :func:`quadratic_model.far_above_promise`).
6. **Damping** (``adapt_damping``, Martens & Grosse 2015, §6.5): each step's reduction ratio
   ρ = (h(θ+δ) − h(θ)) / M_h(δ) (M_h: the model without λ) comes free from the
   guard; every ``damping_interval`` = T₁ steps the ratio of the summed actual
   and predicted changes of those steps drives λ by the Levenberg–Marquardt
   rule with ω₁ = (19/20)^T₁, never below ``min_damping``.

Host syncs: the model's numbers, the new objective, and one more at an
inverse step — decisions on the host that a first-order step does not need.
"""

import math
from typing import ClassVar

import numpy as np

from minikfac import backend, threads
from minikfac.curvature import quadratic_model, running_average, statistics
from minikfac.curvature.params import augmented_matrix, parametrised_layers, split_augmented
from minikfac.nn.loss import Loss
from minikfac.optim import kfac_state
from minikfac.optim.kfac_state import MAX_DAMPING, layer_state_names
from minikfac.optim.optimizer import (Optimizer, check_batch, choice, flag, fraction, nonnegative, nonnegative_int,
                                       optional, positive, positive_int, unit_interval)

#: λ is multiplied by this when a step is refused.
REFUSED_DAMPING_FACTOR = 10.0
#: Factored damping's inverses are formed again when λ + η has moved by more than this factor since
#: (α absorbs smaller moves). The preconditioner must follow λ: with 4 instead of 2 the autoencoder
#: needed 560 steps to its race target instead of 290.
REFORM_FACTOR = 2.0
UPDATES = ("quadratic", "kl_clip")
PRECONDITIONERS = ("kfac", "ekfac")


class KFAC(Optimizer):
    """K-FAC (Martens & Grosse 2015) for every Linear and Conv2d layer of ``net``; see the module docstring.

    Parameters
    ----------
    net : Module whose parametrised layers are Linear / Conv2d (KFC for conv).
    loss_fn : the net's loss (CrossEntropyLoss, MSELoss, BCEWithLogitsLoss): it
        samples targets, and its output Hessian gives the quadratic model.
    damping : initial λ > 0 (adapted by the LM rule when ``adapt_damping``).
    min_damping : the LM rule never takes λ below this (a trust region that
        stays; docs/design.md, "K-FAC's defaults", says which run set it).
    weight_decay : η >= 0, an L2 term (η/2)‖θ‖² in the objective h: added to the
        gradient and to the damping (Martens & Grosse 2015, §6.2).
    update : "quadratic" (α and μ from the quadratic model, Martens & Grosse 2015, §7) or
        "kl_clip" (Ba et al. 2017: ``lr``, ``momentum``, ``kl_clip``).
    lr, momentum : step size and momentum of "kl_clip" only (defaults 0.1 and
        0.9 there; must be None with "quadratic", which chooses both).
    kl_clip : κ > 0, the bound on lr²·|∇hᵀΔ| of "kl_clip".
    max_momentum : the quadratic update's μ is kept in [0, max_momentum] (its
        α then minimises the model for that μ): on a few dozen examples the
        unconstrained μ swings from −2 to +1.8 (docs/design.md).
    kl_per_example : the quadratic update's trust region: its step is scaled
        down so that ½δᵀFδ (F the exact Fisher of the statistics rows: the
        predicted KL divergence between the outputs before and after, nats per
        example) is at most ``kl_per_example`` × B × V for a batch of B, V the
        output variables of one example (:meth:`kl_bound`). The radius grows
        with B as the gradient's noise shrinks (docs/design.md).
    kind : cotangents of the statistics: "mc" (``samples`` targets sampled
        from the model: the true Fisher, Martens & Grosse 2015, §5), "true" (exact expectation
        over the outputs; D_out backward passes), "empirical" (the data labels:
        the empirical Fisher) or "ggn".
    samples : targets per example for "mc".
    stats_fraction : fraction of each batch (its first rows) used for the
        statistics, the quadratic model and the guard, in (0, 1].
    min_stats_examples : but never fewer rows than this (or the whole batch;
        :meth:`statistics_examples`): the quadratic model's curvature needs
        them, even where the running averages would not (docs/design.md).
    factor_decay : the EMA's ε in [0, 1) (with the warm start min(1 − 1/k, ε)).
    inverse_interval : T, steps between two refreshes of the inverses (Martens & Grosse's T₃).
    adapt_damping : adapt λ by the LM rule (default: with update="quadratic"
        only; with "kl_clip" the step size comes from lr and ν, not from the
        model, and the rule would push λ up to make up for lr — Ba et al. keep
        λ fixed); damping_interval : T₁, every T₁ steps.
    factored : factored Tikhonov damping with π (True, K-FAC's default) or exact
        (False). Not for EKFAC, whose damping is exact in its eigenbasis (None
        picks the right one).
    preconditioner : "kfac" or "ekfac" (George et al. 2018).
    seed : seeds the sampled targets (step k draws from seed and k, so a
        resumed run samples the same targets).

    Attributes
    ----------
    layers : the parametrised layers, in network order.
    damping : the current λ (float).
    refused : number of refused steps.
    last : dict of the last step's numbers: ``alpha``, ``mu``, ``model_change``
        (M(δ)), ``loss_change`` (h(θ+δ) − h(θ) on the statistics rows),
        ``rho`` (their ratio without λ, :func:`quadratic_model.reduction_ratio`),
        ``rho_interval`` (the ratio over the last T₁ steps that set λ; None
        between), ``kl`` (½δᵀFδ, the step's predicted KL divergence), ``damping``, ``refused`` (False, or why: "not finite",
        "above the promise") and ``refreshed`` (the inverses were formed).
    state : {layer index: {name: array}} and ``"global"``: the layout of
        :mod:`.kfac_state` (the running averages of A and G, :meth:`factors`;
        the inverses or eigendecompositions; EKFAC's s; δ₀ as a W̄ matrix).
    """

    #: K-FAC's step needs the batch (``step(X, y)``); first-order optimizers do not.
    needs_batch = True
    hyper_rules: ClassVar[dict] = {
        "damping": positive, "min_damping": positive, "weight_decay": nonnegative,
        "update": choice(UPDATES), "lr": optional(positive), "momentum": optional(unit_interval),
        "kl_clip": positive, "max_momentum": unit_interval, "kl_per_example": positive,
        "kind": choice(statistics.KINDS), "samples": positive_int, "stats_fraction": fraction,
        "min_stats_examples": positive_int, "factor_decay": unit_interval, "inverse_interval": positive_int,
        "adapt_damping": flag, "damping_interval": positive_int, "factored": flag,
        "preconditioner": choice(PRECONDITIONERS), "seed": nonnegative_int,
    }

    def __init__(self, net, loss_fn, damping=0.01, min_damping=1e-3, weight_decay=0.0, update="quadratic", lr=None,
                 momentum=None, kl_clip=1e-3, max_momentum=0.9, kl_per_example=6e-4, kind="mc", samples=1, stats_fraction=0.125,
                 min_stats_examples=128, factor_decay=0.95, inverse_interval=20, adapt_damping=None,
                 damping_interval=5, factored=None, preconditioner="kfac", seed=0):
        if not isinstance(loss_fn, Loss):
            raise TypeError(f"KFAC: loss_fn must be the net's loss (a minikfac.nn.Loss such as CrossEntropyLoss), "
                            f"got {type(loss_fn).__name__}")
        self.layers = parametrised_layers(net)
        self.net, self.loss_fn = net, loss_fn
        if factored is None:
            factored = preconditioner == "kfac"
        if adapt_damping is None:
            adapt_damping = update == "quadratic"
        if update == "kl_clip":
            lr = 0.1 if lr is None else lr
            momentum = 0.9 if momentum is None else momentum
        super().__init__(net.parameters(), damping=damping, min_damping=min_damping, weight_decay=weight_decay,
                         update=update, lr=lr, momentum=momentum, kl_clip=kl_clip, max_momentum=max_momentum,
                         kl_per_example=kl_per_example,
                         kind=kind, samples=samples, stats_fraction=stats_fraction,
                         min_stats_examples=min_stats_examples, factor_decay=factor_decay,
                         inverse_interval=inverse_interval, adapt_damping=adapt_damping,
                         damping_interval=damping_interval, factored=factored, preconditioner=preconditioner,
                         seed=seed)
        self.state["global"] = {"damping": self.hyper["damping"], "refused": 0, "inverse_damping": 0.0,
                                "actual_change": 0.0, "predicted_change": 0.0}
        self.last = {}

    def _check_hyper(self, hyper):
        hyper = super()._check_hyper(hyper)
        if hyper["update"] == "quadratic" and (hyper["lr"] is not None or hyper["momentum"] is not None):
            raise ValueError("KFAC: lr and momentum apply to update='kl_clip' only; update='quadratic' chooses "
                             f"the step size and momentum from its quadratic model, got lr={hyper['lr']!r}, "
                             f"momentum={hyper['momentum']!r}")
        if hyper["min_damping"] > hyper["damping"]:
            raise ValueError(f"KFAC: min_damping={hyper['min_damping']!r} is above damping={hyper['damping']!r}")
        if hyper["preconditioner"] == "ekfac" and hyper["factored"]:
            raise ValueError("KFAC: factored=True applies to preconditioner='kfac' only; EKFAC's damping is "
                             "exact Tikhonov in its eigenbasis (leave factored=None)")
        return hyper

    @property
    def damping(self):
        """The current Levenberg–Marquardt damping λ (``hyper["damping"]`` is only its starting value).

        Setting it (``opt.damping = 0.1``) replaces the current λ, checked like
        ``damping``; the LM rule adapts it from there.
        """
        return self.state["global"]["damping"]

    @damping.setter
    def damping(self, value):
        if positive("KFAC", "damping", value) > MAX_DAMPING:
            raise ValueError(f"KFAC: damping must be at most {MAX_DAMPING:g}, got {value!r}")
        self.state["global"]["damping"] = float(value)

    def _hyper_changed(self, name, value):  # hyper["damping"] = x sets the current λ too
        if name == "damping":
            self.damping = value

    @property
    def refused(self):
        """How many steps were refused."""
        return self.state["global"]["refused"]

    def statistics_examples(self, batch_size):
        """n, how many of a batch's rows (its first) feed the statistics, the quadratic model and the guard.

        ``stats_fraction`` of the batch, but at least ``min_stats_examples``
        (or the whole batch if it is smaller): the model's curvature needs
        enough examples to choose α and μ (an eighth, at least 128, by default).
        """
        wanted = max(math.ceil(self.hyper["stats_fraction"] * batch_size), self.hyper["min_stats_examples"])
        return min(batch_size, wanted)

    # ------------------------------------------------------------------ #
    # One step
    # ------------------------------------------------------------------ #
    def step(self, X, y):
        """One K-FAC update of every parameter from its ``.grad`` on the batch (X, y); see the module docstring.

        X : (N, ...) the batch the gradients were computed on; y : its targets.
        Returns the update's diagnostics (also in ``self.last``). The
        parameters' ``.grad`` are left as they were. Runs with one BLAS
        thread (:func:`minikfac.threads.for_step`): its products are small.
        """
        check_batch("KFAC.step", X, y)
        for index, layer in enumerate(self.layers):
            self._check_placement(index, layer.weight.data)
        with threads.for_step():
            return self._step(X, y)

    def _step(self, X, y):
        k = self.steps + 1
        eta = self.hyper["weight_decay"]
        damping = self.damping + eta  # γ² = λ + η
        gradients = self._gradients(eta)
        batch_size = X.shape[0]
        n = self.statistics_examples(batch_size)
        X, y = X[:n], y[:n]
        # Steps 1–3 and the model's numbers need the layers' caches of the statistics pass (net.jvp reads them).
        with statistics.one_pass(self.net, self.loss_fn, X, y, self.hyper["kind"], self.hyper["samples"],
                                 self._step_seed(k)) as chunk:
            tentative, finite = kfac_state.with_statistics(self.state, chunk, self._decay(k))  # 1. statistics
            refresh = self._needs_refresh(k, damping)  # 2. inverses
            if refresh and not (bool(finite) and kfac_state.refresh(tentative, damping, self._preconditioning())):
                return self._refuse("not finite")
            formed = damping if refresh else self.state["global"]["inverse_damping"]
            if self.hyper["preconditioner"] == "ekfac":
                kfac_state.update_scalings(tentative, chunk, self._decay(k), first=k == 1)
            directions = [self._directions(index, entry, grad, damping)  # 3. proposal Δ (and δ₀)
                          for index, (entry, grad) in enumerate(zip(tentative, gradients))]
            terms = quadratic_model.model_terms(self.net, self.loss_fn, self.layers, directions, gradients,
                                                chunk.output if self._with_model() else None)
            numbers = quadratic_model.model_numbers(*terms, self._objective(X, y, chunk.output), finite)
            outputs = chunk.output.shape[1]
        coefficients = self._coefficients(numbers, damping, self.kl_bound(batch_size, outputs))  # 4. α, μ
        if coefficients is None:
            return self._refuse("not finite")
        update = self._combine(coefficients, directions)
        candidates = [self._moved(layer, delta) for layer, delta in zip(self.layers, update)]
        h_after = self._objective_at(candidates, X, y)  # 5. the guard
        predicted = quadratic_model.predicted_change(numbers, coefficients, eta)
        actual = h_after - numbers.objective
        if not math.isfinite(h_after):  # also catches non-finite parameters: NaN·0 is NaN, so they reach h
            return self._refuse("not finite")
        if quadratic_model.far_above_promise(actual, predicted, numbers.objective):
            return self._refuse("above the promise")
        self._commit(candidates, tentative, update, formed)
        self.steps = k
        rho_interval = self._adapt_damping(k, actual, predicted)  # 6. damping
        self.last = {"alpha": float(coefficients[0]), "mu": float(coefficients[1]) if len(coefficients) > 1 else 0.0,
                     "model_change": quadratic_model.model_change(numbers, coefficients, damping),
                     "loss_change": actual,
                     "rho": None if predicted is None
                     else quadratic_model.reduction_ratio(numbers.objective, h_after, predicted),
                     "rho_interval": rho_interval, "kl": quadratic_model.predicted_kl(numbers, coefficients),
                     "damping": self.damping, "refused": False, "refreshed": refresh}
        return self.last

    # -- statistics and inverses ------------------------------------------ #
    def _step_seed(self, k):
        """A seed for step k's sampled targets, from (seed, k): resumed runs draw the same targets."""
        return int(np.random.SeedSequence([self.hyper["seed"], k]).generate_state(1)[0])

    def _gradients(self, eta):
        """∇h per layer as W̄ matrices (D_out, D_in + 1): the gradient plus η·W̄ (new arrays)."""
        gradients = []
        for index, layer in enumerate(self.layers):
            try:
                grad = augmented_matrix(layer, "grad")
            except ValueError:
                raise ValueError(f"KFAC.step: layer {index} ({layer!r}) has no gradient; run net.backward(...) "
                                 "on the batch before step(X, y)") from None
            gradients.append(grad + eta * augmented_matrix(layer, "data") if eta else grad)
        return gradients

    def _decay(self, k):
        """ε_k = min(1 − 1/k, factor_decay): the running averages' weight on the past at step k (Martens & Grosse 2015, §5)."""
        return min(1.0 - 1.0 / k, self.hyper["factor_decay"])

    def factors(self, index):
        """The running averages (A, G) of layer ``index`` up to the last step, (D_in + 1, D_in + 1) and
        (D_out, D_out), brought up to date without changing the state (see :mod:`.running_average`); copies."""
        entry = self.state[index]
        return tuple(backend.get_array_module(entry["A"]).array(running_average.current(entry, name), copy=True)
                     for name in ("A", "G"))

    def _needs_refresh(self, k, damping):
        """Form the inverses (or eigendecompositions) at this step? Every T steps, at the first step, and
        for factored damping also when λ + η moved by more than :data:`REFORM_FACTOR` since the last ones."""
        if (k - 1) % self.hyper["inverse_interval"] == 0 or 0 not in self.state:
            return True
        formed = self.state["global"]["inverse_damping"]
        return self._preconditioning() == "factored" and not (formed > 0 and 1 / REFORM_FACTOR <= damping / formed <= REFORM_FACTOR)

    def _preconditioning(self):
        """How the preconditioner is formed: "factored" (factored damping's inverses), "eigen" (the factors'
        eigendecompositions, exact damping) or "ekfac" (those and EKFAC's scalings)."""
        if self.hyper["preconditioner"] == "ekfac":
            return "ekfac"
        return "factored" if self.hyper["factored"] else "eigen"

    def _directions(self, index, entry, grad, damping):
        """The layer's directions stacked, (K, D_out, D_in + 1): the proposal Δ, and δ₀ if there is one.

        One array for both, so that the quadratic model reads them as one (K, P_l) matrix.
        """
        previous = self.state.get(index, {}).get("update")
        xp = backend.get_array_module(grad)
        stacked = xp.empty((1 if previous is None else 2,) + tuple(grad.shape), dtype=grad.dtype)
        kfac_state.precondition(entry, grad, damping, out=stacked[0])
        if previous is not None:
            stacked[1] = previous
        return stacked

    # -- the quadratic model ------------------------------------------------ #
    def _with_model(self):
        """The model's Fisher term is needed by the quadratic update and by ρ (the damping's rule)."""
        return self.hyper["update"] == "quadratic" or self.hyper["adapt_damping"]

    def _coefficients(self, numbers, damping, kl_bound):
        """(α, μ) (or (α,)) as a float64 array from the host numbers; None if they are not finite.

        The quadratic update's (α, μ) are then scaled down, if needed, so that the step's predicted
        KL divergence is at most ``kl_bound`` (:meth:`kl_bound`, :func:`quadratic_model.within_kl`).
        """
        if not numbers.finite:
            return None
        count = numbers.b.shape[0]
        if not numbers.b[0] < 0:  # ∇hᵀΔ = −∇hᵀ(F̂ + γ²)⁻¹∇h < 0 unless ∇h = 0 (up to rounding): stay put
            return np.zeros(count)
        if self.hyper["update"] == "quadratic":
            curvature = numbers.fisher + damping * numbers.dots
            if not curvature[0, 0] > 0:
                return None
            coefficients = quadratic_model.solve_step(curvature, numbers.b, self.hyper["max_momentum"])[0]
            return quadratic_model.within_kl(coefficients, numbers.fisher, kl_bound)
        lr, momentum = self.hyper["lr"], self.hyper["momentum"]
        nu = quadratic_model.kl_clip_scale(self.hyper["kl_clip"], lr, numbers.b[0])
        return np.array([lr * nu, momentum][:count])

    def kl_bound(self, batch_size, outputs):
        """The quadratic update's trust region: the largest ½δᵀFδ (a mean KL divergence per example).

        ``kl_per_example`` × B × V for a batch of B examples whose network
        outputs have ``outputs`` (D_out) numbers: V = 1 for a class label, D_out
        for MSE's or BCE's independent outputs (:meth:`minikfac.nn.Loss.output_variables`).
        The bound grows by ``kl_per_example`` (times V) with every example of the batch.
        """
        return self.hyper["kl_per_example"] * batch_size * self.loss_fn.output_variables(outputs)

    # -- the guard, the commit, the damping --------------------------------- #
    def _objective(self, X, y, out=None):
        """h = L + (η/2)‖θ‖² on (X, y) as a 0-d device array; ``out``: the net's output there if known.

        Without ``out`` the net runs in eval mode (no caches touched).
        """
        if out is None:
            with self.net.mode(training=False):
                out = self.net(X)
        value = backend.get_array_module(out).mean(self.loss_fn.per_example(out, y))
        eta = self.hyper["weight_decay"]
        if eta:
            xp = backend.get_array_module(value)
            value = value + 0.5 * eta * sum(xp.vdot(p.data, p.data) for p in self.params)
        return value

    @staticmethod
    def _combine(coefficients, directions):
        """δ = αΔ + μδ₀ per layer, written into the stacked directions (they are not needed after)."""
        update = []
        for stacked in directions:
            delta = stacked[0]
            delta *= float(coefficients[0])  # Python floats: a NumPy float64 would promote float32 arrays
            if len(coefficients) > 1 and coefficients[1]:
                stacked[1] *= float(coefficients[1])
                delta += stacked[1]
            update.append(delta)
        return update

    @staticmethod
    def _moved(layer, delta):
        """The layer's (weight, bias) moved by ``delta`` (a W̄ matrix), as new arrays (bias None without one)."""
        weight, bias = split_augmented(layer, delta)
        return layer.weight.data + weight, None if bias is None else layer.bias.data + bias

    def _objective_at(self, candidates, X, y):
        """h on (X, y) with every layer's (weight, bias) set to ``candidates``, as a host float (one
        device sync). The parameters' own arrays are put back afterwards, untouched."""
        saved = [(p, p.data) for p in self.params]
        try:
            for layer, (weight, bias) in zip(self.layers, candidates):
                layer.weight.data = weight
                if bias is not None:
                    layer.bias.data = bias
            value = self._objective(X, y)
        finally:
            for p, data in saved:
                p.data = data
        return float(backend.to_numpy(value.astype(backend.get_array_module(value).float64)))

    def _commit(self, candidates, tentative, update, formed):
        """Write the candidates into the parameters, the tentative state into the state; ``formed``:
        the damping the inverses in use were formed with."""
        for index, (layer, (weight, bias), entry, delta) in enumerate(zip(self.layers, candidates, tentative,
                                                                           update)):
            layer.weight.data[...] = weight
            if bias is not None:
                layer.bias.data[...] = bias
            entry["update"] = delta
            self.state[index] = entry
        self.state["global"]["inverse_damping"] = formed

    def _refuse(self, reason):
        """Leave everything as it was, raise λ; see the module docstring, step 5."""
        glob = self.state["global"]
        glob["damping"] = min(glob["damping"] * REFUSED_DAMPING_FACTOR, MAX_DAMPING)
        glob["refused"] += 1
        self.last = {"alpha": None, "mu": None, "model_change": None, "loss_change": None, "rho": None,
                     "rho_interval": None, "kl": None, "damping": glob["damping"], "refused": reason, "refreshed": False}
        return self.last

    def _adapt_damping(self, k, actual, predicted):
        """Add this step's changes to the interval's sums; every T₁ steps, the LM rule (Martens & Grosse 2015, §6.5) on
        their ratio. Returns that ratio, or None between updates of λ."""
        glob = self.state["global"]
        if not self.hyper["adapt_damping"] or predicted is None:
            return None
        glob["actual_change"] += actual
        glob["predicted_change"] += predicted
        if k % self.hyper["damping_interval"]:
            return None
        rho = quadratic_model.reduction_ratio(0.0, glob["actual_change"], glob["predicted_change"])
        decay = quadratic_model.damping_decay(self.hyper["damping_interval"])
        new = quadratic_model.levenberg_marquardt(glob["damping"], rho, decay)
        glob["damping"] = min(max(new, self.hyper["min_damping"]), MAX_DAMPING)
        glob["actual_change"] = glob["predicted_change"] = 0.0
        return rho

    # -- checkpoints: the layout of :mod:`.kfac_state` ----------------------- #
    def _load_state_entry(self, key, name, value):
        if key == "global":
            return kfac_state.checked_global(type(self).__name__, name, value)
        return kfac_state.checked_layer_entry(type(self).__name__, self.layers, key, name, value)

    def load_state_dict(self, state_dict):
        """Restore from :meth:`state_dict`'s output; everything is checked before anything changes.

        Besides the base class's checks: the ``"global"`` entry must hold every
        name of :data:`.kfac_state.GLOBAL_STATE`, and the layers' state must be
        all or nothing (a checkpoint of step 0 has none), each layer with
        exactly the entries of :func:`.kfac_state.layer_state_names` for the
        checkpoint's settings (:func:`.kfac_state.check_complete`).
        """
        if isinstance(state_dict, dict) and state_dict.get("type") == type(self).__name__ \
                and set(state_dict.get("hyper", {})) == set(self.hyper):  # else the base class says what is wrong
            wanted = layer_state_names(self._check_hyper(dict(state_dict["hyper"])))
            kfac_state.check_complete(type(self).__name__, self.layers, state_dict.get("state", {}), wanted)
        return super().load_state_dict(state_dict)
