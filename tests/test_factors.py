"""K-FAC's factors against the exact Fisher where K-FAC is exact, and their properties elsewhere.

Exact cases (Martens & Grosse 2015, §3; Dangel et al. 2025): one example
(N = 1) for Linear layers and for a convolution with a single output position;
deep *linear* networks with MSE for any N. Elsewhere: the MC factors converge
to the true ones, the GGN path agrees with the true Fisher path (exponential
families), the KFC conventions of Grosse & Martens 2016 (A sums, G averages
over positions), and backends agree.
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend
from minikfac.curvature.exact import fisher, fisher_blocks
from minikfac.curvature.factors import kfac_cross_factors, kfac_dense, kfac_dense_from_net, kfac_factors
from minikfac.curvature.params import layer_slices
from minikfac.nn.conv import im2col
from tests.conftest import on

nn = mk.nn
LOSSES = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}


def targets(loss, n, d_out, rng):
    """Host targets for ``loss``: class labels for CE, reals for MSE, soft labels in [0, 1] for BCE."""
    if loss == "ce":
        return rng.integers(0, d_out, size=n)
    if loss == "mse":
        return rng.standard_normal((n, d_out))
    return rng.uniform(0, 1, size=(n, d_out))


def tanh_mlp(bias=True):
    return nn.Sequential(nn.Linear(3, 5, bias=bias), nn.Tanh(), nn.Linear(5, 4), nn.Sigmoid(),
                         nn.Linear(4, 3, bias=bias))


def relative(a, b):
    a, b = backend.to_numpy(a), backend.to_numpy(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def kron_blocks(factors):
    return [np.kron(backend.to_numpy(A), backend.to_numpy(G)) for A, G in factors]


# --------------------------------------------------------------------------- #
# Exact cases
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("kind", ["true", "empirical", "ggn", "mc"])
@pytest.mark.parametrize("bias", [True, False])
def test_single_example_blocks_are_exact(loss, kind, bias):
    """N = 1: F_ll = ā āᵀ ⊗ Σ_k g gᵀ = A ⊗ G exactly, and so is the whole F̃ = F."""
    rng = np.random.default_rng(1)
    net, loss_fn = tanh_mlp(bias), LOSSES[loss]()
    X, y = rng.standard_normal((1, 3)), targets(loss, 1, 3, rng)
    args = dict(kind=kind, samples=4, seed=3)
    for block, exact in zip(kron_blocks(kfac_factors(net, loss_fn, X, y, **args)),
                            fisher_blocks(net, loss_fn, X, y, **args)):
        assert relative(block, exact) < 1e-12
    dense = kfac_dense_from_net(net, loss_fn, X, y, **args)
    assert relative(dense, fisher(net, loss_fn, X, y, **args)) < 1e-12


@pytest.mark.parametrize("kind", ["true", "ggn", "empirical"])
def test_deep_linear_network_with_mse_is_exact_for_any_batch(kind):
    """No activations (Identity between Linear layers), biases, MSE, N = 7: K-FAC = the exact blocks.

    g does not depend on the input, so E[ā āᵀ ⊗ g gᵀ] = E[ā āᵀ] ⊗ g gᵀ; for
    the true Fisher/GGN this holds for the cross blocks too (F̃ = F). The
    empirical Fisher's g depends on the residual, so only N = 1 is exact there.
    """
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.Identity(), nn.Linear(4, 5), nn.Linear(5, 2))
    loss_fn = nn.MSELoss()
    n = 7 if kind != "empirical" else 1
    X, y = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    for block, exact in zip(kron_blocks(kfac_factors(net, loss_fn, X, y, kind=kind)),
                            fisher_blocks(net, loss_fn, X, y, kind=kind)):
        assert relative(block, exact) < 1e-12
    assert relative(kfac_dense_from_net(net, loss_fn, X, y, kind=kind), fisher(net, loss_fn, X, y, kind=kind)) < 1e-12


def test_deep_linear_network_is_not_exact_with_a_nonlinearity():
    """The check above can fail: with a Tanh in between, K-FAC differs from the exact blocks at N = 7."""
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    X, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    errors = [relative(b, e) for b, e in zip(kron_blocks(kfac_factors(net, nn.MSELoss(), X, y)),
                                             fisher_blocks(net, nn.MSELoss(), X, y))]
    assert errors[0] > 1e-3


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_conv_with_one_position_and_one_example_is_exact(kind):
    """A Conv2d whose output is 1×1 (L = 1) behaves as a Linear layer on the patch: exact for N = 1."""
    rng = np.random.default_rng(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3, 4))
    loss_fn = nn.CrossEntropyLoss()
    X, y = rng.standard_normal((1, 2, 3, 3)), np.array([2])
    factors = kfac_factors(net, loss_fn, X, y, kind=kind)
    assert [tuple(A.shape) + tuple(G.shape) for A, G in factors] == [(19, 19, 3, 3), (4, 4, 4, 4)]
    for block, exact in zip(kron_blocks(factors), fisher_blocks(net, loss_fn, X, y, kind=kind)):
        assert relative(block, exact) < 1e-12


def test_conv_factors_follow_kfc_sum_and_mean_over_positions():
    """KFC (Grosse & Martens 2016): A = (1/N) Σ_n Σ_l ā āᵀ, G = (1/(N·L)) Σ_n Σ_l g gᵀ, from independent code."""
    rng = np.random.default_rng(4)
    conv = nn.Conv2d(2, 3, 2, stride=1, padding=1)
    net = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    loss_fn = nn.CrossEntropyLoss()
    X, y = rng.standard_normal((5, 2, 3, 3)), rng.integers(0, 2, 5)
    A, G = kfac_factors(net, loss_fn, X, y, kind="empirical")[0]
    patches = im2col(X, (2, 2), (1, 1), (1, 1))  # (N, L, C_in·KH·KW), L = 16
    patches = np.concatenate([patches, np.ones(patches.shape[:2] + (1,))], axis=2)
    assert relative(A, np.einsum("nli,nlj->ij", patches, patches) / 5) < 1e-12
    out = net(X)
    net.backward(loss_fn.per_example_gradient(out, y))  # per example, not divided by N
    g = conv.cache_grad_output.transpose(0, 2, 3, 1).reshape(-1, 3)  # (N·L, C_out)
    assert relative(G, g.T @ g / (5 * 16)) < 1e-12


def test_ggn_factors_equal_true_fisher_factors():
    """For CE, MSE and BCE the GGN's G = (1/N) Σ J_sᵀ H J_s equals the true Fisher's (Martens 2020, §9.2)."""
    rng = np.random.default_rng(5)
    for loss, loss_class in LOSSES.items():
        net = tanh_mlp()
        X, y = rng.standard_normal((9, 3)), targets(loss, 9, 3, rng)
        for (A1, G1), (A2, G2) in zip(kfac_factors(net, loss_class(), X, y, kind="true"),
                                      kfac_factors(net, loss_class(), X, y, kind="ggn")):
            assert relative(A1, A2) == 0
            assert relative(G1, G2) < 1e-12


def test_mc_factors_converge_to_true_factors():
    """G_mc -> G_true as the samples k grow, with error ~ 1/√k (A does not depend on the kind)."""
    rng = np.random.default_rng(6)
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X = rng.standard_normal((20, 3))
    true = kfac_factors(net, loss_fn, X)
    errors = []
    for samples in (10, 1000):
        mc = kfac_factors(net, loss_fn, X, kind="mc", samples=samples, seed=0)
        assert all(relative(A, At) == 0 for (A, _), (At, _) in zip(mc, true))
        errors.append(max(relative(G, Gt) for (_, G), (_, Gt) in zip(mc, true)))
    assert errors[1] < 0.1
    assert errors[1] < errors[0] / 3  # 1/√100 = 0.1 expected; allow slack for the randomness


def test_factors_are_symmetric_psd_and_sized():
    rng = np.random.default_rng(7)
    net = tanh_mlp(bias=False)
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    factors = kfac_factors(net, nn.CrossEntropyLoss(), X, y, kind="mc", samples=2)
    assert [(A.shape[0], G.shape[0]) for A, G in factors] == [(3, 5), (6, 4), (4, 3)]
    for matrix in (m for pair in factors for m in pair):
        assert np.allclose(matrix, matrix.T, atol=1e-15)
        assert np.linalg.eigvalsh(matrix).min() > -1e-12


# --------------------------------------------------------------------------- #
# Cross factors and F̃
# --------------------------------------------------------------------------- #
def test_cross_factors_diagonal_matches_factors_and_pairs_select():
    rng = np.random.default_rng(8)
    net, loss_fn = tanh_mlp(), nn.BCEWithLogitsLoss()
    X, y = rng.standard_normal((11, 3)), targets("bce", 11, 3, rng)
    every = kfac_cross_factors(net, loss_fn, X, y)
    assert sorted(every) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    tri = kfac_cross_factors(net, loss_fn, X, y, pairs="tridiagonal")
    assert sorted(tri) == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]
    for i, (A, G) in enumerate(kfac_factors(net, loss_fn, X, y)):
        assert relative(every[(i, i)][0], A) == 0 and relative(every[(i, i)][1], G) < 1e-14
    assert every[(0, 2)][0].shape == (4, 5) and every[(0, 2)][1].shape == (5, 3)
    for key in tri:
        assert relative(tri[key][0], every[key][0]) == 0


def test_dense_ftilde_has_kronecker_blocks_and_is_symmetric_psd():
    """F̃ = [A_ij ⊗ G_ij] is a principal submatrix of a Kronecker product of two PSD matrices: PSD."""
    rng = np.random.default_rng(9)
    net, loss_fn = tanh_mlp(), nn.CrossEntropyLoss()
    X, y = rng.standard_normal((13, 3)), rng.integers(0, 3, 13)
    cross = kfac_cross_factors(net, loss_fn, X, y)
    slices = layer_slices(net)
    dense = kfac_dense(cross, slices)
    assert np.allclose(dense, dense.T, atol=0)
    assert np.linalg.eigvalsh(dense).min() > -1e-12
    A, G = cross[(0, 2)]
    assert relative(dense[slices[2], slices[0]], np.kron(A, G).T) == 0
    tri = kfac_dense({k: v for k, v in cross.items() if k[1] - k[0] <= 1}, slices)
    assert np.all(tri[slices[0], slices[2]] == 0)
    assert relative(kfac_dense(cross), dense) == 0  # slices from the diagonal pairs


def test_cross_factors_refuse_conv_and_unknown_pairs():
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(2, 2))
    X = np.zeros((2, 1, 2, 2))
    with pytest.raises(ValueError, match="Linear layers only"):
        kfac_cross_factors(net, nn.CrossEntropyLoss(), X)
    with pytest.raises(ValueError, match="pairs must be one of"):
        kfac_cross_factors(tanh_mlp(), nn.CrossEntropyLoss(), np.zeros((2, 3)), pairs="banded")
    with pytest.raises(ValueError, match="kind must be one of"):
        kfac_factors(tanh_mlp(), nn.CrossEntropyLoss(), np.zeros((2, 3)), kind="exact")
    with pytest.raises(ValueError, match="needs the data labels"):
        kfac_factors(tanh_mlp(), nn.CrossEntropyLoss(), np.zeros((2, 3)), kind="empirical")
    with pytest.raises(ValueError, match="Kronecker product is"):
        A = np.eye(2)
        kfac_dense({(0, 0): (A, A)}, [slice(0, 5)])


# --------------------------------------------------------------------------- #
# Backends and dtypes
# --------------------------------------------------------------------------- #
def _conv_net():
    return nn.Sequential(nn.Conv2d(2, 3, 2, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 3))


def _twin_nets(make, backend_name):
    """The same net (initialisation draws on the host) on NumPy and on ``backend_name``."""
    mk.nn.init.manual_seed(0)
    reference = make().to("numpy")
    mk.nn.init.manual_seed(0)
    return reference, make().to(backend_name)


@pytest.mark.parametrize("kind", ["true", "empirical", "ggn"])
def test_backends_give_numpy_factors(backend_name, kind):
    rng = np.random.default_rng(10)
    X, y = rng.standard_normal((6, 2, 3, 3)), rng.integers(0, 3, 6)
    reference_net, net = _twin_nets(_conv_net, backend_name)
    reference = kfac_factors(reference_net, nn.CrossEntropyLoss(), X, y, kind=kind)
    got = kfac_factors(net, nn.CrossEntropyLoss(), on(backend_name, X), on(backend_name, y), kind=kind)
    assert backend.backend_of(got[0][0]) == backend_name
    for (A, G), (Ar, Gr) in zip(got, reference):
        assert relative(A, Ar) < 1e-13 and relative(G, Gr) < 1e-13
    reference_net, net = _twin_nets(tanh_mlp, backend_name)
    cross_ref = kfac_cross_factors(reference_net, nn.MSELoss(), X[:, 0, 0], pairs="tridiagonal")
    cross = kfac_cross_factors(net, nn.MSELoss(), on(backend_name, X[:, 0, 0]), pairs="tridiagonal")
    assert max(relative(cross[k][1], cross_ref[k][1]) for k in cross_ref) < 1e-13


def test_float32_factors_are_float32_and_close():
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 3, 8)
    reference = kfac_factors(tanh_mlp(), nn.CrossEntropyLoss(), X, y)
    mk.nn.init.manual_seed(0)
    net = tanh_mlp().astype("float32")
    got = kfac_factors(net, nn.CrossEntropyLoss(), X.astype(np.float32), y)
    assert all(A.dtype == np.float32 and G.dtype == np.float32 for A, G in got)
    for (A, G), (Ar, Gr) in zip(got, reference):
        assert relative(A, Ar) < 1e-5 and relative(G, Gr) < 1e-4


def test_factors_leave_the_callers_gradients_alone():
    """Computing curvature runs backward passes; the .grad the caller holds must come back unchanged."""
    rng = np.random.default_rng(12)
    net, loss_fn = tanh_mlp(), nn.MSELoss()
    X, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    before = [p.grad.copy() for p in net.parameters()]
    kfac_factors(net, loss_fn, X, y, kind="mc", samples=2)
    kfac_cross_factors(net, loss_fn, X, y)
    assert all(np.array_equal(p.grad, g) for p, g in zip(net.parameters(), before))
