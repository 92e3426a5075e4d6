"""Exercise 10: KFC — the Kronecker factors of a convolution.

Read first: tutorial 10 (convolutions with KFC), section "A convolution is a
matrix product over patches"; exercises 2 (im2col) and 6 (K-FAC's factors of a
Linear layer). The paper: Grosse & Martens 2016, §3.1.

A Conv2d layer applies one matrix W̄ = [W | b] (C_out, D + 1), D = C_in·KH·KW, to
the patch under each of its L = OH·OW output positions (exercise 2): s_l = W̄ ā_l
with ā_l = [a_l; 1]. One example's gradient of W̄ is therefore a sum over
positions, Σ_l g_l ā_lᵀ, with g_l = ∂ℓ/∂s_l (C_out,) the output gradient at
position l. KFC assumes the positions independent and alike, and keeps one
Kronecker product A ⊗ G. Only that product is fixed by the theory (a factor L
could move from one factor to the other); minikfac keeps the paper's Ω and Γ:

    A = (1/N) Σ_n Σ_l ā_nl ā_nlᵀ            (D + 1, D + 1)   summed over positions
    G = (1/(N·L)) Σ_n Σ_l g_nl g_nlᵀ        (C_out, C_out)   averaged over positions

with the 1 of ā appended last at every position (the bias is the last column of
W̄), and without it for a layer without bias.

What a Conv2d layer caches after ``net(X)``, ``loss_fn(out, y)`` and
``net.backward(loss_fn.backward())``:

    layer.cache_input        (N, L, D)            the patches, row l = oh·OW + ow (exercise 2)
    layer.cache_grad_output  (N, C_out, OH, OW)   dL/ds of the *mean* loss (as in exercise 6)
    layer.bias               None for a layer without bias

Use NumPy (and the layers' attributes), not ``minikfac.curvature``. Check with
``minikfac check 10`` (``--hints 2`` for more help): the checker uses random
kernels, strides and paddings, a layer without bias, a batch of one, and a layer
with a single output position, and compares with ``mk.curvature.kfac_factors``.
"""

import numpy as np  # noqa: F401  (you will need it)

import minikfac as mk  # noqa: F401  (for mk.nn.Conv2d and mk.nn.Linear in 10.3)


def conv_input_factor(patches, bias):
    """KFC's input factor A of a Conv2d layer.

    Parameters
    ----------
    patches : (N, L, D) array, the layer's ``cache_input`` (D = C_in·KH·KW).
    bias : bool, whether the layer has a bias.

    Returns
    -------
    (D + 1, D + 1) array with a bias (the 1 of ā last), (D, D) without: ā ā ᵀ
    summed over the L positions and averaged over the N examples.
    """
    raise NotImplementedError("Exercise 10.1: return KFC's A from the patches (N, L, D), shape (D + 1, D + 1)")


def conv_grad_factor(grads):
    """KFC's gradient factor G of a Conv2d layer.

    Parameters
    ----------
    grads : (N, C_out, OH, OW) array, the per-example output gradients
        ∂ℓ_n/∂s at every position (not divided by N).

    Returns
    -------
    (C_out, C_out) array: g gᵀ averaged over the N examples and the L = OH·OW positions.
    """
    raise NotImplementedError("Exercise 10.2: return KFC's G from the output gradients, shape (C_out, C_out)")


def kfc_factors_from_caches(net):
    """The factors of every Conv2d and Linear layer of ``net``, read from its caches.

    Parameters
    ----------
    net : an ``mk.nn.Sequential`` (Conv2d, Tanh, Flatten, Linear) after a forward
        and a backward of the mean cross-entropy.

    Returns
    -------
    list of (A, G) pairs, one per Conv2d or Linear layer, in network order: KFC's
    factors for a Conv2d layer, K-FAC's (exercise 6) for a Linear one.
    """
    raise NotImplementedError("Exercise 10.3: return [(A, G), ...], one pair per Conv2d or Linear layer, from "
                              "the caches")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("10", __file__))
