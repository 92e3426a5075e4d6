"""K-FAC, the optimizer: natural-gradient steps through Kronecker-factored curvature.

Martens & Grosse 2015 (M&G), *Optimizing neural networks with Kronecker-factored
approximate curvature*; Grosse & Martens 2016 (KFC, convolutions); Ba, Grosse &
Martens 2017 (KL-clipping); George et al. 2018 (EKFAC). One step, for a batch
(X, y) whose gradient ∇L is already in the parameters' ``.grad``:

1. **Statistics** (M&G §5). The first n rows of the batch (``stats_fraction``,
   at least ``min_stats_examples``) go forward once more and back with
   cotangents of ``kind``: targets *sampled from the model* ("mc", the true
   Fisher; the default), every output weighted by its probability ("true"),
   the data labels ("empirical" — the empirical Fisher, a different matrix;
   Kunstner et al. 2019) or the GGN ("ggn"). Each layer's A = E[ā āᵀ] and
   G = E[g gᵀ] come from its caches (:func:`minikfac.curvature.factors.chunk_factor_sums`)
   and enter exponential moving averages A ← εA + (1−ε)A_new, ε = min(1 − 1/k, ``factor_decay``).
2. **Inverses** (M&G §8), every ``inverse_interval`` = T steps, and also as
   soon as λ has moved by more than a factor :data:`REFORM_FACTOR` since the
   last ones (after a refused step, say). Factored damping (the default) needs
   only the damped factors' inverses, (A + πγI)⁻¹ and (G + γ/π I)⁻¹, from a
   Cholesky factorisation (:func:`minikfac.curvature.damping.factored_inverses`,
   π = sqrt((tr A / n)/(tr G / m)), M&G §6.3). Exact damping and EKFAC need
   the eigendecompositions A = U_A diag(a) U_Aᵀ, G = U_G diag(g) U_Gᵀ.
3. **Proposal** Δ_l = −(damped F̂_l)⁻¹ ∇h_l per layer, γ² = λ + η:

   - factored Tikhonov damping (M&G §6.3, default): Δ = −(G + γ/π I)⁻¹ ∇W̄ (A + πγ I)⁻¹;
   - exact Tikhonov damping (``factored=False``): −(A ⊗ G + γ²I)⁻¹ vec(∇W̄)
     = −U_G [(U_Gᵀ ∇W̄ U_A) / (g aᵀ + γ²)] U_Aᵀ;
   - EKFAC (``preconditioner="ekfac"``): the same with g aᵀ replaced by s, the
     second moments of the per-example gradients in the eigenbasis, averaged
     like A and G.

   γ² = λ + η: the LM damping λ plus the weight decay η (M&G §6.2, §6.6).
4. **Update** (``update="quadratic"``, M&G §7): δ = αΔ + μδ₀ (δ₀ the previous
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
6. **Damping** (``adapt_damping``, M&G §6.5): each step's reduction ratio
   ρ = (h(θ+δ) − h(θ)) / M_h(δ) (M_h: the model without λ) comes free from the
   guard; every ``damping_interval`` = T₁ steps the ratio of the summed actual
   and predicted changes of those steps drives λ by the Levenberg–Marquardt
   rule with ω₁ = (19/20)^T₁, never below ``min_damping``.

Host syncs. The step reads a few scalars back from the device twice (the
model's numbers with the statistics' finiteness; the new objective with the
candidate's finiteness), plus once at an inverse step: K-FAC makes decisions
on the host that a first-order step does not need.
"""

import math
import numbers
from typing import ClassVar

import numpy as np

from minikfac import backend, threads
from minikfac.curvature import damping as damping_rules
from minikfac.curvature import quadratic_model, running_average, statistics
from minikfac.curvature.ekfac import chunk_scaling_sums
from minikfac.curvature.factors import factor_counts, hessian_weighted, layer_input_factor_sum
from minikfac.curvature.linalg import psd_eigh
from minikfac.curvature.params import augmented_matrix, block_shape, has_bias, parametrised_layers, split_augmented
from minikfac.optim.optimizer import (
    Optimizer,
    choice,
    flag,
    fraction,
    nonnegative,
    nonnegative_int,
    optional,
    positive,
    positive_int,
    unit_interval,
)

#: λ is multiplied by this when a step is refused.
REFUSED_DAMPING_FACTOR = 10.0
#: λ never exceeds this (a run of refused steps cannot overflow it); the floor is ``min_damping``.
MAX_DAMPING = 1e8
#: Factored damping's inverses are formed again when λ + η has moved by more than this factor since
#: (α absorbs smaller moves). The preconditioner must follow λ: with 4 instead of 2 the autoencoder
#: needed 560 steps to its race target instead of 290.
REFORM_FACTOR = 2.0
UPDATES = ("quadratic", "kl_clip")
PRECONDITIONERS = ("kfac", "ekfac")
#: The per-layer state of each way of preconditioning (see :func:`layer_state_names`).
FACTORS = running_average.names("A") + running_average.names("G")
FACTORED_STATE = FACTORS + ("A_inverse", "G_inverse", "update")
EIGEN_STATE = FACTORS + ("a_eigs", "U_A", "g_eigs", "U_G", "update")
EKFAC_STATE = EIGEN_STATE[:-1] + ("scalings", "update")
#: The shape of every per-layer state array, in terms of W̄'s (m, n) = (D_out, D_in + 1).
#: ("*": any number of rows; "" a Python float, Q of :mod:`.running_average`.)
LAYER_STATE_SHAPES = {"A": "nn", "A_rows": "*n", "A_decay": "", "G": "mm", "G_rows": "*m", "G_decay": "",
                      "A_inverse": "nn", "G_inverse": "mm", "a_eigs": "n", "U_A": "nn", "g_eigs": "m", "U_G": "mm",
                      "scalings": "mn", "update": "mn"}
#: The optimizer-wide state: λ, refusals, the damping the inverses were formed with, and the sums behind ρ.
GLOBAL_STATE = ("damping", "refused", "inverse_damping", "actual_change", "predicted_change")


class KFAC(Optimizer):
    """K-FAC (Martens & Grosse 2015) for every Linear and Conv2d layer of ``net``; see the module docstring.

    Parameters
    ----------
    net : Module whose parametrised layers are Linear / Conv2d (KFC for conv).
    loss_fn : the net's loss (CrossEntropyLoss, MSELoss, BCEWithLogitsLoss): it
        samples targets, and its output Hessian gives the quadratic model.
    damping : initial λ > 0 (adapted by the LM rule when ``adapt_damping``).
    min_damping : the LM rule never takes λ below this. The rule judges a step
        on the rows it was computed on; as the loss nears its minimum it keeps
        shrinking λ, and steps that fit one batch blow up on the next (digits
        MLP at batch 64 diverged once λ < 1e-4). The floor keeps a trust region.
    weight_decay : η >= 0, an L2 term (η/2)‖θ‖² in the objective h: added to the
        gradient and to the damping (M&G §6.2).
    update : "quadratic" (α and μ from the quadratic model, M&G §7) or
        "kl_clip" (Ba et al. 2017: ``lr``, ``momentum``, ``kl_clip``).
    lr, momentum : step size and momentum of "kl_clip" only (defaults 0.1 and
        0.9 there; must be None with "quadratic", which chooses both).
    kl_clip : κ > 0, the bound on lr²·|∇hᵀΔ| of "kl_clip".
    max_momentum : the quadratic update's μ is kept in [0, max_momentum] (its
        α then minimises the model for that μ). On a few dozen examples the
        model's 2×2 system is noisy and its unconstrained μ swings to −2 or
        +1.8 from step to step; such steps amplify the previous update instead
        of averaging it, and digits MLP at batch 16 diverged.
    kl_per_example : the quadratic update's trust region: its step is scaled
        down so that ½δᵀFδ (F the exact Fisher of the statistics rows: the
        predicted KL divergence between the output distributions before and
        after, nats per example) is at most ``kl_per_example`` × B × V for a
        batch of B, V the output variables of one example
        (:meth:`kl_bound`: 1 for a class label, D_out for the autoencoder's
        Bernoulli pixels). The model fits its batch: on 16 examples of MNIST
        a step predicted to change the outputs by 0.3–2.3 nats and to remove
        more than the batch's loss, and the CNN drifted to 79% test accuracy;
        at batch 1024 steps change them by 0.18 at first, then 0.003–0.01.
        The radius grows with B as the gradient's noise shrinks (like
        KL-clipping, Ba et al. 2017, whose bound is fixed, and kfac-jax's
        norm constraint).
    kind : cotangents of the statistics: "mc" (``samples`` targets sampled
        from the model: the true Fisher, M&G §5), "true" (exact expectation
        over the outputs; D_out backward passes), "empirical" (the data labels:
        the empirical Fisher) or "ggn".
    samples : targets per example for "mc".
    stats_fraction : fraction of each batch (its first rows) used for the
        statistics, the quadratic model and the guard, in (0, 1].
    min_stats_examples : but never fewer rows than this (or the whole batch);
        see :meth:`statistics_examples`. The running averages of A and G
        would do with fewer; the quadratic model's curvature would not: with
        32 rows of a batch of 128, α and μ fitted those rows, and the MNIST
        MLPs ended at 89–94% test accuracy instead of 95–96%.
    factor_decay : the EMA's ε in [0, 1) (with the warm start min(1 − 1/k, ε)).
    inverse_interval : T, steps between two refreshes of the inverses (M&G's T₃).
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
    state : {layer index: {name: array}} with the names of
        :func:`layer_state_names` (A, G: the averaged factors, with the rows
        not yet folded in and their decay, see :mod:`.running_average` and
        :meth:`factors`; A_inverse,
        G_inverse: factored damping's inverses, or a_eigs, U_A, g_eigs, U_G:
        the eigendecompositions; scalings: EKFAC's s; update: δ₀ as a W̄
        matrix), plus ``"global"``: the floats of :data:`GLOBAL_STATE`.
    """

    #: K-FAC's step needs the batch (``step(X, y)``); first-order optimizers do not.
    needs_batch = True
    hyper_rules: ClassVar[dict] = {
        "damping": positive,
        "min_damping": positive,
        "weight_decay": nonnegative,
        "update": choice(UPDATES),
        "lr": optional(positive),
        "momentum": optional(unit_interval),
        "kl_clip": positive,
        "max_momentum": unit_interval,
        "kl_per_example": positive,
        "kind": choice(statistics.KINDS),
        "samples": positive_int,
        "stats_fraction": fraction,
        "min_stats_examples": positive_int,
        "factor_decay": unit_interval,
        "inverse_interval": positive_int,
        "adapt_damping": flag,
        "damping_interval": positive_int,
        "factored": flag,
        "preconditioner": choice(PRECONDITIONERS),
        "seed": nonnegative_int,
    }

    def __init__(self, net, loss_fn, damping=0.01, min_damping=1e-3, weight_decay=0.0, update="quadratic", lr=None,
                 momentum=None, kl_clip=1e-3, max_momentum=0.9, kl_per_example=6e-4, kind="mc", samples=1, stats_fraction=0.125,
                 min_stats_examples=128, factor_decay=0.95, inverse_interval=20, adapt_damping=None,
                 damping_interval=5, factored=None, preconditioner="kfac", seed=0):
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
        """The current Levenberg–Marquardt damping λ."""
        return self.state["global"]["damping"]

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
        for chunk in statistics.chunks(self.net, self.loss_fn, X, y, self.hyper["kind"], self.hyper["samples"],
                                     self._step_seed(k), chunk_size=n):
            tentative, finite = self._updated_statistics(chunk, k)
            refresh = self._needs_refresh(k, damping)
            if refresh and not (bool(finite) and self._refresh(tentative, damping)):
                return self._refuse("not finite")
            formed = damping if refresh else self.state["global"]["inverse_damping"]
            if self.hyper["preconditioner"] == "ekfac":
                self._update_scalings(tentative, chunk, k)
            directions = [self._directions(index, entry, grad, damping)
                          for index, (entry, grad) in enumerate(zip(tentative, gradients))]
            terms = self._model_terms(chunk if self._with_model() else None, directions, gradients)
            h_before = self._objective(X, y, chunk.output)
        numbers = quadratic_model.model_numbers(*terms, h_before, finite)
        coefficients = self._coefficients(numbers, damping, self.kl_bound(batch_size, chunk.output.shape[1]))
        if coefficients is None:
            return self._refuse("not finite")
        update = self._combine(coefficients, directions)
        candidates = [self._moved(layer, delta) for layer, delta in zip(self.layers, update)]
        h_after = self._objective_at(candidates, X, y)
        predicted = quadratic_model.predicted_change(numbers, coefficients, eta)
        actual = h_after - numbers.objective
        if not math.isfinite(h_after):  # also catches non-finite parameters: NaN·0 is NaN, so they reach h
            return self._refuse("not finite")
        if quadratic_model.far_above_promise(actual, predicted, numbers.objective):
            return self._refuse("above the promise")
        self._commit(candidates, tentative, update, formed)
        self.steps = k
        rho_interval = self._adapt_damping(k, actual, predicted)
        self.last = {"alpha": float(coefficients[0]), "mu": float(coefficients[1]) if len(coefficients) > 1 else 0.0,
                     "model_change": quadratic_model.model_change(numbers, coefficients, damping), "loss_change": actual,
                     "rho": quadratic_model.reduction_ratio(numbers.objective, h_after, predicted) if predicted is not None
                     else None, "rho_interval": rho_interval, "kl": quadratic_model.predicted_kl(numbers, coefficients),
                     "damping": self.damping, "refused": False,
                     "refreshed": refresh}
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

    def _updated_statistics(self, chunk, k):
        """The per-layer state after this step's statistics (new dicts; ``self.state`` is untouched),
        and a 0-d device bool: were the new statistics finite?

        The running averages of A and G take this step's rows through :mod:`.running_average`, which
        folds them in when the averages are read (:meth:`_refresh`) or the rows would outnumber them.
        """
        decay = self._decay(k)
        xp = backend.get_array_module(chunk.output)
        checks, entries = [], []
        for index, (stats, counts) in enumerate(zip(chunk.layers, factor_counts(chunk.stop - chunk.start, chunk))):
            entry = dict(self.state.get(index, {}))
            # A from ā: its rows kept while they are fewer than D_in + 1, else summed at once without ā.
            rows, width = stats.raw.size // stats.raw.shape[-1], stats.raw.shape[-1] + has_bias(stats.layer)
            if "A" in entry and running_average.keeps_rows(rows, width):
                checks.append(running_average.add_rows(entry, "A", stats.inputs.reshape(rows, width), counts[0], decay))
            else:
                checks.append(running_average.add_sum(entry, "A", layer_input_factor_sum(stats), counts[0], decay))
            grads = stats.grads.reshape(-1, stats.grads.shape[-1])  # g rows, (K·n·L, D_out)
            if chunk.output_hessian is None:
                checks.append(running_average.add_rows(entry, "G", grads, counts[1], decay))
            else:  # the GGN's G = Σ g (H g)ᵀ, not a Gram matrix: summed at once
                right = hessian_weighted(stats.grads, chunk.output_hessian).reshape(grads.shape)
                checks.append(running_average.add_sum(entry, "G", grads.T @ right, counts[1], decay))
            entries.append(entry)
        # Each add returns a number that is finite only if what it stored is (running_average.py).
        return entries, xp.all(xp.isfinite(xp.stack(checks)))

    def _decay(self, k):
        """ε_k = min(1 − 1/k, factor_decay): the running averages' weight on the past at step k (M&G §5)."""
        return min(1.0 - 1.0 / k, self.hyper["factor_decay"])

    def factors(self, index):
        """The running averages (A, G) of layer ``index`` up to the last step, (D_in + 1, D_in + 1) and
        (D_out, D_out), brought up to date without changing the state (see :mod:`.running_average`); copies."""
        entry = self.state[index]
        return tuple(backend.get_array_module(entry["A"]).array(running_average.current(entry, name), copy=True)
                     for name in ("A", "G"))

    def _update_scalings(self, entries, chunk, k):
        """EKFAC's s ← εs + (1−ε)s_new, s_new = diag(Qᵀ F_l Q) of the chunk in the current eigenbasis Q."""
        decay = self._decay(k)
        for entry, stats in zip(entries, chunk.layers):
            s_new = chunk_scaling_sums(stats, chunk.output_hessian, entry["U_A"], entry["U_G"])
            s_new = s_new / (chunk.stop - chunk.start)  # a mean over examples only
            entry["scalings"] = decay * entry["scalings"] + (1 - decay) * s_new if k > 1 else s_new

    def _needs_refresh(self, k, damping):
        """Form the inverses (or eigendecompositions) at this step? Every T steps, at the first step, and
        for factored damping also when λ + η moved by more than :data:`REFORM_FACTOR` since the last ones."""
        if (k - 1) % self.hyper["inverse_interval"] == 0 or 0 not in self.state:
            return True
        formed = self.state["global"]["inverse_damping"]
        return self._factored() and not (formed > 0 and 1 / REFORM_FACTOR <= damping / formed <= REFORM_FACTOR)

    def _factored(self):
        """Whether the preconditioner uses factored damping's inverses (else the eigendecompositions)."""
        return layer_state_names(self.hyper) is FACTORED_STATE

    def _refresh(self, entries, damping):
        """Form every layer's inverses or eigendecompositions into ``entries`` (after folding the kept rows
        into the averages); False if an inverse could not be formed (factored damping; the statistics'
        finiteness is checked before, for every way of preconditioning).

        EKFAC's scalings restart from K-FAC's eigenvalues in the new basis (George et al. 2018).
        """
        for entry in entries:
            running_average.fold(entry, "A")
            running_average.fold(entry, "G")
            if self._factored():
                inverses = damping_rules.factored_inverses(entry["A"], entry["G"], damping)
                if inverses is None:
                    return False
                entry["A_inverse"], entry["G_inverse"] = inverses
                continue
            entry["a_eigs"], entry["U_A"] = psd_eigh(entry["A"])
            entry["g_eigs"], entry["U_G"] = psd_eigh(entry["G"])
            if self.hyper["preconditioner"] == "ekfac":
                entry["scalings"] = entry["g_eigs"][:, None] * entry["a_eigs"][None, :]
        return True

    def _directions(self, index, entry, grad, damping):
        """The layer's directions stacked, (K, D_out, D_in + 1): the proposal Δ, and δ₀ if there is one.

        One array for both, so that the quadratic model reads them as one (K, P_l) matrix.
        """
        previous = self.state.get(index, {}).get("update")
        xp = backend.get_array_module(grad)
        stacked = xp.empty((1 if previous is None else 2,) + tuple(grad.shape), dtype=grad.dtype)
        self._precondition(entry, grad, damping, out=stacked[0])
        if previous is not None:
            stacked[1] = previous
        return stacked

    def _precondition(self, entry, grad, damping, out):
        """Δ = −(damped F̂)⁻¹ ∇h for one layer (module docstring, step 3), written into ``out`` (D_out, D_in + 1)."""
        if "A_inverse" in entry:
            damping_rules.inverse_solve(entry["A_inverse"], entry["G_inverse"], grad, out=out)
        else:
            if self.hyper["preconditioner"] == "ekfac":
                denominator = entry["scalings"] + damping
            else:
                denominator = damping_rules.exact_denominator(entry["a_eigs"], entry["g_eigs"], damping)
            damping_rules.eigenbasis_solve(entry["U_A"], entry["U_G"], grad, denominator, out=out)
        xp = backend.get_array_module(grad)
        xp.negative(out, out=out)

    # -- the quadratic model ------------------------------------------------ #
    def _with_model(self):
        """The model's Fisher term is needed by the quadratic update and by ρ (the damping's rule)."""
        return self.hyper["update"] == "quadratic" or self.hyper["adapt_damping"]

    def _tangents(self, directions):
        """The stacked directions as parameter tangents for ``net.jvp``: {Parameter: (K, *shape)} (views)."""
        tangents = {}
        for layer, stacked in zip(self.layers, directions):  # (K, D_out, D_in + 1)
            tangents[layer.weight], bias = split_augmented(layer, stacked)
            if bias is not None:
                tangents[layer.bias] = bias
        return tangents

    def _model_terms(self, chunk, directions, gradients):
        """Device arrays (F (K, K) or None, dots (K, K), b (K,)) of the quadratic model.

        F_ij = (1/n) Σ_n (J_n d_i)ᵀ H_n (J_n d_j) on the statistics rows (the
        exact Fisher of those rows, through Jacobian-vector products; None
        without a chunk), dots_ij = d_iᵀ d_j, b_i = ∇hᵀ d_i.
        """
        xp = backend.get_array_module(gradients[0])
        rows = [stacked.reshape(stacked.shape[0], -1) for stacked in directions]  # (K, P_l) each
        dots = sum(d @ d.T for d in rows)
        b = sum(d @ g.reshape(-1) for d, g in zip(rows, gradients))
        fisher = None
        if chunk is not None:
            jvp = self.net.jvp(None, self._tangents(directions))  # (K, n, D_out)
            weighted = self.loss_fn.output_hessian_product(chunk.output, jvp)
            fisher = xp.einsum("knd,jnd->kj", jvp, weighted) / jvp.shape[1]
        return fisher, dots, b

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
        """Add this step's changes to the interval's sums; every T₁ steps, the LM rule (M&G §6.5) on
        their ratio. Returns that ratio, or None between updates of λ."""
        glob = self.state["global"]
        if not self.hyper["adapt_damping"] or predicted is None:
            return None
        glob["actual_change"] += actual
        glob["predicted_change"] += predicted
        if k % self.hyper["damping_interval"]:
            return None
        rho = quadratic_model.reduction_ratio(0.0, glob["actual_change"], glob["predicted_change"])
        decay = (19 / 20) ** self.hyper["damping_interval"]
        new = quadratic_model.levenberg_marquardt(glob["damping"], rho, decay)
        glob["damping"] = min(max(new, self.hyper["min_damping"]), MAX_DAMPING)
        glob["actual_change"] = glob["predicted_change"] = 0.0
        return rho

    # ------------------------------------------------------------------ #
    # Checkpoints: per-layer state keyed by layer index, plus "global"
    # ------------------------------------------------------------------ #
    def _load_state_entry(self, key, name, value):
        owner = type(self).__name__
        if key == "global":
            if name == "refused":
                valid = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
            else:
                valid = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and (
                    0 < value <= MAX_DAMPING if name == "damping" else value >= 0 if name == "inverse_damping" else True)
            if name not in GLOBAL_STATE or not valid:
                raise ValueError(f"{owner}.load_state_dict: state['global'][{name!r}] = {value!r} is not valid "
                                 f"(expected {list(GLOBAL_STATE)}: damping in (0, {MAX_DAMPING:g}], refused an integer >= 0, "
                                 "inverse_damping >= 0, the sums finite)")
            return int(value) if name == "refused" else float(value)
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < len(self.layers):
            raise ValueError(f"{owner}.load_state_dict: state key {key!r} is not 'global' or a layer index in "
                             f"[0, {len(self.layers)})")
        if name not in LAYER_STATE_SHAPES:
            raise ValueError(f"{owner}.load_state_dict: state[{key}] has unknown entry {name!r}, expected one of "
                             f"{list(LAYER_STATE_SHAPES)}")
        layer = self.layers[key]
        m, n = block_shape(layer)
        if not LAYER_STATE_SHAPES[name]:  # Q of a running average: a number in (0, 1]
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value <= 1:
                return float(value)
            raise ValueError(f"{owner}.load_state_dict: state[{key}][{name!r}] = {value!r}, expected a number in (0, 1]")
        expected = tuple({"n": n, "m": m, "*": value.shape[0] if backend.is_array(value) and value.ndim else -1}[axis]
                         for axis in LAYER_STATE_SHAPES[name])
        if not backend.is_array(value) or tuple(value.shape) != expected:
            got = tuple(value.shape) if backend.is_array(value) else type(value).__name__
            raise ValueError(f"{owner}.load_state_dict: state[{key}][{name!r}] has shape {got}, expected "
                             f"{expected} (layer {key}, {layer!r})")
        weight = layer.weight.data
        host = np.array(backend.to_numpy(value), dtype=weight.dtype, copy=True)
        return backend.asarray(host, backend=backend.backend_of(weight))

    def load_state_dict(self, state_dict):
        """Restore from :meth:`state_dict`'s output; everything is checked before anything changes.

        Besides the base class's checks: the ``"global"`` entry must hold every
        name of :data:`GLOBAL_STATE`, and the layers' state must be all or
        nothing (a checkpoint of step 0 has none), each layer with exactly the
        entries of :func:`layer_state_names` for the checkpoint's settings.
        """
        if not isinstance(state_dict, dict) or state_dict.get("type") != type(self).__name__ \
                or set(state_dict.get("hyper", {})) != set(self.hyper):
            return super().load_state_dict(state_dict)  # the base class says what is wrong
        saved = state_dict.get("state", {})
        if not isinstance(saved, dict) or not isinstance(saved.get("global"), dict) \
                or set(saved["global"]) != set(GLOBAL_STATE):
            raise ValueError(f"KFAC.load_state_dict: the checkpoint has no 'global' state with {list(GLOBAL_STATE)}")
        wanted = set(layer_state_names(self._check_hyper(dict(state_dict["hyper"]))))
        if any(key != "global" for key in saved):
            for index in range(len(self.layers)):
                entry = saved.get(index) or {}
                if set(entry) != wanted:
                    raise ValueError(f"KFAC.load_state_dict: state[{index}] is missing {sorted(wanted - set(entry))} "
                                     f"or has unknown {sorted(set(entry) - wanted)} (a checkpoint holds every "
                                     f"layer's {sorted(wanted)}, or no layer state at step 0)")
        return super().load_state_dict(state_dict)


def layer_state_names(hyper):
    """The names of each layer's state arrays for K-FAC's settings ``hyper`` (a dict like ``KFAC.hyper``):
    :data:`EKFAC_STATE`, :data:`FACTORED_STATE` (factored damping) or :data:`EIGEN_STATE` (exact damping)."""
    if hyper["preconditioner"] == "ekfac":
        return EKFAC_STATE
    return FACTORED_STATE if hyper["factored"] else EIGEN_STATE
