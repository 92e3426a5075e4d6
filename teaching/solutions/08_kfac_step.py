"""Model solution of exercise 8: one K-FAC step (NumPy; minikfac runs the net, the loss and the factors)."""

import numpy as np

import minikfac as mk


def augmented_gradient(weight_grad, bias_grad):
    """∇W̄ = [∇W | ∇b] (D_out, D_in + 1); a conv weight through its matrix view (C_out, C_in·KH·KW)."""
    matrix = weight_grad.reshape(len(weight_grad), -1)
    return matrix if bias_grad is None else np.concatenate([matrix, bias_grad[:, None]], axis=1)


def _damped_direction(A, G, gradient, damping):
    """(G + √λ/π I)⁻¹ ∇W̄ (A + π√λ I)⁻¹ with this layer's trace-norm π (exercise 7)."""
    pi = np.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G)))
    root = np.sqrt(damping)
    A_damped = A + pi * root * np.eye(len(A))
    G_damped = G + root / pi * np.eye(len(G))
    return np.linalg.solve(A_damped.T, np.linalg.solve(G_damped, gradient).T).T


def natural_gradients(factors, gradients, damping):
    """The factored-damped K-FAC direction (D_out, D_in + 1) of every layer."""
    return [_damped_direction(A, G, gradient, damping) for (A, G), gradient in zip(factors, gradients)]


def kfac_step(net, loss_fn, X, y, lr, damping):
    """One K-FAC step in place: W̄ ← W̄ − lr · Δ for every Linear layer; returns the loss before the step."""
    net.zero_grad()  # gradients accumulate: clear those of an earlier backward
    loss = float(loss_fn(net(X), y))
    net.backward(loss_fn.backward())
    factors = mk.curvature.kfac_factors(net, loss_fn, X, kind="true")  # one (A, G) per Linear layer
    layers = [m for m in net.modules() if isinstance(m, mk.nn.Linear)]
    gradients = [augmented_gradient(layer.weight.grad, None if layer.bias is None else layer.bias.grad)
                 for layer in layers]
    for layer, step in zip(layers, natural_gradients(factors, gradients, damping)):
        layer.weight.data = layer.weight.data - lr * step[:, :layer.weight.shape[1]]
        if layer.bias is not None:
            layer.bias.data = layer.bias.data - lr * step[:, -1]
    return loss
