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
        cases.append(Case(label, (X.copy(), g, bias), expected, arrays("(N, (D_in + 1)·D_out)")))
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
        cases.append(Case(label, (grads,), expected, arrays("(P, P)", {"N": n})))
    return cases


EXACT_FISHER = Exercise(
    5, "05_exact_fisher", "The exact Fisher of a tiny net",
    "per-example gradients vec(g āᵀ) = ā ⊗ g; F = (1/N) Σ J_nᵀ F_out,n J_n; the empirical Fisher",
    "04 Fisher three ways", 35,
    [Part("5.1", "per_example_gradient", "rows vec(g_n ā_nᵀ) (N, (D_in + 1)·D_out) of one Linear layer",
          per_example_gradient_cases, "ā_n = [a_n; 1] with a bias (a_n alone without). vec stacks columns, "
          "so vec(g āᵀ) = ā ⊗ g: entry i·D_out + o is ā_i g_o — np.einsum('ni,no->nio', a_bar, g) reshaped "
          "to (N, -1) in C order."),
     Part("5.2", "fisher_from_jacobians", "F = (1/N) Σ_n J_nᵀ F_out,n J_n (P, P)", fisher_from_jacobians_cases,
          "J (N, D_out, P), F_out (N, D_out, D_out): one np.einsum('nkp,nkl,nlq->pq', J, F_out, J) / N. "
          "The exact expectation over labels needs no sampling: F_out already is E_y[∇ℓ ∇ℓᵀ] w.r.t. the "
          "outputs."),
     Part("5.3", "empirical_fisher", "(1/N) Σ_n ∇ℓ_n ∇ℓ_nᵀ from per-example gradients (N, P)",
          empirical_fisher_cases, "A second moment, not a covariance: np.cov subtracts the mean and divides "
          "by N − 1. Use grads.T @ grads / N.")],
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
        cases.append(Case(label, (layer.cache_input.copy(), biases[index]), expected,
                          arrays("(D_in + 1, D_in + 1), or (D_in, D_in) without bias", {"N": n})))
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


def factor_list(known=None):
    """A comparator for a list of (A, G) pairs, one per Linear layer."""
    def compare(expected, got):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            count = f" of length {len(got)}" if isinstance(got, (list, tuple)) else ""
            return (f"expected a list of {len(expected)} (A, G) pairs, one per Linear layer, "
                    f"got a {type(got).__name__}{count}")
        messages = []
        for i, (pair, have) in enumerate(zip(expected, got)):
            names = [f"A of layer {i + 1}", f"G of layer {i + 1}"]
            message = sequence(names, ["(D_in + 1, D_in + 1)", "(D_out, D_out)"], known)(pair, have)
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
    "A = (1/N) Σ ā āᵀ from the cached inputs; G = (1/N) Σ g gᵀ with g = N · the cached dL/ds",
    "05 K-FAC factors from caches", 30,
    [Part("6.1", "input_factor", "A = (1/N) Σ_n ā_n ā_nᵀ from a layer's cache_input (N, D_in)", input_factor_cases,
          "Append a column of ones to a when the layer has a bias (ā = [a; 1], the bias is the last column "
          "of W̄ = [W | b]), then a_bar.T @ a_bar / N."),
     Part("6.2", "grad_factor", "G = (1/N) Σ_n g_n g_nᵀ from a layer's cache_grad_output (N, D_out)",
          grad_factor_cases, "The cache holds dL/ds of the *mean* loss, i.e. g_n / N with g_n = ∂ℓ_n/∂s the "
          "per-example gradient. Multiply it by N first: G = (1/N) Σ (N·cache_n)(N·cache_n)ᵀ."),
     Part("6.3", "kfac_factors_from_caches", "[(A, G) for every Linear layer], read from the caches of a net",
          kfac_factors_cases, "Walk net.modules() and keep the nn.Linear ones, in order; layer.bias is None "
          "for a layer without bias. Reuse 6.1 and 6.2.")],
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
        cases.append(Case(label, args, params.augmented_matrix(layer, "grad"),
                          arrays("(D_out, D_in + 1), or (D_out, D_in) without bias")))
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
        expected = curvature.KFACBlockDiagonal(factors).precondition(gradients, damping, factored=True)
        names = [f"layer {i + 1}" for i in range(len(biases))]
        cases.append(Case(label + f", λ = {damping:.3g}", (factors, gradients, damping), tuple(expected),
                          sequence(names, ["(D_out, D_in + 1)"] * len(names))))
    return cases


def reference_step(net, loss_fn, X, y, lr, damping):
    """θ ← θ − lr · (F̂ + factored damping)⁻¹ ∇θ with F̂ = K-FAC of the true Fisher; returns the loss before."""
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
        loss = reference_step(net, loss_fn, X, y, lr, damping)
        expected = (loss,) + _after_step((net,), None)[1:]
        names = ["the returned loss"] + [f"W̄ of layer {j + 1} after the step" for j in range(len(biases))]
        label += f", lr = {lr:.3g}, λ = {damping:.3g}, old gradients in .grad"
        cases.append(Case(label, args, expected, sequence(names), result=_after_step))
    return cases


STEP = Exercise(
    8, "08_kfac_step", "One K-FAC step",
    "∇W̄ = [∇W | ∇b]; the damped natural gradient G⁻¹ ∇W̄ A⁻¹ per layer; a whole update of a net",
    "08 one natural-gradient step", 40,
    [Part("8.1", "augmented_gradient", "∇W̄ = [∇W | ∇b] (D_out, D_in + 1) from a layer's gradients",
          augmented_gradient_cases, "Bias as the last column: np.concatenate([W_grad, b_grad[:, None]], axis=1). "
          "A conv weight (C_out, C_in, KH, KW) first becomes its matrix view reshape(C_out, -1)."),
     Part("8.2", "natural_gradients", "(G + √λ/π I)⁻¹ ∇W̄ (A + π√λ I)⁻¹ for every layer", natural_gradients_cases,
          "Each layer has its own π = sqrt((tr(A)/n) / (tr(G)/m)) (exercise 7). Solve with the damped G on "
          "the left and the damped A on the right: (A ⊗ G)⁻¹ vec(V) = vec(G⁻¹ V A⁻¹)."),
     Part("8.3", "kfac_step", "W̄ ← W̄ − lr · (preconditioned ∇W̄) for every layer, in place; return the loss",
          kfac_step_cases, "Gradients accumulate: call net.zero_grad() before the backward. Take the factors "
          "from mk.curvature.kfac_factors(net, loss_fn, X, kind='true') after the backward, precondition with "
          "8.2, then write W̄[:, :-1] back into layer.weight.data and W̄[:, -1] into layer.bias.data.")],
    forbidden=("minikfac.optim.kfac",),
)
