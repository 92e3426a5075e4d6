"""The Laplace approximation (minikfac.laplace): exact cases, the evidence, the predictive, bad input.

Exact cases: a linear model with the Gaussian likelihood is Bayesian linear
regression, whose posterior, predictive and evidence are known in closed form,
and every structure but the diagonal is exact there; with one example K-FAC's
blocks are the exact blocks; the linearised predictive's covariance is J Σ Jᵀ
with J from finite differences. Elsewhere: properties (derivatives by finite
differences, the maximiser's optimality, MC against quadrature).
"""

import math

import numpy as np
import pytest
import scipy.stats

import minikfac as mk
from minikfac.curvature import linalg
from tests.conftest import on

STRUCTURES = ["full", "block", "kfac", "ekfac", "diag"]


def ridge_regression(N=30, D=3, K=2, delta=0.7, seed=0):
    """A Linear net at the exact MAP of Gaussian regression with prior precision δ, and the data."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    y = X @ rng.normal(size=(D, K)) + 0.5 + rng.normal(size=(N, K))
    Xb = np.hstack([X, np.ones((N, 1))])
    W = np.linalg.solve(Xb.T @ Xb + delta * np.eye(D + 1), Xb.T @ y)  # (D+1, K), bias last
    net = mk.nn.Sequential(mk.nn.Linear(D, K))
    net.layers[0].weight.data[...] = W[:D].T
    net.layers[0].bias.data[...] = W[D]
    return net, X, y, Xb, W


def tanh_classifier(n=12, seed=0):
    rng = np.random.default_rng(seed)
    net = mk.nn.Sequential(mk.nn.Linear(3, 4), mk.nn.Tanh(), mk.nn.Linear(4, 3))
    return net, rng.normal(size=(n, 3)), rng.integers(0, 3, size=n)


@pytest.mark.parametrize("structure", ["full", "block", "kfac", "ekfac"])
def test_linear_regression_is_exact_in_every_nondiagonal_structure(structure):
    delta = 0.7
    net, X, y, Xb, W = ridge_regression(delta=delta)
    la = mk.laplace.Laplace(net, mk.nn.MSELoss(), X, y, structure=structure, prior_precision=delta)
    Xt = np.random.default_rng(1).normal(size=(5, 3))
    Xtb = np.hstack([Xt, np.ones((5, 1))])
    mean, covariance = la.predictive(Xt)
    S = np.linalg.inv(Xb.T @ Xb + delta * np.eye(4))
    variance = np.einsum("ni,ij,nj->n", Xtb, S, Xtb) + 1  # x̄ᵀ Σ x̄ + the unit noise
    np.testing.assert_allclose(mean, Xtb @ W, atol=1e-12)
    np.testing.assert_allclose(covariance, variance[:, None, None] * np.eye(2), atol=1e-12)
    # The evidence: each output column y_k ~ N(0, X̄ X̄ᵀ/δ + I), independently.
    C = Xb @ Xb.T / delta + np.eye(len(X))
    exact = sum(scipy.stats.multivariate_normal(np.zeros(len(X)), C).logpdf(y[:, k]) for k in range(2))
    assert float(la.log_marginal_likelihood()) == pytest.approx(exact, rel=1e-12)


def test_the_diagonal_is_not_exact_for_correlated_inputs():
    net, X, y, Xb, _ = ridge_regression()
    la = mk.laplace.Laplace(net, mk.nn.MSELoss(), X, y, structure="diag", prior_precision=0.7)
    exact = mk.laplace.Laplace(net, mk.nn.MSELoss(), X, y, structure="full", prior_precision=0.7)
    assert abs(float(la.log_marginal_likelihood()) - float(exact.log_marginal_likelihood())) > 1e-3


def test_one_example_kfac_precision_equals_the_exact_blocks():
    net, X, y = tanh_classifier(n=1)
    loss = mk.nn.CrossEntropyLoss()
    kfac = mk.laplace.Laplace(net, loss, X, y, structure="kfac", prior_precision=0.3)
    block = mk.laplace.Laplace(net, loss, X, y, structure="block", prior_precision=0.3)
    np.testing.assert_allclose(kfac.posterior_precision(), block.posterior_precision(), atol=1e-12)
    assert float(kfac.log_marginal_likelihood()) == pytest.approx(float(block.log_marginal_likelihood()), rel=1e-10)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_precision_covariance_and_log_det_agree(structure):
    net, X, y = tanh_classifier()
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure=structure, prior_precision=0.5)
    precision = la.posterior_precision()
    dense = la.curvature.to_dense()
    np.testing.assert_allclose(precision, len(X) * dense + 0.5 * np.eye(la.n_params), atol=1e-13)
    np.testing.assert_allclose(la.posterior_covariance() @ precision, np.eye(la.n_params), atol=1e-9)
    np.testing.assert_allclose(la.posterior_variance(), np.diagonal(np.linalg.inv(precision)), rtol=1e-9)
    sign, logdet = np.linalg.slogdet(precision)
    assert sign == 1 and float(la.log_det_posterior_precision()) == pytest.approx(logdet, rel=1e-10)


def _finite_difference_jacobian(net, X, eps=1e-6):
    theta = mk.curvature.flatten(net).copy()
    columns = []
    for i in range(theta.size):
        for sign in (1, -1):
            shifted = theta.copy()
            shifted[i] += sign * eps
            mk.curvature.assign(net, shifted)
            if sign == 1:
                plus = net(X)
            else:
                columns.append((plus - net(X)) / (2 * eps))
    mk.curvature.assign(net, theta)
    net.clear_cache()
    return np.stack(columns, axis=-1)  # (n, K, P)


@pytest.mark.parametrize("structure", ["full", "kfac", "diag"])
def test_functional_covariance_is_J_sigma_J_transpose(structure):
    net, X, y = tanh_classifier()
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure=structure, prior_precision=0.5)
    Xt = np.random.default_rng(2).normal(size=(4, 3))
    J = _finite_difference_jacobian(net, Xt)
    mean, covariance = la.functional_covariance(Xt)
    np.testing.assert_allclose(mean, net(Xt), atol=1e-14)
    np.testing.assert_allclose(covariance, J @ la.posterior_covariance() @ J.transpose(0, 2, 1), atol=1e-8)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_evidence_derivative_matches_finite_differences_and_its_root_is_the_maximum(structure):
    net, X, y = tanh_classifier()
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure=structure)
    for delta in (0.05, 1.0, 20.0):
        h = 1e-5 * delta
        numeric = (float(la.log_marginal_likelihood(delta + h)) - float(la.log_marginal_likelihood(delta - h))) / (2 * h)
        assert float(la.log_marginal_likelihood_derivative(delta)) == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    best = la.optimize_prior_precision()
    assert la.prior_precision == best
    assert abs(float(la.log_marginal_likelihood_derivative())) < 1e-8 * (1 + la.n_params / best)
    top = float(la.log_marginal_likelihood())
    assert top > float(la.log_marginal_likelihood(best * 1.01)) and top > float(la.log_marginal_likelihood(best / 1.01))
    # At the root, δ = γ(δ)/‖θ*‖² (MacKay's fixed point).
    assert best == pytest.approx(float(la.effective_parameters()) / float(np.sum(la.mean ** 2)), rel=1e-8)


def test_probit_without_variance_is_the_map_prediction_and_mc_matches_quadrature():
    net, X, y = tanh_classifier()
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure="full", prior_precision=1.0)
    mean = net(X)
    np.testing.assert_allclose(la.predictive(X, "map"), np.exp(mean) / np.exp(mean).sum(1, keepdims=True), atol=1e-14)
    # One Bernoulli logit f ~ N(m, v): E[σ(f)] by Gauss–Hermite quadrature against 200,000 draws.
    m, v = np.array([[0.7], [-1.5]]), np.array([[[2.0]], [[0.3]]])
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    exact = [(weights * (1 / (1 + np.exp(-(mi + np.sqrt(vi) * nodes))))).sum() / weights.sum()
             for mi, vi in zip(m[:, 0], v[:, 0, 0])]
    draws = mk.laplace.monte_carlo(m, v, "sigmoid", samples=200_000, seed=0)
    np.testing.assert_allclose(draws[:, 0], exact, atol=4e-3)
    # The probit approximation is close to it (MacKay 1992: within a few hundredths here).
    np.testing.assert_allclose(mk.laplace.probit(m, v, "sigmoid")[:, 0], exact, atol=0.02)


def test_predictive_probabilities_sum_to_one_and_mc_depends_on_the_seed_only():
    net, X, y = tanh_classifier()
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure="kfac", prior_precision=0.2)
    for method in ("probit", "mc"):
        probs = la.predictive(X, method, samples=50)
        assert probs.shape == (len(X), 3) and np.allclose(probs.sum(1), 1)
    np.testing.assert_array_equal(la.predictive(X, "mc", samples=50, seed=3), la.predictive(X, "mc", samples=50, seed=3))
    assert not np.array_equal(la.predictive(X, "mc", samples=50, seed=3), la.predictive(X, "mc", samples=50, seed=4))


def test_last_layer_is_the_laplace_of_the_head_on_the_features():
    net, X, y = tanh_classifier()
    loss = mk.nn.CrossEntropyLoss()
    last = mk.laplace.Laplace(net, loss, X, y, structure="full", subset="last_layer", prior_precision=0.4)
    features = np.tanh(X @ net.layers[0].weight.data.T + net.layers[0].bias.data)
    head = mk.nn.Sequential(net.layers[2])
    direct = mk.laplace.Laplace(head, loss, features, y, structure="full", prior_precision=0.4)
    assert last.n_params == 15
    np.testing.assert_allclose(last.posterior_precision(), direct.posterior_precision(), atol=1e-13)
    np.testing.assert_allclose(last.predictive(X), direct.predictive(features), atol=1e-13)
    block = mk.laplace.Laplace(net, loss, X, y, structure="block", subset="last_layer", prior_precision=0.4)
    np.testing.assert_allclose(block.posterior_precision(), last.posterior_precision(), atol=1e-13)
    # The full net's posterior restricted to the head's block would differ: the head's precision is its block.
    whole = mk.laplace.Laplace(net, loss, X, y, structure="full", prior_precision=0.4).posterior_precision()
    np.testing.assert_allclose(whole[-15:, -15:], last.posterior_precision(), atol=1e-12)


def test_laplace_leaves_the_net_as_it_was():
    net, X, y = tanh_classifier()
    loss = mk.nn.CrossEntropyLoss()
    net.backward(loss.backward() if loss(net(X), y) is not None else None)
    before = [(p.data.copy(), p.grad.copy()) for p in net.parameters()]
    la = mk.laplace.Laplace(net, loss, X, y, structure="ekfac")
    la.predictive(X, "mc", samples=5)
    for (data, grad), p in zip(before, net.parameters()):
        np.testing.assert_array_equal(p.data, data)
        np.testing.assert_array_equal(p.grad, grad)
    assert all(p.data is not la.mean for p in net.parameters())


@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_backend_gives_the_same_numbers(structure, backend_name):
    net, X, y = tanh_classifier()
    net.to("numpy")  # built on the current backend; the reference runs on the host
    reference = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure=structure, prior_precision=0.5)
    expected = (float(reference.log_marginal_likelihood()), reference.predictive(X[:4]), reference.optimize_prior_precision())
    net.to(backend_name)
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), on(backend_name, X), on(backend_name, y),
                            structure=structure, prior_precision=0.5)
    assert float(la.log_marginal_likelihood()) == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(mk.to_numpy(la.predictive(on(backend_name, X[:4]))), expected[1], atol=1e-12)
    assert la.optimize_prior_precision() == pytest.approx(expected[2], rel=1e-9)
    assert mk.to_numpy(la.predictive(on(backend_name, X[:4]), "mc", samples=3)).shape == (4, 3)


def test_bad_input_is_refused_with_a_clear_message(monkeypatch):
    net, X, y = tanh_classifier()
    loss = mk.nn.CrossEntropyLoss()
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="prior_precision must be a finite number > 0"):
            mk.laplace.Laplace(net, loss, X, y, prior_precision=bad)
    with pytest.raises(TypeError, match="prior_precision"):
        mk.laplace.Laplace(net, loss, X, y, prior_precision="1")
    la = mk.laplace.Laplace(net, loss, X, y)
    with pytest.raises(ValueError, match="got -2"):
        la.prior_precision = -2
    with pytest.raises(ValueError, match="got 0"):
        la.log_marginal_likelihood(0)
    assert la.prior_precision == 1.0  # a refused value changes nothing
    with pytest.raises(ValueError, match="structure must be one of 'full', 'block', 'kfac', 'ekfac', 'diag', got 'kron'"):
        mk.laplace.Laplace(net, loss, X, y, structure="kron")
    with pytest.raises(ValueError, match="subset must be one of"):
        mk.laplace.Laplace(net, loss, X, y, subset="first_layer")
    with pytest.raises(ValueError, match=r"y must be an array with N = 12 rows \(like X\), got \(11,\)"):
        mk.laplace.Laplace(net, loss, X, y[:-1])
    with pytest.raises(TypeError, match="loss_fn must be CrossEntropyLoss"):
        mk.laplace.Laplace(net, "ce", X, y)
    with pytest.raises(ValueError, match="method must be one of"):
        la.predictive(X, "bridge")
    with pytest.raises(ValueError, match="samples must be a positive int"):
        la.predictive(X, "mc", samples=0)
    with pytest.raises(ValueError, match="last Linear layer"):
        mk.laplace.Laplace(mk.nn.Sequential(mk.nn.Linear(3, 3), mk.nn.Tanh()), loss, X, y, subset="last_layer")


def test_a_net_too_large_for_full_is_refused_before_anything_is_computed(monkeypatch):
    net, X, y = tanh_classifier()
    P = 31
    monkeypatch.setattr(linalg, "MAX_DENSE_BYTES", 8 * P * P - 1)
    computed = []
    monkeypatch.setattr(mk.curvature.structures, "approximate", lambda *a, **k: computed.append(1))
    with pytest.raises(ValueError, match=r"Laplace\(structure='full'\): the dense result \(31 x 31, float64\)"):
        mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure="full")
    with pytest.raises(ValueError, match=r"Laplace\(structure='block'\)"):
        monkeypatch.setattr(linalg, "MAX_DENSE_BYTES", 8 * (16 ** 2 + 15 ** 2) - 1)
        mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure="block")
    assert computed == []
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure="kfac")  # factored: fine
    assert math.isfinite(float(la.log_marginal_likelihood()))


@pytest.mark.parametrize("structure", ["kfac", "ekfac", "diag"])
def test_the_eigenbasis_shortcut_equals_the_solve_with_formed_jacobians_also_for_convolutions(structure):
    rng = np.random.default_rng(3)
    net = mk.nn.Sequential(mk.nn.Conv2d(1, 2, 3, padding=1), mk.nn.Tanh(), mk.nn.Flatten(), mk.nn.Linear(32, 3))
    X, y = rng.normal(size=(7, 1, 4, 4)), rng.integers(0, 3, size=7)
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure=structure, prior_precision=0.3)
    Xt = rng.normal(size=(5, 1, 4, 4))
    mean, covariance = la.functional_covariance(Xt)
    for start, stop, f, J in mk.laplace.output_jacobians(net, mk.nn.CrossEntropyLoss(), Xt, chunk_size=2):
        np.testing.assert_allclose(f, mean[start:stop], atol=1e-14)
        expected = mk.laplace.functional_covariance(J, la.curvature, la.n_data, la.prior_precision)
        np.testing.assert_allclose(covariance[start:stop], expected, rtol=1e-10, atol=1e-14)
