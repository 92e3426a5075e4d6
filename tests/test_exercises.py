"""The classroom exercises and their grader (``minikfac check``).

For every exercise: the untouched student file fails every part with "not
implemented"; a correct solution, written here from the library's own functions
(into tmp_path, never next to the student files), passes every part for several
seeds, and so does the plain-NumPy model solution in teaching/solutions/ (without
--allow-library); and plausible wrong solutions — a transposed result, a missing
1/N, the wrong vec order, a forgotten bias column, ... — fail exactly the part they
get wrong, with a message that names the mistake. Each diagnosis of the comparison
is shown to fire. Hints come in tiers, and tier 1 (the default) gives no answer
away. Then the command line: exit codes 0/1/2, --list, --seed, --hints, --graded,
class reports of several files, unknown names, missing files, files that do not import.
"""

import ast
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minikfac import cli, exercises
from minikfac.exercises import registry

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXERCISE_DIR = ROOT / "tutorials" / "exercises"
SOLUTION_DIR = ROOT / "teaching" / "solutions"

# --------------------------------------------------------------------------- #
# Correct solutions, built from the library
# --------------------------------------------------------------------------- #
HEADER = """
import numpy as np
import minikfac as mk
from minikfac import curvature, nn
from minikfac.curvature import ekfac, kron, statistics
from minikfac.curvature.damping import factored_pi
from minikfac.curvature import polar
from minikfac.curvature.linalg import psd_eigh
from minikfac.nn import conv
"""

SOLUTIONS = {
    1: """
def _layer(W, b):
    layer = nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
    layer.weight.data = W
    if b is not None:
        layer.bias.data = b
    return layer

def linear_forward(x, W, b):
    return _layer(W, b)(x)

def linear_backward(dout, x, W, b):
    layer = _layer(W, b)
    layer(x)
    dx = layer.backward(dout)
    return dx, layer.weight.grad, None if b is None else layer.bias.grad
""",
    2: """
def output_size(size, kernel, stride, padding):
    return conv.output_size(size, kernel, stride, padding)

def im2col(x, kernel, stride, padding):
    return conv.im2col(x, kernel, stride, padding)

def conv2d_forward(x, weight, bias, stride, padding):
    c_out, c_in, kh, kw = weight.shape
    layer = nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding, bias=bias is not None)
    layer.weight.data = weight
    if bias is not None:
        layer.bias.data = bias
    return layer(x)
""",
    3: """
def _loss(logits, labels):
    loss_fn = nn.CrossEntropyLoss()
    value = loss_fn(logits, labels)
    return loss_fn, value

def softmax(logits):
    return _loss(logits, np.zeros(len(logits), dtype=int))[0].cache_probs

def cross_entropy(logits, labels):
    return _loss(logits, labels)[1]

def cross_entropy_grad(logits, labels):
    return _loss(logits, labels)[0].backward()

def output_fisher(logits):
    return nn.CrossEntropyLoss().output_hessian(logits)

def output_fisher_sqrt(logits):
    return nn.CrossEntropyLoss().output_fisher_sqrt(logits)
""",
    4: """
def vec(X):
    return curvature.vec(X)

def unvec(v, rows):
    return curvature.unvec(v, rows)

def kron_matvec(A, G, X):
    return curvature.kron_matvec(A, G, X)

def kron_solve(A, G, X):
    return curvature.kron_solve(A, G, X)
""",
    5: """
def per_example_gradient(a, g, bias):
    a_bar = np.concatenate([a, np.ones((len(a), 1))], axis=1) if bias else a
    return statistics.layer_gradients(statistics.LayerStatistics(None, a_bar, g[None]))[0]

def fisher_from_jacobians(J, output_fisher):
    return np.einsum("nkp,nkl,nlq->pq", J, output_fisher, J) / len(J)

def empirical_fisher(grads):
    return grads.T @ grads / len(grads)
""",
    6: """
def _A(a, bias):
    a_bar = np.concatenate([a, np.ones((len(a), 1))], axis=1) if bias else a
    return a_bar.T @ a_bar / len(a)

def _G(grad_output):
    g = len(grad_output) * grad_output
    return g.T @ g / len(g)

def input_factor(a, bias):
    return _A(a, bias)

def grad_factor(grad_output):
    return _G(grad_output)

def kfac_factors_from_caches(net):
    return [(_A(layer.cache_input, layer.bias is not None), _G(layer.cache_grad_output))
            for layer in curvature.parametrised_layers(net)]
""",
    7: """
def trace_norm_pi(A, G):
    return factored_pi(A, G)

def damped_factors(A, G, damping):
    pi, root = float(factored_pi(A, G)), damping ** 0.5
    return A + pi * root * np.eye(len(A)), G + root / pi * np.eye(len(G))

def factored_damped_solve(A, G, V, damping):
    return kron.kron_solve_factored(A, G, V, damping)

def exact_damped_solve(A, G, V, damping):
    return kron.kron_solve(A, G, V, damping)
""",
    8: """
def augmented_gradient(weight_grad, bias_grad):
    matrix = weight_grad.reshape(len(weight_grad), -1)
    return matrix if bias_grad is None else np.concatenate([matrix, bias_grad[:, None]], axis=1)

def natural_gradients(factors, gradients, damping):
    return curvature.KFACBlockDiagonal(factors).precondition(gradients, damping, factored=True)

def kfac_step(net, loss_fn, X, y, lr, damping):
    net.zero_grad()
    loss = loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    factors = curvature.kfac_factors(net, loss_fn, X, kind="true")
    direction = curvature.KFACBlockDiagonal(factors).solve(curvature.flatten(net, "grad"), damping, factored=True)
    curvature.assign(net, curvature.flatten(net) - lr * direction)
    return float(loss)
""",
    9: """
def eigenbases(A, G):
    return psd_eigh(A)[1], psd_eigh(G)[1]

def project_gradients(D, U_A, U_G):
    return kron.unvec(kron.vec(D) @ kron.kron_eigenvectors(U_A, U_G), U_G.shape[0])

def corrected_scalings(a_bar, g, U_A, U_G):
    stats = statistics.LayerStatistics(None, a_bar, g[None])
    return ekfac.chunk_scaling_sums(stats, None, U_A, U_G) / len(a_bar)

def ekfac_solve(V, U_A, U_G, s, damping):
    return kron.unvec(ekfac.EKFAC([(U_A, U_G)], [s]).solve(kron.vec(V), damping), V.shape[0])
""",
    10: """
def conv_input_factor(patches, bias):
    return curvature.input_factor(patches, bias)

def conv_grad_factor(grads):
    n, c_out = grads.shape[:2]
    return curvature.grad_factor(np.moveaxis(grads, 1, -1).reshape(1, n, -1, c_out))

def kfc_factors_from_caches(net):
    factors = []
    for layer in curvature.parametrised_layers(net):
        n, bias = layer.cache_input.shape[0], layer.bias is not None
        if layer.cache_input.ndim == 3:
            g = n * np.moveaxis(layer.cache_grad_output, 1, -1).reshape(1, n, -1, layer.cache_grad_output.shape[1])
            factors.append((curvature.input_factor(layer.cache_input, bias), curvature.grad_factor(g)))
        else:
            g = n * layer.cache_grad_output
            factors.append((curvature.input_factor(layer.cache_input, bias), curvature.grad_factor(g[None])))
    return factors
""",
    11: """
def polar_factor(M):
    return polar.polar_factor(M)

def newton_schulz_step(X, coefficients):  # the library's iteration normalises first: the step is written out
    a, b, c = coefficients
    A = X @ X.T
    return a * X + (b * A + c * A @ A) @ X

def newton_schulz(M, steps, coefficients, eps):
    return polar.newton_schulz(M, steps, coefficients, eps)

def shampoo_one_gradient(G, eps):
    return polar.matrix_power_psd(G @ G.T, -0.25, eps) @ G @ polar.matrix_power_psd(G.T @ G, -0.25, eps)
""",
    12: """
def precision_eigenvalues(A, G, n_data, prior_precision):
    return n_data * kron.unvec(kron.KroneckerFactors(A, G).eigenvalues(), G.shape[0]) + prior_precision

def _eigenvalues(factors):
    return np.concatenate([kron.KroneckerFactors(A, G).eigenvalues() for A, G in factors])

def log_evidence(factors, n_data, prior_precision, log_likelihood, theta):
    values = _eigenvalues(factors)
    return (float(mk.laplace.evidence.log_det_precision(values, n_data, prior_precision)),
            float(mk.laplace.log_marginal_likelihood(log_likelihood, theta @ theta, values, n_data, prior_precision)))

def _jacobian(a_bars, gradients):  # output k's row: vec(g_k ā ᵀ) per layer, the layers side by side
    return np.concatenate([np.stack([kron.vec(np.outer(g, a)) for g in grads]) for a, grads in zip(a_bars, gradients)],
                          axis=1)

def functional_covariance(factors, a_bars, gradients, n_data, prior_precision):
    J = _jacobian(a_bars, gradients)
    return mk.laplace.functional_covariance(J[None], curvature.KFACBlockDiagonal(factors), n_data, prior_precision)[0]

def probit_probabilities(f, covariance):
    return mk.laplace.probit(f[None], covariance[None], "softmax")[0]
""",
}

# (exercise, the part that must fail, a wrong definition appended to the correct solution, words of the message)
WRONG = [
    (1, "1.1", "def linear_forward(x, W, b):\n    return x @ W.T  # the bias forgotten", "a missing or extra bias"),
    (1, "1.2", "_right = linear_backward\ndef linear_backward(dout, x, W, b):\n"
               "    dx, dW, db = _right(dout, x, W, b)\n    return dx, dW.T, db", "transpose"),
    (1, "1.2", "_right = linear_backward\ndef linear_backward(dout, x, W, b):\n"
               "    dx, dW, db = _right(dout, x, W, b)\n    return dx, dW, None if db is None else db / len(x)",
     "1/N"),
    (2, "2.1", "def output_size(size, kernel, stride, padding):\n    return (size - kernel) // stride + 1",
     "your result equals the count without the padding"),
    (2, "2.2", "def im2col(x, kernel, stride, padding):  # columns in (kh, kw, c) order\n"
               "    p = conv.im2col(x, kernel, stride, padding)\n"
               "    n, l = p.shape[:2]\n"
               "    return p.reshape(n, l, x.shape[1], *kernel).transpose(0, 1, 3, 4, 2).reshape(n, l, -1)",
     "your result equals the patches with their columns in (kh, kw, c) order"),
    (2, "2.3", "_right = conv2d_forward\ndef conv2d_forward(x, weight, bias, stride, padding):\n"
               "    out = _right(x, weight, bias, stride, padding)  # (N, OH, OW, C_out) reshaped, not transposed\n"
               "    return out.transpose(0, 2, 3, 1).reshape(out.shape)", "the channel axis must be moved"),
    (3, "3.1", "def softmax(logits):\n    e = np.exp(logits)\n    return e / e.sum(axis=1, keepdims=True)",
     "NaN or inf"),
    (3, "3.1", "_right = softmax\ndef softmax(logits):\n    return _right(logits.T).T  # over the columns",
     "your result equals the softmax of each column instead of each row"),
    (3, "3.2", "_right = cross_entropy\ndef cross_entropy(logits, labels):\n"
               "    return _right(logits, labels) * len(logits)  # a sum, not a mean", "N ="),
    (3, "3.3", "_right = cross_entropy_grad\ndef cross_entropy_grad(logits, labels):\n"
               "    return _right(logits, labels) * len(logits)  # per example, not of the mean", "N ="),
    (3, "3.4", "def output_fisher(logits):\n    p = softmax(logits)\n    return p[:, :, None] * np.eye(p.shape[1])",
     "wrong values"),
    (3, "3.5", "def output_fisher_sqrt(logits):  # p instead of sqrt(p)\n"
               "    p = softmax(logits)\n    return p.T[:, :, None] * (np.eye(p.shape[1])[:, None, :] - p[None])",
     "Σ_c S[c, n] S[c, n]ᵀ"),
    (4, "4.1", "def vec(X):\n    return X.reshape(-1)  # stacks rows", "wrong places"),
    (4, "4.2", "def unvec(v, rows):\n    return v.reshape(rows, -1)  # fills rows", "wrong places"),
    (4, "4.3", "def kron_matvec(A, G, X):\n    return G @ X @ A", "your result equals G X A (A where Aᵀ belongs)"),
    (4, "4.3", "def kron_matvec(A, G, X):  # np.kron on a row-major reshape\n"
               "    return (np.kron(A, G) @ X.reshape(-1)).reshape(X.shape)", "applied to the row-stacked X"),
    (4, "4.4", "def kron_solve(A, G, X):\n    return np.linalg.solve(G, X) @ A  # A not inverted",
     "your result equals G⁻¹ X A (A multiplied, not inverted)"),
    (5, "5.1", "def per_example_gradient(a, g, bias):  # vec of ā gᵀ: rows stacked\n"
               "    a_bar = np.concatenate([a, np.ones((len(a), 1))], axis=1) if bias else a\n"
               "    return np.einsum('no,ni->noi', g, a_bar).reshape(len(a), -1)",
     "your result equals the rows of g āᵀ stacked instead of its columns"),
    (5, "5.2", "def fisher_from_jacobians(J, output_fisher):\n"
               "    return np.einsum('nkp,nkl,nlq->pq', J, output_fisher, J)  # no 1/N", "N ="),
    (5, "5.3", "def empirical_fisher(grads):\n    return np.cov(grads.T)", "a covariance (the mean subtracted"),
    (6, "6.1", "def input_factor(a, bias):\n    return a.T @ a / len(a)  # the bias coordinate forgotten",
     "one entry shorter along axis 0 and 1 (the bias column"),
    (6, "6.1", "def input_factor(a, bias):  # the 1 of ā first\n"
               "    a_bar = np.concatenate([np.ones((len(a), 1)), a], axis=1) if bias else a\n"
               "    return a_bar.T @ a_bar / len(a)", "your result equals A with the 1 of ā first"),
    (6, "6.2", "def grad_factor(grad_output):\n    return grad_output.T @ grad_output / len(grad_output)",
     "1/N²"),
    (6, "6.3", "_right = kfac_factors_from_caches\ndef kfac_factors_from_caches(net):\n"
               "    return [(G, A) for A, G in _right(net)]", "A of layer 1"),
    (7, "7.1", "def trace_norm_pi(A, G):\n    return 1 / factored_pi(A, G)", "your result equals 1/π"),
    (7, "7.1", "def trace_norm_pi(A, G):  # the traces alone\n    return float(np.sqrt(np.trace(A) / np.trace(G)))",
     "the traces not divided by the sizes"),
    (7, "7.2", "def damped_factors(A, G, damping):  # π on the wrong side\n"
               "    pi, root = float(factored_pi(A, G)), damping ** 0.5\n"
               "    return A + root / pi * np.eye(len(A)), G + pi * root * np.eye(len(G))",
     "your result equals the two shifts swapped"),
    (7, "7.3", "def factored_damped_solve(A, G, V, damping):  # π = 1\n"
               "    return kron.kron_solve_factored(A, G, V, damping, pi=1.0)", "your result equals the solve with π = 1"),
    (7, "7.4", "def exact_damped_solve(A, G, V, damping):  # (A + λI) ⊗ (G + λI)\n"
               "    return np.linalg.solve(G + damping * np.eye(len(G)), V) @ np.linalg.inv(A + damping * np.eye(len(A)))",
     "λ added to each factor"),
    (8, "8.1", "def augmented_gradient(weight_grad, bias_grad):  # bias as the first column\n"
               "    matrix = weight_grad.reshape(len(weight_grad), -1)\n"
               "    return matrix if bias_grad is None else np.concatenate([bias_grad[:, None], matrix], axis=1)",
     "your result equals [∇b | ∇W]"),
    (8, "8.2", "def natural_gradients(factors, gradients, damping):  # exact damping instead of factored\n"
               "    return curvature.KFACBlockDiagonal(factors).precondition(gradients, damping)",
     "your result equals the exact damping"),
    (8, "8.3", "_right = kfac_step\ndef kfac_step(net, loss_fn, X, y, lr, damping):  # no zero_grad\n"
               "    loss = loss_fn(net(X), y)\n    net.backward(loss_fn.backward())\n"
               "    factors = curvature.kfac_factors(net, loss_fn, X, kind='true')\n"
               "    direction = curvature.KFACBlockDiagonal(factors).solve(curvature.flatten(net, 'grad'), damping, factored=True)\n"
               "    curvature.assign(net, curvature.flatten(net) - lr * direction)\n    return float(loss)",
     "your result equals a step with the old gradients still in .grad"),
    (9, "9.1", "def eigenbases(A, G):  # the eigenvectors as rows\n    return psd_eigh(A)[1].T, psd_eigh(G)[1].T",
     "the rows of your U_A are"),
    (9, "9.2", "def project_gradients(D, U_A, U_G):\n    return U_G @ D @ U_A.T",
     "your result equals U_G D_n U_Aᵀ (rotated out of the eigenbasis"),
    (9, "9.3", "def corrected_scalings(a_bar, g, U_A, U_G):  # the square of the mean\n"
               "    D = np.einsum('no,ni->noi', g, a_bar)\n    return (U_G.T @ D.mean(axis=0) @ U_A) ** 2",
     "your result equals the square of the mean projected gradient"),
    (9, "9.3", "def corrected_scalings(a_bar, g, U_A, U_G):  # K-FAC's eigenvalues\n"
               "    A, G = a_bar.T @ a_bar / len(a_bar), g.T @ g / len(g)\n"
               "    return np.outer(np.diag(U_G.T @ G @ U_G), np.diag(U_A.T @ A @ U_A))",
     "your result equals K-FAC's eigenvalues"),
    (9, "9.4", "def ekfac_solve(V, U_A, U_G, s, damping):  # never rotated back\n"
               "    return (U_G.T @ V @ U_A) / (s + damping)", "left in the eigenbasis (not rotated back)"),
    (10, "10.1", "def conv_input_factor(patches, bias):  # averaged over the positions too\n"
                 "    return curvature.input_factor(patches, bias) / patches.shape[1]", "(1/L: a missing or extra"),
    (10, "10.2", "def conv_grad_factor(grads):  # channels not moved last\n"
                 "    rows = grads.reshape(-1, grads.shape[1])\n    return rows.T @ rows / len(rows)",
     "the channel axis must be moved last first"),
    (10, "10.2", "_right = conv_grad_factor\ndef conv_grad_factor(grads):  # summed over the positions\n"
                 "    return _right(grads) * grads.shape[2] * grads.shape[3]", "(L = "),
    (10, "10.3", "_right = kfc_factors_from_caches\ndef kfc_factors_from_caches(net):  # the Linear layer left out\n"
                 "    return _right(net)[:1]", "one per Conv2d or Linear layer, got a list of length 1"),
    (10, "10.3", "_right = kfc_factors_from_caches\ndef kfc_factors_from_caches(net):  # the conv's 1 of ā left out\n"
                 "    (A, G), rest = _right(net)[0], _right(net)[1:]\n"
                 "    return [(A[:-1, :-1], G)] + rest",
     "= (D + 1, D + 1), D = C_in·KH·KW"),
    (10, "10.3", "def kfc_factors_from_caches(net):  # the cached gradient of the mean loss used as it is\n"
                 "    return [(conv_input_factor(m.cache_input, m.bias is not None), conv_grad_factor(m.cache_grad_output))\n"
                 "            if m.cache_input.ndim == 3 else\n"
                 "            (curvature.input_factor(m.cache_input, True), curvature.grad_factor(len(m.cache_input) * m.cache_grad_output[None]))\n"
                 "            for m in curvature.parametrised_layers(net)]", "1/N²"),
    (11, "11.1", "def polar_factor(M):  # V Uᵀ, the transpose\n"
                 "    U, _, Vt = np.linalg.svd(M, full_matrices=False)\n    return Vt.T @ U.T",
     "it is the transpose of the expected result"),
    (11, "11.1", "def polar_factor(M):  # only scaled\n    return M / np.linalg.norm(M, 2)",
     "your result equals M divided by its largest singular value"),
    (11, "11.2", "def newton_schulz_step(X, coefficients):  # the polynomial on the entries\n"
                 "    a, b, c = coefficients\n    return a * X + b * X ** 3 + c * X ** 5",
     "your result equals a·X + b·X³ + c·X⁵ taken entrywise"),
    (11, "11.3", "def newton_schulz(M, steps, coefficients, eps):  # transposed, never transposed back\n"
                 "    X = M.T if M.shape[0] > M.shape[1] else M\n"
                 "    return polar.newton_schulz(X, steps, coefficients, eps)",
     "it is the transpose of the expected result"),
    (11, "11.3", "def newton_schulz(M, steps, coefficients, eps):  # the spectral norm\n"
                 "    X = M / max(np.linalg.norm(M, 2), eps)\n"
                 "    for _ in range(steps):\n        X = newton_schulz_step(X, coefficients)\n    return X",
     "your result equals M divided by its largest singular value (the spectral norm)"),
    (11, "11.4", "def shampoo_one_gradient(G, eps):  # inverse square roots\n"
                 "    return polar.matrix_power_psd(G @ G.T, -0.5, eps) @ G @ polar.matrix_power_psd(G.T @ G, -0.5, eps)",
     "your result equals the exponent −1/2 on both sides"),
    (12, "12.1", "def precision_eigenvalues(A, G, n_data, prior_precision):  # N forgotten\n"
                 "    return kron.unvec(kron.KroneckerFactors(A, G).eigenvalues(), G.shape[0]) + prior_precision",
     "your result equals g_i·a_j + δ (N forgotten"),
    (12, "12.1", "def precision_eigenvalues(A, G, n_data, prior_precision):  # A and G swapped\n"
                 "    return n_data * np.outer(np.linalg.eigh(A)[0], np.linalg.eigh(G)[0]) + prior_precision",
     "(A and G swapped: the Kronecker order reversed)"),
    (12, "12.1", "def precision_eigenvalues(A, G, n_data, prior_precision):  # factored damping\n"
                 "    pi, root = float(factored_pi(A, G)), (prior_precision / n_data) ** 0.5\n"
                 "    return n_data * np.outer(np.linalg.eigh(G)[0] + root / pi, np.linalg.eigh(A)[0] + pi * root)",
     "your result equals the eigenvalues of the factored π-damping"),
    (12, "12.2", "_right = log_evidence\n"
                 "def log_evidence(factors, n_data, prior_precision, log_likelihood, theta):  # no ½P log δ\n"
                 "    log_det, value = _right(factors, n_data, prior_precision, log_likelihood, theta)\n"
                 "    return log_det, value - 0.5 * len(theta) * np.log(prior_precision)",
     "your result equals the evidence without the prior's ½·P·log δ"),
    (12, "12.2", "def log_evidence(factors, n_data, prior_precision, log_likelihood, theta):  # N forgotten\n"
                 "    log_det = float(np.sum(np.log(_eigenvalues(factors) + prior_precision)))\n"
                 "    return log_det, float(log_likelihood - 0.5 * prior_precision * theta @ theta - 0.5 * log_det\n"
                 "                          + 0.5 * len(theta) * np.log(prior_precision))",
     "your result equals log det(F̂ + δI) (N forgotten)"),
    (12, "12.3", "def functional_covariance(factors, a_bars, gradients, n_data, prior_precision):  # δ, not δ/N\n"
                 "    J = _jacobian(a_bars, gradients)\n"
                 "    return J @ curvature.KFACBlockDiagonal(factors).solve(J.T, prior_precision) / n_data",
     "(δ where δ/N belongs)"),
    (12, "12.3", "_right = functional_covariance\n"
                 "def functional_covariance(factors, a_bars, gradients, n_data, prior_precision):  # the last layer\n"
                 "    return _right(factors[-1:], a_bars[-1:], gradients[-1:], n_data, prior_precision)",
     "your result equals the last layer's term only (a last-layer Laplace)"),
    (12, "12.3", "def functional_covariance(factors, a_bars, gradients, n_data, prior_precision):  # rows g ⊗ ā\n"
                 "    J = np.concatenate([np.stack([np.kron(g, a) for g in grads])\n"
                 "                        for a, grads in zip(a_bars, gradients)], axis=1)\n"
                 "    return J @ curvature.KFACBlockDiagonal(factors).solve(J.T, prior_precision / n_data) / n_data",
     "your result equals Jacobian rows g_k ⊗ ā (the Kronecker order reversed"),
    (12, "12.3", "def functional_covariance(factors, a_bars, gradients, n_data, prior_precision):  # factored\n"
                 "    J = _jacobian(a_bars, gradients)\n"
                 "    solved = curvature.KFACBlockDiagonal(factors).solve(J.T, prior_precision / n_data, factored=True)\n"
                 "    return J @ solved / n_data",
     "your result equals the factored π-damping's"),
    (12, "12.4", "def probit_probabilities(f, covariance):  # the MAP's softmax\n"
                 "    e = np.exp(f - f.max())\n    return e / e.sum()",
     "your result equals softmax(f), the MAP's probabilities"),
    (12, "12.4", "def probit_probabilities(f, covariance):  # an unstable softmax\n"
                 "    e = np.exp(f / np.sqrt(1 + np.pi / 8 * np.diag(covariance)))\n    return e / e.sum()",
     "NaN or inf"),
    (12, "12.4", "def probit_probabilities(f, covariance):  # π/8 left out\n"
                 "    z = f / np.sqrt(1 + np.diag(covariance))\n    e = np.exp(z - z.max())\n    return e / e.sum()",
     "(λ² = π/8 left out)"),
]


def write(tmp_path, text, name="solution.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def grade(number, path, seed=0):
    # The solutions here are built from the library, which the exercises forbid to students.
    report = exercises.grade(exercises.find(str(number)), path, seed=seed, allow_library=True)
    return report, {result.part.number: result for result in report.parts}


NUMBERS = [exercise.number for exercise in exercises.EXERCISES]


# --------------------------------------------------------------------------- #
# The exercises
# --------------------------------------------------------------------------- #
def test_there_are_twelve_exercises_with_their_student_files():
    assert NUMBERS == list(range(1, 13))
    for exercise in exercises.EXERCISES:
        assert (EXERCISE_DIR / exercise.filename).is_file(), exercise.filename
        assert exercise.parts and all(len(part.hints) == 2 and part.task for part in exercise.parts)
        assert exercise.forbidden, exercise.name
    assert (EXERCISE_DIR / "README.md").is_file()
    assert not (EXERCISE_DIR / "solutions").exists()  # the answers are kept away from the students' folder


@pytest.mark.parametrize("number", NUMBERS)
def test_the_untouched_student_file_fails_every_part_as_not_implemented(number):
    exercise = exercises.find(str(number))
    report, parts = grade(number, str(EXERCISE_DIR / exercise.filename))
    assert report.import_error is None
    assert report.exit_code == 1 and not report.passed
    assert [r.status for r in report.parts] == [exercises.NOT_IMPLEMENTED] * len(exercise.parts)
    for part in exercise.parts:
        assert parts[part.number].lines[0].startswith(f"Exercise {part.number}: "), parts[part.number].lines
    assert report.text().count("not implemented yet") == len(exercise.parts)


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_solution_built_from_the_library_passes_every_part(number, seed, tmp_path):
    report, _ = grade(number, write(tmp_path, HEADER + SOLUTIONS[number]), seed=seed)
    assert report.passed, report.text()
    assert report.exit_code == 0
    assert all(result.cases >= 3 for result in report.parts), "every part runs several random cases"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("number, part, wrong, words", WRONG, ids=[f"{w[1]}-{i}" for i, w in enumerate(WRONG)])
def test_a_plausible_mistake_fails_its_part_and_only_that_one(number, part, wrong, words, seed, tmp_path):
    path = write(tmp_path, HEADER + SOLUTIONS[number] + "\n" + wrong + "\n")
    report, parts = grade(number, path, seed=seed)
    assert report.exit_code == 1
    failed = [n for n, result in parts.items() if result.status != exercises.PASSED]
    assert failed == [part], report.text()
    text = "\n".join(parts[part].lines)
    assert words in text, text
    assert "hint:" in text


def test_every_part_is_shown_to_fail_on_some_mistake():
    caught = {part for _, part, _, _ in WRONG}
    assert caught == {part.number for exercise in exercises.EXERCISES for part in exercise.parts}


def test_the_cases_depend_on_the_seed_and_a_seed_reproduces_them():
    part = exercises.find("1").parts[0]
    first, again, other = (part.cases(np.random.default_rng([s, 1, 0])) for s in (5, 5, 6))
    assert all(np.array_equal(a.args[0], b.args[0]) for a, b in zip(first, again))
    assert any(a.args[0].shape != b.args[0].shape or not np.array_equal(a.args[0], b.args[0])
               for a, b in zip(first, other))


def test_messages_explain_shapes_and_exceptions(tmp_path):
    path = write(tmp_path, HEADER + SOLUTIONS[1] + """
def linear_forward(x, W, b):
    return x @ W  # a shape error: raises
def linear_backward(dout, x, W, b):
    return dout @ W, x.T @ dout, None if b is None else dout.sum(axis=0)  # dW transposed
""")
    _, parts = grade(1, path)
    text = "\n".join(parts["1.1"].lines)
    assert "raised ValueError" in text
    line = 1 + (HEADER + SOLUTIONS[1]).count("\n") + 2  # the student's line that raised
    assert f"(line {line} in linear_forward: return x @ W" in text, text
    text = "\n".join(parts["1.2"].lines)
    assert "dW: shape" in text and "(D_out, D_in)" in text and "transpose of the expected result" in text


def test_a_missing_function_and_a_wrong_return_type_are_reported(tmp_path):
    path = write(tmp_path, HEADER + "def vec(X):\n    return None\ndef unvec(v, rows):\n    return 'no'\n")
    report, parts = grade(4, path)
    assert "got None" in parts["4.1"].lines[1] and "missing return" in parts["4.1"].lines[1]
    assert "got a str" in parts["4.2"].lines[1]
    assert parts["4.3"].status == "FAILED" and "no function kron_matvec" in parts["4.3"].lines[0]
    assert report.exit_code == 1


def test_the_comparison_tolerance_and_its_diagnoses():
    from minikfac.exercises.feedback import RTOL, compare_arrays

    rng = np.random.default_rng(0)
    expected = rng.standard_normal((4, 3))
    scale = np.max(np.abs(expected))
    assert compare_arrays(expected, expected + 0.1 * RTOL * scale) is None
    assert compare_arrays(expected, expected.tolist()) is None  # lists are read as arrays
    nudged = expected.copy()
    nudged[2, 1] += 10 * RTOL * scale
    assert "worst entry at index (2, 1)" in compare_arrays(expected, nudged)
    assert "transpose of the expected result" in compare_arrays(expected, expected.T)
    assert "1/N" in compare_arrays(expected, expected / 4, known={"N": 4})
    assert "minus the expected one" in compare_arrays(expected, -expected)
    assert "wrong places" in compare_arrays(expected, expected[::-1])
    assert "NaN or inf" in compare_arrays(expected, np.full((4, 3), np.nan))
    assert "one entry longer along axis 1" in compare_arrays(expected, np.ones((4, 4)), "W̄", "(D_out, D_in + 1)")
    assert "(D_out, D_in + 1)" in compare_arrays(expected, np.ones((4, 4)), "W̄", "(D_out, D_in + 1)")


def test_the_grader_restores_the_backend_and_dtype_the_student_changed(tmp_path):
    import minikfac as mk

    path = write(tmp_path, HEADER + "mk.set_default_dtype('float32')\n" + SOLUTIONS[4])
    mk.set_default_dtype("float64")
    report, _ = grade(4, path)
    assert report.passed, report.text()
    assert mk.get_default_dtype() == np.float64


# --------------------------------------------------------------------------- #
# Files that do not import
# --------------------------------------------------------------------------- #
def test_a_syntax_error_is_reported_cleanly(tmp_path, capsys):
    path = write(tmp_path, "import numpy as np\n\ndef vec(X)\n    return X\n")
    status = cli.main(["check", "4", path, "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 1
    assert "could not be imported" in out and "line 3" in out and "SyntaxError" in out
    assert "Traceback" not in out and "seed 3" in out


def test_an_exception_at_import_is_reported_cleanly(tmp_path, capsys):
    path = write(tmp_path, "import numpy as np\nx = undefined_name + 1\n")
    status = cli.main(["check", "4", path])
    out = capsys.readouterr().out
    assert status == 1
    assert "raised NameError" in out and "undefined_name" in out and "line 2" in out
    assert "Traceback" not in out


# --------------------------------------------------------------------------- #
# The command line
# --------------------------------------------------------------------------- #
def test_cli_exit_codes_pass_fail_and_the_default_file(tmp_path, capsys, monkeypatch):
    solution = write(tmp_path, HEADER + SOLUTIONS[7])  # built from the library: a teacher's reference
    assert cli.main(["check", "7", solution, "--seed", "11", "--allow-library"]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 parts passed (all passed)" in out and "--seed 11" in out
    # The default file is tutorials/exercises/NN_name.py under the working directory: the stubs fail.
    monkeypatch.chdir(ROOT)
    assert cli.main(["check", "07_damping"]) == 1
    out = capsys.readouterr().out
    assert "07_damping.py" in out and "0 of 4 parts passed" in out
    seed = int(out.split(", seed ")[1].split()[0])  # a fresh seed, printed
    assert f"--seed {seed}" in out


@pytest.mark.parametrize("name", ["7", "07", "07_damping", "damping", "07_damping.py"])
def test_exercises_are_found_by_number_or_name(name):
    assert exercises.find(name).number == 7


@pytest.mark.parametrize("argv, words", [
    (["check", "13"], "unknown exercise '13'"),
    (["check", "softmax"], "unknown exercise 'softmax'"),
    (["check"], "which exercise?"),
    (["check", "3", "no/such/file.py"], "no file no/such/file.py"),
])
def test_cli_usage_errors_exit_2_with_a_clear_message(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert "minikfac check" in err


def test_cli_missing_default_file_names_the_place_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "installed_blank_path", lambda exercise: None)  # as in a checkout
    assert cli.main(["check", "3"]) == 2
    err = capsys.readouterr().err
    assert "03_softmax_cross_entropy.py" in err and str(tmp_path) in err and "PATH" in err


def test_cli_list(capsys):
    assert cli.main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    for exercise in exercises.EXERCISES:
        assert exercise.filename in out
        assert all(part.function in out for part in exercise.parts)


def test_the_command_and_a_student_file_run_as_programs(tmp_path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "minikfac", "check", "1", "--seed", "4"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "1.2 linear_backward" in done.stdout, done.stdout + done.stderr
    # A student file checks itself when run directly.
    done = subprocess.run([sys.executable, str(EXERCISE_DIR / "04_kronecker_matvec.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "0 of 4 parts passed" in done.stdout, done.stdout + done.stderr


def test_cli_copy_writes_the_blank_files_and_never_overwrites(tmp_path, capsys):
    assert cli.main(["check", "--copy", str(tmp_path)]) == 0
    copied = tmp_path / "tutorials" / "exercises"
    assert sorted(p.name for p in copied.glob("*.py")) == sorted(e.filename for e in exercises.EXERCISES)
    assert not any("solution" in p.name for p in tmp_path.rglob("*"))  # teaching/ is never copied
    assert cli.main(["check", "--copy", str(tmp_path)]) == 2  # the files exist now: nothing is overwritten
    assert "already holds 01_linear_backward.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["check", "3", "--copy", str(tmp_path)])


# --------------------------------------------------------------------------- #
# The model solutions in teaching/solutions/: plain NumPy, no --allow-library
# --------------------------------------------------------------------------- #
ALLOWED_IMPORTS = {"numpy", "minikfac"}
#: teaching/ is for teachers: a source distribution does not carry it (a git checkout must).
needs_teaching = pytest.mark.skipif(not SOLUTION_DIR.is_dir() and not (ROOT / ".git").exists(),
                                    reason="teaching/ is not part of this copy of the sources (not a checkout)")


@needs_teaching
def test_every_exercise_has_a_model_solution_kept_apart_from_the_students():
    assert (ROOT / "teaching" / "README.md").is_file()
    assert sorted(p.name for p in SOLUTION_DIR.glob("*.py")) == sorted(e.filename for e in exercises.EXERCISES)


@needs_teaching
@pytest.mark.parametrize("number", NUMBERS)
def test_a_model_solution_passes_every_part_without_the_library_it_may_not_use(number):
    exercise = exercises.find(str(number))
    path = SOLUTION_DIR / exercise.filename
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= ALLOWED_IMPORTS, imported  # numpy, and minikfac itself only where the stub imports it too
    for seed in (0, 1, 2):
        report = exercises.grade(exercise, str(path), seed=seed)  # the forbidden modules stay forbidden
        assert report.passed, report.text()


# --------------------------------------------------------------------------- #
# Hints in tiers, and graded mode
# --------------------------------------------------------------------------- #
WRONG_KRON = HEADER + SOLUTIONS[4] + "\ndef kron_matvec(A, G, X):\n    return G @ X @ A\n"


@pytest.mark.parametrize("hints, graded, shown", [(0, False, []), (1, False, ["hint"]),
                                                 (2, False, ["hint", "formula"]), (2, True, [])])
def test_the_hint_tiers_and_graded_mode(hints, graded, shown, tmp_path):
    path = write(tmp_path, WRONG_KRON)
    report = exercises.grade(exercises.find("4"), path, seed=0, allow_library=True, hints=hints, graded=graded)
    labels = [line.split(":")[0] for line in report.parts[2].lines if not line.startswith(" ")]
    assert [label for label in labels if label in ("hint", "formula")] == shown
    assert "your result equals G X A (A where Aᵀ belongs)" in "\n".join(report.parts[2].lines)  # at every tier
    data = report.to_dict()
    assert data["graded"] is graded and data["hints"] == (0 if graded else hints)
    text = report.text()
    assert ("graded (no hints)" in text) is graded
    reproduce = text.splitlines()[-1]
    assert reproduce.startswith("Reproduce this run: minikfac check 4 ")
    assert ("--graded" in reproduce) is graded and ("--hints 2" in reproduce) is (hints == 2 and not graded)
    assert ("--hints 0" in reproduce) is (hints == 0)
    assert ("Stuck? --hints 2 adds the formula" in text) is (hints == 1 and not graded)


def test_a_part_needs_two_tiers_of_hints():
    from minikfac.exercises.spec import Part

    with pytest.raises(ValueError, match="pair of non-empty strings"):
        Part("1.1", "f", "a task", lambda rng: [], "one hint only")
    with pytest.raises(ValueError, match="hint tier"):
        exercises.find("1").parts[0].hint_lines(3)


def _part(number):
    return next(p for e in exercises.EXERCISES for p in e.parts if p.number == number)


CODE = ("np.", "@", ".T", "reshape(", "einsum", "concatenate", "[:,", "**")
# The answer of a part (a formula or an expression): only tier 2 may show it.
ANSWERS = [("1.2", "doutᵀ x"), ("2.1", "+ 1"), ("3.3", "(p_n − e_{y_n}) / N"), ("3.4", "diag(p_n) − p_n p_nᵀ"),
           ("3.5", "sqrt(p_n[c])"), ("4.3", "G X Aᵀ"), ("4.4", "G⁻¹ X A⁻¹"), ("5.1", "ā ⊗ g"),
           ("5.2", "J_nᵀ F_out,n J_n"), ("6.2", "multiply it by N"), ("7.3", "(G + √λ/π I)⁻¹ V"),
           ("7.4", "g_i a_j + λ"), ("9.2", "U_Gᵀ D_n U_A"), ("9.4", "(s + λ)"), ("10.2", "moveaxis"),
           ("11.2", "b·A + c·A²"), ("11.4", "σ/√(σ² + ε)"), ("12.1", "N·g_i·a_j + δ"), ("12.2", "½·P·log δ"),
           ("12.3", "(U_Aᵀ ā)_j²"), ("12.4", "1/√(1 + π/8")]


def test_tier_one_hints_give_no_code_and_no_formula():
    for exercise in exercises.EXERCISES:
        for part in exercise.parts:
            nudge = part.hints[0].replace("np.kron", "")  # "check it against np.kron" is no answer
            assert not [c for c in CODE if c in nudge], (part.number, nudge)
            assert "tutorial" in nudge or "exercise" in nudge or any(c.isdigit() for c in nudge), part.number


@pytest.mark.parametrize("number, answer", ANSWERS)
def test_the_answer_is_withheld_below_tier_two(number, answer):
    part = _part(number)
    exercise = exercises.find(number.split(".")[0])
    assert answer in part.hints[1], (number, part.hints[1])  # tier 2 shows it
    assert answer not in part.hints[0] and answer not in part.task
    stub = (EXERCISE_DIR / exercise.filename).read_text(encoding="utf-8")
    assert answer not in stub, f"the stub of exercise {exercise.number} states the answer of {number}"


def test_a_failure_at_tier_one_does_not_print_the_answer(tmp_path):
    path = write(tmp_path, WRONG_KRON)
    report = exercises.grade(exercises.find("4"), path, seed=3, allow_library=True)
    assert "G X Aᵀ" not in report.text()
    report = exercises.grade(exercises.find("4"), path, seed=3, allow_library=True, hints=2)
    assert "G X Aᵀ" in report.text()


# --------------------------------------------------------------------------- #
# Diagnoses: each one fires
# --------------------------------------------------------------------------- #
def _expected(shape=(4, 3), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("name, got, known, words", [
    ("transpose, non-square", lambda e: e.T, None, "it is the transpose of the expected result"),
    ("transpose, square", lambda e: e[:3].T, None, "it is the transpose of the expected result"),
    ("N times", lambda e: 5 * e, {"N": 5}, "(N = 5: a missing or extra normalisation?)"),
    ("1/N", lambda e: e / 5, {"N": 5}, "(1/N:"),
    ("N²", lambda e: 25 * e, {"N": 5}, "(N² = 25:"),
    ("1/N²", lambda e: e / 25, {"N": 5}, "(1/N²:"),
    ("N/(N − 1)", lambda e: e * 5 / 4, {"N": 5}, "(N/(N − 1):"),
    ("any constant", lambda e: 3.7 * e, None, "3.7 times the expected one"),
    ("sign", lambda e: -e, None, "minus the expected one"),
    ("wrong places", lambda e: e[::-1], None, "the entries are right but in the wrong places"),
    ("a bias column too many", lambda e: np.ones((4, 4)), None, "one entry longer along axis 1 (the bias column"),
    ("a bias column too few", lambda e: np.ones((4, 2)), None, "one entry shorter along axis 1 (the bias column"),
    ("the 1 of ā", lambda e: np.ones((5, 4)), None, "one entry longer along axis 0 and 1"),
    ("reshape", lambda e: e.reshape(2, 6), None, "the right number of entries in another shape"),
    ("axes", lambda e: e.reshape(-1), None, "1 axes instead of 2 (the right number of entries"),
    ("rows off", lambda e: e + np.arange(3.0), None, "every row is off by the same vector"),
    ("NaN", lambda e: np.full(e.shape, np.nan), None, "NaN or inf"),
    ("float32", lambda e: e.astype(np.float32), None, "your result is float32"),
    ("float32 numbers in float64", lambda e: e.astype(np.float32).astype(np.float64), None,
     "part of the computation ran in float32"),
    ("float32-sized error", lambda e: e * (1 + 3e-7), None, "the size of float32's rounding"),
    ("None", lambda e: None, None, "got None"),
    ("a string", lambda e: "no", None, "got a str"),
])
def test_each_diagnosis_of_the_comparison_fires(name, got, known, words):
    from minikfac.exercises.feedback import compare_arrays

    expected = _expected((3, 3)) if name == "transpose, square" else _expected()
    if name == "transpose, square":
        got_value = expected.T
    else:
        got_value = got(expected)
    message = compare_arrays(expected, got_value, "W̄", "(D_out, D_in + 1)", known)
    assert message is not None and words in message, message


def test_a_float32_number_says_so_instead_of_printing_two_equal_numbers():
    from minikfac.exercises.feedback import compare_arrays

    value = 2.1857301594
    message = compare_arrays(value, np.asarray(np.float32(value)))
    assert "your result is float32" in message and "compute in float64" in message
    # A float64 number wrong in the 7th digit is printed with enough digits to see the difference.
    message = compare_arrays(value, 2.18573)
    assert "expected 2.18573016, got 2.18573" in message.replace("2.185730159", "2.18573016"), message
    # A float32 result that is wrong by far more than rounding gets the usual message, and the dtype noted.
    message = compare_arrays(value, np.asarray(np.float32(3.5)))
    assert "wrong values" in message and "your result is float32" in message


def test_a_float32_result_is_diagnosed_by_the_grader(tmp_path):
    path = write(tmp_path, HEADER + SOLUTIONS[4] + "\n_right = kron_solve\ndef kron_solve(A, G, X):\n"
                                                  "    return _right(A, G, X).astype(np.float32)\n")
    report, parts = grade(4, path)
    assert [r.status for r in report.parts] == ["passed", "passed", "passed", "FAILED"]
    assert "your result is float32" in "\n".join(parts["4.4"].lines)


def test_known_mistakes_are_named_and_never_confused_with_a_right_answer():
    from minikfac.exercises.spec import Case
    from minikfac.exercises.feedback import arrays

    rng = np.random.default_rng(0)
    A, G, X = rng.standard_normal((3, 3)), rng.standard_normal((2, 2)), rng.standard_normal((2, 3))
    case = Case("A, G, X", (A, G, X), G @ X @ A.T, arrays(), mistakes={"G X A": G @ X @ A, "Gᵀ X Aᵀ": G.T @ X @ A.T})
    assert case.recognise(G @ X @ A) == ["G X A"]
    assert case.recognise(G.T @ X @ A.T) == ["Gᵀ X Aᵀ"]
    assert case.recognise(X) == [] and case.recognise("not an array") == []


def test_every_known_mistake_differs_from_the_right_answer_somewhere():
    # A mistake is looked for only after a failure; one that always equalled the right answer could never fire.
    for exercise in exercises.EXERCISES:
        for index, part in enumerate(exercise.parts):
            cases = part.cases(np.random.default_rng([0, exercise.number, index]))
            for name in {name for case in cases for name in case.mistakes}:
                assert any(name in case.mistakes and case.compare(case.expected, case.mistakes[name]) is not None
                           for case in cases), (part.number, name)


# --------------------------------------------------------------------------- #
# JSON reports: one file, and a class of several
# --------------------------------------------------------------------------- #
def test_the_json_report_of_one_file_keeps_its_structure(tmp_path):
    path = write(tmp_path, WRONG_KRON)
    out = tmp_path / "report.json"
    assert cli.main(["check", "4", path, "--seed", "2", "--allow-library", "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert set(data) == {"exercise", "name", "file", "seed", "graded", "hints", "passed", "import_error", "parts"}
    assert data["exercise"] == 4 and data["file"] == path and data["seed"] == 2 and data["passed"] is False
    assert data["graded"] is False and data["hints"] == 1
    assert [p["status"] for p in data["parts"]] == ["passed", "passed", "FAILED", "passed"]
    assert set(data["parts"][0]) == {"part", "function", "status", "cases_passed", "cases", "lines"}


def test_a_class_report_grades_every_file_on_one_seed(tmp_path, capsys):
    right = write(tmp_path, HEADER + SOLUTIONS[4], "right.py")
    wrong = write(tmp_path, WRONG_KRON, "wrong.py")
    broken = write(tmp_path, "def vec(X)\n", "broken.py")
    stub = str(EXERCISE_DIR / "04_kronecker_matvec.py")
    out = tmp_path / "class.json"
    status = cli.main(["check", "4", right, wrong, broken, stub, "--seed", "5", "--allow-library", "--graded",
                       "--json", str(out)])
    assert status == 1
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(lines) == 4 and "4 files, seed 5, graded" in text
    assert "right.py" in lines[0] and "[4 of 4]" in lines[0]
    assert "wrong.py" in lines[1] and "4.3 FAILED" in lines[1] and "[3 of 4]" in lines[1]
    assert "broken.py" in lines[2] and "does not import" in lines[2]
    assert "4.1 not implemented yet" in lines[3]
    assert "1 of 4 files passed every part" in text and "4.3 1 of 4 passed" in text
    data = json.loads(out.read_text())
    assert data["exercise"] == 4 and data["seed"] == 5 and data["graded"] is True and data["passed"] is False
    assert [f["file"] for f in data["files"]] == [right, wrong, broken, stub]
    assert all(f["seed"] == 5 and f["graded"] is True for f in data["files"])
    assert all(not line.startswith("hint") for f in data["files"] for p in f["parts"] for line in p["lines"])
    summary = data["summary"]
    assert summary["files"] == 4 and summary["passed"] == 1 and summary["import_errors"] == 1
    assert summary["parts"]["4.1"] == {"function": "vec", "passed": 2, "failed": 1, "not implemented": 1}
    assert summary["parts"]["4.3"] == {"function": "kron_matvec", "passed": 1, "failed": 2, "not implemented": 1}


def test_a_class_report_exits_0_only_when_every_file_passed(tmp_path, capsys):
    first = write(tmp_path, HEADER + SOLUTIONS[7], "a.py")
    second = write(tmp_path, HEADER + SOLUTIONS[7], "b.py")
    assert cli.main(["check", "7", first, second, "--allow-library"]) == 0
    assert "2 of 2 files passed every part" in capsys.readouterr().out


# --------------------------------------------------------------------------- #
# Bad command lines for the new options
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("argv, words", [
    (["check", "4", "--hints", "3"], "argument --hints: expected 0 (no hints), 1 (a nudge) or 2 (the formula too), "
                                     "got '3'"),
    (["check", "4", "--hints", "one"], "got 'one'"),
    (["check", "4", "--graded", "--hints", "2"], "--graded shows no hints, so it takes no --hints (got --hints 2)"),
])
def test_cli_bad_hint_options_exit_2_naming_the_argument(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err


def test_cli_a_missing_file_among_several_is_a_usage_error_before_any_grading(tmp_path, capsys):
    right = write(tmp_path, HEADER + SOLUTIONS[4])
    assert cli.main(["check", "4", right, str(tmp_path / "absent.py"), "--allow-library"]) == 2
    captured = capsys.readouterr()
    assert f"no file {tmp_path / 'absent.py'}" in captured.err and captured.out == ""


def test_a_class_report_says_why_a_file_does_not_import(tmp_path, capsys):
    broken = write(tmp_path, "import numpy as np\n\ndef vec(X)\n    return X\n", "broken.py")
    leaving = write(tmp_path, "import sys\nsys.exit(0)\n", "leaving.py")
    assert cli.main(["check", "4", broken, leaving, "--seed", "1"]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "does not import" in line]
    assert len(lines) == 2
    # The first line of a syntax error says where and what; its last line is only the caret under the code.
    assert "line 3: SyntaxError" in lines[0] and "(^)" not in lines[0]
    assert "raised SystemExit: 0" in lines[1] and lines[1].count(leaving) == 1


def test_cli_files_may_come_after_options(tmp_path, capsys):
    first = write(tmp_path, HEADER + SOLUTIONS[4], "a.py")
    second = write(tmp_path, HEADER + SOLUTIONS[4], "b.py")
    assert cli.main(["check", "4", "--seed", "3", "--allow-library", first]) == 0
    assert f"file {first}, seed 3" in capsys.readouterr().out
    assert cli.main(["check", "4", first, "--seed", "3", second, "--allow-library", "--graded"]) == 0
    out = capsys.readouterr().out
    assert "2 files, seed 3, graded" in out and first in out and second in out
    with pytest.raises(SystemExit) as exit_info:  # an unknown option is still an error
        cli.main(["check", "4", "--no-such-option", first])
    assert exit_info.value.code == 2


def test_cli_json_never_overwrites_a_file_being_graded(tmp_path, capsys):
    first = write(tmp_path, HEADER + SOLUTIONS[4], "a.py")
    second = write(tmp_path, HEADER + SOLUTIONS[4], "b.py")
    before = pathlib.Path(second).read_text()
    # "--json submissions/*.py": the report's name left out, a student file in its place.
    for argv in (["check", "4", "--json", second, first], ["check", "4", second, "--json", second]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv + ["--allow-library"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"--json: {second!r} is a Python file; expected the path of the JSON report" in err
        assert pathlib.Path(second).read_text() == before
    renamed = tmp_path / "c.json"  # a student file with another suffix
    renamed.write_text(before)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", "4", str(renamed), "--json", str(tmp_path / "." / "c.json"), "--allow-library"])
    assert exit_info.value.code == 2
    assert "is one of the files to grade" in capsys.readouterr().err and renamed.read_text() == before


def test_cli_json_into_a_folder_not_there_yet_creates_it(tmp_path, capsys):
    path = write(tmp_path, HEADER + SOLUTIONS[4])
    out = tmp_path / "reports" / "week 3" / "report.json"
    assert cli.main(["check", "4", path, "--seed", "2", "--allow-library", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["passed"] is True
