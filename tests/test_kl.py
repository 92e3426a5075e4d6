"""Loss.kl_divergence: KL(p(y | f) ‖ p(y | f')) per example, for the three losses.

- against the definition E_{y~p}[log p(y) − log q(y)] = E_{y~p}[ℓ(f', y) − ℓ(f, y)],
  evaluated with the loss's own per-example NLL (the NLL is affine in the
  sufficient statistic, so the expectation is exact: enumerate the classes, or
  put y at its mean for the Gaussian and the Bernoulli);
- KL >= 0, = 0 at equal outputs, asymmetric (except the Gaussian), invariant
  to shifting all logits of a softmax, finite for huge logits;
- its gradient in f' vanishes at f' = f and its Hessian there is the output
  Fisher (output_hessian), by central differences;
- in parameter space, the Hessian of δ ↦ mean KL(p_θ ‖ p_{θ+δ}) is the true Fisher;
- backends, dtypes, caches left alone, errors.
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac.curvature import params
from tests.conftest import on

nn = mk.nn
LOSSES = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}


def _outputs(n=5, d=4, scale=2.0, seed=0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((n, d)), scale * rng.standard_normal((n, d))


def _kl_by_definition(loss, f, g):
    """E_{y~p(·|f)}[ℓ(g, y) − ℓ(f, y)] with the loss's per-example NLL ℓ, (N,)."""
    loss_fn = LOSSES[loss]()
    if loss == "ce":  # enumerate the classes, weighted by p(c | f)
        probs = np.exp(f - f.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        total = np.zeros(f.shape[0])
        for c in range(f.shape[1]):
            label = np.full(f.shape[0], c)
            total += probs[:, c] * (loss_fn.per_example(g, label) - loss_fn.per_example(f, label))
        return total
    # Gaussian and Bernoulli NLLs are affine in y once the term in ‖y‖² cancels:
    # the expectation is the value at E[y] (f, or σ(f) as a soft target).
    mean = f if loss == "mse" else 1 / (1 + np.exp(-f))
    return loss_fn.per_example(g, mean) - loss_fn.per_example(f, mean)


@pytest.mark.parametrize("loss", LOSSES)
def test_matches_the_definition(loss):
    f, g = _outputs()
    kl = LOSSES[loss]().kl_divergence(f, g)
    assert kl.shape == (f.shape[0],)
    np.testing.assert_allclose(kl, _kl_by_definition(loss, f, g), rtol=1e-12, atol=1e-14)


def test_closed_forms():
    f, g = _outputs(n=3, d=2)
    np.testing.assert_allclose(nn.MSELoss().kl_divergence(f, g), 0.5 * np.sum((f - g) ** 2, axis=1), rtol=1e-14)
    s, t = 1 / (1 + np.exp(-f)), 1 / (1 + np.exp(-g))
    bernoulli = np.sum(s * np.log(s / t) + (1 - s) * np.log((1 - s) / (1 - t)), axis=1)
    np.testing.assert_allclose(nn.BCEWithLogitsLoss().kl_divergence(f, g), bernoulli, rtol=1e-12)
    p = np.exp(f) / np.exp(f).sum(axis=1, keepdims=True)
    q = np.exp(g) / np.exp(g).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(nn.CrossEntropyLoss().kl_divergence(f, g), np.sum(p * np.log(p / q), axis=1),
                               rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_nonnegative_zero_at_equality_and_asymmetric(loss):
    loss_fn = LOSSES[loss]()
    for seed in range(5):
        f, g = _outputs(n=20, seed=seed, scale=3.0)
        kl = loss_fn.kl_divergence(f, g)
        assert kl.min() > 0
        assert np.abs(loss_fn.kl_divergence(f, f)).max() < 1e-15
        backward = loss_fn.kl_divergence(g, f)
        if loss == "mse":
            np.testing.assert_allclose(backward, kl, rtol=1e-14)
        else:
            assert np.abs(backward - kl).max() > 1e-3 * kl.max()


def test_softmax_shift_invariance():
    f, g = _outputs()
    loss_fn = nn.CrossEntropyLoss()
    np.testing.assert_allclose(loss_fn.kl_divergence(f, g + 7.0), loss_fn.kl_divergence(f, g), rtol=1e-12,
                               atol=1e-15)
    assert np.abs(loss_fn.kl_divergence(f, f - 3.0)).max() < 1e-14


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_huge_logits_stay_finite(loss):
    f = np.array([[800.0, -800.0, 0.0], [-900.0, 1.0, 900.0]])
    g = np.array([[-800.0, 800.0, 0.0], [1.0, 2.0, 3.0]])
    kl = LOSSES[loss]().kl_divergence(f, g)
    softplus = lambda x: np.logaddexp(0.0, x)  # noqa: E731
    sigma = 1 / (1 + np.exp(-1.0))
    if loss == "ce":  # p is (nearly) one class c, so KL = −log q_c
        expected = [1600.0, np.log(np.exp(1.0) + np.exp(2.0) + np.exp(3.0)) - 3.0]
    else:  # unit by unit: s ∈ {0, 1} gives −log(1 − t) or −log t
        expected = [1600.0, softplus(1.0) + sigma * (softplus(-2.0) - softplus(-1.0))
                    + (1 - sigma) * (softplus(2.0) - softplus(1.0)) + softplus(-3.0)]
    np.testing.assert_allclose(kl, expected, rtol=1e-12)
    assert np.abs(LOSSES[loss]().kl_divergence(f, f)).max() == 0


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_zero_and_hessian_is_the_output_fisher_at_equality(loss):
    loss_fn = LOSSES[loss]()
    f, _ = _outputs(n=3, d=3, scale=1.5)
    n, d = f.shape
    h = 1e-4
    basis = np.eye(d) * h
    hessian = np.empty((n, d, d))
    for i in range(d):
        gradient = (loss_fn.kl_divergence(f, f + basis[i]) - loss_fn.kl_divergence(f, f - basis[i])) / (2 * h)
        assert np.abs(gradient).max() < 1e-8
        for j in range(d):
            hessian[:, i, j] = (loss_fn.kl_divergence(f, f + basis[i] + basis[j])
                                - loss_fn.kl_divergence(f, f + basis[i] - basis[j])
                                - loss_fn.kl_divergence(f, f - basis[i] + basis[j])
                                + loss_fn.kl_divergence(f, f - basis[i] - basis[j])) / (4 * h * h)
    np.testing.assert_allclose(hessian, loss_fn.output_hessian(f), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss", LOSSES)
def test_parameter_hessian_of_the_kl_is_the_true_fisher(loss):
    mk.nn.init.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3))  # P = 21
    net.eval()  # forward passes only
    loss_fn = LOSSES[loss]()
    X = np.random.default_rng(1).standard_normal((4, 2))
    theta = params.flatten(net).copy()
    reference = net(X)

    def mean_kl(delta):
        params.assign(net, theta + delta)
        return loss_fn.kl_divergence(reference, net(X)).mean()

    h, size = 1e-4, theta.shape[0]
    basis = np.eye(size) * h
    hessian = np.empty((size, size))
    for i in range(size):
        for j in range(i, size):
            hessian[i, j] = hessian[j, i] = (mean_kl(basis[i] + basis[j]) - mean_kl(basis[i] - basis[j])
                                             - mean_kl(basis[j] - basis[i]) + mean_kl(-basis[i] - basis[j])
                                             ) / (4 * h * h)
    params.assign(net, theta)
    F = mk.curvature.fisher(net, loss_fn, X, kind="true")
    assert np.abs(hessian - F).max() < 1e-6 * np.abs(F).max()


@pytest.mark.parametrize("loss", LOSSES)
def test_backends_and_dtypes(loss, backend_name):
    f, g = _outputs()
    expected = LOSSES[loss]().kl_divergence(f, g)
    got = LOSSES[loss]().kl_divergence(on(backend_name, f), on(backend_name, g))
    assert mk.backend.backend_of(got) == backend_name
    np.testing.assert_allclose(mk.to_numpy(got), expected, rtol=1e-13, atol=1e-15)
    single = LOSSES[loss]().kl_divergence(on(backend_name, f.astype(np.float32)), on(backend_name, g.astype(np.float32)))
    assert single.dtype == np.float32
    np.testing.assert_allclose(mk.to_numpy(single), expected, rtol=1e-4, atol=1e-5)


def test_caches_are_left_alone():
    loss_fn = nn.CrossEntropyLoss()
    f, g = _outputs()
    y = np.array([0, 1, 2, 3, 0])
    loss_fn(f, y)
    before = loss_fn.backward()
    loss_fn.kl_divergence(g, f)
    np.testing.assert_array_equal(loss_fn.backward(), before)


@pytest.mark.parametrize("loss", LOSSES)
def test_errors(loss):
    loss_fn = LOSSES[loss]()
    f, g = _outputs()
    name = LOSSES[loss].__name__
    with pytest.raises(ValueError, match=rf"{name}.kl_divergence: out_q has shape \(5, 3\), expected .*\(5, 4\)"):
        loss_fn.kl_divergence(f, g[:, :3])
    with pytest.raises(TypeError, match="out_q must be an array"):
        loss_fn.kl_divergence(f, g.tolist())
    with pytest.raises(ValueError, match=r"shape \(N, D_out\)"):
        loss_fn.kl_divergence(f[0], g[0])
    with pytest.raises(ValueError, match="fakegpu"):
        loss_fn.kl_divergence(f, on("fakegpu", g))
