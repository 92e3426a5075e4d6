"""Exercises 5, 6 and 8: the exact Fisher of a tiny net, K-FAC's factors, one K-FAC step.

The expected results are the curvature module's own: ``per_example_gradients``,
``fisher`` (kinds "true" and "empirical"), ``kfac_factors``, ``KFAC.precondition``
and the canonical order of :mod:`minikfac.curvature.params`. The nets are small
tanh MLPs with random sizes; some layers have no bias, some batches hold one
example.
"""

import copy

import numpy as np

from minikfac import curvature, nn
from minikfac.curvature import statistics, params
from minikfac.exercises.checks_layers import two_sizes
from minikfac.exercises.feedback import arrays, sequence
from minikfac.exercises.spec import Case, Exercise, Part


def tanh_net(rng, sizes, biases):
    """Linear(sizes[0], sizes[1]), Tanh, Linear(...), ...: one Linear per entry of ``biases``."""
    layers = []
    for i, bias in enumerate(biases):
        if i:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias, rng=rng))
    return nn.Sequential(*layers)


def data_for(rng, net, n):
    """X (n, D_in) and labels y (n,) for a classifier ``net``."""
    layers = params.parametrised_layers(net)
    X = rng.standard_normal((n, layers[0].in_features))
    return X, rng.integers(0, layers[-1].out_features, size=n)


def _net_settings(rng):
    """(label, n, sizes, biases): random two-layer nets, one example, a layer without bias."""
    settings = []
    for n, biases in ((int(rng.integers(2, 7)), (True, True)), (1, (True, True)),
                      (int(rng.integers(2, 7)), (False, True)), (int(rng.integers(2, 7)), (True, False, True))):
        sizes = [int(s) for s in rng.integers(2, 6, size=len(biases) + 1)]
        sizes[-1] = max(sizes[-1], 2)  # at least two classes
        label = f"N={n}, net {'-'.join(map(str, sizes))}, bias {''.join('y' if b else 'n' for b in biases)}"
        settings.append((label, n, sizes, biases))
    return settings


# --------------------------------------------------------------------------- #
# Exercise 5: the exact Fisher of a tiny net
# --------------------------------------------------------------------------- #
def per_example_gradient_cases(rng):
    cases = []
    for label, n, sizes, biases in _net_settings(rng)[:3]:
        bias = biases[0]
        net = nn.Sequential(nn.Linear(sizes[0], sizes[1] + 1, bias=bias, rng=rng))
        loss_fn = nn.CrossEntropyLoss()
        X, y = data_for(rng, net, n)
        g = loss_fn.per_example_gradient(net(X), y)
        expected = curvature.per_example_gradients(net, loss_fn, X, y)
        label = f"N={n}, D_in={sizes[0]}, D_out={sizes[1] + 1}, {'with' if bias else 'no'} bias"
        outer = expected.reshape(n, -1, g.shape[1])  # (N, D_in + 1, D_out): entry [n, i, o] = ā_i g_o
        mistakes = {"the rows of g āᵀ stacked instead of its columns (vec stacks columns)":
                    outer.transpose(0, 2, 1).reshape(n, -1)}
        cases.append(Case(label, (X.copy(), g, bias), expected, arrays("(N, (D_in + 1)·D_out)"),
                          mistakes=mistakes))
    return cases


def output_jacobians(net, X):
    """J (N, D_out, P): row (n, k) is the gradient of the output f_k(x_n) w.r.t. θ, canonical order."""
    for chunk in statistics.chunks(net, nn.CrossEntropyLoss(), X, kind="ggn", chunk_size=X.shape[0]):
        rows = np.concatenate([statistics.layer_gradients(stats) for stats in chunk.layers], axis=-1)  # (K, N, P)
    return np.ascontiguousarray(rows.transpose(1, 0, 2))


def fisher_from_jacobians_cases(rng):
    cases = []
    for label, n, sizes, biases in _net_settings(rng):
        net, loss_fn = tanh_net(rng, sizes, biases), nn.CrossEntropyLoss()
        X, _ = data_for(rng, net, n)
        J = output_jacobians(net, X)
        output_fisher = loss_fn.output_hessian(net(X))
        expected = curvature.fisher(net, loss_fn, X, kind="true")
        cases.append(Case(label, (J, output_fisher), expected, arrays("(P, P)", {"N": n})))
    return cases


def empirical_fisher_cases(rng):
    cases = []
    for label, n, sizes, biases in _net_settings(rng):
        net, loss_fn = tanh_net(rng, sizes, biases), nn.CrossEntropyLoss()
        X, y = data_for(rng, net, n)
        grads = curvature.per_example_gradients(net, loss_fn, X, y)
        expected = curvature.fisher(net, loss_fn, X, y=y, kind="empirical")
        mistakes = {}
        if n > 1:
            centred = grads - grads.mean(axis=0)
            mistakes["np.cov(grads.T): a covariance (the mean subtracted, divided by N − 1), not a second moment"] = \
                centred.T @ centred / (n - 1)
        cases.append(Case(label, (grads,), expected, arrays("(P, P)", {"N": n}), mistakes=mistakes))
    return cases


EXACT_FISHER = Exercise(
    5, "05_exact_fisher", "The exact Fisher of a tiny net",
    "per-example gradients in the canonical order; the exact Fisher from output Jacobians; the empirical Fisher",
    "04 Fisher three ways", 35,
    [Part("5.1", "per_example_gradient", "the rows vec(g_n ā_nᵀ) of one Linear layer, (N, (D_in + 1)·D_out) — "
          "(N, D_in·D_out) without bias", per_example_gradient_cases,
          ("Build ā_n first (the 1 goes last: the bias is the last column of W̄). With vec stacking columns, work "
           "out where the product ā[i]·g[o] lands in vec(g āᵀ), and check one row against np.kron (tutorial 01, "
           "'Why a layer's gradient is a Kronecker product').",
           "vec(g āᵀ) = ā ⊗ g: entry i·D_out + o is ā_i g_o, so np.einsum('ni,no->nio', a_bar, g).reshape(N, -1).")),
     Part("5.2", "fisher_from_jacobians", "the exact Fisher F (P, P) from the output Jacobians J (N, D_out, P) and "
          "the output Fishers F_out (N, D_out, D_out)", fisher_from_jacobians_cases,
          ("Apply the chain rule to ∇_θ ℓ_n: the expectation over labels then acts only on the gradient w.r.t. the "
           "output, and F_out,n already is that expectation. Average over the examples (tutorial 04, 'Four "
           "matrices from one formula').",
           "F = (1/N) Σ_n J_nᵀ F_out,n J_n: np.einsum('nkp,nkl,nlq->pq', J, output_fisher, J) / N.")),
     Part("5.3", "empirical_fisher", "the empirical Fisher (P, P) from the per-example gradients (N, P) of the data "
          "labels", empirical_fisher_cases,
          ("It is a second moment of the per-example gradients, averaged over the N examples, not a covariance "
           "(tutorial 04, 'Where the empirical Fisher goes wrong').",
           "(1/N) Σ_n ∇ℓ_n ∇ℓ_nᵀ = grads.T @ grads / N (np.cov subtracts the mean and divides by N − 1)."))],
    forbidden=("minikfac.curvature",),
)


# --------------------------------------------------------------------------- #
# Exercise 6: K-FAC's factors A and G from the layers' caches
# --------------------------------------------------------------------------- #
def net_after_backward(rng, n, sizes, biases):
    """A net after forward and backward of the mean cross-entropy on labels, and its empirical factors."""
    net, loss_fn = tanh_net(rng, sizes, biases), nn.CrossEntropyLoss()
    X, y = data_for(rng, net, n)
    expected = curvature.kfac_factors(net, loss_fn, X, y, kind="empirical")
    loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    return net, expected


def input_factor_cases(rng):
    cases = []
    for label, n, sizes, biases in _net_settings(rng):
        net, _ = net_after_backward(rng, n, sizes, biases)
        index = int(rng.integers(0, len(biases)))
        layer = params.parametrised_layers(net)[index]
        label += f", layer {index + 1}"
        expected = curvature.input_factor(layer.cache_input, biases[index])  # the library's A = (1/N) Σ ā āᵀ
        mistakes = {}
        if biases[index]:  # the 1 of ā first: A's last row and column moved to the front
            order = [len(expected) - 1] + list(range(len(expected) - 1))
            mistakes["A with the 1 of ā first (the bias is the last column of W̄ = [W | b])"] = \
                expected[np.ix_(order, order)]
        cases.append(Case(label, (layer.cache_input.copy(), biases[index]), expected,
                          arrays("(D_in + 1, D_in + 1), or (D_in, D_in) without bias", {"N": n}), mistakes=mistakes))
    return cases


def grad_factor_cases(rng):
    cases = []
    for label, n, sizes, biases in _net_settings(rng):
        net, _ = net_after_backward(rng, n, sizes, biases)
        index = int(rng.integers(0, len(biases)))
        layer = params.parametrised_layers(net)[index]
        label += f", layer {index + 1}"
        # The backward of the mean loss leaves g_n / N: the library's G takes the per-example g_n.
        expected = curvature.grad_factor(n * layer.cache_grad_output[None])
        cases.append(Case(label, (layer.cache_grad_output.copy(),), expected,
                          arrays("(D_out, D_out)", {"N": n})))
    return cases


#: The shapes of a Linear layer's A and G, in symbols.
LINEAR_SHAPES = ("(D_in + 1, D_in + 1)", "(D_out, D_out)")


def factor_list(known=None, layers="Linear layer", shapes=None):
    """A comparator for a list of (A, G) pairs, one per ``layers`` ("Linear layer"); ``shapes`` gives each
    layer's (A, G) shapes in symbols (default: every layer's are :data:`LINEAR_SHAPES`)."""
    def compare(expected, got):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            count = f" of length {len(got)}" if isinstance(got, (list, tuple)) else ""
            return (f"expected a list of {len(expected)} (A, G) pairs, one per {layers}, "
                    f"got a {type(got).__name__}{count}")
        messages = []
        for i, (pair, have) in enumerate(zip(expected, got)):
            names = [f"A of layer {i + 1}", f"G of layer {i + 1}"]
            symbols = list(shapes[i]) if shapes is not None else list(LINEAR_SHAPES)
            message = sequence(names, symbols, known)(pair, have)
            if message:
                messages.append(message)
        return "\n".join(messages) or None
    return compare


def kfac_factors_cases(rng):
    return [Case(label, (net,), factors, factor_list({"N": n}))
            for label, n, sizes, biases in _net_settings(rng)
            for net, factors in [net_after_backward(rng, n, sizes, biases)]]


FACTORS = Exercise(
    6, "06_kfac_factors", "K-FAC's factors A and G from the layers' caches",
    "A = (1/N) Σ ā āᵀ from the cached inputs; G = (1/N) Σ g gᵀ from the cached gradient of the mean loss",
    "05 K-FAC factors from caches", 30,
    [Part("6.1", "input_factor", "A = (1/N) Σ_n ā_n ā_nᵀ, (D_in + 1, D_in + 1) — (D_in, D_in) without bias — from a "
          "layer's cache_input (N, D_in)", input_factor_cases,
          ("ā is the homogeneous input: where does the bias's 1 go, given that the bias is the last column of "
           "W̄ = [W | b]? Then average the outer products over the examples (tutorial 05, 'What a Linear layer "
           "caches').",
           "a_bar = np.concatenate([a, np.ones((N, 1))], axis=1) with a bias (a itself without); "
           "A = a_bar.T @ a_bar / N.")),
     Part("6.2", "grad_factor", "G = (1/N) Σ_n g_n g_nᵀ (D_out, D_out), g_n = ∂ℓ_n/∂s per example, from a layer's "
          "cache_grad_output (N, D_out)", grad_factor_cases,
          ("The cache holds the gradient of the *mean* loss L = (1/N) Σ ℓ_n: how does its row n differ from "
           "g_n = ∂ℓ_n/∂s? With N = 1 you cannot tell; think with N > 1 (tutorial 05, 'What a Linear layer "
           "caches').",
           "row n of the cache is g_n / N: multiply it by N first, then G = (1/N) Σ_n g_n g_nᵀ, i.e. "
           "N · cacheᵀ cache.")),
     Part("6.3", "kfac_factors_from_caches", "[(A, G) for every Linear layer of the net, in network order], read "
          "from its caches", kfac_factors_cases,
          ("Walk the net's modules in order and keep the Linear ones; each knows whether it has a bias. Reuse 6.1 "
           "and 6.2.",
           "[(input_factor(m.cache_input, m.bias is not None), grad_factor(m.cache_grad_output)) for m in "
           "net.modules() if isinstance(m, mk.nn.Linear)]."))],
    forbidden=("minikfac.curvature",),
)


# --------------------------------------------------------------------------- #
# Exercise 8: one K-FAC step
# --------------------------------------------------------------------------- #
def augmented_gradient_cases(rng):
    cases = []
    for i, bias in enumerate((True, False, True, True)):
        n = 1 if i == 3 else int(rng.integers(2, 6))
        if i == 2:  # a convolution: its weight's matrix view (C_out, C_in·KH·KW)
            layer = nn.Conv2d(2, 3, (2, 3), bias=bias, rng=rng)
            x = rng.standard_normal((n, 2, 4, 5))
            label = f"Conv2d(2, 3, kernel (2, 3)), N={n}, weight_grad (3, 2, 2, 3)"
        else:
            d_in, d_out = two_sizes(rng)
            layer = nn.Linear(d_in, d_out, bias=bias, rng=rng)
            x = rng.standard_normal((n, d_in))
            label = f"Linear({d_in}, {d_out}), N={n}, {'with' if bias else 'no'} bias"
        out = layer(x)
        layer.backward(rng.standard_normal(out.shape))
        args = (layer.weight.grad.copy(), layer.bias.grad.copy() if bias else None)
        expected = params.augmented_matrix(layer, "grad")
        mistakes = {"[∇b | ∇W]: the bias gradient as the first column, not the last":
                    np.concatenate([expected[:, -1:], expected[:, :-1]], axis=1)} if bias else {}
        cases.append(Case(label, args, expected, arrays("(D_out, D_in + 1), or (D_out, D_in) without bias"),
                          mistakes=mistakes))
    return cases


def net_with_gradient(rng, n, sizes, biases):
    """A net after one backward of the mean cross-entropy, its loss and data."""
    net, loss_fn = tanh_net(rng, sizes, biases), nn.CrossEntropyLoss()
    X, y = data_for(rng, net, n)
    loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    return net, loss_fn, X, y


def natural_gradients_cases(rng):
    cases = []
    for label, n, sizes, biases in _net_settings(rng):
        net, loss_fn, X, _ = net_with_gradient(rng, n, sizes, biases)
        factors = curvature.kfac_factors(net, loss_fn, X, kind="true")
        gradients = curvature.unflatten(net, curvature.flatten(net, "grad"))
        damping = float(10 ** rng.uniform(-3, -1))
        approximation = curvature.KFACBlockDiagonal(factors)
        expected = approximation.precondition(gradients, damping, factored=True)
        names = [f"layer {i + 1}" for i in range(len(biases))]
        mistakes = {"the exact damping (A ⊗ G + λI)⁻¹, not the factored one":
                    tuple(approximation.precondition(gradients, damping)),
                    "the factored damping with π = 1 in every layer":
                    tuple(approximation.precondition(gradients, damping, factored=True, pi=1.0))}
        cases.append(Case(label + f", λ = {damping:.3g}", (factors, gradients, damping), tuple(expected),
                          sequence(names, ["(D_out, D_in + 1)"] * len(names)), mistakes=mistakes))
    return cases


def reference_step(net, loss_fn, X, y, lr, damping, zero_grad=True):
    """θ ← θ − lr · (F̂ + factored damping)⁻¹ ∇θ with F̂ = K-FAC of the true Fisher; returns the loss before.

    ``zero_grad=False`` keeps the gradients the net holds (a known mistake: they accumulate)."""
    if zero_grad:
        net.zero_grad()
    loss = float(loss_fn(net(X), y))
    net.backward(loss_fn.backward())
    factors = curvature.kfac_factors(net, loss_fn, X, kind="true")
    direction = curvature.KFACBlockDiagonal(factors).solve(curvature.flatten(net, "grad"), damping, factored=True)
    curvature.assign(net, curvature.flatten(net) - lr * direction)
    return loss


def _after_step(args, returned):
    return (returned,) + tuple(params.augmented_matrix(layer) for layer in params.parametrised_layers(args[0]))


def kfac_step_cases(rng):
    cases = []
    for i, (label, n, sizes, biases) in enumerate(_net_settings(rng)):
        net, loss_fn, X, y = net_with_gradient(rng, n, sizes, biases)  # the net holds an old gradient
        X, y = data_for(rng, net, n)
        lr, damping = float(rng.uniform(0.1, 1.0)), float(10 ** rng.uniform(-2, 0))
        args = (copy.deepcopy(net), loss_fn, X, y, lr, damping)
        stale = copy.deepcopy(net)
        loss = reference_step(net, loss_fn, X, y, lr, damping)
        expected = (loss,) + _after_step((net,), None)[1:]
        stale_loss = reference_step(stale, loss_fn, X, y, lr, damping, zero_grad=False)
        mistakes = {"a step with the old gradients still in .grad (gradients accumulate: clear them first)":
                    (stale_loss,) + _after_step((stale,), None)[1:]}
        names = ["the returned loss"] + [f"W̄ of layer {j + 1} after the step" for j in range(len(biases))]
        label += f", lr = {lr:.3g}, λ = {damping:.3g}, old gradients in .grad"
        cases.append(Case(label, args, expected, sequence(names), result=_after_step, mistakes=mistakes))
    return cases


STEP = Exercise(
    8, "08_kfac_step", "One K-FAC step",
    "∇W̄ = [∇W | ∇b]; the factored-damped K-FAC direction per layer; a whole update of a net",
    "08 one natural-gradient step", 40,
    [Part("8.1", "augmented_gradient", "∇W̄ = [∇W | ∇b] (D_out, D_in + 1), or ∇W (D_out, D_in) without a bias, "
          "from a layer's gradients (a conv weight through its matrix view)", augmented_gradient_cases,
          ("The bias is the last column of W̄ (docs/design.md, 'Conventions'); a conv weight (C_out, C_in, KH, KW) "
           "first needs its matrix view (C_out, C_in·KH·KW) (tutorial 03).",
           "np.concatenate([weight_grad.reshape(D_out, -1), bias_grad[:, None]], axis=1); the matrix view alone "
           "without a bias.")),
     Part("8.2", "natural_gradients", "Δ = ((A + π√λ I) ⊗ (G + √λ/π I))⁻¹ vec(∇W̄) as a (D_out, D_in + 1) matrix, "
          "for every layer", natural_gradients_cases,
          ("Each layer has its own π (7.1) and its own damped factors (7.2); then it is the solve of 7.3 "
           "(tutorial 08, 'Seven methods, eight directions').",
           "Δ = (G + √λ/π I)⁻¹ ∇W̄ (A + π√λ I)⁻¹, with π = sqrt((tr(A)/n) / (tr(G)/m)) for each layer.")),
     Part("8.3", "kfac_step", "one K-FAC step: every Linear layer's W̄ ← W̄ − lr · Δ, in place; return the loss "
          "before the step", kfac_step_cases,
          ("Gradients accumulate in .grad: clear them before the backward. Take the factors after the backward, "
           "then write the new W̄ back into the weight and the bias (tutorial 08).",
           "net.zero_grad(); loss = loss_fn(net(X), y); net.backward(loss_fn.backward()); factors = "
           "mk.curvature.kfac_factors(net, loss_fn, X, kind='true'); Δ per layer by 8.2; then "
           "weight.data −= lr·Δ[:, :-1] and bias.data −= lr·Δ[:, -1]."))],
    forbidden=("minikfac.optim.kfac",),
)
