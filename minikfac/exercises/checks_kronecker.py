"""Exercises 4 and 7: Kronecker algebra without the Kronecker product, and damping.

Expected results come from :mod:`minikfac.curvature.kron` (``vec``, ``unvec``,
``kron_matvec``, ``kron_solve``, ``kron_solve_factored``, ``factored_pi``).
The matrices are non-square and non-symmetric wherever the formula allows, so
that A and Aᵀ, or G X Aᵀ and Aᵀ X G, give different answers (or shapes).
"""

import numpy as np

from minikfac.curvature import kron
from minikfac.curvature.damping import exact_denominator, factored_pi, factored_shifts
from minikfac.curvature.linalg import psd_eigh
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
        mistakes = {"G X A (A where Aᵀ belongs)": kron.kron_matvec(A.T, G, X),
                    "Gᵀ X Aᵀ (Gᵀ where G belongs)": kron.kron_matvec(A, G.T, X),
                    "Gᵀ X A (both factors transposed)": kron.kron_matvec(A.T, G.T, X),
                    "np.kron(A, G) applied to the row-stacked X.reshape(-1) (vec stacks columns)":
                    (np.kron(A, G) @ X.reshape(-1)).reshape(m, n)}
        cases.append(Case(label, (A, G, X), kron.kron_matvec(A, G, X), arrays("(m, n), the shape of X"),
                          mistakes=mistakes))
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
        mistakes = {"(A ⊗ G) vec(X): the product, not the solve": kron.kron_matvec(A, G, X),
                    "G⁻¹ X A (A multiplied, not inverted)": kron.kron_solve(np.eye(n), G, X) @ A,
                    "G X A⁻¹ (G multiplied, not inverted)": G @ kron.kron_solve(A, np.eye(m), X)}
        cases.append(Case(label, (A, G, X), kron.kron_solve(A, G, X), arrays("(m, n), the shape of X"),
                          mistakes=mistakes))
    return cases


KRONECKER = Exercise(
    4, "04_kronecker_matvec", "The Kronecker product without forming it",
    "column-stacking vec; (A ⊗ G) vec(X) and (A ⊗ G)⁻¹ vec(X) computed from the factors alone",
    "01 Kronecker product", 25,
    [Part("4.1", "vec", "vec(X): the columns of X (m, n) stacked into one vector (m·n,)", vec_cases,
          ("vec stacks columns (tutorial 01, 'vec stacks columns'), but NumPy is row-major: a plain reshape "
           "stacks rows.",
           "vec(X)[j·m + i] = X[i, j]: X.T.reshape(-1), or X.reshape(-1, order='F').")),
     Part("4.2", "unvec", "the inverse of vec: v (m·n,) back to the (m, n) matrix, m = rows", unvec_cases,
          ("Undo 4.1: fill columns of length m one after the other, not rows.",
           "v.reshape(n, m).T, or v.reshape(m, n, order='F').")),
     Part("4.3", "kron_matvec", "(A ⊗ G) vec(X) as an (m, n) matrix, without forming A ⊗ G", kron_matvec_cases,
          ("Block (i, j) of A ⊗ G is A[i, j]·G. Write one column of the result as a sum over the blocks of a "
           "block row and recognise a product of three matrices; then test it against np.kron on a small "
           "non-symmetric case (tutorial 01, 'The product rule').",
           "column j of the result is Σ_i A[j, i] G X[:, i], i.e. the result is G X Aᵀ: G @ X @ A.T.")),
     Part("4.4", "kron_solve", "(A ⊗ G)⁻¹ vec(X) as an (m, n) matrix, for symmetric positive definite A and G",
          kron_solve_cases,
          ("The inverse of a Kronecker product is again a Kronecker product; combine that with 4.3, and solve "
           "linear systems rather than forming inverses (tutorial 01, 'Inverse and eigenpairs come from the "
           "factors').",
           "(A ⊗ G)⁻¹ = A⁻¹ ⊗ G⁻¹, so the result is G⁻¹ X A⁻ᵀ = G⁻¹ X A⁻¹ (A is symmetric): "
           "np.linalg.solve(A, np.linalg.solve(G, X).T).T."))],
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
    cases = []
    for label, A, G, _ in _damping_settings(rng):
        pi, n, m = _pi(A, G), len(A), len(G)
        mistakes = {"1/π (the ratio upside down)": 1 / pi, "π² (the square root forgotten)": pi * pi,
                    "sqrt(tr(A) / tr(G)) (the traces not divided by the sizes n and m)": pi * (n / m) ** 0.5}
        cases.append(Case(label, (A, G), pi, arrays("() (a number)"), mistakes=mistakes))
    return cases


def damped_factors_cases(rng):
    cases = []
    for label, A, G, damping in _damping_settings(rng):
        shift_a, shift_g = factored_shifts(damping, _pi(A, G))  # (π√λ, √λ/π)
        expected = (A + shift_a * np.eye(len(A)), G + shift_g * np.eye(len(G)))
        swapped = (A + shift_g * np.eye(len(A)), G + shift_a * np.eye(len(G)))
        plain = (A + damping * np.eye(len(A)), G + damping * np.eye(len(G)))
        cases.append(Case(label, (A, G, damping), expected,
                          sequence(["A + π√λ I", "G + (√λ/π) I"], ["(n, n)", "(m, m)"]),
                          mistakes={"the two shifts swapped (π goes with A, 1/π with G)": swapped,
                                    "λ added to both factors (the shifts are π√λ and √λ/π)": plain}))
    return cases


def factored_solve_cases(rng):
    cases = []
    for label, A, G, damping in _damping_settings(rng):
        V = rng.standard_normal((len(G), len(A)))
        pi = _pi(A, G)
        mistakes = {"the solve with π = 1": kron.kron_solve_factored(A, G, V, damping, pi=1.0),
                    "the solve with π and 1/π swapped": kron.kron_solve_factored(A, G, V, damping, pi=1 / pi),
                    "the exact damping (A ⊗ G + λI)⁻¹ vec(V), not the factored one": kron.kron_solve(A, G, V, damping)}
        cases.append(Case(label, (A, G, V, damping), kron.kron_solve_factored(A, G, V, damping),
                          arrays("(m, n), the shape of V"), mistakes=mistakes))
    return cases


def _unrotated_solve(A, G, V, damping):
    """(U_Gᵀ V U_A) / (g_i a_j + λ), left in the eigenbasis: a half-done exact damped solve."""
    a, U_A = psd_eigh(A)
    g, U_G = psd_eigh(G)
    return (U_G.T @ V @ U_A) / exact_denominator(a, g, damping)


def exact_solve_cases(rng):
    cases = []
    for label, A, G, damping in _damping_settings(rng):
        V = rng.standard_normal((len(G), len(A)))
        eye_a, eye_g = np.eye(len(A)), np.eye(len(G))
        mistakes = {"((A + λI) ⊗ (G + λI))⁻¹ vec(V): λ added to each factor, a different matrix":
                    kron.kron_solve(A + damping * eye_a, G + damping * eye_g, V),
                    "the factored damping with π, not the exact one": kron.kron_solve_factored(A, G, V, damping),
                    "V rotated into the eigenbasis and divided, but not rotated back":
                    _unrotated_solve(A, G, V, damping)}
        cases.append(Case(label, (A, G, V, damping), kron.kron_solve(A, G, V, damping),
                          arrays("(m, n), the shape of V"), mistakes=mistakes))
    return cases


DAMPING = Exercise(
    7, "07_damping", "Tikhonov damping, exact and factored with π",
    "(A ⊗ G + λI)⁻¹ through eigendecompositions; the factored approximation (A + π√λ I) ⊗ (G + √λ/π I)",
    "07 cheap inversion", 35,
    [Part("7.1", "trace_norm_pi", "Martens & Grosse's trace-norm π = sqrt((tr(A)/n) / (tr(G)/m)) (a number)",
          pi_cases,
          ("n and m are the sizes of A and G: π compares the factors' *mean* eigenvalues, so that each factor is "
           "damped in proportion to its own scale (tutorial 07, 'Damping: exact Tikhonov vs factored').",
           "np.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G))).")),
     Part("7.2", "damped_factors", "the two damped factors (A + π√λ I, G + (√λ/π) I), (n, n) and (m, m)",
          damped_factors_cases,
          ("π (7.1) goes with A's shift and 1/π with G's; each identity has the size of its factor.",
           "A + π·√λ·np.eye(n) and G + (√λ/π)·np.eye(m); their Kronecker product is A ⊗ G + λI plus the cross "
           "terms π√λ I ⊗ G + (√λ/π) A ⊗ I.")),
     Part("7.3", "factored_damped_solve", "((A + π√λ I) ⊗ (G + √λ/π I))⁻¹ vec(V) as an (m, n) matrix",
          factored_solve_cases,
          ("This is the inverse of a Kronecker product of the two damped factors of 7.2: exercise 4.4 again.",
           "(G + √λ/π I)⁻¹ V (A + π√λ I)⁻¹: two np.linalg.solve calls.")),
     Part("7.4", "exact_damped_solve", "(A ⊗ G + λI)⁻¹ vec(V) as an (m, n) matrix, without forming A ⊗ G",
          exact_solve_cases,
          ("A ⊗ G + λI is no Kronecker product, but it has the eigenvectors of A ⊗ G, which come from the factors' "
           "eigenvectors (tutorial 01, 'Inverse and eigenpairs come from the factors'; tutorial 07). In that basis "
           "the matrix is diagonal: rotate, divide, rotate back.",
           "A = U_A diag(a) U_Aᵀ, G = U_G diag(g) U_Gᵀ (np.linalg.eigh): rotate V to U_Gᵀ V U_A, divide entry "
           "(i, j) by g_i a_j + λ, and rotate back with U_G (...) U_Aᵀ. (A + λI) ⊗ (G + λI) is a different "
           "matrix."))],
    forbidden=("minikfac.curvature",),
)
