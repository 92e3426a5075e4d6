"""Off-diagonal mass of K-FAC's factors and the diagonal Kronecker model, against dense NumPy."""

import numpy as np
import pytest

import minikfac as mk
from minikfac.backend import to_numpy
from minikfac.curvature import kron_solve
from minikfac.studies import diagonal_kron_error, diagonal_kron_solve, off_diagonal_mass
from tests.conftest import on


def spd(k, rng):
    """A random symmetric positive definite (k, k) matrix with clear off-diagonal entries."""
    M = rng.standard_normal((k, k))
    return M @ M.T / k + 0.5 * np.eye(k)


def dense_mass(M):
    return np.linalg.norm(M - np.diag(np.diag(M))) / np.linalg.norm(M)


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_off_diagonal_mass_matches_the_dense_definition(backend_name, k):
    M = spd(k, np.random.default_rng(k))
    mass = off_diagonal_mass(on(backend_name, M))
    assert mass.ndim == 0  # a 0-d array on a device (a NumPy scalar on the host): no sync
    assert mk.backend.backend_of(mass) in (backend_name, None if backend_name == "numpy" else backend_name)
    assert abs(float(to_numpy(mass)) - dense_mass(M)) < 1e-12


def test_off_diagonal_mass_of_known_matrices(backend_name):
    assert float(to_numpy(off_diagonal_mass(on(backend_name, np.diag([1.0, 2.0, 3.0]))))) == 0.0
    n = 4  # the matrix of ones: n² entries, n of them on the diagonal
    ones = float(to_numpy(off_diagonal_mass(on(backend_name, np.ones((n, n))))))
    assert abs(ones - np.sqrt(1 - 1 / n)) < 1e-12
    # nearly diagonal: no cancellation (Σ M² − Σ diag² would leave an error of about 1e-8)
    near = np.diag([1.0, 2.0, 3.0]) + 1e-12 * np.ones((3, 3))
    assert abs(float(to_numpy(off_diagonal_mass(on(backend_name, near)))) - dense_mass(near)) < 1e-20
    # scale-free: c·M has the mass of M
    M = spd(5, np.random.default_rng(0))
    assert abs(float(to_numpy(off_diagonal_mass(on(backend_name, -7.5 * M)))) - dense_mass(M)) < 1e-12


@pytest.mark.parametrize("n, m", [(1, 1), (3, 2), (4, 6)])
def test_diagonal_kron_error_equals_the_dense_kronecker_distance(backend_name, n, m):
    rng = np.random.default_rng(10 * n + m)
    A, G = spd(n, rng), spd(m, rng)
    full = np.kron(A, G)
    diagonal = np.kron(np.diag(np.diag(A)), np.diag(np.diag(G)))
    expected = np.linalg.norm(full - diagonal) / np.linalg.norm(full)
    got = diagonal_kron_error(on(backend_name, A), on(backend_name, G))
    assert abs(float(to_numpy(got)) - expected) < 1e-12
    # both factors must be near-diagonal: the error is at least each factor's own mass
    assert float(to_numpy(got)) >= max(dense_mass(A), dense_mass(G)) - 1e-12


@pytest.mark.parametrize("damping", [0.0, 1e-3, 0.5])
def test_diagonal_kron_solve_is_kfac_with_the_diagonals(backend_name, damping):
    rng = np.random.default_rng(3)
    A, G, X = spd(4, rng), spd(3, rng), rng.standard_normal((3, 4))
    got = to_numpy(diagonal_kron_solve(on(backend_name, A), on(backend_name, G), on(backend_name, X), damping))
    dense = np.linalg.solve(np.kron(np.diag(np.diag(A)), np.diag(np.diag(G))) + damping * np.eye(12),
                            X.T.reshape(-1))  # vec stacks columns
    np.testing.assert_allclose(got, dense.reshape(4, 3).T, rtol=1e-12, atol=1e-14)
    through_kfac = to_numpy(kron_solve(np.diag(np.diag(A)), np.diag(np.diag(G)), X, damping))
    np.testing.assert_allclose(got, through_kfac, rtol=1e-10, atol=1e-14)
    # and it is *not* K-FAC's solve when the factors have off-diagonal entries
    assert np.linalg.norm(got - to_numpy(kron_solve(A, G, X, damping))) > 1e-3 * np.linalg.norm(got)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="M must be a square matrix"):
        off_diagonal_mass(np.ones((2, 3)))
    with pytest.raises(ValueError, match="G must be a square matrix"):
        diagonal_kron_error(np.eye(2), np.ones(3))
    with pytest.raises(ValueError, match=r"X must have shape \(m, n\) = \(3, 2\)"):
        diagonal_kron_solve(np.eye(2), np.eye(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match="add damping"):
        diagonal_kron_solve(np.diag([1.0, 0.0]), np.eye(1), np.ones((1, 2)))
    with pytest.raises(ValueError, match="damping must be a finite number"):
        diagonal_kron_solve(np.eye(2), np.eye(1), np.ones((1, 2)), damping=-1.0)


def test_mixed_backends_are_refused():
    with pytest.raises((TypeError, ValueError), match="fakegpu"):
        diagonal_kron_error(np.eye(2), on("fakegpu", np.eye(3)))
