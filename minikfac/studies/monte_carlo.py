"""How noisy the Monte-Carlo Fisher is: ‖F_k − F‖ for k sampled targets per example, without forming F_k.

The true Fisher is an expectation over the model's own targets; the MC Fisher
replaces it by k draws (:mod:`minikfac.curvature.statistics`, ``kind="mc"``).
Its error shrinks like 1/√k; :func:`mc_fisher_errors` measures it exactly,
block by block, for Linear nets.
"""

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.params import parametrised_layers
from minikfac.nn.linear import Linear


def _gathered_statistics(net, loss_fn, X, kind, samples, seed, chunk_size):
    """ā (N, n_l) and g (K, N, m_l) of every Linear layer, over all of X."""
    chunks = [chunk.layers for chunk in statistics.chunks(net, loss_fn, X, kind=kind, samples=samples, seed=seed,
                                                        chunk_size=chunk_size)]
    xp = backend.get_array_module(X)
    per_layer = list(zip(*chunks))  # per layer, its statistics of every chunk
    return ([xp.concatenate([s.inputs for s in stats], axis=0) for stats in per_layer],
            [xp.concatenate([s.grads for s in stats], axis=1) for stats in per_layer])


def mc_fisher_errors(net, loss_fn, X, samples, seed=0, chunk_size=None):
    """‖F_k − F‖² of the MC Fisher with k = each of ``samples`` draws per example (Linear nets).

    The (i, j) block of F_k − F is (1/N) Σ_n (ā_in ā_jnᵀ) ⊗ D_n with the
    per-example D_n = (1/k) Σ_draws ĝ_i ĝ_jᵀ − Σ_c g_ic g_jcᵀ (sampled minus
    exact output-gradient moments), so, with ⟨X ⊗ Y, X' ⊗ Y'⟩ = ⟨X, X'⟩⟨Y, Y'⟩,

        ‖block‖² = (1/N²) Σ_{n,m} (ā_inᵀ ā_im)(ā_jnᵀ ā_jm) ⟨D_n, D_m⟩,

    an (N, N) computation instead of a (P, P) one: the per-example gradient
    of a Linear layer is ā ⊗ g (Martens & Grosse 2015, §2). The
    k-sample estimates share the first k of max(samples) draws.

    samples : increasing positive ints k. Returns a list, per k, of (‖F_k − F‖²,
    [‖(F_k − F)_ll‖² of each layer]), 0-d arrays on X's backend.
    """
    if not all(isinstance(layer, Linear) for layer in parametrised_layers(net)):
        raise ValueError("mc_fisher_errors: every parametrised layer must be Linear")
    samples = list(samples)
    if not samples or samples != sorted(set(samples)) or any(not isinstance(k, int) or k < 1 for k in samples):
        raise ValueError(f"mc_fisher_errors: samples must be increasing positive ints, got {samples!r}")
    xp = backend.get_array_module(X)
    most = max(samples)
    inputs, exact_grads = _gathered_statistics(net, loss_fn, X, "true", 1, seed, chunk_size)
    _, drawn = _gathered_statistics(net, loss_fn, X, "mc", most, seed, chunk_size)
    drawn = [g * most ** 0.5 for g in drawn]  # statistics.cotangents scales the draws by 1/√K; undo it
    n = X.shape[0]
    kernels = [a @ a.T for a in inputs]
    count = len(inputs)
    totals = [0.0] * len(samples)
    diagonal = [[0.0] * count for _ in samples]
    for i in range(count):
        for j in range(i, count):
            exact = xp.einsum("cnd,cne->nde", exact_grads[i], exact_grads[j]).reshape(n, -1)
            weights = kernels[i] * kernels[j]
            moment, used = 0.0, 0
            for index, k in enumerate(samples):
                moment = moment + xp.einsum("cnd,cne->nde", drawn[i][used:k], drawn[j][used:k]).reshape(n, -1)
                used = k
                difference = moment / k - exact
                squared = xp.sum((weights @ difference) * difference) / (n * n)
                totals[index] = totals[index] + (squared if i == j else 2 * squared)
                if i == j:
                    diagonal[index][i] = squared
    return [(totals[index], diagonal[index]) for index in range(len(samples))]
