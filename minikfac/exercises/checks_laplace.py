"""Exercise 12: the Kronecker-factored Laplace posterior, its evidence and its predictive.

Every expected value comes from :mod:`minikfac.laplace` at grading time: a small
network (a random one stands in for a trained one; the formulas do not care) and
random data give a :class:`~minikfac.laplace.Laplace` with ``structure="kfac"``,
whose precision Λ = N·F̂ + δI has the blocks N·(A_l ⊗ G_l) + δI. The parts ask
for Λ's eigenvalues in one layer (from the factors'
:class:`~minikfac.curvature.kron.KroneckerFactors` eigendecompositions), log det Λ
and the evidence (``log_det_posterior_precision``, ``log_marginal_likelihood``),
the linearised predictive's J Σ Jᵀ of one input (``functional_covariance``, which
goes through the Jacobian and F̂'s solve, not through the eigenbasis formula the
students use) and the probit class probabilities (:func:`minikfac.laplace.probit`).
The student gets ā and the per-output gradients of each layer from the layers'
caches (:func:`minikfac.curvature.statistics.one_pass` with ``kind="ggn"``).
"""

import math

import numpy as np

from minikfac import laplace, nn
from minikfac.curvature import damping, statistics
from minikfac.exercises.checks_layers import two_sizes
from minikfac.exercises.feedback import arrays, sequence
from minikfac.exercises.spec import Case, Exercise, Part


# --------------------------------------------------------------------------- #
# The Laplace posteriors the cases are drawn from
# --------------------------------------------------------------------------- #
def _setting(rng, examples, hidden, bias, loss):
    """(label, la, x): a K-FAC Laplace of a random net on random data, and one test input x (1, D)."""
    d_in, classes = two_sizes(rng, 2, 5)
    if hidden:
        width = int(rng.integers(3, 7))
        layers = [nn.Linear(d_in, width, bias=bias, rng=rng), nn.Tanh(), nn.Linear(width, classes, rng=rng)]
    else:
        layers = [nn.Linear(d_in, classes, bias=bias, rng=rng)]
    net = nn.Sequential(*layers)
    X = rng.standard_normal((examples, d_in)) * rng.uniform(0.5, 2.0, size=d_in)
    y = (rng.standard_normal((examples, classes)) if loss == "mse" else rng.integers(0, classes, size=examples))
    delta = float(10 ** rng.uniform(-1, 1))
    loss_fn = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss()
    la = laplace.Laplace(net, loss_fn, X, y, structure="kfac", prior_precision=delta)
    shapes = ", ".join(f"({kf.A.shape[0]}, {kf.G.shape[0]})" for kf in la.curvature.factors)
    kind = "MSE (Gaussian)" if loss == "mse" else "cross-entropy"
    label = (f"N={examples}, {'Linear, Tanh, Linear' if hidden else 'one Linear layer'} "
             f"({'with' if bias else 'first without'} bias), (n, m) per layer {shapes}, K={classes}, {kind}, "
             f"δ={delta:.3g}")
    return label, la, rng.standard_normal((1, d_in)) * 1.5


def _settings(rng):
    """A classifier, a regression net, a batch smaller than n (singular A), one example, a single layer."""
    return [_setting(rng, int(rng.integers(8, 15)), True, True, "ce"),
            _setting(rng, int(rng.integers(8, 15)), True, True, "mse"),
            _setting(rng, 2, True, False, "ce"),
            _setting(rng, 1, False, True, "ce")]


def _factors(la):
    """[(A_l, G_l)] of the Laplace's K-FAC (copies: the student may change them)."""
    return [(kf.A.copy(), kf.G.copy()) for kf in la.curvature.factors]


def _grid(kf, n_data, delta, pi=None):
    """N·(g aᵀ) + δ (m, n) from the factors' eigenvalues (ascending), or the factored π-damping's grid."""
    eigen = kf.eigen()
    if pi is None:
        return n_data * damping.exact_denominator(eigen.a_eigs, eigen.g_eigs, delta / n_data)
    return n_data * damping.factored_denominator(eigen.a_eigs, eigen.g_eigs, delta / n_data, pi)


def _case(label, args, expected, compare, mistakes):
    """A :class:`Case` with only the mistakes that differ from ``expected`` here (with N = 1, forgetting N is none)."""
    kept = {name: wrong for name, wrong in mistakes.items() if compare(expected, wrong) is not None}
    return Case(label, args, expected, compare, mistakes=kept)


# --------------------------------------------------------------------------- #
# 12.1 one layer's posterior precision: its eigenvalues
# --------------------------------------------------------------------------- #
def eigenvalues_cases(rng):
    """12.1: args (A (n, n), G (m, m), N, δ); expected the (m, n) grid of N·(A ⊗ G) + δI's eigenvalues."""
    cases = []
    for index, (label, la, _) in enumerate(_settings(rng)):
        layer = index % len(la.curvature.factors)
        kf, N, delta = la.curvature.factors[layer], la.n_data, la.prior_precision
        eigen = kf.eigen()
        mistakes = {"g_i·a_j + δ (N forgotten: A and G are means over the examples, Λ holds their sum)":
                    damping.exact_denominator(eigen.a_eigs, eigen.g_eigs, delta),
                    "N·(g_i·a_j + δ) (δ multiplied by N too)":
                    N * damping.exact_denominator(eigen.a_eigs, eigen.g_eigs, delta),
                    "the eigenvalues of the factored π-damping N·(A + π√(δ/N) I) ⊗ (G + √(δ/N)/π I), not of "
                    "Λ's exact δI": _grid(kf, N, delta, kf.pi()),
                    "the (n, m) grid of a_i·g_j (A and G swapped: the Kronecker order reversed)":
                    N * damping.exact_denominator(eigen.g_eigs, eigen.a_eigs, delta / N)}
        cases.append(_case(f"{label}, layer {layer + 1}", (kf.A.copy(), kf.G.copy(), N, delta), _grid(kf, N, delta),
                           arrays("(m, n): rows for G's eigenvalues, columns for A's", {"N": N}), mistakes))
    return cases


# --------------------------------------------------------------------------- #
# 12.2 log det Λ and the evidence
# --------------------------------------------------------------------------- #
def evidence_cases(rng):
    """12.2: args ([(A, G)], N, δ, log p(D | θ*), θ* (P,)); expected (log det Λ, log p(D | δ))."""
    cases = []
    for label, la, _ in _settings(rng):
        N, delta, theta = la.n_data, la.prior_precision, la.mean.copy()
        log_likelihood, norm, size = float(la.log_likelihood), float(theta @ theta), theta.shape[0]
        values = la.curvature.eigenvalues()
        log_det = float(la.log_det_posterior_precision())
        right = float(la.log_marginal_likelihood())

        def pair(logdet):
            """(log det, the evidence with that log det in place of log det Λ)."""
            return logdet, right + 0.5 * (log_det - logdet)

        factored = sum(float(np.sum(np.log(_grid(kf, N, delta, kf.pi())))) for kf in la.curvature.factors)
        mistakes = {"log det(F̂ + δI) (N forgotten)": pair(float(laplace.evidence.log_det_precision(values, 1, delta))),
                    "log det(F̂ + (δ/N) I), the precision of the mean (its P·log N left out)":
                    pair(float(laplace.evidence.log_det_precision(values, 1, delta / N))),
                    "the log det of the factored π-damping, not of Λ's exact δI": pair(factored),
                    "the evidence without the prior's ½·P·log δ (the normaliser of N(0, δ⁻¹I))":
                    (log_det, right - 0.5 * size * math.log(delta)),
                    "the evidence with −δ‖θ*‖² (the ½ of the Gaussian's exponent missing)":
                    (log_det, right - 0.5 * delta * norm),
                    "the evidence with + ½ log det Λ (the posterior's log-volume with the wrong sign)":
                    (log_det, right + log_det)}
        cases.append(_case(label, (_factors(la), N, delta, log_likelihood, theta), (log_det, right),
                           sequence(["log det Λ", "log p(D | δ)"]), mistakes))
    return cases


# --------------------------------------------------------------------------- #
# 12.3 the predictive covariance J Σ Jᵀ of one input
# --------------------------------------------------------------------------- #
def layer_inputs(la, x):
    """([ā_l (n_l,)], [g_l (K, m_l)]): each layer's input (the 1 last) and ∂f_k/∂s_l for the input x (1, D)."""
    with statistics.one_pass(la.net, la.loss_fn, x, kind="ggn") as chunk:
        a_bars = [np.array(stats.inputs[0]) for stats in chunk.layers]
        gradients = [np.array(stats.grads[:, 0, :]) for stats in chunk.layers]
    return a_bars, gradients


def _covariance(jacobian, la, n_data, delta, factored=False):
    """J (N·F̂ + δI)⁻¹ Jᵀ (K, K) for one input's J (K, P), with ``n_data`` and ``delta`` free to be wrong."""
    solved = la.curvature.solve(jacobian.T, delta / n_data, factored=factored) / n_data  # (P, K)
    return jacobian @ solved


def covariance_cases(rng):
    """12.3: args ([(A, G)], [ā_l], [g_l], N, δ); expected J Σ Jᵀ (K, K) by ``Laplace.functional_covariance``."""
    cases = []
    for label, la, x in _settings(rng):
        N, delta = la.n_data, la.prior_precision
        a_bars, gradients = layer_inputs(la, x)
        expected = la.functional_covariance(x)[1][0]
        jacobian = next(laplace.output_jacobians(la.net, la.loss_fn, x))[3][0]  # (K, P)
        reversed_rows = np.concatenate([np.stack([np.kron(g, a) for g in grads]) for a, grads in
                                        zip(a_bars, gradients)], axis=1)  # rows g_k ⊗ ā instead of ā ⊗ g_k
        mistakes = {"J (F̂ + δI)⁻¹ Jᵀ (N forgotten: F̂ is the mean, Λ = N·F̂ + δI)": _covariance(jacobian, la, 1, delta),
                    "(1/N) J (F̂ + δI)⁻¹ Jᵀ (δ where δ/N belongs)": _covariance(jacobian, la, N, N * delta),
                    "N·J (F̂ + (δ/N) I)⁻¹ Jᵀ (Σ = N·(...)⁻¹: the inverse of N·F̂ + δI is (1/N)(F̂ + (δ/N) I)⁻¹)":
                    N * N * expected,
                    "the factored π-damping's (A + π√(δ/N) I)⁻¹ ⊗ (G + √(δ/N)/π I)⁻¹, not Λ's exact δI":
                    _covariance(jacobian, la, N, delta, factored=True),
                    "Jacobian rows g_k ⊗ ā (the Kronecker order reversed: vec(g āᵀ) = ā ⊗ g)":
                    _covariance(reversed_rows, la, N, delta)}
        if len(a_bars) > 1:  # K-FAC's Σ is block diagonal: the last layer's term alone is a last-layer Laplace's
            last = np.zeros_like(jacobian)
            columns = la.curvature.slices[-1]
            last[:, columns] = jacobian[:, columns]
            mistakes["the last layer's term only (a last-layer Laplace)"] = _covariance(last, la, N, delta)
        cases.append(_case(label, (_factors(la), a_bars, gradients, N, delta), expected,
                           arrays("(K, K), K the outputs", {"N": N}), mistakes))
    return cases


# --------------------------------------------------------------------------- #
# 12.4 the probit class probabilities
# --------------------------------------------------------------------------- #
def _probit(f, covariance):
    """The library's probit softmax for one input: (K,) from f (K,) and J Σ Jᵀ (K, K)."""
    return laplace.probit(f[None], covariance[None], "softmax")[0]


def probit_cases(rng):
    """12.4: args (f (K,), J Σ Jᵀ (K, K)); expected ``probit(f, covariance, "softmax")`` of one input."""
    cases, inputs = [], []
    settings = _settings(rng)[:3] + [_setting(rng, 6, True, True, "ce")]
    for i, (label, la, x) in enumerate(settings):
        if i == 3:  # far from the data the posterior's variance dominates the logits
            x = x * 4
            label += ", x far from the data"
        mean, covariance = la.functional_covariance(x)
        f, covariance = mean[0], covariance[0]
        inputs.append((label, f, covariance))
    label, f, covariance = inputs[0]  # a confident net: logits around 1000, small variances
    inputs.append((label + ", logits shifted by 1000 and variances scaled by 10⁻⁴ (an overflowing exp shows)",
                   f + 1000.0, covariance * 1e-4))
    for label, f, covariance in inputs:
        variances = np.diag(covariance)
        lam = math.pi / 8
        no_root = ((1 + lam * variances) ** 2 - 1) / lam  # the variance whose κ is 1/(1 + π/8·Var f)
        mistakes = {"softmax(f), the MAP's probabilities (the posterior's variance ignored)":
                    _probit(f, np.zeros_like(covariance)),
                    "κ_k = 1/√(1 + Var f_k) (λ² = π/8 left out)": _probit(f, covariance / lam),
                    "κ_k = 1/√(1 + (π/8)²·Var f_k) (λ = π/8 where λ² = π/8 belongs)": _probit(f, lam * covariance),
                    "κ_k = 1/(1 + π/8·Var f_k) (the square root missing)": _probit(f, np.diag(no_root)),
                    "softmax(f·√(1 + π/8·Var f)) (the logits multiplied by the factor, not divided)":
                    _probit(f * (1 + lam * variances), covariance)}
        cases.append(_case(label, (f.copy(), covariance.copy()), _probit(f, covariance),
                           arrays("(K,), the class probabilities"), mistakes))
    return cases


KFAC_LAPLACE = Exercise(
    12, "12_kfac_laplace", "The Kronecker-factored Laplace posterior and its predictive",
    "the eigenvalues of N·(A ⊗ G) + δI; log det Λ and the Laplace evidence; the linearised predictive's J Σ Jᵀ "
    "of one input in the factors' eigenbasis; the probit class probabilities",
    "14 the Laplace approximation", 40,
    [Part("12.1", "precision_eigenvalues", "the eigenvalues (m, n) of one layer's block N·(A ⊗ G) + δI of the "
          "posterior precision Λ, entry (i, j) for the i-th eigenvalue of G and the j-th of A (ascending, as "
          "np.linalg.eigh orders them)", eigenvalues_cases,
          ("The eigenvectors of a Kronecker product are Kronecker products of the factors' eigenvectors; work out "
           "its eigenvalues, then what adding δ times the identity does to them. A and G are means over the N "
           "examples while Λ holds the sum, and the grid's rows go with G, as in vec (exercises 4 and 7.4; "
           "tutorial 14, 'The posterior, the GGN, and where N enters').",
           "with a = np.linalg.eigh(A)[0] (n,) and g = np.linalg.eigh(G)[0] (m,), Λ_l = (U_A ⊗ U_G) "
           "diag(vec(N·g_i·a_j + δ)) (U_A ⊗ U_G)ᵀ: the grid is N * np.outer(g, a) + delta.")),
     Part("12.2", "log_evidence", "(log det Λ, log p(D | δ)): the log determinant of Λ = N·F̂ + δI over all layers "
          "(F̂ = diag(A_l ⊗ G_l)) and the Laplace approximation of the log marginal likelihood, two floats",
          evidence_cases,
          ("A determinant is the product of the eigenvalues, and 12.1 gives them layer by layer: no P × P matrix is "
           "needed. For the evidence, expand log p(D | θ) + log p(θ) to second order around θ* (its Hessian is "
           "−Λ) and integrate the Gaussian; keep every constant of the prior's density (tutorial 14, 'The "
           "posterior, the GGN, and where N enters'; MacKay 1992b).",
           "log det Λ = Σ_l Σ_ij log(N·g_i·a_j + δ); log p(D | δ) = log p(D | θ*) − ½·δ·‖θ*‖² − ½·log det Λ "
           "+ ½·P·log δ, with P = θ*.size (the (2π)^(P/2) of the prior and of the Gaussian integral cancel).")),
     Part("12.3", "functional_covariance", "J Σ Jᵀ (K, K) for one input, Σ = Λ⁻¹ with K-FAC's Λ, from each "
          "layer's factors, its input ā and the gradients ∂f_k/∂s of the K outputs w.r.t. its pre-activations, "
          "without forming Σ", covariance_cases,
          ("K-FAC's Λ is block diagonal over the layers, so J Σ Jᵀ is a sum of one term per layer. In a layer, "
           "output k's row of J is the vec of an outer product (exercise 5.1), and Λ_l is diagonal in the "
           "eigenbasis of 12.1: rotate ā and every g_k into it and divide by the eigenvalues there, as the damped "
           "solves of exercises 7.4 and 9.4 do (tutorial 07, 'Damping: exact Tikhonov vs factored').",
           "(J Σ Jᵀ)[k, k'] = Σ_l Σ_ij (U_Aᵀ ā)_j² (U_Gᵀ g_k)_i (U_Gᵀ g_k')_i / (N·g_i·a_j + δ): per layer, "
           "r = g @ U_G (K, m), c = ((U_A.T @ a_bar) ** 2 / grid).sum(axis=1) (m,), and the term is (r * c) @ r.T.")),
     Part("12.4", "probit_probabilities", "the class probabilities (K,) of one input by the probit approximation "
          "of E[softmax(f)], f ~ N(f(x, θ*), J Σ Jᵀ)", probit_cases,
          ("Each logit is shrunk by a factor that depends on its own variance only, before the softmax: derive it "
           "from the approximation σ(t) ≈ Φ(λt) and the Gaussian expectation of Φ given in the task. The variances "
           "are on the covariance's diagonal; keep the softmax stable for large logits (exercise 3.1).",
           "κ_k = 1/√(1 + π/8·Var f_k) with Var f_k = covariance[k, k]; the probabilities are softmax(κ ⊙ f): "
           "kappa = 1 / np.sqrt(1 + np.pi / 8 * np.diag(covariance)), then a stable softmax of kappa * f."))],
    forbidden=("minikfac.laplace", "minikfac.curvature"),
)
