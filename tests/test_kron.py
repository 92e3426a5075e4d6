"""Kronecker algebra against the dense ``np.kron`` (Van Loan 2000; Van Loan & Pitsianis 1993;
Martens & Grosse 2015, §6.3): every identity is checked on random shapes."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minikfac.curvature.kron as kron
from minikfac.backend import to_numpy
from minikfac.curvature.damping import factored_inverses, factored_pi
from minikfac.curvature.kron import (
    KroneckerFactors,
    kron_eigenvalues,
    kron_eigenvectors,
    kron_eigh,
    kron_inverse,
    kron_matvec,
    kron_solve,
    kron_solve_factored,
    unvec,
    vec,
)
from minikfac.curvature.linalg import damped_inverse, psd_eigh
from minikfac.curvature.rearrangement import kronecker_spectrum, nearest_kronecker, rearrange
from tests.conftest import on

SETTINGS = settings(max_examples=50, deadline=None)
sizes = st.integers(1, 6)
dampings = st.sampled_from([0.0, 1e-3, 0.1, 1.0, 10.0])


def spd(k, rng):
    """A well-conditioned symmetric positive definite (k, k) matrix (eigenvalues in [0.5, ~5])."""
    M = rng.standard_normal((k, k))
    return M @ M.T / k + 0.5 * np.eye(k)


@st.composite
def kron_cases(draw, general=False):
    """(A (n, n), G (m, m), X (m, n)) with A, G SPD (or any square if ``general``) and X bounded."""
    n, m = draw(sizes), draw(sizes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = draw(hnp.arrays(np.float64, (m, n), elements=st.floats(-10, 10, allow_nan=False)))
    if general:
        return rng.standard_normal((n, n)), rng.standard_normal((m, m)), X
    return spd(n, rng), spd(m, rng), X


def relative_error(x, reference):
    return np.abs(x - reference).max() / max(np.abs(reference).max(), 1e-300)


def test_module_doctests_run_and_pass():
    failed, attempted = doctest.testmod(kron)
    assert attempted >= 1 and failed == 0


# --------------------------------------------------------------------------- #
# vec / unvec and products
# --------------------------------------------------------------------------- #
@SETTINGS
@given(sizes, sizes, st.integers(0, 3))
def test_vec_stacks_columns_and_unvec_inverts_it(m, n, stack):
    X = np.arange(stack * m * n or m * n, dtype=float).reshape(((stack,) if stack else ()) + (m, n))
    v = vec(X)
    assert v.shape == X.shape[:-2] + (m * n,)
    for i, j in [(0, 0), (m - 1, 0), (0, n - 1), (m - 1, n - 1)]:
        assert v[..., j * m + i].tolist() == X[..., i, j].tolist()
    np.testing.assert_array_equal(v, X.swapaxes(-1, -2).reshape(X.shape[:-2] + (-1,)))
    np.testing.assert_array_equal(unvec(v, m), X)


@SETTINGS
@given(kron_cases(general=True))
def test_matvec_is_vec_of_G_X_At(case):
    A, G, X = case
    dense = np.kron(A, G) @ vec(X)
    np.testing.assert_allclose(vec(kron_matvec(A, G, X)), dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kron_matvec(A, G, vec(X)), dense, rtol=1e-12, atol=1e-12)


def test_matvec_keeps_the_form_of_stacks():
    rng = np.random.default_rng(0)
    A, G = spd(3, rng), spd(2, rng)
    X = rng.standard_normal((4, 2, 3))
    expected = np.stack([np.kron(A, G) @ vec(x) for x in X])
    matrices = kron_matvec(A, G, X)
    vectors = kron_matvec(A, G, vec(X))
    assert matrices.shape == (4, 2, 3) and vectors.shape == (4, 6)
    np.testing.assert_allclose(vec(matrices), expected, rtol=1e-12)
    np.testing.assert_allclose(vectors, expected, rtol=1e-12)


# --------------------------------------------------------------------------- #
# Eigendecompositions
# --------------------------------------------------------------------------- #
@SETTINGS
@given(kron_cases())
def test_eigenpairs_of_A_kron_G_are_products(case):
    A, G, _ = case
    values, U_A, U_G = kron_eigh(A, G)
    dense = np.kron(A, G)
    np.testing.assert_allclose(np.sort(values), np.linalg.eigvalsh(dense), rtol=1e-10, atol=1e-12)
    U = kron_eigenvectors(U_A, U_G)
    np.testing.assert_allclose(dense @ U, U * values, atol=1e-10)
    np.testing.assert_allclose(U.T @ U, np.eye(len(values)), atol=1e-10)
    # the order of kron_eigenvalues: entry j·m + i is a_j·g_i
    a_eigs, g_eigs = np.linalg.eigvalsh(A), np.linalg.eigvalsh(G)
    m = len(g_eigs)
    j, i = len(a_eigs) - 1, m - 1
    np.testing.assert_allclose(kron_eigenvalues(a_eigs, g_eigs)[j * m + i], a_eigs[j] * g_eigs[i], rtol=1e-14)
    factors = KroneckerFactors(A, G)
    np.testing.assert_allclose(factors.eigenvalues(), values, rtol=1e-12)
    np.testing.assert_allclose(factors.trace(), np.trace(dense), rtol=1e-12)
    np.testing.assert_allclose(factors.to_dense(), dense, rtol=1e-15)


def test_psd_eigh_clips_rounding_negatives_of_rank_deficient_factors():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 6))  # two examples, six features: rank 2
    S = a.T @ a / 2
    assert np.linalg.eigvalsh(S).min() < 0  # rounding: the reason for clipping
    values, vectors = psd_eigh(S)
    assert values.min() == 0.0
    np.testing.assert_allclose(vectors * values @ vectors.T, S, atol=1e-12)


# --------------------------------------------------------------------------- #
# Inverses and solves
# --------------------------------------------------------------------------- #
@SETTINGS
@given(kron_cases())
def test_inverse_of_kron_is_kron_of_inverses(case):
    A, G, _ = case
    inverse = kron_inverse(A, G)
    np.testing.assert_allclose(inverse, np.kron(np.linalg.inv(A), np.linalg.inv(G)), atol=1e-10)
    np.testing.assert_allclose(inverse @ np.kron(A, G), np.eye(len(inverse)), atol=1e-10)


@SETTINGS
@given(kron_cases(), dampings)
def test_damped_solve_matches_dense_solve(case, damping):
    A, G, X = case
    damped = np.kron(A, G) + damping * np.eye(A.shape[0] * G.shape[0])
    reference = np.linalg.solve(damped, vec(X))
    assert relative_error(vec(kron_solve(A, G, X, damping)), reference) < 1e-10
    assert relative_error(kron_solve(A, G, vec(X), damping), reference) < 1e-10
    assert relative_error(kron_inverse(A, G, damping), np.linalg.inv(damped)) < 1e-10


@SETTINGS
@given(kron_cases(), dampings.filter(lambda d: d > 0))
def test_factored_solve_matches_dense_solve_of_damped_factors(case, damping):
    A, G, X = case
    n, m = A.shape[0], G.shape[0]
    pi = np.sqrt((np.trace(A) / n) / (np.trace(G) / m))
    np.testing.assert_allclose(factored_pi(A, G), pi, rtol=1e-14)
    root = np.sqrt(damping)
    for used_pi in (pi, 2.5):
        damped = np.kron(A + used_pi * root * np.eye(n), G + root / used_pi * np.eye(m))
        reference = np.linalg.solve(damped, vec(X))
        result = kron_solve_factored(A, G, X, damping, pi=None if used_pi is pi else used_pi)
        assert relative_error(vec(result), reference) < 1e-10


@SETTINGS
@given(kron_cases(), dampings.filter(lambda d: d > 0))
def test_factored_inverses_give_the_factored_solve(case, damping):
    """G̃⁻¹ X Ã⁻¹ with the Cholesky inverses of the damped factors equals the dense solve with π-damping."""
    A, G, X = case
    A_inverse, G_inverse = factored_inverses(A, G, damping)
    n, m = A.shape[0], G.shape[0]
    pi = np.sqrt((np.trace(A) / n) / (np.trace(G) / m))
    root = np.sqrt(damping)
    np.testing.assert_allclose(A_inverse, np.linalg.inv(A + pi * root * np.eye(n)), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(G_inverse, np.linalg.inv(G + root / pi * np.eye(m)), rtol=1e-10, atol=1e-13)
    assert np.array_equal(A_inverse, A_inverse.T) and np.array_equal(G_inverse, G_inverse.T)
    reference = np.linalg.solve(np.kron(A + pi * root * np.eye(n), G + root / pi * np.eye(m)), vec(X))
    assert relative_error(vec(G_inverse @ X @ A_inverse), reference) < 1e-10


def test_damped_inverse_of_a_singular_factor_and_of_a_non_finite_one(backend_name):
    """A rank-one PSD factor is invertible once damped; a NaN or an infinity gives None, not an error."""
    v = np.arange(1.0, 5.0)
    S = on(backend_name, np.outer(v, v))
    inverse = to_numpy(damped_inverse(S, 0.5))
    np.testing.assert_allclose(inverse, np.linalg.inv(np.outer(v, v) + 0.5 * np.eye(4)), rtol=1e-10)
    for bad in (np.nan, np.inf):
        broken = np.outer(v, v)
        broken[1, 2] = bad
        assert damped_inverse(on(backend_name, broken), 0.5) is None
    zero = on(backend_name, np.zeros((3, 3)))
    A_inverse, G_inverse = factored_inverses(zero, zero, 1e-2)  # zero traces: π from the smallest positive number
    assert np.all(np.isfinite(to_numpy(A_inverse))) and np.all(np.isfinite(to_numpy(G_inverse)))


def test_damped_inverse_keeps_float32():
    rng = np.random.default_rng(7)
    S = spd(5, rng).astype(np.float32)
    inverse = damped_inverse(S, 0.1)
    assert inverse.dtype == np.float32
    np.testing.assert_allclose(inverse, np.linalg.inv(S.astype(np.float64) + 0.1 * np.eye(5)), rtol=1e-4)


def test_factored_solve_is_the_exact_solve_without_damping():
    rng = np.random.default_rng(2)
    A, G, X = spd(4, rng), spd(3, rng), rng.standard_normal((3, 4))
    np.testing.assert_allclose(kron_solve_factored(A, G, X, 0.0), kron_solve(A, G, X), rtol=1e-12)


def test_kronecker_factors_cache_the_eigendecomposition():
    rng = np.random.default_rng(3)
    A, G, X = spd(3, rng), spd(2, rng), rng.standard_normal((2, 3))
    factors = KroneckerFactors(A, G)
    assert factors.shape == (6, 6)
    eigen = factors.eigen()
    for damping in (0.0, 0.5):
        factors.solve(X, damping)
        factors.solve_factored(X, damping)
    assert factors.eigen() is eigen
    Y = factors.solve(X, 0.5)
    np.testing.assert_allclose(factors.matvec(Y) + 0.5 * Y, X, atol=1e-12)


def test_singular_kron_without_damping_is_refused():
    a = np.array([[1.0, 2.0]])
    A = a.T @ a  # rank 1
    G = np.eye(3)
    X = np.ones((3, 2))
    for solve in (lambda: kron_solve(A, G, X), lambda: kron_inverse(A, G),
                  lambda: kron_solve_factored(A, G, X, 0.0)):
        with pytest.raises(ValueError, match="singular.*damping > 0"):
            solve()
    assert np.isfinite(kron_solve(A, G, X, damping=1e-3)).all()


# --------------------------------------------------------------------------- #
# Nearest Kronecker product
# --------------------------------------------------------------------------- #
@SETTINGS
@given(sizes, sizes, sizes, sizes, st.integers(0, 2**32 - 1))
def test_rearrangement_maps_kron_to_rank_one_and_is_an_isometry(n1, n2, m1, m2, seed):
    rng = np.random.default_rng(seed)
    A, G = rng.standard_normal((n1, n2)), rng.standard_normal((m1, m2))
    np.testing.assert_allclose(rearrange(np.kron(A, G), (n1, n2), (m1, m2)), np.outer(vec(A), vec(G)), rtol=1e-14)
    B = rng.standard_normal((n1 * m1, n2 * m2))
    R = rearrange(B, (n1, n2), (m1, m2))
    assert R.shape == (n1 * n2, m1 * m2)
    np.testing.assert_allclose(np.linalg.norm(R), np.linalg.norm(B), rtol=1e-14)
    np.testing.assert_array_equal(np.sort(R, axis=None), np.sort(B, axis=None))  # a permutation


@SETTINGS
@given(kron_cases())
def test_nearest_kronecker_recovers_a_kronecker_product(case):
    A, G, _ = case
    B = np.kron(A, G)
    A_hat, G_hat, _ = nearest_kronecker(B, A.shape[0], G.shape[0])
    np.testing.assert_allclose(np.kron(A_hat, G_hat), B, atol=1e-10)
    assert np.linalg.eigvalsh((A_hat + A_hat.T) / 2).min() > 0 and np.trace(G_hat) > 0  # signs chosen PSD
    spectrum = kronecker_spectrum(B, A.shape, G.shape)
    assert len(spectrum) == min(A.size, G.size)
    np.testing.assert_allclose(spectrum, np.eye(len(spectrum))[0], atol=1e-10)


@SETTINGS
@given(st.integers(2, 5), st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_nearest_kronecker_error_of_a_sum_follows_the_spectrum(n, m, seed):
    rng = np.random.default_rng(seed)
    B = np.kron(spd(n, rng), spd(m, rng)) + np.kron(spd(n, rng), spd(m, rng))
    A_hat, G_hat, singular_values = nearest_kronecker(B, n, m)
    error = np.linalg.norm(B - np.kron(A_hat, G_hat)) / np.linalg.norm(B)
    spectrum = kronecker_spectrum(B, n, m)
    np.testing.assert_allclose(spectrum, singular_values / np.linalg.norm(singular_values), rtol=1e-12)
    np.testing.assert_allclose(error, np.sqrt(1 - spectrum[0] ** 2), rtol=1e-6, atol=1e-8)
    assert spectrum[1] > 1e-8  # really not a Kronecker product
    # Nearest: no worse than either term scaled optimally, nor than the balanced guess below.
    for candidate in (np.kron(spd(n, rng), spd(m, rng)), np.kron(np.eye(n), np.eye(m))):
        scale = np.sum(B * candidate) / np.sum(candidate * candidate)
        assert error <= np.linalg.norm(B - scale * candidate) / np.linalg.norm(B) + 1e-12


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_wrong_shapes_and_values_are_named():
    A, G = np.eye(3), np.eye(2)
    with pytest.raises(ValueError, match=r"kron_matvec: X must have shape \(\.\.\., 2, 3\) or \(\.\.\., 6\).*\(3, 2\)"):
        kron_matvec(A, G, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"kron_matvec: A must be a square matrix.*\(3, 2\)"):
        kron_matvec(np.ones((3, 2)), G, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"kron_solve|solve: X must have shape"):
        kron_solve(A, G, np.ones(5))
    with pytest.raises(ValueError, match="damping must be a finite number >= 0, got -1.0"):
        kron_solve(A, G, np.ones(6), damping=-1)
    with pytest.raises(TypeError, match="damping must be a number"):
        kron_solve(A, G, np.ones(6), damping="a lot")
    with pytest.raises(ValueError, match="pi must be a finite number > 0"):
        kron_solve_factored(A, G, np.ones(6), 0.1, pi=0.0)
    with pytest.raises(ValueError, match="tr.A. and tr.G. must be positive"):
        factored_pi(A, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"rearrange: B must have shape \(6, 6\).*got \(6, 5\)"):
        rearrange(np.ones((6, 5)), 3, 2)
    with pytest.raises(ValueError, match="shape_A must be a positive int or a pair"):
        nearest_kronecker(np.ones((6, 6)), (3, 3, 1), 2)
    with pytest.raises(ValueError, match="vec: expected a matrix"):
        vec(np.ones(3))
    with pytest.raises(ValueError, match="cannot be split into columns of 4 rows"):
        unvec(np.ones(6), 4)


# --------------------------------------------------------------------------- #
# Backends and dtypes
# --------------------------------------------------------------------------- #
def test_every_operation_matches_numpy_on_each_backend(backend_name):
    rng = np.random.default_rng(4)
    A, G, X = spd(4, rng), spd(3, rng), rng.standard_normal((3, 4))
    B = np.kron(A, G) + 0.1 * np.kron(spd(4, rng), spd(3, rng))
    dA, dG, dX, dB = (on(backend_name, x) for x in (A, G, X, B))
    pairs = [
        (kron_matvec(dA, dG, dX), kron_matvec(A, G, X)),
        (kron_matvec(dA, dG, vec(dX)), kron_matvec(A, G, vec(X))),
        (kron_solve(dA, dG, dX, 0.1), kron_solve(A, G, X, 0.1)),
        (kron_solve(dA, dG, dX, on(backend_name, np.array(0.1))), kron_solve(A, G, X, 0.1)),
        (kron_solve_factored(dA, dG, dX, 0.1), kron_solve_factored(A, G, X, 0.1)),
        (kron_inverse(dA, dG, 0.1), kron_inverse(A, G, 0.1)),
        (np.sort(to_numpy(kron_eigh(dA, dG)[0])), np.sort(kron_eigh(A, G)[0])),
        (factored_pi(dA, dG), factored_pi(A, G)),
        (KroneckerFactors(dA, dG).trace(), KroneckerFactors(A, G).trace()),
        (np.kron(*map(to_numpy, nearest_kronecker(dB, 4, 3)[:2])), np.kron(*nearest_kronecker(B, 4, 3)[:2])),
        (kronecker_spectrum(dB, 4, 3), kronecker_spectrum(B, 4, 3)),
        (rearrange(dB, 4, 3), rearrange(B, 4, 3)),
    ]
    for result, expected in pairs:
        np.testing.assert_allclose(to_numpy(result), expected, rtol=1e-10, atol=1e-12)


def test_mixed_backends_are_refused():
    A, G = np.eye(2), np.eye(2)
    with pytest.raises(ValueError, match="A is a numpy array .* but G is a fakegpu array"):
        kron_matvec(A, on("fakegpu", G), np.ones((2, 2)))
    with pytest.raises(ValueError, match="different backends"):
        kron_solve(A, G, on("fakegpu", np.ones((2, 2))), 0.1)


def test_float32_works_and_stays_float32(backend_name):
    rng = np.random.default_rng(5)
    A, G, X = spd(5, rng), spd(4, rng), rng.standard_normal((4, 5))
    dA, dG, dX = (on(backend_name, x.astype(np.float32)) for x in (A, G, X))
    for result, expected in [
        (kron_matvec(dA, dG, dX), kron_matvec(A, G, X)),
        (kron_solve(dA, dG, dX, 0.1), kron_solve(A, G, X, 0.1)),
        (kron_solve(dA, dG, dX), kron_solve(A, G, X)),
        (kron_solve_factored(dA, dG, dX, 0.1), kron_solve_factored(A, G, X, 0.1)),
    ]:
        assert result.dtype == np.float32
        assert relative_error(to_numpy(result), expected) < 1e-4
    A_hat, G_hat, _ = nearest_kronecker(on(backend_name, np.kron(A, G).astype(np.float32)), 5, 4)
    assert A_hat.dtype == np.float32
    assert relative_error(np.kron(to_numpy(A_hat), to_numpy(G_hat)), np.kron(A, G)) < 1e-4
