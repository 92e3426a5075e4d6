"""Exercise 6: K-FAC's factors A and G, read from the layers' caches.

Read first: tutorial 05 (K-FAC factors from caches), sections "What a Linear
layer caches" and "The exact block, and the one approximation K-FAC makes".

For a Linear layer the per-example gradient of W̄ = [W | b] is g_n ā_nᵀ, so its
exact Fisher block is (1/N) Σ_n (ā_n ā_nᵀ) ⊗ (g_n g_nᵀ). K-FAC (Martens & Grosse
2015, eq. (1)) replaces the mean of Kronecker products by the Kronecker product
of means, A ⊗ G, with

    A = (1/N) Σ_n ā_n ā_nᵀ      (D_in + 1, D_in + 1)    ā_n = [a_n; 1] with a bias, a_n without
    G = (1/N) Σ_n g_n g_nᵀ      (D_out, D_out)          g_n = ∂ℓ_n/∂s, the per-example gradient

minikfac's layers keep what is needed. After ``out = net(X)``,
``loss = loss_fn(out, y)`` and ``net.backward(loss_fn.backward())``, every
``mk.nn.Linear`` layer holds

    layer.cache_input        (N, D_in)    its inputs a_n
    layer.cache_grad_output  (N, D_out)   dL/ds of the *mean* loss L = (1/N) Σ ℓ_n —
                                          not the per-example ∂ℓ_n/∂s (work out how they differ)
    layer.bias               None for a layer without bias

Here g is taken with the data labels (the empirical version); the true-Fisher
version backpropagates labels sampled from the model instead (tutorial 05).

Use NumPy (and the layers' attributes), not ``minikfac.curvature``. Check with
``minikfac check 6`` (``--hints 2`` for more help): the checker runs random tanh
networks (batches of one, layers without bias) and compares with the library's
own functions of the same names, ``mk.curvature.input_factor`` and
``mk.curvature.grad_factor`` (which takes the per-example g_n), and with
``mk.curvature.kfac_factors`` for 6.3. Read them after you have written yours.
"""

import numpy as np  # noqa: F401  (you will need it)

import minikfac as mk  # noqa: F401  (for mk.nn.Linear in 6.3)


def input_factor(a, bias):
    """A = (1/N) Σ_n ā_n ā_nᵀ.

    Parameters
    ----------
    a : (N, D_in) array, a layer's ``cache_input``.
    bias : bool, whether the layer has a bias.

    Returns
    -------
    (D_in + 1, D_in + 1) array with a bias (the 1 of ā last, as the bias is the
    last column of W̄), (D_in, D_in) without.
    """
    raise NotImplementedError("Exercise 6.1: return A = (1/N) sum_n ā_n ā_nᵀ, with ā_n = [a_n; 1] if bias")


def grad_factor(grad_output):
    """G = (1/N) Σ_n g_n g_nᵀ, with g_n = ∂ℓ_n/∂s, from the cached gradient of the mean loss.

    Parameters
    ----------
    grad_output : (N, D_out) array, a layer's ``cache_grad_output`` after the
        backward of the mean loss L = (1/N) Σ ℓ_n.

    Returns
    -------
    (D_out, D_out) array.

    With N = 1 some mistakes are invisible: test with N > 1.
    """
    raise NotImplementedError("Exercise 6.2: return G = (1/N) sum_n g_n g_nᵀ with g_n = dℓ_n/ds, from the cache "
                              "of the mean loss")


def kfac_factors_from_caches(net):
    """The K-FAC factors of every Linear layer of ``net``, read from its caches.

    Parameters
    ----------
    net : an ``mk.nn.Sequential`` after a forward and a backward of the mean loss.

    Returns
    -------
    list of (A, G) pairs, one per ``mk.nn.Linear`` layer, in network order.

    ``net.modules()`` yields every module in network order.
    """
    raise NotImplementedError("Exercise 6.3: return [(A, G), ...], one pair per Linear layer of net, from the caches")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("6", __file__))
