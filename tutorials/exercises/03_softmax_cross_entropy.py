"""Exercise 3: softmax cross-entropy, its gradient, and its output Fisher.

Read first: tutorial 04 (Fisher three ways), sections "Four matrices from one
formula" and "The GGN is the true Fisher here".

A classifier outputs logits f_n (C numbers per example). Its predictive
distribution is p_n = softmax(f_n), p_n[c] = exp(f_n[c]) / Σ_c' exp(f_n[c']), and the
loss is the mean negative log-likelihood of the labels y_n:

    L = (1/N) Σ_n ℓ_n,      ℓ_n = −log p_n[y_n].

The *output Fisher* is the Fisher information of the categorical distribution
w.r.t. its logits: the expectation, over labels c drawn from the model's own
p_n, of the outer product of the per-example gradient,

    F_n = E_{c ~ p_n} [ ∇_f ℓ_n(c) ∇_f ℓ_n(c)ᵀ ]      (C, C),   ℓ_n(c) = −log p_n[c].

The exact Fisher of a whole network is built from it (exercise 5), and a square
root S of it — matrices with Σ_c S[c, n] S[c, n]ᵀ = F_n — lets backpropagation
compute the exact Fisher without sampling labels.

Notation: e_c is the one-hot vector of class c. Use NumPy only (not
``minikfac.nn.CrossEntropyLoss``). Check your work with ``minikfac check 3``
(``--hints 2`` for more help). The checker also feeds logits around 1000: a naive
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

    The logits may be around 1000, where ``np.exp`` overflows.
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

    Beware: for logits around 1000 some probabilities underflow to 0, and log(0) = −inf.
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
    (N, C) array: entry [n, c] is ∂L/∂f_n[c].
    """
    raise NotImplementedError("Exercise 3.3: return dL/dlogits of the mean loss, shape (N, C)")


def output_fisher(logits):
    """The output Fisher F_n = E_{c ~ p_n}[∇_f ℓ_n(c) ∇_f ℓ_n(c)ᵀ] of every example.

    Parameters
    ----------
    logits : (N, C) array.

    Returns
    -------
    (N, C, C) array, symmetric positive semi-definite per example.

    Work out the expectation in closed form (a sum over C labels per example is
    fine too, but the closed form is one line).
    """
    raise NotImplementedError("Exercise 3.4: return the output Fisher F_n of every example, shape (N, C, C)")


def output_fisher_sqrt(logits):
    """A square root of the output Fisher: S with Σ_c S[c, n] S[c, n]ᵀ = F_n.

    Parameters
    ----------
    logits : (N, C) array.

    Returns
    -------
    S : (C, N, C) array; S[c, n] is a vector of length C.

    Any S with that property is accepted (the checker compares Σ_c S Sᵀ with F).
    """
    raise NotImplementedError("Exercise 3.5: return S (C, N, C) with sum_c S[c, n] S[c, n]ᵀ = F_n")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("3", __file__))
