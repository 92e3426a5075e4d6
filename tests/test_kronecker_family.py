"""Shampoo, SOAP and the nearest Kronecker product (:mod:`minikfac.curvature.shampoo`): exact where exact.

- One example of a Linear layer: R = tr(G)·A, L = tr(A)·G with K-FAC's (A, G),
  so R ⊗ L = tr(F_ll)·F_ll (any kind); for the empirical Fisher R^½ ⊗ L^½ = F_ll.
- A deep linear network with MSE: the same for any number of examples.
- Any net: L and R are the partial traces of F_ll (so tr R = tr L = tr F_ll),
  equal to the loop over per-example gradients; the power iteration's first
  round from (I, I) is (R, L) up to scale (Morwani et al. 2024), and it
  converges to the nearest Kronecker product (Van Loan & Pitsianis 1993).
- The optimal scale is optimal; SOAP keeps the trace and beats every Shampoo
  in its basis (Vyas et al. 2024; George et al. 2018).
- Every object passes the interface checks of the other approximations.
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend, models
from minikfac.curvature import shampoo as sh
from minikfac.curvature.exact import fisher_blocks
from minikfac.curvature.factors import kfac_factors
from minikfac.curvature.params import layer_slices
from minikfac.curvature.rearrangement import kronecker_spectrum, nearest_kronecker
from minikfac.curvature.statistics import per_example_gradients
from minikfac.studies.kronecker_family import kronecker_distances
from tests.conftest import on

nn = mk.nn


def relative(a, b):
    a, b = backend.to_numpy(a), backend.to_numpy(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def tanh_mlp():
    mk.nn.init.manual_seed(0)
    return models.mlp(4, 3, hidden=(5,), activation="tanh")


def small_cnn():
    mk.nn.init.manual_seed(0)
    return models.cnn((1, 6, 6), 3, channels=(2,))


def labelled(n, shape=(4,), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape), rng.integers(0, classes, n)


def frobenius(M):
    return float(np.sqrt(np.sum(backend.to_numpy(M) ** 2)))


# --------------------------------------------------------------------------- #
# Shampoo's factors against K-FAC's and against the block
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", ["empirical", "true", "mc", "ggn"])
def test_one_example_shampoo_is_kfac_times_traces_and_squared_is_trace_times_fisher(kind):
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = labelled(1)
    args = dict(kind=kind, samples=3, seed=2)
    for (R, L), (A, G), F in zip(sh.shampoo_factors(net, loss_fn, X, y, **args),
                                 kfac_factors(net, loss_fn, X, y, **args), fisher_blocks(net, loss_fn, X, y, **args)):
        assert relative(R, np.trace(G) * A) < 1e-12  # ‖g‖²·ā āᵀ
        assert relative(L, np.trace(A) * G) < 1e-12  # ‖ā‖²·g gᵀ
        assert relative(np.kron(R, L), np.trace(F) * F) < 1e-12  # ‖vec D‖²·F_ll
    # Normalised by 1/tr F_ll (Morwani et al. 2024), Shampoo² is the block itself.
    blocks = fisher_blocks(net, loss_fn, X, y, **args)
    exact = sh.shampoo(net, loss_fn, X, y, power=1, scale="trace", **args)
    assert all(relative(exact.block(i), B) < 1e-12 for i, B in enumerate(blocks))


def test_one_example_of_the_empirical_fisher_shampoo_itself_is_the_block():
    """One cotangent: R^½ ⊗ L^½ = (‖g‖ ā āᵀ/‖ā‖) ⊗ (‖ā‖ g gᵀ/‖g‖) = F_ll, with no scale at all. Not so for
    the true Fisher, whose G of one example has rank K > 1 (R^½ ⊗ L^½ ∝ A ⊗ G^½)."""
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = labelled(1)
    approx = sh.shampoo(net, loss_fn, X, y, power=0.5, kind="empirical", scale=None)
    assert approx.name == "Shampoo"
    for i, B in enumerate(fisher_blocks(net, loss_fn, X, y, kind="empirical")):
        assert relative(approx.block(i), B) < 1e-7  # R is rank 1: √ of its rounding-level eigenvalues is ~√eps
    true = sh.shampoo(net, loss_fn, X, y, power=0.5, kind="true", scale="optimal")
    B = fisher_blocks(net, loss_fn, X, kind="true")[0]
    assert frobenius(true.block(0) - B) > 0.01 * frobenius(B)


@pytest.mark.parametrize("kind", ["true", "ggn"])
def test_deep_linear_network_with_mse_shampoo_squared_is_exact_for_any_batch(kind):
    """g does not depend on the input: F_ll = A ⊗ G, R = tr(G)·A, L = tr(A)·G, so R ⊗ L = tr(F_ll)·F_ll at N = 7."""
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.Identity(), nn.Linear(4, 5), nn.Linear(5, 2))
    loss_fn = nn.MSELoss()
    X, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    blocks = fisher_blocks(net, loss_fn, X, y, kind=kind)
    for (R, L), (A, G), F in zip(sh.shampoo_factors(net, loss_fn, X, y, kind=kind),
                                 kfac_factors(net, loss_fn, X, y, kind=kind), blocks):
        assert relative(R, np.trace(G) * A) < 1e-12 and relative(L, np.trace(A) * G) < 1e-12
        assert relative(np.kron(R, L), np.trace(F) * F) < 1e-12
    for scale in ("trace", "optimal"):
        approx = sh.shampoo(net, loss_fn, X, y, power=1, kind=kind, scale=scale)
        assert all(relative(approx.block(i), B) < 1e-10 for i, B in enumerate(blocks)), scale


@pytest.mark.parametrize("make, shape", [(tanh_mlp, (4,)), (small_cnn, (1, 6, 6))], ids=["mlp", "cnn"])
def test_factors_are_the_partial_traces_of_the_block_and_the_loop_over_examples(make, shape):
    net, loss_fn = make(), nn.CrossEntropyLoss()
    X, y = labelled(9, shape)
    # The loop that the vectorised pass replaces: D_n (m, n) from the per-example gradients.
    rows = per_example_gradients(net, loss_fn, X, y)
    for kind in ("empirical", "true"):
        factors = sh.shampoo_factors(net, loss_fn, X, y, kind=kind, chunk_size=4)
        blocks = fisher_blocks(net, loss_fn, X, y, kind=kind)
        for (R, L), F in zip(factors, blocks):
            n, m = R.shape[0], L.shape[0]
            parts = F.reshape(n, m, n, m)  # parts[i, :, j, :] = B_ij, the (m, m) block (i, j)
            assert relative(L, np.einsum("iaib->ab", parts)) < 1e-12  # Σ_i B_ii
            assert relative(R, np.einsum("iaja->ij", parts)) < 1e-12  # tr(B_ij)
            assert np.trace(R) == pytest.approx(np.trace(F), rel=1e-12)
            assert np.trace(L) == pytest.approx(np.trace(F), rel=1e-12)
    for (R, L), s in zip(sh.shampoo_factors(net, loss_fn, X, y), layer_slices(net)):
        D = [mk.curvature.unvec(row, L.shape[0]) for row in rows[:, s]]
        assert relative(R, sum(d.T @ d for d in D) / len(D)) < 1e-12
        assert relative(L, sum(d @ d.T for d in D) / len(D)) < 1e-12


def test_cnn_results_are_the_same_on_every_backend(backend_name):
    net, loss_fn = small_cnn().to("numpy"), nn.CrossEntropyLoss()  # built on the fixture's backend
    X, y = labelled(5, (1, 6, 6))
    reference = sh.shampoo_factors(net, loss_fn, X, y, kind="true")
    net.to(backend_name)
    moved = sh.shampoo_factors(net, loss_fn, on(backend_name, X), on(backend_name, y), kind="true")
    for (R, L), (R0, L0) in zip(moved, reference):
        assert backend.backend_of(R) == backend_name
        assert relative(R, R0) < 1e-12 and relative(L, L0) < 1e-12
    X_moved, y_moved = on(backend_name, X), on(backend_name, y)
    blocks = fisher_blocks(net, loss_fn, X_moved, kind="true")
    built = [sh.shampoo(net, loss_fn, X_moved, power=0.5, kind="true"), sh.soap(net, loss_fn, X_moved, y_moved),
             sh.nearest_kronecker_approximation(blocks, sh.factor_shapes(net))]
    net.to("numpy")
    host_blocks = fisher_blocks(net, loss_fn, X, kind="true")
    expected = [sh.shampoo(net, loss_fn, X, power=0.5, kind="true"), sh.soap(net, loss_fn, X, y),
                sh.nearest_kronecker_approximation(host_blocks, sh.factor_shapes(net))]
    for approx, reference_approx in zip(built, expected):
        for i in range(len(approx.slices)):
            assert backend.backend_of(approx.block(i)) == backend_name
            assert relative(approx.block(i), reference_approx.block(i)) < 1e-8, approx.name
    A, G = sh.kronecker_power_iteration(blocks[1], sh.factor_shapes(net)[1], 3)
    assert relative(np.kron(backend.to_numpy(A), backend.to_numpy(G)),
                    np.kron(*sh.kronecker_power_iteration(host_blocks[1], sh.factor_shapes(net)[1], 3))) < 1e-10


# --------------------------------------------------------------------------- #
# The power iteration and the nearest Kronecker product
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("make, shape", [(tanh_mlp, (4,)), (small_cnn, (1, 6, 6))], ids=["mlp", "cnn"])
def test_power_iteration_starts_at_shampoo_squared_and_converges_to_the_nearest_kronecker(make, shape):
    net, loss_fn = make(), nn.CrossEntropyLoss()
    X, y = labelled(12, shape)
    blocks = fisher_blocks(net, loss_fn, X, y, kind="empirical")
    factors = sh.shampoo_factors(net, loss_fn, X, y, kind="empirical")
    squared = sh.shampoo(net, loss_fn, X, y, power=1, kind="empirical", scale="optimal")
    for i, ((R, L), B) in enumerate(zip(factors, blocks)):
        n, m = R.shape[0], L.shape[0]
        A1, G1 = sh.kronecker_power_iteration(B, (n, m), 1)
        assert relative(A1 / frobenius(A1), R / frobenius(R)) < 1e-12  # Shampoo²'s factors up to scale
        assert relative(G1 / frobenius(G1), L / frobenius(L)) < 1e-12
        assert relative(np.kron(A1, G1), squared.block(i)) < 1e-12  # scaled alike: Shampoo², optimally scaled
        A, G, sigma = nearest_kronecker(B, n, m)
        rounds = int(np.ceil(np.log(1e-14) / np.log(sigma[1] / sigma[0])))  # σ₂/σ₁ per round
        assert rounds < 500
        An, Gn = sh.kronecker_power_iteration(B, (n, m), rounds)
        assert relative(An, A) < 1e-10 and relative(Gn, G) < 1e-10
        assert relative(np.kron(An, Gn), np.kron(A, G)) < 1e-10
        # Each round is no further from the block than the one before (from the Shampoo² start).
        errors = [frobenius(B - np.kron(*sh.kronecker_power_iteration(B, (n, m), k))) for k in (1, 2, 4, rounds)]
        assert all(later <= earlier + 1e-12 for earlier, later in zip(errors, errors[1:]))


def test_power_iteration_from_zero_rounds_and_from_a_given_start():
    B = fisher_blocks(tanh_mlp(), nn.CrossEntropyLoss(), *labelled(6), kind="empirical")[1]
    A0, G0 = sh.kronecker_power_iteration(B, (6, 3), 0)  # the best multiple of I ⊗ I: tr(B)/(n·m)
    assert relative(np.kron(A0, G0), np.trace(B) / 18 * np.eye(18)) < 1e-12
    start = (np.diag(np.arange(1.0, 7.0)), np.eye(3))
    A, G = sh.kronecker_power_iteration(B, (6, 3), 300, start=start)
    A_best, G_best, _ = nearest_kronecker(B, 6, 3)
    assert relative(np.kron(A, G), np.kron(A_best, G_best)) < 1e-10


def test_nearest_kronecker_approximation_is_the_floor():
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = labelled(20)
    blocks = fisher_blocks(net, loss_fn, X)
    nearest = sh.nearest_kronecker_approximation(blocks, sh.factor_shapes(net), layer_slices(net))
    assert nearest.name == "nearest Kronecker" and sh.factor_shapes(net) == [(5, 5), (6, 3)]
    kfac = mk.curvature.KFACBlockDiagonal.from_net(net, loss_fn, X)
    squared = sh.shampoo(net, loss_fn, X, power=1, kind="true", blocks=blocks)
    for i, B in enumerate(blocks):
        floor = frobenius(B - nearest.block(i))
        sigma = kronecker_spectrum(B, *sh.factor_shapes(net)[i])
        assert floor / frobenius(B) == pytest.approx(float(np.sqrt(np.sum(sigma[1:] ** 2))), rel=1e-8)
        assert floor <= frobenius(B - kfac.block(i)) and floor <= frobenius(B - squared.block(i))


# --------------------------------------------------------------------------- #
# Scales and SOAP
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("power", [1, 0.5, 0.25])
def test_the_optimal_scale_is_optimal_and_the_pass_agrees_with_the_blocks(power):
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = labelled(15)
    blocks = fisher_blocks(net, loss_fn, X, y, kind="empirical")
    # One chunk size for all: a fractional power of the softmax layer's singular L turns the rounding of
    # its zero eigenvalue (~1e-17) into ~1e-17^p, so the factors must be the same arrays.
    args = dict(power=power, kind="empirical", chunk_size=4)
    from_pass = sh.shampoo(net, loss_fn, X, y, scale="optimal", **args)
    from_blocks = sh.shampoo(net, loss_fn, X, y, scale="optimal", blocks=blocks, **args)
    raw = sh.shampoo(net, loss_fn, X, y, scale=None, **args)
    traced = sh.shampoo(net, loss_fn, X, y, scale="trace", **args)
    assert from_pass.name == sh.POWERS[float(power)]
    for i, B in enumerate(blocks):
        best = from_blocks.block(i)
        assert relative(from_pass.block(i), best) < 1e-12
        assert np.trace(traced.block(i)) == pytest.approx(np.trace(B), rel=1e-12)
        error = frobenius(B - best)
        for factor in (0.99, 1.01, 1.5, 0.5):
            assert frobenius(B - factor * best) > error
        assert frobenius(B - traced.block(i)) >= error - 1e-15 and frobenius(B - raw.block(i)) >= error - 1e-15


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_soap_keeps_the_trace_and_beats_every_shampoo_in_its_basis(kind):
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = labelled(25)
    blocks = fisher_blocks(net, loss_fn, X, y, kind=kind)
    approx = sh.soap(net, loss_fn, X, y, kind=kind)
    assert approx.name == "SOAP" and isinstance(approx, mk.curvature.EKFAC)
    assert float(approx.trace()) == pytest.approx(sum(np.trace(B) for B in blocks), rel=1e-12)
    rivals = [sh.shampoo(net, loss_fn, X, y, power=p, kind=kind, scale=scale, blocks=blocks)
              for p in (1, 0.5, 0.25) for scale in ("optimal", "trace")]
    ekfac = mk.curvature.EKFAC.from_net(net, loss_fn, X, y, kind=kind)
    for i, B in enumerate(blocks):
        soap_error = frobenius(B - approx.block(i))
        assert np.trace(approx.block(i)) == pytest.approx(np.trace(B), rel=1e-12)
        assert all(soap_error <= frobenius(B - rival.block(i)) + 1e-14 for rival in rivals)
        assert soap_error > 1e-6 and frobenius(ekfac.block(i) - approx.block(i)) > 1e-6  # another basis


# --------------------------------------------------------------------------- #
# The Approximation interface (the checks the other approximations pass)
# --------------------------------------------------------------------------- #
def _mse_case():
    mk.nn.init.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    rng = np.random.default_rng(0)
    return net, nn.MSELoss(), rng.standard_normal((40, 3)), rng.standard_normal((40, 2))


BUILDERS = {
    "Shampoo²": lambda net, loss, X, y: sh.shampoo(net, loss, X, y, power=1, kind="empirical"),
    "Shampoo": lambda net, loss, X, y: sh.shampoo(net, loss, X, y, power=0.5, kind="true", scale="trace"),
    "√Shampoo": lambda net, loss, X, y: sh.shampoo(net, loss, X, y, power=0.25, kind="ggn", scale=None),
    "SOAP": lambda net, loss, X, y: sh.soap(net, loss, X, y, kind="empirical"),
    "nearest Kronecker": lambda net, loss, X, y: sh.nearest_kronecker_approximation(
        fisher_blocks(net, loss, X, y), sh.factor_shapes(net), layer_slices(net)),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_interface_dense_matvec_solve_and_spectra_agree(name):
    approx = BUILDERS[name](*_mse_case())
    assert approx.name == name and approx.size == 39
    dense = approx.to_dense()
    assert np.abs(dense - dense.T).max() <= 1e-10 * np.abs(dense).max()
    assert np.linalg.eigvalsh(dense).min() >= -1e-10 * np.abs(dense).max()
    rng = np.random.default_rng(1)
    v, V = rng.standard_normal(39), rng.standard_normal((39, 3))
    assert relative(approx.matvec(v), dense @ v) < 1e-12
    assert relative(approx.matvec(V), dense @ V) < 1e-12
    assert relative(approx.solve(approx.matvec(v)), v) < 1e-7
    assert relative(approx.trace(), np.trace(dense)) < 1e-12
    assert relative(approx.eigenvalues(), np.linalg.eigvalsh(dense)[::-1]) < 1e-10
    for damping in (1e-3, 1.0):
        expected = np.linalg.solve(dense + damping * np.eye(39), V)
        assert relative(approx.solve(V, damping), expected) < 1e-10
        assert relative(approx.inverse(damping) @ V, expected) < 1e-10
    for i, s in enumerate(approx.slices):
        assert relative(approx.block(i), dense[s, s]) < 1e-12


# --------------------------------------------------------------------------- #
# The study, and bad input
# --------------------------------------------------------------------------- #
def test_kronecker_distances_study():
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = labelled(30)
    result = kronecker_distances(net, loss_fn, X, y, power_steps=(2, 40))
    assert set(result.to_nearest) == {"K-FAC", "Shampoo²", "Shampoo", "power iteration, 2 rounds",
                                      "power iteration, 40 rounds"}
    assert max(result.to_nearest["power iteration, 40 rounds"]["layers"]) < 1e-6
    floor = result.to_exact["nearest Kronecker"]
    for name, errors in result.to_exact.items():
        if name not in ("EKFAC", "SOAP"):  # not Kronecker products
            assert all(f <= e + 1e-12 for f, e in zip(floor, errors)), name
    assert all(s <= e + 1e-12 for s, e in zip(result.to_exact["SOAP"], result.to_exact["Shampoo²"]))
    assert len(result.kronecker_gap) == 2 and all(0 < g < 1 for g in result.kronecker_gap)
    assert "nearest Kronecker product" in result.table() and result.to_dict()["setup"]["examples"] == 30


EYE = np.eye(18)


@pytest.mark.parametrize("call, error, message", [
    (lambda net, fn, X, y: sh.shampoo(net, fn, X, y, power=2), ValueError, "power must be one of 1 .Shampoo²."),
    (lambda net, fn, X, y: sh.shampoo(net, fn, X, y, power=True), ValueError, "power must be one of"),
    (lambda net, fn, X, y: sh.shampoo(net, fn, X, y, power="1/2"), ValueError, "power must be one of"),
    (lambda net, fn, X, y: sh.shampoo(net, fn, X, y, scale="frobenius"), ValueError, "scale must be one of None"),
    (lambda net, fn, X, y: sh.shampoo(net, fn, X, y, kind="fisher"), ValueError, "kind must be one of"),
    (lambda net, fn, X, y: sh.shampoo_factors(net, fn, X, y, kind="hessian"), ValueError, "kind must be one of"),
    (lambda net, fn, X, y: sh.shampoo_factors(net, fn, X), ValueError, "kind='empirical' needs the data labels"),
    (lambda net, fn, X, y: sh.soap(net, fn, X, y, kind="exact"), ValueError, "kind must be one of"),
    (lambda net, fn, X, y: sh.shampoo(net, fn, X, y, blocks=[np.eye(3)]), ValueError, "got 1 blocks for 2 layers"),
    (lambda net, fn, X, y: sh.shampoo(net, fn, X, y, blocks=[np.eye(25), np.eye(5)]), ValueError,
     r"block 1 must be \(18, 18\)"),
    (lambda net, fn, X, y: sh.kronecker_power_iteration(EYE, (6, 3), -1), ValueError, "steps must be an int >= 0"),
    (lambda net, fn, X, y: sh.kronecker_power_iteration(EYE, (5, 3), 1), ValueError, "rearrange: B must have shape"),
    (lambda net, fn, X, y: sh.kronecker_power_iteration(EYE, 18, 1), ValueError, r"shape must be \(n, m\)"),
    (lambda net, fn, X, y: sh.kronecker_power_iteration(EYE, (6, 3), 1, start=(np.eye(3), np.eye(3))),
     ValueError, "start must be"),
    (lambda net, fn, X, y: sh.nearest_kronecker_approximation([EYE], []), ValueError, "one .n, m. shape per block"),
    (lambda net, fn, X, y: kronecker_distances(net, fn, X, y, power_steps=(0,)), ValueError,
     "power_steps must be ints"),
])
def test_bad_input_is_refused_clearly(call, error, message):
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = labelled(3)
    with pytest.raises(error, match=message):
        call(net, loss_fn, X, y)
