"""Model solution of exercise 10: KFC's factors of a convolution (Grosse & Martens 2016; NumPy and the layers)."""

import numpy as np

import minikfac as mk


def conv_input_factor(patches, bias):
    """A = (1/N) Σ_n Σ_l ā_nl ā_nlᵀ (D + 1, D + 1) from the patches (N, L, D): summed over positions."""
    n, positions, _ = patches.shape
    if bias:  # the 1 of the bias at every position, last
        patches = np.concatenate([patches, np.ones((n, positions, 1))], axis=2)
    rows = patches.reshape(n * positions, -1)  # the N·L patches as rows
    return rows.T @ rows / n  # divided by N only: A sums over the positions (KFC's Ω)


def conv_grad_factor(grads):
    """G = (1/(N·L)) Σ_n Σ_l g_nl g_nlᵀ (C_out, C_out) from the per-example output gradients (N, C_out, OH, OW)."""
    n, c_out = grads.shape[:2]
    rows = np.moveaxis(grads, 1, -1).reshape(-1, c_out)  # channels last first, then one row per (n, position)
    return rows.T @ rows / len(rows)  # averaged over examples and positions (KFC's Γ)


def _linear_factors(layer):
    """K-FAC's (A, G) of a Linear layer from its caches (exercise 6)."""
    a, cached = layer.cache_input, layer.cache_grad_output
    n = len(a)
    a_bar = np.concatenate([a, np.ones((n, 1))], axis=1) if layer.bias is not None else a
    g = n * cached  # the cache holds the gradient of the mean loss, g_n / N
    return a_bar.T @ a_bar / n, g.T @ g / n


def kfc_factors_from_caches(net):
    """[(A, G) for every Conv2d and Linear layer of net, in order], read from the caches."""
    factors = []
    for layer in net.modules():
        if isinstance(layer, mk.nn.Conv2d):
            n = layer.cache_input.shape[0]
            factors.append((conv_input_factor(layer.cache_input, layer.bias is not None),
                            conv_grad_factor(n * layer.cache_grad_output)))  # per-example gradients: times N
        elif isinstance(layer, mk.nn.Linear):
            factors.append(_linear_factors(layer))
    return factors
