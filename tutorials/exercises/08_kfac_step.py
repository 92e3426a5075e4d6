"""Exercise 8: one K-FAC step.

Read first: tutorial 08 (one natural-gradient step), section "Seven methods,
eight directions"; exercises 4, 6 and 7 help.

K-FAC preconditions each layer's gradient separately. With W̄ = [W | b] (the bias
as the last column, shape (D_out, D_in + 1)) and the layer's factors A and G, the
natural-gradient direction is (Martens & Grosse 2015, §4.2 and §6.3) the solve
with the factored-damped Kronecker product of exercise 7,

    vec(Δ) = ((A + π√λ I) ⊗ (G + (√λ/π) I))⁻¹ vec(∇W̄),     π = sqrt((tr(A)/n) / (tr(G)/m)),

returned as a (D_out, D_in + 1) matrix, with n = D_in + 1 and m = D_out (each
layer has its own π). One step then updates every layer: W̄ ← W̄ − lr · Δ. (The
full optimizer, ``mk.optim.KFAC``, also keeps running averages of A and G, adapts
λ and rescales the step with a quadratic model; this is its core.)

The parameters: ``layer.weight.data`` (D_out, D_in) and ``layer.bias.data``
(D_out,) or ``layer.bias is None``; after a backward, ``layer.weight.grad`` and
``layer.bias.grad`` hold the gradients of the mean loss.

Use NumPy; in 8.3 you may also use minikfac to run the net and the loss and
``mk.curvature.kfac_factors`` for the factors (exercise 6 did that by hand), but
not ``mk.curvature.KFACBlockDiagonal`` or ``mk.optim.KFAC``. Check with
``minikfac check 8`` (``--hints 2`` for more help).
"""

import numpy as np  # noqa: F401  (you will need it)

import minikfac as mk  # noqa: F401  (for the net and the factors in 8.3)


def augmented_gradient(weight_grad, bias_grad):
    """∇W̄ = [∇W | ∇b], the gradient of W̄ = [W | b].

    Parameters
    ----------
    weight_grad : (D_out, D_in) array — or a convolution's (C_out, C_in, KH, KW),
        whose matrix view is (C_out, C_in·KH·KW).
    bias_grad : (D_out,) array, or None for a layer without bias.

    Returns
    -------
    (D_out, D_in + 1) array, the bias gradient as the last column; (D_out, D_in)
    without bias.
    """
    raise NotImplementedError("Exercise 8.1: return [∇W | ∇b], shape (D_out, D_in + 1) (just ∇W without bias)")


def natural_gradients(factors, gradients, damping):
    """The factored-damped K-FAC direction Δ of every layer.

    Parameters
    ----------
    factors : list of (A, G) pairs, A (D_in + 1, D_in + 1), G (D_out, D_out), one per layer.
    gradients : list of ∇W̄ arrays (D_out, D_in + 1), one per layer.
    damping : λ > 0.

    Returns
    -------
    list of (D_out, D_in + 1) arrays: Δ with vec(Δ) = ((A + π√λ I) ⊗ (G + (√λ/π) I))⁻¹ vec(∇W̄), per layer.
    """
    raise NotImplementedError("Exercise 8.2: return the factored-damped K-FAC direction of each layer")


def kfac_step(net, loss_fn, X, y, lr, damping):
    """One K-FAC step on the batch (X, y); changes the net's parameters in place.

    Parameters
    ----------
    net : an ``mk.nn.Sequential`` of Linear layers and activations. Its ``.grad``
        may hold gradients of an earlier backward.
    loss_fn : an ``mk.nn.CrossEntropyLoss``.
    X : (N, D_in) array; y : (N,) integer labels.
    lr : the learning rate; damping : λ > 0.

    Returns
    -------
    float, the loss on (X, y) *before* the step.

    The factors: ``mk.curvature.kfac_factors(net, loss_fn, X, kind="true")``
    (one (A, G) per Linear layer, in order), taken after the backward. The new
    W̄ of each layer goes back into ``weight.data`` and ``bias.data``.
    """
    raise NotImplementedError("Exercise 8.3: update every Linear layer by W̄ ← W̄ − lr · Δ and return the loss before")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("8", __file__))
