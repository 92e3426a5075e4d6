"""Exercises 4 and 7: Kronecker algebra without the Kronecker product, and damping.

Expected results come from :mod:`minikfac.curvature.kron` (``vec``, ``unvec``,
``kron_matvec``, ``kron_solve``, ``kron_solve_factored``, ``factored_pi``).
The matrices are non-square and non-symmetric wherever the formula allows, so
that A and Aᵀ, or G X Aᵀ and Aᵀ X G, give different answers (or shapes).
"""

import numpy as np

from minikfac.curvature import kron
from minikfac.curvature.damping import factored_pi, factored_shifts
from minikfac.exercises.checks_layers import two_sizes
from minikfac.exercises.feedback import arrays, sequence
from minikfac.exercises.spec import Case, Exercise, Part


# --------------------------------------------------------------------------- #
# Exercise 4: vec and the Kronecker matrix-vector product
# --------------------------------------------------------------------------- #
def _matrix_shapes(rng):
    """(m, n) pairs: random non-square ones, a single column and a single row."""
    return [two_sizes(rng), two_sizes(rng), (int(rng.integers(2, 5)), 1), (1, int(rng.integers(2, 5)))]


def vec_cases(rng):
    cases = []
    for m, n in _matrix_shapes(rng):
        X = rng.standard_normal((m, n))
        cases.append(Case(f"X of shape ({m}, {n})", (X,), kron.vec(X), arrays("(m·n,)")))
    return cases


def unvec_cases(rng):
    cases = []
    for m, n in _matrix_shapes(rng):
        v = rng.standard_normal(m * n)
        cases.append(Case(f"v of length {m * n}, rows={m}", (v, m), kron.unvec(v, m), arrays("(rows, len(v) // rows)")))
    return cases


def kron_matvec_cases(rng):
    cases = []
    for m, n in _matrix_shapes(rng)[:3] + [two_sizes(rng, 5, 9)]:
        A, G, X = rng.standard_normal((n, n)), rng.standard_normal((m, m)), rng.standard_normal((m, n))
        label = f"A ({n}, {n}), G ({m}, {m}), X ({m}, {n}), not symmetric"
        cases.append(Case(label, (A, G, X), kron.kron_matvec(A, G, X), arrays("(m, n), the shape of X")))
    return cases


def random_factor(rng, size, examples, scale=1.0):
    """A K-FAC-like factor (1/N) Σ x xᵀ (size, size), symmetric PSD; rank-deficient if examples < size."""
    x = scale * rng.standard_normal((examples, size)) * rng.uniform(0.5, 2.0, size=size)
    return x.T @ x / examples


def kron_solve_cases(rng):
    cases = []
    for m, n in _matrix_shapes(rng)[:3] + [two_sizes(rng, 5, 9)]:
        A, G = random_factor(rng, n, 3 * n + 2), random_factor(rng, m, 3 * m + 2)
        X = rng.standard_normal((m, n))
        label = f"A ({n}, {n}), G ({m}, {m}) symmetric positive definite, X ({m}, {n})"
        cases.append(Case(label, (A, G, X), kron.kron_solve(A, G, X), arrays("(m, n), the shape of X")))
    return cases


KRONECKER = Exercise(
    4, "04_kronecker_matvec", "The Kronecker product without forming it",
    "column-stacking vec; (A ⊗ G) vec(X) = vec(G X Aᵀ); (A ⊗ G)⁻¹ vec(X) = vec(G⁻¹ X A⁻¹)",
    "01 Kronecker product", 25,
    [Part("4.1", "vec", "vec(X): the columns of X (m, n) stacked into one vector (m·n,)", vec_cases,
          "vec(X)[j·m + i] = X[i, j]. NumPy is row-major: X.reshape(-1) stacks rows; stack columns with "
          "X.T.reshape(-1) or X.reshape(-1, order='F')."),
     Part("4.2", "unvec", "the inverse of vec: (m·n,) back to (m, n) with m = rows", unvec_cases,
          "Fill columns of length m: v.reshape(n, m).T, or v.reshape(m, n, order='F')."),
     Part("4.3", "kron_matvec", "(A ⊗ G) vec(X) as an (m, n) matrix, without np.kron", kron_matvec_cases,
          "Block (i, j) of A ⊗ G is A[i, j]·G, so the j-th column of the result is Σ_i A[j, i] G X[:, i]: "
          "that is G X Aᵀ. Check it against np.kron on a small case."),
     Part("4.4", "kron_solve", "(A ⊗ G)⁻¹ vec(X) as an (m, n) matrix, for symmetric positive definite A, G",
          kron_solve_cases, "(A ⊗ G)⁻¹ = A⁻¹ ⊗ G⁻¹, so by 4.3 the answer is G⁻¹ X A⁻ᵀ = G⁻¹ X A⁻¹ (A is "
          "symmetric). Use np.linalg.solve twice rather than np.linalg.inv.")],
    forbidden=("minikfac.curvature",),
)


# --------------------------------------------------------------------------- #
# Exercise 7: factored Tikhonov damping with π (Martens & Grosse 2015, §6.3)
# --------------------------------------------------------------------------- #
def _damping_settings(rng):
    """(label, A, G, damping): factors of very different scales (so π is far from 1), some rank-deficient."""
    settings = []
    for i in range(4):
        m, n = two_sizes(rng, 2, 6)
        few = i == 2  # fewer examples than features: singular factors, only the damping makes them invertible
        A = random_factor(rng, n, n - 1 if few else 3 * n, scale=rng.uniform(1.0, 3.0))
        G = random_factor(rng, m, m - 1 if few else 3 * m, scale=rng.uniform(0.01, 0.1))
        damping = float(10 ** rng.uniform(-3, -1))
        label = f"A ({n}, {n}), G ({m}, {m}), λ = {damping:.3g}" + (", singular A and G" if few else "")
        settings.append((label, A, G, damping))
    return settings


def _pi(A, G):
    return float(factored_pi(A, G))


def pi_cases(rng):
    return [Case(label, (A, G), _pi(A, G), arrays("() (a number)")) for label, A, G, _ in _damping_settings(rng)]


def damped_factors_cases(rng):
    cases = []
    for label, A, G, damping in _damping_settings(rng):
        shift_a, shift_g = factored_shifts(damping, _pi(A, G))  # (π√λ, √λ/π)
        expected = (A + shift_a * np.eye(len(A)), G + shift_g * np.eye(len(G)))
        cases.append(Case(label, (A, G, damping), expected,
                          sequence(["A + π√λ I", "G + (√λ/π) I"], ["(n, n)", "(m, m)"])))
    return cases


def factored_solve_cases(rng):
    cases = []
    for label, A, G, damping in _damping_settings(rng):
        V = rng.standard_normal((len(G), len(A)))
        cases.append(Case(label, (A, G, V, damping), kron.kron_solve_factored(A, G, V, damping),
                          arrays("(m, n), the shape of V")))
    return cases


def exact_solve_cases(rng):
    cases = []
    for label, A, G, damping in _damping_settings(rng):
        V = rng.standard_normal((len(G), len(A)))
        cases.append(Case(label, (A, G, V, damping), kron.kron_solve(A, G, V, damping),
                          arrays("(m, n), the shape of V")))
    return cases


DAMPING = Exercise(
    7, "07_damping", "Tikhonov damping, exact and factored with π",
    "(A ⊗ G + λI)⁻¹ through eigendecompositions; the factored approximation (A + π√λ I) ⊗ (G + √λ/π I)",
    "07 cheap inversion", 35,
    [Part("7.1", "trace_norm_pi", "π = sqrt((tr(A)/n) / (tr(G)/m))", pi_cases,
          "n and m are the sizes of A and G: π compares their *mean* eigenvalues, so that each factor is "
          "damped in proportion to its own scale (Martens & Grosse 2015, §6.3)."),
     Part("7.2", "damped_factors", "(A + π√λ I, G + (√λ/π) I)", damped_factors_cases,
          "The product of the two damped factors is A ⊗ G + λ I plus the cross terms π√λ I ⊗ G + (√λ/π) "
          "A ⊗ I; π goes with A's shift, 1/π with G's."),
     Part("7.3", "factored_damped_solve", "((A + π√λ I) ⊗ (G + √λ/π I))⁻¹ vec(V) as an (m, n) matrix",
          factored_solve_cases, "By exercise 4.4 this is (G + √λ/π I)⁻¹ V (A + π√λ I)⁻¹: two small solves."),
     Part("7.4", "exact_damped_solve", "(A ⊗ G + λI)⁻¹ vec(V) as an (m, n) matrix, without forming A ⊗ G",
          exact_solve_cases, "With A = U_A diag(a) U_Aᵀ and G = U_G diag(g) U_Gᵀ (np.linalg.eigh), A ⊗ G + λI "
          "= (U_A ⊗ U_G) diag(a_j g_i + λ) (U_A ⊗ U_G)ᵀ: rotate V to U_Gᵀ V U_A, divide entry (i, j) by "
          "g_i a_j + λ, rotate back. (A + λI) ⊗ (G + λI) is a different matrix.")],
    forbidden=("minikfac.curvature",),
)
