"""K-FAC, the optimizer: natural-gradient steps through Kronecker-factored curvature.

Martens & Grosse 2015 (M&G), *Optimizing neural networks with Kronecker-factored
approximate curvature*; Grosse & Martens 2016 (KFC, convolutions); Ba, Grosse &
Martens 2017 (KL-clipping); George et al. 2018 (EKFAC). One step, for a batch
(X, y) whose gradient ∇L is already in the parameters' ``.grad``:

1. **Statistics** (M&G §5). A subset of the batch (``stats_fraction``) goes
   forward once more and back with cotangents of ``kind``: targets *sampled from
   the model* ("mc", the true Fisher; the default), every output weighted by its
   probability ("true", exact enumeration), the data labels ("empirical" — the
   empirical Fisher, a different matrix; Kunstner et al. 2019) or the GGN
   ("ggn"). Each layer's A = E[ā āᵀ] and G = E[g gᵀ] come from its caches
   (:func:`minikfac.curvature.kfac.chunk_factor_sums`) and enter exponential
   moving averages A ← εA + (1−ε)A_new with ε = min(1 − 1/k, ``factor_decay``).
2. **Inverses** (M&G §8): every ``inverse_interval`` = T steps the averaged
   factors are eigendecomposed, A = U_A diag(a) U_Aᵀ, G = U_G diag(g) U_Gᵀ.
3. **Proposal** Δ_l = −(damped F̂_l)⁻¹ ∇h_l per layer, damped by γ² one of three ways, in the eigenbasis,
   vec⁻¹ of (U_A ⊗ U_G) D⁻¹ (U_A ⊗ U_G)ᵀ vec(∇W̄) = U_G [(U_Gᵀ ∇W̄ U_A) / D] U_Aᵀ, with

   - factored Tikhonov damping (M&G §6.3, default): D = (g + γ/π)(a + πγ)ᵀ,
     π = sqrt((tr A / n)/(tr G / m)), the factors damped separately;
   - exact Tikhonov damping (``factored=False``): D = g aᵀ + γ², i.e.
     (A ⊗ G + γ² I)⁻¹ exactly;
   - EKFAC (``preconditioner="ekfac"``): D = s + γ², s the second moments of the
     per-example gradients in the eigenbasis, averaged like A and G.

   γ² = λ + η: the LM damping λ plus the weight decay η (M&G §6.2, §6.6, where
   γ is tied to √(λ+η); their greedy search over γ is not done here).
4. **Update** (``update="quadratic"``, M&G §7): δ = αΔ + μδ₀ (δ₀ the previous
   update) minimising the quadratic model with the exact mini-batch Fisher,
   through Jacobian-vector products of the layers (``net.jvp``; see
   :mod:`minikfac.optim.quadratic`). Or (``update="kl_clip"``, Ba et al. 2017,
   §5): δ = μδ₀ + lr·ν·Δ with ν = min(1, sqrt(κ / (lr² |∇hᵀΔ|))), which bounds
   the step's predicted KL divergence by κ = ``kl_clip``.
5. **Guard**: if Δ, the model's numbers or θ + δ are not finite, the step is
   refused — parameters, factors, eigenbases and δ₀ stay as they were, λ is
   multiplied by :data:`REFUSED_DAMPING_FACTOR`, ``refused`` counts it.
6. **Damping** (``adapt_damping``, M&G §6.5): every ``damping_interval`` = T₁
   steps, ρ = (h(θ+δ) − h(θ)) / M(δ) on the batch drives λ by the
   Levenberg–Marquardt rule with ω₁ = (19/20)^T₁.

Host syncs. The step reads a few scalars back from the device once (the
quadratic model's numbers and the finiteness checks), plus once more for the
new parameters' check and, every T₁ steps, the two losses of ρ: K-FAC makes
decisions on the host that a first-order step does not need.
"""

import math
import numbers
import warnings
from typing import ClassVar

import numpy as np

from minikfac import backend
from minikfac.curvature import backprop
from minikfac.curvature.ekfac import chunk_scaling_sums
from minikfac.curvature.kfac import chunk_factor_sums, normalise_factor_sums
from minikfac.curvature.kron import eigh_factor
from minikfac.curvature.params import augmented_matrix, block_shape, has_bias, parametrised_layers
from minikfac.optim import quadratic
from minikfac.optim.optimizer import Optimizer, flag, nonnegative, positive, unit_interval

#: λ is multiplied by this when a step is refused for non-finite numbers.
REFUSED_DAMPING_FACTOR = 10.0
#: λ never exceeds this (a run of refused steps cannot overflow it); the floor is ``min_damping``.
MAX_DAMPING = 1e8
UPDATES = ("quadratic", "kl_clip")
#: Below this many examples per step the quadratic model warns (see :meth:`KFAC.statistics_examples`).
SMALL_MODEL_BATCH = 32
PRECONDITIONERS = ("kfac", "ekfac")
#: Names of the per-layer state arrays, in the order they are checked when loading.
LAYER_STATE = ("A", "G", "a_eigs", "U_A", "g_eigs", "U_G", "scalings", "update")


def _choice(options):
    def rule(owner, name, value):
        if value not in options:
            raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return rule


def _positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def _nonnegative_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: {name} must be an integer >= 0, got {value!r}")
    return int(value)


def _fraction(owner, name, value):
    value = positive(owner, name, value)
    if value > 1:
        raise ValueError(f"{owner}: {name} must be in (0, 1], got {value!r}")
    return value


def _optional(rule):
    return lambda owner, name, value: None if value is None else rule(owner, name, value)


class KFAC(Optimizer):
    """K-FAC (Martens & Grosse 2015) for every Linear and Conv2d layer of ``net``; see the module docstring.

    Parameters
    ----------
    net : Module whose parametrised layers are Linear / Conv2d (KFC for conv).
    loss_fn : the net's loss (CrossEntropyLoss, MSELoss, BCEWithLogitsLoss): it
        samples targets, and its output Hessian gives the quadratic model.
    damping : initial λ > 0 (adapted by the LM rule when ``adapt_damping``).
    min_damping : the LM rule never takes λ below this. The rule judges a step
        on the batch it was computed on; as the loss nears its minimum it keeps
        shrinking λ, and steps that fit one batch blow up on the next (digits
        MLP at batch 64 diverged once λ < 1e-4). The floor keeps a trust region.
    weight_decay : η >= 0, an L2 term (η/2)‖θ‖² in the objective h: added to the
        gradient and to the damping (M&G §6.2).
    update : "quadratic" (α and μ from the quadratic model, M&G §7) or
        "kl_clip" (Ba et al. 2017: ``lr``, ``momentum``, ``kl_clip``).
    lr, momentum : step size and momentum of "kl_clip" only (defaults 0.1 and
        0.9 there; must be None with "quadratic", which chooses both).
    kl_clip : κ > 0, the bound on lr²·|∇hᵀΔ| of "kl_clip".
    kind : cotangents of the statistics: "mc" (``samples`` targets sampled
        from the model: the true Fisher, M&G §5), "true" (exact expectation
        over the outputs; D_out backward passes), "empirical" (the data labels:
        the empirical Fisher) or "ggn".
    samples : targets per example for "mc".
    stats_fraction : fraction of each batch (its first rows) used for the
        statistics and the quadratic model, in (0, 1].
    min_stats_examples : but never fewer examples than this (or the whole
        batch); see :meth:`statistics_examples`.
    factor_decay : the EMA's ε in [0, 1) (with the warm start min(1 − 1/k, ε)).
    inverse_interval : T, steps between two eigendecompositions (M&G's T₃).
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
    last : dict of the last step's numbers (``alpha``, ``mu``, ``model_change``,
        ``rho``, ``damping``, ``refused``, ``refreshed``).
    state : {layer index: {name: array}} with the names of :data:`LAYER_STATE`
        (A, G (EMA factors), a_eigs, U_A, g_eigs, U_G (their eigendecompositions
        at the last refresh), scalings (EKFAC's s), update (δ₀ as a W̄ matrix)),
        plus ``"global"``: {"damping": λ, "refused": count}.
    """

    #: K-FAC's step needs the batch (``step(X, y)``); first-order optimizers do not.
    needs_batch = True
    hyper_rules: ClassVar[dict] = {
        "damping": positive,
        "min_damping": positive,
        "weight_decay": nonnegative,
        "update": _choice(UPDATES),
        "lr": _optional(positive),
        "momentum": _optional(unit_interval),
        "kl_clip": positive,
        "kind": _choice(backprop.KINDS),
        "samples": _positive_int,
        "stats_fraction": _fraction,
        "min_stats_examples": _positive_int,
        "factor_decay": unit_interval,
        "inverse_interval": _positive_int,
        "adapt_damping": flag,
        "damping_interval": _positive_int,
        "factored": flag,
        "preconditioner": _choice(PRECONDITIONERS),
        "seed": _nonnegative_int,
    }
    state_names = LAYER_STATE

    def __init__(self, net, loss_fn, damping=1.0, min_damping=1e-3, weight_decay=0.0, update="quadratic", lr=None, momentum=None,
                 kl_clip=1e-3, kind="mc", samples=1, stats_fraction=0.25, min_stats_examples=128, factor_decay=0.95,
                 inverse_interval=20,
                 adapt_damping=None, damping_interval=5, factored=None, preconditioner="kfac", seed=0):
        self.layers = parametrised_layers(net)
        self.net, self.loss_fn = net, loss_fn
        if factored is None:
            factored = preconditioner == "kfac"
        if adapt_damping is None:
            adapt_damping = update == "quadratic"
        if update == "kl_clip":
            lr = 0.1 if lr is None else lr
            momentum = 0.9 if momentum is None else momentum
        super().__init__(net.parameters(), damping=damping, min_damping=min_damping, weight_decay=weight_decay, update=update, lr=lr,
                         momentum=momentum, kl_clip=kl_clip, kind=kind, samples=samples,
                         stats_fraction=stats_fraction, min_stats_examples=min_stats_examples,
                         factor_decay=factor_decay,
                         inverse_interval=inverse_interval, adapt_damping=adapt_damping,
                         damping_interval=damping_interval, factored=factored, preconditioner=preconditioner,
                         seed=seed)
        self.state["global"] = {"damping": self.hyper["damping"], "refused": 0}
        self.last = {}
        self._warned = False
        self._inverses = {}  # layer index -> (U_A, damping, G⁻¹, A⁻¹): see _factored_inverses

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
        """How many steps were refused for non-finite numbers."""
        return self.state["global"]["refused"]

    # ------------------------------------------------------------------ #
    # One step
    # ------------------------------------------------------------------ #
    def step(self, X, y):
        """One K-FAC update of every parameter from its ``.grad`` on the batch (X, y); see the module docstring.

        X : (N, ...) the batch the gradients were computed on; y : its targets.
        Returns the update's diagnostics (also in ``self.last``). The
        parameters' ``.grad`` are left as they were.
        """
        hyper = self.hyper
        k = self.steps + 1
        eta = hyper["weight_decay"]
        damping = self.damping + eta  # γ² = λ + η
        gradients = self._gradients(eta)
        n = self.statistics_examples(X.shape[0])
        if n < SMALL_MODEL_BATCH and hyper["update"] == "quadratic" and not self._warned:
            self._warned = True
            warnings.warn(f"KFAC: the quadratic model sees {n} examples per step; below {SMALL_MODEL_BATCH} its "
                          "curvature is too noisy to choose the step (digits MLP diverged at batch 16). Use bigger "
                          "batches or update='kl_clip'.", RuntimeWarning, stacklevel=2)
        with_model = hyper["update"] == "quadratic" or self._check_rho(k)
        tentative, directions, model_terms = None, None, None
        for chunk in backprop.chunks(self.net, self.loss_fn, X[:n], None if y is None else y[:n], hyper["kind"],
                                     hyper["samples"], self._step_seed(k), chunk_size=n):
            tentative = self._updated_statistics(chunk, k)
            proposal = [self._precondition(index, entry, grad, damping)
                        for index, (entry, grad) in enumerate(zip(tentative, gradients))]
            previous = self._previous()
            directions = [proposal] + ([previous] if previous[0] is not None else [])
            model_terms = self._model_terms(chunk if with_model else None, directions, gradients)
        coefficients, numbers_ok = self._coefficients(model_terms, damping)
        update = None
        if numbers_ok:  # Python floats: a NumPy float64 would promote float32 arrays
            update = [sum(float(c) * d[i] for c, d in zip(coefficients, directions)) for i in range(len(self.layers))]
        h_before = self._objective(X, y) if self._check_rho(k) and numbers_ok else None
        candidates = None if update is None else self._candidates(update)
        if candidates is None:
            return self._refuse(k)
        self._commit(candidates, tentative, update)
        rho = None
        if h_before is not None:
            rho = self._adapt_damping(h_before, self._objective(X, y), coefficients, model_terms, eta)
        self.steps = k
        self.last = {"alpha": float(coefficients[0]), "mu": float(coefficients[1]) if len(coefficients) > 1 else 0.0,
                     "model_change": self._last_model_change, "rho": rho, "damping": self.damping,
                     "refused": False, "refreshed": self._refreshed}
        return self.last

    def statistics_examples(self, batch_size):
        """How many of a batch's examples (its first rows) feed the statistics and the quadratic model.

        ``stats_fraction`` of the batch, but at least ``min_stats_examples``
        (or the whole batch if it is smaller): with a few dozen examples the
        model's curvature is too noisy to choose α and μ (steps with μ = −8 and
        divergence on a 64-example digits batch at 16 examples).
        """
        wanted = max(math.ceil(self.hyper["stats_fraction"] * batch_size), self.hyper["min_stats_examples"])
        return min(batch_size, wanted)

    # -- pieces ------------------------------------------------------------- #
    def _check_rho(self, k):
        return self.hyper["adapt_damping"] and k % self.hyper["damping_interval"] == 0

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
        """The per-layer state after this step's statistics (new dicts; ``self.state`` is untouched)."""
        decay = min(1.0 - 1.0 / k, self.hyper["factor_decay"])
        fresh = normalise_factor_sums(chunk_factor_sums(chunk), chunk.stop - chunk.start, chunk)
        refresh = (k - 1) % self.hyper["inverse_interval"] == 0 or 0 not in self.state
        self._refreshed = refresh
        entries = []
        for index, ((A_new, G_new), stats) in enumerate(zip(fresh, chunk.layers)):
            old = self.state.get(index, {})
            entry = dict(old)
            entry["A"] = A_new if "A" not in old else decay * old["A"] + (1 - decay) * A_new
            entry["G"] = G_new if "G" not in old else decay * old["G"] + (1 - decay) * G_new
            if refresh:
                entry["a_eigs"], entry["U_A"] = eigh_factor(entry["A"])
                entry["g_eigs"], entry["U_G"] = eigh_factor(entry["G"])
                if self.hyper["preconditioner"] == "ekfac":  # start from K-FAC's eigenvalues in the new basis
                    entry["scalings"] = entry["g_eigs"][:, None] * entry["a_eigs"][None, :]
            if self.hyper["preconditioner"] == "ekfac":
                s_new = chunk_scaling_sums(stats, chunk.output_hessian, entry["U_A"], entry["U_G"])
                s_new = s_new / (chunk.stop - chunk.start)  # diag(Qᵀ F_l Q): a mean over examples only
                entry["scalings"] = decay * entry["scalings"] + (1 - decay) * s_new if k > 1 else s_new
            entries.append(entry)
        return entries

    def _precondition(self, index, entry, grad, damping):
        """Δ = −(F̂ + γ²I)⁻¹ ∇h for layer ``index`` (module docstring, step 3): (D_out, D_in + 1).

        Exact damping and EKFAC divide in the eigenbasis, U_G [(U_Gᵀ ∇W̄ U_A) / D] U_Aᵀ
        (four products). Factored damping is separable, so the two damped
        inverses are formed once and reused while the eigenbasis and λ stay
        the same: two products a step (half the work on wide layers).
        """
        a, U_A, g, U_G = entry["a_eigs"], entry["U_A"], entry["g_eigs"], entry["U_G"]
        if self.hyper["preconditioner"] == "kfac" and self.hyper["factored"]:
            G_inverse, A_inverse = self._factored_inverses(index, entry, damping)
            return -(G_inverse @ grad @ A_inverse)
        if self.hyper["preconditioner"] == "ekfac":
            denominator = entry["scalings"] + damping
        else:
            denominator = g[:, None] * a[None, :] + damping
        rotated = U_G.T @ grad @ U_A
        return -(U_G @ (rotated / denominator) @ U_A.T)

    def _factored_inverses(self, index, entry, damping):
        """(G + (γ/π) I)⁻¹ and (A + πγ I)⁻¹ of M&G §6.3 (γ² = ``damping``), from the eigendecompositions.

        π = sqrt((tr A / n) / (tr G / m)), the trace norm. Cached per layer
        until the eigenbasis (a new U_A array) or the damping changes.
        """
        cached = self._inverses.get(index)
        if cached is not None and cached[0] is entry["U_A"] and cached[1] == damping:
            return cached[2], cached[3]
        a, U_A, g, U_G = entry["a_eigs"], entry["U_A"], entry["g_eigs"], entry["U_G"]
        xp = backend.get_array_module(a)
        tiny = xp.finfo(a.dtype).tiny
        pi = xp.sqrt(xp.maximum(xp.mean(a), tiny) / xp.maximum(xp.mean(g), tiny))
        root = math.sqrt(damping)
        G_inverse = (U_G / (g + root / pi)[None, :]) @ U_G.T
        A_inverse = (U_A / (a + pi * root)[None, :]) @ U_A.T
        self._inverses[index] = (entry["U_A"], damping, G_inverse, A_inverse)
        return G_inverse, A_inverse

    def _previous(self):
        return [self.state.get(i, {}).get("update") for i in range(len(self.layers))]

    def _tangents(self, directions):
        """The stacked directions as parameter tangents for ``net.jvp``: {Parameter: (K, *shape)}."""
        xp = backend.get_array_module(directions[0][0])
        tangents = {}
        for index, layer in enumerate(self.layers):
            stacked = xp.stack([d[index] for d in directions])  # (K, D_out, D_in + 1)
            weight = stacked[:, :, :-1] if has_bias(layer) else stacked
            tangents[layer.weight] = weight.reshape((len(directions),) + layer.weight.shape)
            if has_bias(layer):
                tangents[layer.bias] = stacked[:, :, -1]
        return tangents

    def _model_terms(self, chunk, directions, gradients):
        """Device arrays (F (K, K), dots (K, K), b (K,)) of the quadratic model; F is None without a chunk.

        F_ij = (1/n) Σ_n (J_n d_i)ᵀ H_n (J_n d_j) on the statistics chunk (the exact
        mini-batch Fisher through Jacobian-vector products), dots_ij = d_iᵀ d_j,
        b_i = ∇hᵀ d_i.
        """
        xp = backend.get_array_module(gradients[0])
        count = len(directions)
        dots = xp.stack([xp.stack([sum(xp.vdot(di, dj) for di, dj in zip(directions[i], directions[j]))
                                   for j in range(count)]) for i in range(count)])
        b = xp.stack([sum(xp.vdot(d, g) for d, g in zip(direction, gradients)) for direction in directions])
        fisher = None
        if chunk is not None:
            jvp = self.net.jvp(None, self._tangents(directions))  # (K, n, D_out)
            weighted = self.loss_fn.output_hessian_product(chunk.output, jvp)
            fisher = xp.einsum("knd,jnd->kj", jvp, weighted) / jvp.shape[1]
        return fisher, dots, b

    def _coefficients(self, terms, damping):
        """(α, μ) as host floats, and whether every number was finite (one device sync)."""
        fisher, dots, b = terms
        xp = backend.get_array_module(b)
        parts = [dots.reshape(-1), b] + ([] if fisher is None else [fisher.reshape(-1)])
        host = backend.to_numpy(xp.concatenate([p.astype(xp.float64) for p in parts]))
        count = b.shape[0]
        dots_h, b_h = host[:count * count].reshape(count, count), host[count * count:count * count + count]
        fisher_h = None if fisher is None else host[count * count + count:].reshape(count, count)
        self._host_terms = (fisher_h, dots_h, b_h)
        self._last_model_change = None
        if not np.all(np.isfinite(host)):
            return None, False
        if not b_h[0] < 0:  # ∇hᵀΔ = −∇hᵀ(F̂ + γ²)⁻¹∇h is < 0 unless ∇h = 0 (up to rounding): nothing to do
            self._last_model_change = 0.0
            return np.zeros(count), True
        if self.hyper["update"] == "quadratic":
            curvature = fisher_h + damping * dots_h
            if not curvature[0, 0] > 0:
                return None, False
            coefficients, self._last_model_change = quadratic.solve_step(curvature, b_h)
            return coefficients, bool(np.all(np.isfinite(coefficients)))
        lr, momentum = self.hyper["lr"], self.hyper["momentum"]
        nu = min(1.0, math.sqrt(self.hyper["kl_clip"] / (lr * lr * abs(b_h[0]))))
        coefficients = np.array([lr * nu, momentum][:count])
        if fisher_h is not None:
            quadratic_form = coefficients @ (fisher_h + damping * dots_h) @ coefficients
            self._last_model_change = 0.5 * quadratic_form + float(b_h @ coefficients)
        return coefficients, True

    def _candidates(self, update):
        """The new W̄ of every layer, or None if any entry is not finite (one device sync)."""
        new = [augmented_matrix(layer, "data") + delta for layer, delta in zip(self.layers, update)]
        xp = backend.get_array_module(new[0])
        finite = xp.stack([xp.all(xp.isfinite(w)) for w in new])
        return new if bool(xp.all(finite)) else None

    def _commit(self, candidates, tentative, update):
        for index, (layer, matrix, entry, delta) in enumerate(zip(self.layers, candidates, tentative, update)):
            weight = matrix[:, :-1] if has_bias(layer) else matrix
            layer.weight.data[...] = weight.reshape(layer.weight.shape)
            if has_bias(layer):
                layer.bias.data[...] = matrix[:, -1]
            entry["update"] = delta
            self.state[index] = entry

    def _refuse(self, k):
        """Leave everything as it was, raise λ; see the module docstring, step 5."""
        glob = self.state["global"]
        glob["damping"] = min(glob["damping"] * REFUSED_DAMPING_FACTOR, MAX_DAMPING)
        glob["refused"] += 1
        self.last = {"alpha": None, "mu": None, "model_change": None, "rho": None, "damping": glob["damping"],
                     "refused": True, "refreshed": False}
        return self.last

    def _objective(self, X, y):
        """h = L + (η/2)‖θ‖² on (X, y), in eval mode (no caches touched), as a 0-d device array."""
        modes = [(m, m.training) for m in self.net.modules()]
        self.net.eval()
        try:
            per_example = self.loss_fn.per_example(self.net(X), y)
            value = backend.get_array_module(per_example).mean(per_example)
        finally:
            for module, mode in modes:
                module.training = mode
        eta = self.hyper["weight_decay"]
        if eta:
            xp = backend.get_array_module(value)
            value = value + 0.5 * eta * sum(xp.vdot(p.data, p.data) for p in self.params)
        return value

    def _adapt_damping(self, h_before, h_after, coefficients, terms, eta):
        """ρ from the objective before and after, then the LM rule (M&G §6.5); returns ρ."""
        xp = backend.get_array_module(h_before)
        before, after = (float(v) for v in backend.to_numpy(xp.stack([h_before, h_after]).astype(xp.float64)))
        fisher, dots, b = self._host_terms
        x = np.asarray(coefficients, dtype=np.float64)
        model = 0.5 * x @ (fisher + eta * dots) @ x + b @ x  # M_h(δ): no λ (see quadratic.py)
        rho = quadratic.reduction_ratio(before, after, float(model))
        decay = (19 / 20) ** self.hyper["damping_interval"]
        new = quadratic.levenberg_marquardt(self.damping, rho, decay)
        self.state["global"]["damping"] = min(max(new, self.hyper["min_damping"]), MAX_DAMPING)
        return rho

    # ------------------------------------------------------------------ #
    # Checkpoints: per-layer state keyed by layer index, plus "global"
    # ------------------------------------------------------------------ #
    def _load_state_entry(self, key, name, value):
        owner = type(self).__name__
        if key == "global":
            if name == "damping" and isinstance(value, numbers.Real) and value > 0:
                return float(value)
            if name == "refused" and isinstance(value, numbers.Integral) and value >= 0:
                return int(value)
            raise ValueError(f"{owner}.load_state_dict: state['global'][{name!r}] = {value!r} is not a damping "
                             "> 0 or a refused count >= 0")
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < len(self.layers):
            raise ValueError(f"{owner}.load_state_dict: state key {key!r} is not 'global' or a layer index in "
                             f"[0, {len(self.layers)})")
        if name not in LAYER_STATE:
            raise ValueError(f"{owner}.load_state_dict: state[{key}] has unknown entry {name!r}, expected one of "
                             f"{list(LAYER_STATE)}")
        layer = self.layers[key]
        m, n = block_shape(layer)
        expected = {"A": (n, n), "G": (m, m), "a_eigs": (n,), "U_A": (n, n), "g_eigs": (m,), "U_G": (m, m),
                    "scalings": (m, n), "update": (m, n)}[name]
        if not backend.is_array(value) or tuple(value.shape) != expected:
            got = tuple(value.shape) if backend.is_array(value) else type(value).__name__
            raise ValueError(f"{owner}.load_state_dict: state[{key}][{name!r}] has shape {got}, expected "
                             f"{expected} (layer {key}, {layer!r})")
        weight = layer.weight.data
        host = np.array(backend.to_numpy(value), dtype=weight.dtype, copy=True)
        return backend.asarray(host, backend=backend.backend_of(weight))

    def load_state_dict(self, state_dict):
        """Restore from :meth:`state_dict`'s output; everything is checked before anything changes.

        Besides the base class's checks: the ``"global"`` entry must hold
        ``damping`` and ``refused``, and the layers' state must be all or
        nothing (a checkpoint of step 0 has none), each layer with every entry
        of :data:`LAYER_STATE` (``scalings`` only for EKFAC; ``update`` once a
        step was taken).
        """
        if isinstance(state_dict, dict) and state_dict.get("type") not in (None, type(self).__name__):
            return super().load_state_dict(state_dict)  # the base class names the other optimizer
        saved = state_dict.get("state", {}) if isinstance(state_dict, dict) else {}
        if not isinstance(saved, dict) or set(saved.get("global", {})) != {"damping", "refused"}:
            raise ValueError("KFAC.load_state_dict: the checkpoint has no 'global' state with 'damping' and "
                             "'refused'")
        layers = [key for key in saved if key != "global"]
        if layers:
            wanted = set(LAYER_STATE) - ({"scalings"} if self.hyper["preconditioner"] == "kfac" else set())
            for index in range(len(self.layers)):
                entry = saved.get(index)
                missing = sorted(wanted - set(entry or {}))
                if missing:
                    raise ValueError(f"KFAC.load_state_dict: state[{index}] is missing {missing} (a checkpoint "
                                     f"holds every layer's {sorted(wanted)}, or no layer state at step 0)")
        return super().load_state_dict(state_dict)
