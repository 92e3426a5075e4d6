"""Model solution of exercise 6: K-FAC's factors A and G from the layers' caches (NumPy, and the net's layers)."""

import numpy as np

import minikfac as mk


def input_factor(a, bias):
    """A = (1/N) Σ_n ā_n ā_nᵀ from cache_input (N, D_in): (D_in + 1, D_in + 1), or (D_in, D_in) without bias."""
    n = len(a)
    a_bar = np.concatenate([a, np.ones((n, 1))], axis=1) if bias else a  # ā = [a; 1]: the bias column is last
    return a_bar.T @ a_bar / n


def grad_factor(grad_output):
    """G = (1/N) Σ_n g_n g_nᵀ (D_out, D_out) from cache_grad_output (N, D_out) of the mean loss."""
    n = len(grad_output)
    g = n * grad_output  # the backward of L = (1/N) Σ ℓ_n leaves g_n / N: recover g_n = ∂ℓ_n/∂s
    return g.T @ g / n


def kfac_factors_from_caches(net):
    """[(A, G) for every Linear layer of net, in network order], read from its caches."""
    return [(input_factor(layer.cache_input, layer.bias is not None), grad_factor(layer.cache_grad_output))
            for layer in net.modules() if isinstance(layer, mk.nn.Linear)]
