"""Influence functions (minikfac.influence) and the label-flip study, on cases where the answer is known.

- Exact cases: the exact GGN's influence is a dense solve; K-FAC's equals the
  exact blocks' where K-FAC is exact (one example; a deep linear net with
  MSE); self-influence is the diagonal of the influence matrix; chunking and
  the backend change nothing.
- The meaning of the number: upweighting an example in the mean loss and
  re-optimising changes the test loss at the rate the influence predicts
  (linear regression in closed form; multinomial logistic regression by
  Newton's method), with λ as an L2 penalty.
- Bad inputs name the argument, what it got and what was expected.
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend, influence
from minikfac.curvature.exact import fisher
from minikfac.curvature.params import assign, flatten
from minikfac.curvature.statistics import per_example_gradients
from minikfac.curvature.structures import approximate
from minikfac.studies import mislabelled
from tests.conftest import on

nn = mk.nn
STRUCTURES = ["full", "block", "kfac", "ekfac", "diag"]


def tanh_net(d_in=4, classes=3):
    return nn.Sequential(nn.Linear(d_in, 5), nn.Tanh(), nn.Linear(5, classes))


def classification(n=30, d=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, classes, size=n)


def setup(backend_name="numpy", n=30):
    """A tanh net (P = 43) on n CE examples, its (n, P) gradients and 4 test gradients, on a backend."""
    mk.nn.init.manual_seed(0)
    X, y = classification(n)
    X_test, y_test = classification(4, seed=1)
    net = tanh_net().to(backend_name)
    loss_fn = nn.CrossEntropyLoss()
    X, y, X_test, y_test = (on(backend_name, a) for a in (X, y, X_test, y_test))
    return net, loss_fn, X, y, per_example_gradients(net, loss_fn, X, y), per_example_gradients(net, loss_fn,
                                                                                                 X_test, y_test)


def host(x):
    return backend.to_numpy(x)


def relative(a, b):
    a, b = host(a), host(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


# --------------------------------------------------------------------------- #
# Exact cases
# --------------------------------------------------------------------------- #
def test_exact_influence_is_a_dense_solve(backend_name):
    net, loss_fn, X, y, train, test = setup(backend_name)
    damping = 1e-3
    F = host(fisher(net, loss_fn, X, kind="ggn"))
    expected = -host(train) @ np.linalg.solve(F + damping * np.eye(F.shape[0]), host(test).T)
    X_test, y_test = (on(backend_name, a) for a in classification(4, seed=1))
    result = influence.train_test_influences(net, loss_fn, X, y, X_test, y_test, damping)
    assert result.shape == (30, 4) and backend.backend_of(result) == backend_name
    assert relative(result, expected) < 1e-9


@pytest.mark.parametrize("structure", STRUCTURES)
def test_self_influence_is_the_diagonal_and_chunks_change_nothing(structure):
    net, loss_fn, X, y, train, _ = setup()
    approximation = approximate(net, loss_fn, X, structure)
    matrix = influence.influences(approximation, train, train, 1e-2)  # (N, N)
    expected = -np.diag(matrix)
    for chunk_size in (None, 1, 7, 30, 100):
        assert relative(influence.self_influences(approximation, train, 1e-2, chunk_size), expected) < 1e-12
    assert np.all(expected > 0)


def test_kfac_influence_equals_exact_blocks_with_one_example():
    net, loss_fn, X, y, train, test = setup(n=1)
    kfac, blocks = (approximate(net, loss_fn, X, s) for s in ("kfac", "block"))
    for damping in (1e-3, 1.0):
        assert relative(influence.influences(kfac, train, test, damping),
                        influence.influences(blocks, train, test, damping)) < 1e-9


def test_kfac_influence_equals_exact_blocks_on_a_deep_linear_net():
    """Deep linear net with MSE: G is the same for every example, so A ⊗ G is the exact block at any N."""
    mk.nn.init.manual_seed(0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((25, 3)), rng.standard_normal((25, 2))
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    loss_fn = nn.MSELoss()
    results = [influence.train_test_influences(net, loss_fn, X, Y, X[:5], Y[:5], 1e-2, structure=s)
               for s in ("kfac", "block")]
    assert relative(*results) < 1e-9
    # ... but not the full GGN: the layers are coupled.
    full = influence.train_test_influences(net, loss_fn, X, Y, X[:5], Y[:5], 1e-2)
    assert relative(results[0], full) > 1e-3


@pytest.mark.parametrize("structure", STRUCTURES)
def test_same_numbers_on_every_backend(structure, backend_name):
    reference = setup()
    other = setup(backend_name)
    results = []
    for net, loss_fn, X, y, train, test in (reference, other):
        approximation = approximate(net, loss_fn, X, structure)
        results.append((influence.influences(approximation, train, test, "heuristic"),
                        influence.self_influences(approximation, train, 1e-2, chunk_size=8)))
    for numpy_result, other_result in zip(*results):
        assert backend.backend_of(other_result) == backend_name
        assert relative(other_result, numpy_result) < 1e-10


@pytest.mark.parametrize("structure", STRUCTURES)
def test_the_heuristic_is_a_tenth_of_the_mean_eigenvalue(structure):
    net, loss_fn, X, y, train, test = setup()
    approximation = approximate(net, loss_fn, X, structure)
    expected = 0.1 * float(np.mean(host(approximation.eigenvalues())))
    assert abs(float(influence.damping_heuristic(approximation)) - expected) < 1e-10 * expected
    assert relative(influence.influences(approximation, train, test, "heuristic"),
                    influence.influences(approximation, train, test, expected)) < 1e-10


# --------------------------------------------------------------------------- #
# What the number predicts: upweight, re-optimise, compare
# --------------------------------------------------------------------------- #
def test_upweighting_linear_regression_matches_the_closed_form():
    """J_ε = (1/N) Σ ½‖W̄x̄_n − y_n‖² + ε ½‖W̄x̄_m − y_m‖² + (λ/2)‖W̄‖²: minimised by the normal equations."""
    rng = np.random.default_rng(0)
    N, lam, m = 15, 0.1, 3
    X, Y = rng.standard_normal((N, 3)), rng.standard_normal((N, 2))
    x_test, y_test = rng.standard_normal(3), rng.standard_normal(2)
    Xbar, xbar_test = np.hstack([X, np.ones((N, 1))]), np.append(x_test, 1.0)

    def minimiser(eps):
        weights = np.full(N, 1 / N)
        weights[m] += eps
        return np.linalg.solve(Xbar.T @ (weights[:, None] * Xbar) + lam * np.eye(4), Xbar.T @ (weights[:, None] * Y)).T

    def test_loss(eps):
        return 0.5 * np.sum((minimiser(eps) @ xbar_test - y_test) ** 2)

    net = nn.Sequential(nn.Linear(3, 2))
    W = minimiser(0.0)
    net.layers[0].weight.data, net.layers[0].bias.data = W[:, :3].copy(), W[:, 3].copy()
    predicted = influence.train_test_influences(net, nn.MSELoss(), X, Y, x_test[None], y_test[None], lam)[m, 0]
    eps = 1e-4
    measured = (test_loss(eps) - test_loss(-eps)) / (2 * eps)
    assert abs(predicted - measured) < 1e-7 * abs(measured)
    assert abs(measured) > 1e-3  # the check means something


def test_upweighting_logistic_regression_matches_newton_reoptimisation():
    """Multinomial logistic regression is convex and linear in θ, so its GGN is the Hessian; re-optimise
    J_ε = mean CE + ε ℓ_m + (λ/2)‖θ‖² to convergence and difference the test loss."""
    rng = np.random.default_rng(1)
    N, lam, m = 40, 0.05, 7
    X, y = rng.standard_normal((N, 4)), rng.integers(0, 3, size=N)
    x_test, y_test = rng.standard_normal((1, 4)), np.array([2])
    mk.nn.init.manual_seed(0)
    net, loss_fn = mk.models.mlp(4, 3, hidden=()), nn.CrossEntropyLoss()

    def optimise(eps, steps=30):
        for _ in range(steps):
            G = per_example_gradients(net, loss_fn, X, y)
            theta = flatten(net)
            gradient = G.mean(axis=0) + eps * G[m] + lam * theta
            curvature = approximate(net, loss_fn, X, "full")  # the Hessian without the ε ℓ_m term
            assign(net, theta - curvature.solve(gradient, lam))
        assert np.abs(gradient).max() < 1e-13
        return flatten(net)

    def test_loss(eps):
        optimise(eps)
        return float(loss_fn(net(x_test), y_test))

    optimise(0.0)
    predicted = influence.train_test_influences(net, loss_fn, X, y, x_test, y_test, lam)[m, 0]
    eps = 1e-4
    measured = (test_loss(eps) - test_loss(-eps)) / (2 * eps)
    assert abs(predicted - measured) < 1e-6 * abs(measured)
    assert abs(measured) > 1e-3


# --------------------------------------------------------------------------- #
# Bad inputs
# --------------------------------------------------------------------------- #
def test_bad_inputs_are_refused_with_names_and_shapes():
    net, loss_fn, X, y, train, test = setup()
    exact = approximate(net, loss_fn, X, "full")
    with pytest.raises(ValueError, match=r"test_gradients must be an \(N, P\) array .* P = 43.*got \(4, 42\)"):
        influence.influences(exact, train, test[:, :42], 1e-3)
    with pytest.raises(ValueError, match=r"train_gradients .* got \(43,\)"):
        influence.influences(exact, train[0], test, 1e-3)
    with pytest.raises(TypeError, match="train_gradients must be a floating array"):
        influence.self_influences(exact, (train > 0).astype(np.int64), 1e-3)
    with pytest.raises(ValueError, match="damping must be a finite number >= 0, got -0.1"):
        influence.influences(exact, train, test, -0.1)
    with pytest.raises(ValueError, match="damping must be a number >= 0 or 'heuristic', got 'big'"):
        influence.self_influences(exact, train, "big")
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None, got 0"):
        influence.self_influences(exact, train, 1e-3, chunk_size=0)
    with pytest.raises(TypeError, match="approximation must be a minikfac.curvature Approximation.*got ndarray"):
        influence.influences(host(exact.to_dense()), train, test, 1e-3)
    with pytest.raises(ValueError, match="structure must be one of .* got 'lowrank'"):
        influence.train_test_influences(net, loss_fn, X, y, X, y, 1e-3, structure="lowrank")
    other = approximate(tanh_net(4, 2), loss_fn, X, "kfac")
    with pytest.raises(ValueError, match="approximation has P = 37 parameters but the net has 43"):
        influence.train_self_influences(net, loss_fn, X, y, 1e-3, approximation=other)
    with pytest.raises(ValueError, match="y must be an array with N = 30 rows"):
        influence.train_self_influences(net, loss_fn, X, y[:20], 1e-3, structure="diag")
    with pytest.raises(ValueError, match=r"same shape .* got approximate_scores \(30,\) and exact_scores \(29,\)"):
        influence.rank_correlation(np.ones(30), np.ones(29))
    with pytest.raises(ValueError, match="damping_heuristic: factor must be a finite number > 0, got -1"):
        influence.damping_heuristic(exact, factor=-1)


def test_an_undamped_singular_solve_is_refused():
    net, loss_fn, X, y, train, test = setup(n=2)  # 2 examples, P = 43: the GGN is singular
    with pytest.raises(ValueError, match="singular"):
        influence.influences(approximate(net, loss_fn, X, "full"), train, test, 0.0)


# --------------------------------------------------------------------------- #
# The study's pieces
# --------------------------------------------------------------------------- #
def test_flip_labels_changes_the_asked_fraction_to_other_classes():
    y = np.arange(200) % 10
    noisy, flipped = mislabelled.flip_labels(y, 0.05, 10, seed=3)
    assert flipped.sum() == 10 and np.all(noisy[flipped] != y[flipped]) and np.all(noisy[~flipped] == y[~flipped])
    again, _ = mislabelled.flip_labels(y, 0.05, 10, seed=3)
    assert np.array_equal(noisy, again)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\), got 1.5"):
        mislabelled.flip_labels(y, 1.5, 10)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\), got 0 .. 9"):
        mislabelled.flip_labels(y, 0.1, 5)


def test_detection_curve_and_area_on_known_orders():
    flipped = np.array([False, True, False, False, True, False, False, False])
    perfect = flipped.astype(float)  # the flipped ones score highest
    checked, found = mislabelled.detection_curve(perfect, flipped)
    assert np.allclose(checked, np.arange(1, 9) / 8) and np.allclose(found, [0.5, 1, 1, 1, 1, 1, 1, 1])
    assert mislabelled.detection_area(found) == pytest.approx(7.5 / 8)
    _, worst = mislabelled.detection_curve(-perfect, flipped)
    assert np.allclose(worst, [0, 0, 0, 0, 0, 0, 0.5, 1])
    assert mislabelled.found_at(checked, found, 0.1) == 0.5
    with pytest.raises(ValueError, match="nothing to find"):
        mislabelled.detection_curve(perfect, np.zeros(8, dtype=bool))


def test_rank_correlation_is_spearmans():
    a = np.arange(10.0)
    assert influence.rank_correlation(a ** 3, a) == pytest.approx(1.0)
    assert influence.rank_correlation(np.stack([a, -a], 1), np.stack([a, a], 1)) == pytest.approx(0.0)


def test_the_study_runs_on_a_small_problem():
    net, loss_fn, X, y, train, test = setup(n=40)
    y_host = host(y)
    noisy, flipped = mislabelled.flip_labels(y_host, 0.1, 3, seed=0)
    result = mislabelled.label_flip_study(net, loss_fn, X, noisy, flipped, "heuristic", structures=("full", "kfac"))
    assert set(result.areas) == {"self-influence, full", "self-influence, kfac", mislabelled.LOSS}
    assert all(0 < area <= 1 for area in result.areas.values()) and "top 10%" in result.table()
    sweep = mislabelled.damping_sweep(net, loss_fn, X, y, X[:3], y[:3], [1e-3, 1e3], structures=("full", "diag"))
    assert np.allclose(sweep["full"], 1.0)
    assert sweep["diag"][1] == pytest.approx(sweep["gradient dot product"][1], abs=0.05)
