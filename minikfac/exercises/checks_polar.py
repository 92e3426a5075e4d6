"""Exercise 11: the polar factor, Newton–Schulz, and Shampoo with one gradient.

The expected results come from :mod:`minikfac.curvature.polar`: the polar factor
U Vᵀ through the SVD (:func:`~minikfac.curvature.polar.polar_factor`), the
Newton–Schulz iteration as ``torch.optim.Muon`` defines it
(:func:`~minikfac.curvature.polar.newton_schulz`; one step of it is the whole
iteration run once on a matrix of Frobenius norm 1) and Shampoo's inverse
fourth roots (:func:`~minikfac.curvature.polar.matrix_power_psd`). Shapes are
wide, tall and square, so that a transpose forgotten (or not undone) shows.
"""

import numpy as np

from minikfac.curvature import polar
from minikfac.exercises.feedback import arrays
from minikfac.exercises.spec import Case, Exercise, Part

#: Muon's quintic coefficients and the classical cubic ones, as the library names them.
QUINTIC, CUBIC = polar.MUON_COEFFICIENTS, polar.CUBIC_COEFFICIENTS


def _shapes(rng):
    """(m, n) pairs: wide, tall, square, and a single row, with random sizes."""
    small, large = int(rng.integers(2, 5)), int(rng.integers(6, 10))
    square = int(rng.integers(3, 7))
    return [(small, large), (large, small), (square, square), (1, int(rng.integers(3, 7)))]


def _matrix(rng, m, n):
    """A random (m, n) matrix with a random overall scale (10⁻² to 10²) and unequal singular values."""
    M = rng.standard_normal((m, n)) * rng.uniform(0.3, 3.0, size=n)
    return M * 10 ** rng.uniform(-2, 2)


def _label(m, n):
    kind = "wide" if m < n else "tall" if m > n else "square"
    return f"M ({m}, {n}), {kind}"


def _singular_map(M, scale, coefficients, steps):
    """U diag(p^steps(σ/scale)) Vᵀ with p(x) = a x + b x³ + c x⁵: Newton–Schulz after dividing M by ``scale``."""
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    a, b, c = coefficients
    x = s / scale
    for _ in range(steps):
        x = a * x + b * x ** 3 + c * x ** 5
    return (U * x) @ Vt


# --------------------------------------------------------------------------- #
# 11.1 the polar factor
# --------------------------------------------------------------------------- #
def polar_cases(rng):
    """11.1: args (M (m, n),); expected U Vᵀ by ``polar_factor``."""
    cases = []
    for m, n in _shapes(rng):
        M = _matrix(rng, m, n)
        singular = np.linalg.svd(M, compute_uv=False)
        mistakes = {"M divided by its largest singular value (scaled, not orthogonalised)": M / singular[0],
                    "M divided by its Frobenius norm (scaled, not orthogonalised)": M / np.linalg.norm(M)}
        if m == 1:  # a single row: its polar factor *is* M / ‖M‖, so these are no mistakes here
            mistakes = {}
        cases.append(Case(_label(m, n), (M,), polar.polar_factor(M), arrays("(m, n), the shape of M"),
                          mistakes=mistakes))
    return cases


# --------------------------------------------------------------------------- #
# 11.2 one Newton–Schulz step
# --------------------------------------------------------------------------- #
def step_cases(rng):
    """11.2: args (X (m, n) with ‖X‖_F = 1, (a, b, c)); expected one step, ``newton_schulz(X, 1, (a, b, c))``."""
    cases = []
    coefficient_sets = [QUINTIC, CUBIC, QUINTIC, tuple(float(v) for v in rng.uniform([1, -3, 0.2], [3, -1, 1.5]))]
    for (m, n), coefficients in zip(_shapes(rng)[:3] + [(int(rng.integers(2, 5)), 7)], coefficient_sets):
        X = rng.standard_normal((m, n))
        X = X / np.linalg.norm(X)  # the step itself does not normalise; the iteration (11.3) does
        a, b, c = coefficients
        A = X @ X.T
        mistakes = {"a·X + b·X³ + c·X⁵ taken entrywise (the polynomial must act on the singular values)":
                    a * X + b * X ** 3 + c * X ** 5}
        if c != 0:
            mistakes["A where A² belongs (a·X + (b + c)·A X)"] = a * X + (b + c) * (A @ X)
        label = f"{_label(m, n)[2:]}, ‖X‖_F = 1, coefficients ({a:.4g}, {b:.4g}, {c:.4g})"
        cases.append(Case(label, (X, coefficients), polar.newton_schulz(X, 1, coefficients),
                          arrays("(m, n), the shape of X"), mistakes=mistakes))
    return cases


# --------------------------------------------------------------------------- #
# 11.3 the whole iteration
# --------------------------------------------------------------------------- #
def iteration_cases(rng):
    """11.3: args (M (m, n), steps, (a, b, c), eps); expected ``newton_schulz(M, steps, (a, b, c), eps)``."""
    cases = []
    eps = 1e-7
    settings = [((int(rng.integers(2, 5)), int(rng.integers(6, 10))), 5, QUINTIC),
                ((int(rng.integers(6, 10)), int(rng.integers(2, 5))), 5, QUINTIC),
                ((int(rng.integers(6, 10)), int(rng.integers(2, 5))), int(rng.integers(2, 5)), CUBIC),
                ((int(rng.integers(3, 6)),) * 2, 25, CUBIC)]
    for (m, n), steps, coefficients in settings:
        M = _matrix(rng, m, n)
        frobenius = np.linalg.norm(M)
        spectral = np.linalg.svd(M, compute_uv=False)[0]
        mistakes = {"M divided by its largest singular value (the spectral norm), not by its Frobenius norm":
                    _singular_map(M, spectral, coefficients, steps)}
        label = f"{_label(m, n)}, ‖M‖_F = {frobenius:.3g}, {steps} steps, " + \
                ("Muon's quintic coefficients" if coefficients == QUINTIC else "the cubic coefficients")
        cases.append(Case(label, (M, steps, coefficients, eps), polar.newton_schulz(M, steps, coefficients, eps),
                          arrays("(m, n), the shape of M"), mistakes=mistakes))
    zero = np.zeros((3, 5))
    cases.append(Case("M = 0 (3, 5): a momentum that is still zero; the norm's floor eps keeps the result finite",
                      (zero, 5, QUINTIC, eps), polar.newton_schulz(zero, 5, QUINTIC, eps), arrays("(m, n)")))
    return cases


# --------------------------------------------------------------------------- #
# 11.4 Shampoo with one gradient
# --------------------------------------------------------------------------- #
def shampoo_cases(rng):
    """11.4: args (G (m, n), eps); expected (GGᵀ + εI)^{-1/4} G (GᵀG + εI)^{-1/4} by ``matrix_power_psd``."""
    cases = []
    for m, n in _shapes(rng)[:3] + [(int(rng.integers(2, 4)),) * 2]:
        G = rng.standard_normal((m, n)) * rng.uniform(0.5, 2.0, size=n)
        eps = float(10 ** rng.uniform(-4, -2))
        left, right = G @ G.T, G.T @ G
        expected = polar.matrix_power_psd(left, -0.25, eps) @ G @ polar.matrix_power_psd(right, -0.25, eps)
        mistakes = {"the exponent −1/2 on both sides (Shampoo²'s inverse square roots)":
                    polar.matrix_power_psd(left, -0.5, eps) @ G @ polar.matrix_power_psd(right, -0.5, eps),
                    "ε left out, the exact polar factor U Vᵀ": polar.polar_factor(G)}
        if m == n:
            mistakes["L and R swapped (R^{-1/4} G L^{-1/4})"] = \
                polar.matrix_power_psd(right, -0.25, eps) @ G @ polar.matrix_power_psd(left, -0.25, eps)
        cases.append(Case(f"G ({m}, {n}), ε = {eps:.3g}", (G, eps), expected, arrays("(m, n), the shape of G"),
                          mistakes=mistakes))
    return cases


NEWTON_SCHULZ = Exercise(
    11, "11_newton_schulz", "The polar factor, Newton–Schulz and Shampoo with one gradient",
    "U Vᵀ from the SVD; one Newton–Schulz step with matrix products; the whole iteration (transpose, normalise, "
    "steps); Shampoo's L^{-1/4} G R^{-1/4} for a single gradient",
    "13 K-FAC's relatives", 35,
    [Part("11.1", "polar_factor", "the polar factor U Vᵀ (m, n) of M = U Σ Vᵀ (m, n), from the thin SVD",
          polar_cases,
          ("Keep M's singular vectors and replace every singular value by 1. NumPy's SVD returns the *full* "
           "square factors unless told otherwise, and its third result is already transposed (tutorial 13, "
           "'The polar factor and Muon').",
           "U, s, Vt = np.linalg.svd(M, full_matrices=False); the polar factor is U @ Vt (not Vt.T @ U.T, "
           "which is its transpose).")),
     Part("11.2", "newton_schulz_step", "one Newton–Schulz step (m, n): every singular value σ of X becomes "
          "a·σ + b·σ³ + c·σ⁵, the singular vectors stay, computed with matrix products only", step_cases,
          ("Write X = U Σ Vᵀ and work out what X Xᵀ X and (X Xᵀ)² X are: each is X with its singular values raised "
           "to an odd power. Combine such products; no SVD is needed (tutorial 13, 'Newton–Schulz: the polar "
           "factor from matrix products').",
           "with A = X Xᵀ, the step is a·X + (b·A + c·A²) X: A = X @ X.T; a * X + (b * A + c * A @ A) @ X.")),
     Part("11.3", "newton_schulz", "Muon's Newton–Schulz iteration (m, n): the wide orientation, the Frobenius "
          "normalisation with the floor eps, then ``steps`` steps of 11.2", iteration_cases,
          ("Three things around 11.2: work on the wide orientation (transpose a tall M first, and transpose the "
           "result back), divide by the norm the task names with its floor, then repeat the step (tutorial 13, "
           "'Newton–Schulz: the polar factor from matrix products').",
           "X = M.T if m > n else M; X = X / max(np.linalg.norm(X), eps); repeat X = newton_schulz_step(X, "
           "coefficients) steps times; return X.T if m > n else X.")),
     Part("11.4", "shampoo_one_gradient", "Shampoo's update for a single gradient G (m, n): L^{-1/4} G R^{-1/4} "
          "with L = G Gᵀ + εI (m, m) and R = Gᵀ G + εI (n, n)", shampoo_cases,
          ("L and R are symmetric positive definite: raise them to a power through their eigendecompositions, "
           "as exercise 7 inverted A and G, with ε added to the eigenvalues. Then compare with 11.1 on a small "
           "case (tutorial 13, 'The polar factor and Muon').",
           "P(S) = Q diag((w + ε)^(−1/4)) Qᵀ from w, Q = np.linalg.eigh(S); the update is "
           "P(G Gᵀ) @ G @ P(Gᵀ G), which equals U diag(σ/√(σ² + ε)) Vᵀ."))],
    forbidden=("minikfac.curvature", "minikfac.optim.muon"),
)
