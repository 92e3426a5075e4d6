"""Exercise 5: the exact Fisher of a tiny network.

Read first: tutorial 04 (Fisher three ways), sections "Four matrices from one
formula" and "Where the empirical Fisher goes wrong"; tutorial 06 puts the
result next to K-FAC.

The Fisher of a network with parameters θ (P numbers) and a loss that is a
negative log-likelihood is (docs/design.md, "Fisher normalisation")

    F = (1/N) Σ_n E_{y ~ p(y|x_n)} [∇_θ ℓ_n(y) ∇_θ ℓ_n(y)ᵀ]          (P, P),

the expectation taken over labels drawn from the model itself. You get it
without sampling from two ingredients: the Jacobian J_n = ∂f(x_n)/∂θ (D_out, P)
of the network's output f, and the output Fisher F_out,n (D_out, D_out) of
exercise 3 — the same expectation, taken w.r.t. the output f instead of θ.

The *empirical* Fisher puts the data labels y_n in place of the expectation:
(1/N) Σ_n ∇ℓ_n(y_n) ∇ℓ_n(y_n)ᵀ — a different matrix (Kunstner et al. 2019).

The parameter order (the rows and columns of F) is minikfac's canonical one:
layer by layer, each layer as vec(W̄) with W̄ = [W | b] (the bias is the last
column) and vec stacking columns (exercise 4). For one Linear layer with input
a_n (D_in,) and output gradient g_n = ∂ℓ_n/∂s (D_out,), the gradient of W̄ is the
outer product g_n ā_nᵀ (D_out, D_in + 1), with ā_n = [a_n; 1] the input with a 1
appended for the bias.

Use NumPy only (not ``minikfac.curvature``). Check with ``minikfac check 5``
(``--hints 2`` for more help): the checker builds small tanh networks with random
sizes (batches of one, layers without bias) and compares with minikfac's exact Fisher.
"""

import numpy as np  # noqa: F401  (you will need it)


def per_example_gradient(a, g, bias):
    """The per-example gradients of one Linear layer's W̄, in the canonical order.

    Parameters
    ----------
    a : (N, D_in) array, the layer's inputs (one per row).
    g : (N, D_out) array, the per-example gradients ∂ℓ_n/∂s of the layer's output
        (not divided by N).
    bias : bool, whether the layer has a bias (then ā_n = [a_n; 1], else ā_n = a_n).

    Returns
    -------
    (N, (D_in + 1)·D_out) array — (N, D_in·D_out) without bias — whose row n is
    vec(g_n ā_nᵀ), vec stacking the columns of the (D_out, D_in + 1) matrix.

    Check one row by hand: build g_n ā_nᵀ, then vec it with your exercise 4.1.
    """
    raise NotImplementedError("Exercise 5.1: return the rows vec(g_n ā_nᵀ), shape (N, (D_in + 1)·D_out)")


def fisher_from_jacobians(J, output_fisher):
    """The exact Fisher F (P, P) from the output Jacobians and the output Fishers.

    Parameters
    ----------
    J : (N, D_out, P) array; J[n, k] is the gradient of the network output f_k(x_n)
        w.r.t. θ, in the canonical order.
    output_fisher : (N, D_out, D_out) array, F_out,n (exercise 3.4).

    Returns
    -------
    (P, P) symmetric positive semi-definite array: F as defined in the module docstring.
    """
    raise NotImplementedError("Exercise 5.2: return the exact Fisher F, shape (P, P)")


def empirical_fisher(grads):
    """The empirical Fisher from per-example gradients.

    Parameters
    ----------
    grads : (N, P) array; row n is ∇_θ ℓ_n for the data label y_n.

    Returns
    -------
    (P, P) array, (1/N) Σ_n ∇ℓ_n ∇ℓ_nᵀ.
    """
    raise NotImplementedError("Exercise 5.3: return the empirical Fisher, shape (P, P)")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("5", __file__))
