"""Tests of the losses against independent formulas computed on the host.

Conventions under test: every loss is a per-example NLL averaged over the batch;
MSE's NLL is 1/2 ||f - y||^2, i.e. -log N(y; f, I) WITHOUT the constant
(D_out / 2) log(2 pi), so the SciPy reference subtracts that constant.
"""

import itertools
import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats

import minikfac as mk
from minikfac import backend
from minikfac.gradcheck import check_gradient, numerical_gradient
from minikfac.nn import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss

LOSSES = {"ce": CrossEntropyLoss, "mse": MSELoss, "bce": BCEWithLogitsLoss}
DTYPES = ["float64", "float32"]


def on(name, array):
    """Move host ``array`` to backend ``name``."""
    return backend.asarray(np.asarray(array), backend=name)


def host_case(kind, n, d, seed=0, dtype="float64", scale=2.0):
    """Host arrays (out (n, d), y) for loss ``kind``: CE int labels, MSE normal, BCE soft targets."""
    rng = np.random.default_rng(seed)
    out = (scale * rng.standard_normal((n, d))).astype(dtype)
    if kind == "ce":
        y = rng.integers(0, d, size=n)
    elif kind == "mse":
        y = rng.standard_normal((n, d)).astype(dtype)
    else:
        y = rng.uniform(0, 1, size=(n, d)).astype(dtype)
    return out, y


def reference_nll(kind, out, y):
    """Per-example NLL (n,) from SciPy, independent of minikfac."""
    out = out.astype(np.float64)
    if kind == "ce":
        return -scipy.special.log_softmax(out, axis=1)[np.arange(len(y)), y]
    if kind == "mse":
        # -log N(y; f, I) minus its constant (D/2) log(2 pi): our convention.
        constant = 0.5 * out.shape[1] * np.log(2 * np.pi)
        return -scipy.stats.norm.logpdf(y, loc=out).sum(axis=1) - constant
    # Soft targets: the Bernoulli cross-entropy -[y log s(f) + (1-y) log s(-f)].
    return -(y * scipy.special.log_expit(out) + (1 - y) * scipy.special.log_expit(-out)).sum(axis=1)


def per_example_gradients(loss_fn, out, y):
    """grad_f l_n for every n, (N, D_out): backward returns it divided by N."""
    loss_fn(out, y)
    return loss_fn.backward() * out.shape[0]


# --------------------------------------------------------------------------- #
# Value
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LOSSES)
def test_value_matches_scipy(kind, dtype, backend_name):
    out_h, y_h = host_case(kind, 6, 5, dtype=dtype)
    loss_fn = LOSSES[kind]()
    out, y = on(backend_name, out_h), on(backend_name, y_h)
    expected = reference_nll(kind, out_h, y_h)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    per_example = loss_fn.per_example(out, y)
    assert backend.backend_of(per_example) == backend_name and per_example.dtype == np.dtype(dtype)
    np.testing.assert_allclose(backend.to_numpy(per_example), expected, rtol=rtol)
    loss = loss_fn(out, y)
    assert backend.backend_of(loss) == backend_name, "the loss must stay a 0-d array on the backend"
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    np.testing.assert_allclose(float(backend.to_numpy(loss)), expected.mean(), rtol=rtol)


def test_bce_hard_labels_match_bernoulli_logpmf(backend_name):
    rng = np.random.default_rng(1)
    out_h = rng.standard_normal((5, 3))
    y_h = rng.integers(0, 2, size=(5, 3)).astype(np.float64)
    expected = -scipy.stats.bernoulli.logpmf(y_h, scipy.special.expit(out_h)).sum(axis=1)
    got = BCEWithLogitsLoss().per_example(on(backend_name, out_h), on(backend_name, y_h))
    np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-10)


def test_mse_is_torch_mse_times_d_over_2():
    out_h, y_h = host_case("mse", 4, 3)
    torch_style = np.mean((out_h - y_h) ** 2)  # PyTorch: no 1/2, mean over N * D_out
    np.testing.assert_allclose(float(MSELoss()(out_h, y_h)), torch_style * 3 / 2, rtol=1e-12)


# --------------------------------------------------------------------------- #
# Gradient
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("kind", LOSSES)
def test_backward_matches_finite_differences(kind, n, backend_name):
    out_h, y_h = host_case(kind, n, 3, seed=n)
    out, y = on(backend_name, out_h), on(backend_name, y_h)
    loss_fn = LOSSES[kind]()
    loss_fn(out, y)
    analytic = loss_fn.backward()
    assert backend.backend_of(analytic) == backend_name and analytic.shape == (n, 3)
    probe = LOSSES[kind]()
    numeric = numerical_gradient(lambda: probe(out, y), out)
    check_gradient(analytic, numeric, f"{kind} backward", rtol=1e-7)


# --------------------------------------------------------------------------- #
# Output Fisher: square root, Hessian, expectation
# --------------------------------------------------------------------------- #
def fisher_from_sqrt(s):
    """sum_k S[k, n] S[k, n]^T for every n, (N, D, D), on the host."""
    s = backend.to_numpy(s)
    return np.einsum("kni,knj->nij", s, s)


@pytest.mark.parametrize("kind", LOSSES)
def test_fisher_sqrt_squares_to_hessian(kind, backend_name):
    n, d = 4, 3
    out_h, y_h = host_case(kind, n, d)
    out, y = on(backend_name, out_h), on(backend_name, y_h)
    loss_fn = LOSSES[kind]()
    s = loss_fn.output_fisher_sqrt(out)
    assert s.shape == (d, n, d) and backend.backend_of(s) == backend_name
    hessian = loss_fn.output_hessian(out)
    assert hessian.shape == (n, d, d) and backend.backend_of(hessian) == backend_name
    np.testing.assert_allclose(fisher_from_sqrt(s), backend.to_numpy(hessian), atol=1e-14)

    # Central differences of the analytic per-example gradient: column j of every
    # example's Hessian at once (examples do not interact).
    h = 1e-5
    fd = np.zeros((n, d, d))
    for j in range(d):
        step = np.zeros((n, d))
        step[:, j] = h
        g_plus = backend.to_numpy(per_example_gradients(loss_fn, on(backend_name, out_h + step), y))
        g_minus = backend.to_numpy(per_example_gradients(loss_fn, on(backend_name, out_h - step), y))
        fd[:, :, j] = (g_plus - g_minus) / (2 * h)
    np.testing.assert_allclose(backend.to_numpy(hessian), fd, atol=1e-9)


def test_ce_fisher_sqrt_is_exact_expectation(backend_name):
    n, c = 4, 5
    out_h, _ = host_case("ce", n, c)
    out = on(backend_name, out_h)
    loss_fn = CrossEntropyLoss()
    probs = scipy.special.softmax(out_h, axis=1)
    expected = np.zeros((n, c, c))
    for label in range(c):
        g = backend.to_numpy(per_example_gradients(loss_fn, out, on(backend_name, np.full(n, label))))
        expected += probs[:, label, None, None] * np.einsum("ni,nj->nij", g, g)
    np.testing.assert_allclose(fisher_from_sqrt(loss_fn.output_fisher_sqrt(out)), expected, atol=1e-14)


def test_bce_fisher_sqrt_is_exact_expectation(backend_name):
    n, d = 3, 3
    out_h, _ = host_case("bce", n, d)
    out = on(backend_name, out_h)
    loss_fn = BCEWithLogitsLoss()
    p = scipy.special.expit(out_h)
    expected = np.zeros((n, d, d))
    for outcome in itertools.product([0.0, 1.0], repeat=d):  # all 2^D target vectors
        y_h = np.tile(outcome, (n, 1))
        weight = np.prod(np.where(y_h == 1, p, 1 - p), axis=1)
        g = backend.to_numpy(per_example_gradients(loss_fn, out, on(backend_name, y_h)))
        expected += weight[:, None, None] * np.einsum("ni,nj->nij", g, g)
    np.testing.assert_allclose(fisher_from_sqrt(loss_fn.output_fisher_sqrt(out)), expected, atol=1e-14)


def test_mse_fisher_sqrt_matches_monte_carlo(backend_name):
    n, d, samples = 2, 3, 20000
    out_h, _ = host_case("mse", n, d)
    loss_fn = MSELoss()
    # One big batch holding `samples` copies of the n examples.
    out = on(backend_name, np.tile(out_h, (samples, 1)))
    y = loss_fn.sample_targets(out, backend.default_rng(3, like=out))
    g = backend.to_numpy(per_example_gradients(loss_fn, out, y)).reshape(samples, n, d)
    estimate = np.einsum("kni,knj->nij", g, g) / samples
    # Entries of the estimate have std sqrt(2/k) (diagonal) or 1/sqrt(k): allow 5 sigma.
    exact = fisher_from_sqrt(loss_fn.output_fisher_sqrt(on(backend_name, out_h)))
    np.testing.assert_allclose(exact, np.broadcast_to(np.eye(d), (n, d, d)))
    assert np.max(np.abs(estimate - exact)) < 5 * np.sqrt(2 / samples)


# --------------------------------------------------------------------------- #
# Sampling from the model's predictive distribution
# --------------------------------------------------------------------------- #
def test_ce_samples_follow_softmax(backend_name):
    n, c, samples = 2, 4, 20000
    out_h = np.array([[0.0, 1.0, -1.0, 2.0], [3.0, 0.0, 0.0, -2.0]])
    out = on(backend_name, np.tile(out_h, (samples, 1)))
    labels = CrossEntropyLoss().sample_targets(out, backend.default_rng(0, like=out))
    assert backend.backend_of(labels) == backend_name
    assert labels.dtype == np.int64 and labels.shape == (n * samples,)
    labels = backend.to_numpy(labels).reshape(samples, n)
    probs = scipy.special.softmax(out_h, axis=1)
    for i in range(n):
        counts = np.bincount(labels[:, i], minlength=c)
        expected = samples * probs[i]
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert chi2 < scipy.stats.chi2.ppf(1 - 1e-6, df=c - 1), (counts, expected)


def test_ce_samples_stay_in_range_for_extreme_logits(backend_name):
    out = on(backend_name, np.tile([[-1000.0, -1000.0, 1000.0], [1000.0, -1000.0, -1000.0]], (500, 1)))
    labels = backend.to_numpy(CrossEntropyLoss().sample_targets(out, backend.default_rng(0, like=out)))
    np.testing.assert_array_equal(labels, np.tile([2, 0], 500))


def test_ce_sampling_guards_the_last_class(backend_name):
    class AlmostOne:  # a generator whose draws are the largest float below 1
        def random(self, size, dtype=np.float64):
            return on(backend_name, np.full(size, np.nextafter(1.0, 0.0), dtype=dtype))

    out = on(backend_name, np.random.default_rng(0).standard_normal((50, 7)))
    labels = backend.to_numpy(CrossEntropyLoss().sample_targets(out, AlmostOne()))
    assert labels.min() >= 0 and labels.max() <= 6


def test_bce_samples_follow_sigmoid(backend_name):
    samples = 20000
    out_h = np.array([[-2.0, 0.0, 1.5]])
    out = on(backend_name, np.tile(out_h, (samples, 1)))
    y = BCEWithLogitsLoss().sample_targets(out, backend.default_rng(0, like=out))
    assert backend.backend_of(y) == backend_name and y.dtype == np.float64
    y = backend.to_numpy(y)
    assert set(np.unique(y)) <= {0.0, 1.0}
    p = scipy.special.expit(out_h[0])
    assert np.all(np.abs(y.mean(axis=0) - p) < 5 * np.sqrt(p * (1 - p) / samples))


def test_mse_samples_have_unit_gaussian_noise(backend_name):
    samples = 20000
    out_h = np.array([[-1.0, 0.5, 3.0]])
    out = on(backend_name, np.tile(out_h, (samples, 1)))
    y = MSELoss().sample_targets(out, backend.default_rng(0, like=out))
    assert backend.backend_of(y) == backend_name
    noise = backend.to_numpy(y) - out_h
    assert np.all(np.abs(noise.mean(axis=0)) < 5 / np.sqrt(samples))
    assert np.all(np.abs(noise.var(axis=0) - 1) < 5 * np.sqrt(2 / samples))


@pytest.mark.parametrize("kind", LOSSES)
def test_sampling_is_reproducible_and_refuses_foreign_rng(kind):
    out = on("fakegpu", host_case(kind, 5, 3)[0])
    loss_fn = LOSSES[kind]()
    first = loss_fn.sample_targets(out, backend.default_rng(7, like=out))
    second = loss_fn.sample_targets(out, backend.default_rng(7, like=out))
    np.testing.assert_array_equal(backend.to_numpy(first), backend.to_numpy(second))
    with pytest.raises(ValueError, match="rng makes numpy arrays but out is a fakegpu array"):
        loss_fn.sample_targets(out, np.random.default_rng(7))


# --------------------------------------------------------------------------- #
# dtypes and numerics
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", LOSSES)
def test_float32_is_preserved_everywhere(kind, backend_name):
    out_h, y_h = host_case(kind, 4, 3, dtype="float32")
    out, y = on(backend_name, out_h), on(backend_name, y_h)
    loss_fn = LOSSES[kind]()
    assert loss_fn(out, y).dtype == np.float32
    assert loss_fn.per_example(out, y).dtype == np.float32
    assert loss_fn.backward().dtype == np.float32
    assert loss_fn.output_fisher_sqrt(out).dtype == np.float32
    assert loss_fn.output_hessian(out).dtype == np.float32
    if kind != "ce":
        assert loss_fn.sample_targets(out, backend.default_rng(0, like=out)).dtype == np.float32
        # float64 targets are cast to out's dtype rather than promoting the loss.
        assert loss_fn(out, on(backend_name, y_h.astype(np.float64))).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_are_finite(dtype, backend_name):
    out_h = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype=dtype)
    out = on(backend_name, out_h)
    cases = {
        # label 1 against logits (1000, -1000): l = logsumexp - f_y = 2000.
        "ce": (np.array([1, 1]), [2000.0, 0.0]),
        # BCE: -log s(-1000) = 1000 for the wrong target, 0 for the right one.
        "bce": (np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype), [2000.0, 2000.0]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        for kind, (y_h, expected) in cases.items():
            loss_fn = LOSSES[kind]()
            nll = backend.to_numpy(loss_fn.per_example(out, on(backend_name, y_h)))
            np.testing.assert_allclose(nll, expected, rtol=1e-6)
            loss_fn(out, on(backend_name, y_h))
            for array in (loss_fn.backward(), loss_fn.output_fisher_sqrt(out), loss_fn.output_hessian(out)):
                assert np.all(np.isfinite(backend.to_numpy(array)))


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("shape", [(6,), (2, 3, 1)])
def test_out_must_be_2d(kind, shape):
    with pytest.raises(ValueError, match=r"out must have shape \(N, D_out\), got shape"):
        LOSSES[kind]()(np.zeros(shape), np.zeros(shape))
    with pytest.raises(ValueError, match="out must have shape"):
        LOSSES[kind]().output_fisher_sqrt(np.zeros(shape))


@pytest.mark.parametrize(
    "y, message",
    [
        (np.zeros((4, 3), dtype=np.int64), r"y must hold one integer label per example, shape \(4,\), got shape \(4, 3\)"),
        (np.zeros(5, dtype=np.int64), r"shape \(4,\), got shape \(5,\)"),
        (np.zeros(4), "y \\(labels\\) must have an integer dtype, got dtype float64"),
        (np.array([0, 1, -1, 2]), r"y \(labels\) must lie in \[0, 3\).*got labels from -1 to 2"),
        (np.array([0, 3, 1, 2]), r"y \(labels\) must lie in \[0, 3\).*got labels from 0 to 3"),
    ],
)
def test_cross_entropy_label_errors(y, message, backend_name):
    with pytest.raises(ValueError, match=message):
        CrossEntropyLoss()(on(backend_name, np.zeros((4, 3))), on(backend_name, y))


@pytest.mark.parametrize("kind", ["mse", "bce"])
def test_dense_target_shape_error(kind, backend_name):
    with pytest.raises(ValueError, match=r"y must have the shape of out, \(4, 3\) \(N, D_out\), got shape \(4,\)"):
        LOSSES[kind]()(on(backend_name, np.zeros((4, 3))), on(backend_name, np.zeros(4)))


@pytest.mark.parametrize("kind", LOSSES)
def test_mixed_backends_and_non_arrays_are_refused(kind):
    out_h, y_h = host_case(kind, 4, 3)
    with pytest.raises(ValueError, match="out is a numpy array .* but y is a fakegpu array"):
        LOSSES[kind]()(out_h, on("fakegpu", y_h))
    with pytest.raises(TypeError, match="y must be an array on out's backend, got list"):
        LOSSES[kind]()(out_h, y_h.tolist())
    with pytest.raises(TypeError, match="out must be an array"):
        LOSSES[kind]()(out_h.tolist(), y_h)
    with pytest.raises(ValueError, match="out must be a float32 or float64 array, got dtype int64"):
        LOSSES[kind]()(out_h.astype(np.int64), y_h)


# --------------------------------------------------------------------------- #
# Caches
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", LOSSES)
def test_backward_before_forward_raises(kind):
    loss_fn = LOSSES[kind]()
    with pytest.raises(RuntimeError, match="call loss_fn\\(out, y\\) first"):
        loss_fn.backward()
    loss_fn.per_example(*host_case(kind, 3, 3))  # per_example does not cache
    with pytest.raises(RuntimeError):
        loss_fn.backward()


@pytest.mark.parametrize("kind", LOSSES)
def test_backward_mutates_nothing_the_caller_holds(kind, backend_name):
    out_h, y_h = host_case(kind, 4, 3)
    out, y = on(backend_name, out_h), on(backend_name, y_h)
    loss_fn = LOSSES[kind]()
    loss_fn(out, y)
    caches = {name: getattr(loss_fn, name) for name in loss_fn.cache_names}
    snapshots = {name: backend.to_numpy(value).copy() for name, value in caches.items()}
    first = loss_fn.backward()
    expected = backend.to_numpy(first).copy()
    first *= 0  # the caller scribbles on its gradient
    np.testing.assert_array_equal(backend.to_numpy(loss_fn.backward()), expected)
    for name, value in caches.items():
        assert getattr(loss_fn, name) is value
        np.testing.assert_array_equal(backend.to_numpy(value), snapshots[name])
    np.testing.assert_array_equal(backend.to_numpy(out), out_h)
    np.testing.assert_array_equal(backend.to_numpy(y), y_h)


def test_losses_share_the_base_class():
    assert all(issubclass(cls, Loss) for cls in LOSSES.values())
    assert mk.nn.CrossEntropyLoss is CrossEntropyLoss
