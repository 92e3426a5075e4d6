"""Exercise 3: softmax cross-entropy, its gradient, and its output Fisher.

Read first: tutorial 04 (Fisher three ways).

A classifier outputs logits f_n (C numbers per example). Its predictive
distribution is p_n = softmax(f_n), and the loss is the mean negative
log-likelihood of the labels y_n:

    L = (1/N) Σ_n ℓ_n,      ℓ_n = −log p_n[y_n] = logsumexp(f_n) − f_n[y_n].

Its gradient w.r.t. the logits is, for one example, ∇_f ℓ_n = p_n − e_{y_n}
(e_c: the one-hot vector of class c), and the mean over the batch divides it by N.

The *output Fisher* is the Fisher information of the categorical distribution
w.r.t. its logits: the expectation over labels c ~ p_n of the outer product of
the gradient,

    F_n = Σ_c p_n[c] (e_c − p_n)(e_c − p_n)ᵀ = diag(p_n) − p_n p_nᵀ      (C, C),

which is also the Hessian of ℓ_n w.r.t. f_n. The exact Fisher of a whole network
is built from it (exercise 5), and a square root S of it — matrices with
Σ_c S[c, n] S[c, n]ᵀ = F_n — lets backpropagation compute the exact Fisher
without sampling labels.

Use NumPy only (not ``minikfac.nn.CrossEntropyLoss``). Check your work with
``minikfac check 3``. The checker also feeds logits around 1000: a naive
``np.exp`` overflows there.
"""

import numpy as np  # noqa: F401  (you will need it)


def softmax(logits):
    """Row-wise softmax, without overflow.

    Parameters
    ----------
    logits : (N, C) array.

    Returns
    -------
    p : (N, C) array, every row positive and summing to 1.

    Hint: softmax(f) = softmax(f − m) for any constant m; take m = the row maximum.
    """
    raise NotImplementedError("Exercise 3.1: return softmax(logits) row by row, shape (N, C), without overflow")


def cross_entropy(logits, labels):
    """The mean negative log-likelihood L = (1/N) Σ_n −log softmax(f_n)[y_n].

    Parameters
    ----------
    logits : (N, C) array.
    labels : (N,) integer array, values in [0, C).

    Returns
    -------
    float (or a 0-d array).

    Hint: compute log p with a stable logsumexp, m + log Σ exp(f − m); pick the
    label's entry with ``log_p[np.arange(N), labels]``.
    """
    raise NotImplementedError("Exercise 3.2: return the mean cross-entropy of the logits and labels (a number)")


def cross_entropy_grad(logits, labels):
    """dL/dlogits of the *mean* loss L.

    Parameters
    ----------
    logits : (N, C) array.
    labels : (N,) integer array.

    Returns
    -------
    (N, C) array: row n is (p_n − e_{y_n}) / N.
    """
    raise NotImplementedError("Exercise 3.3: return dL/dlogits of the mean loss, shape (N, C)")


def output_fisher(logits):
    """The output Fisher of every example, F_n = diag(p_n) − p_n p_nᵀ.

    Parameters
    ----------
    logits : (N, C) array.

    Returns
    -------
    (N, C, C) array, symmetric positive semi-definite per example (singular: F_n 1 = 0).

    Hint: broadcasting — p[:, :, None] has shape (N, C, 1) and p[:, None, :] (N, 1, C).
    """
    raise NotImplementedError("Exercise 3.4: return F_n = diag(p_n) − p_n p_nᵀ for every example, shape (N, C, C)")


def output_fisher_sqrt(logits):
    """A square root of the output Fisher: S with Σ_c S[c, n] S[c, n]ᵀ = F_n.

    Parameters
    ----------
    logits : (N, C) array.

    Returns
    -------
    S : (C, N, C) array; S[c, n] is a vector of length C.

    Any S with that property is accepted (the checker compares Σ_c S Sᵀ with F).
    Hint: read F_n = Σ_c p_n[c] (e_c − p_n)(e_c − p_n)ᵀ as Σ_c v_c v_cᵀ.
    """
    raise NotImplementedError("Exercise 3.5: return S (C, N, C) with sum_c S[c, n] S[c, n]ᵀ = F_n")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("3", __file__))
