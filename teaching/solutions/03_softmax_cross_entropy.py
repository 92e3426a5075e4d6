"""Model solution of exercise 3: softmax cross-entropy, its gradient and its output Fisher (plain NumPy)."""

import numpy as np


def softmax(logits):
    """Row-wise softmax (N, C), stable for huge logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # softmax(f) = softmax(f − m): the largest exp is 1
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(logits):
    """log p (N, C) through a stable log-sum-exp: f − (m + log Σ exp(f − m))."""
    m = logits.max(axis=1, keepdims=True)
    return logits - (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))


def cross_entropy(logits, labels):
    """The mean over the batch of −log p[n, y_n] (a float)."""
    n = len(labels)
    return float(-_log_softmax(logits)[np.arange(n), labels].mean())


def cross_entropy_grad(logits, labels):
    """dL/dlogits (N, C) of the mean loss: (p − onehot(y)) / N."""
    n = len(labels)
    grad = softmax(logits)
    grad[np.arange(n), labels] -= 1.0  # ∇_f ℓ_n = p_n − e_{y_n}
    return grad / n  # the mean over the batch


def output_fisher(logits):
    """F_n = diag(p_n) − p_n p_nᵀ (N, C, C): E_{c~p}[(e_c − p)(e_c − p)ᵀ] in closed form."""
    p = softmax(logits)
    c = p.shape[1]
    return p[:, :, None] * np.eye(c) - p[:, :, None] * p[:, None, :]


def output_fisher_sqrt(logits):
    """S (C, N, C) with Σ_c S[c, n] S[c, n]ᵀ = F_n: S[c, n] = sqrt(p_n[c]) (e_c − p_n)."""
    p = softmax(logits)  # (N, C)
    c = p.shape[1]
    # F_n = Σ_c p_n[c] (e_c − p_n)(e_c − p_n)ᵀ: put each weight's square root inside its vector
    return np.sqrt(p).T[:, :, None] * (np.eye(c)[:, None, :] - p[None, :, :])
