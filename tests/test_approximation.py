"""The curvature approximations: one interface, its algebra, and the claims of their papers.

- Every approximation: to_dense and inverse symmetric PSD, matvec/solve/trace/
  eigenvalues/block consistent with to_dense, solve(matvec(v)) = v, same
  results on every backend.
- K-FAC (Martens & Grosse 2015, §4.2, §6.3): G⁻¹ ∇W̄ A⁻¹ equals the
  dense solve with (A ⊗ G + λI), exact and factored damping.
- Block-tridiagonal K-FAC (Martens & Grosse 2015, §4.3, App. B): F̂⁻¹ is block-tridiagonal,
  F̂ keeps F̃'s tridiagonal blocks, and F̂⁻¹ is closer to F̃⁻¹ than K-FAC's.
- EKFAC (George et al. 2018): never further from the exact blocks than K-FAC,
  with their trace.
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend
from minikfac.curvature.approximation import Exact, ExactBlockDiagonal, ExactDiagonal
from minikfac.curvature.ekfac import EKFAC
from minikfac.curvature.exact import fisher_blocks
from minikfac.curvature.factors import kfac_cross_factors, kfac_dense
from minikfac.curvature.kfac_block_diagonal import KFACBlockDiagonal
from minikfac.curvature.damping import factored_pi
from minikfac.curvature.kron import vec
from minikfac.curvature.params import flatten, layer_slices, unflatten
from minikfac.curvature.kfac_tridiagonal import KFACTridiagonal
from tests.conftest import on

nn = mk.nn
CLASSES = {"exact": Exact, "diagonal": ExactDiagonal, "block-diagonal": ExactBlockDiagonal, "K-FAC": KFACBlockDiagonal,
           "K-FAC tridiagonal": KFACTridiagonal, "EKFAC": EKFAC}


def mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 2))


def build(name, backend_name="numpy"):
    """Approximation ``name`` of the same MSE net (P = 39, well conditioned with N = 40) on a backend."""
    mk.nn.init.manual_seed(0)
    X, y = data()
    net = mlp().to(backend_name)
    return CLASSES[name].from_net(net, nn.MSELoss(), on(backend_name, X), on(backend_name, y))


_CACHE = {}


def approximation(name):
    if name not in _CACHE:
        _CACHE[name] = build(name)
    return _CACHE[name]


def host(x):
    return backend.to_numpy(x)


def relative(a, b):
    a, b = host(a), host(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def assert_symmetric_psd(matrix, tol=1e-10):
    matrix = host(matrix)
    assert np.abs(matrix - matrix.T).max() <= tol * np.abs(matrix).max()
    assert np.linalg.eigvalsh((matrix + matrix.T) / 2).min() >= -tol * np.abs(matrix).max()


# --------------------------------------------------------------------------- #
# The common interface
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_dense_and_inverse_are_symmetric_psd(name):
    approx = approximation(name)
    assert approx.name == name and approx.size == 39 and approx.slices == layer_slices(mlp())
    assert_symmetric_psd(approx.to_dense())
    assert_symmetric_psd(approx.inverse())
    assert_symmetric_psd(approx.inverse(0.1))
    identity = host(approx.inverse(0.1)) @ (host(approx.to_dense()) + 0.1 * np.eye(39))
    assert np.abs(identity - np.eye(39)).max() < 1e-10


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_products_solves_and_spectra_agree_with_to_dense(name):
    approx = approximation(name)
    dense = host(approx.to_dense())
    rng = np.random.default_rng(1)
    v, V = rng.standard_normal(39), rng.standard_normal((39, 3))
    assert relative(approx.matvec(v), dense @ v) < 1e-12
    assert relative(approx.matvec(V), dense @ V) < 1e-12
    assert relative(approx.solve(approx.matvec(v)), v) < 1e-7
    assert relative(approx.solve(V), np.linalg.solve(dense, V)) < 1e-7
    assert relative(approx.trace(), np.trace(dense)) < 1e-12
    assert relative(approx.eigenvalues(), np.linalg.eigvalsh(dense)[::-1]) < 1e-10
    for i, s in enumerate(approx.slices):
        assert relative(approx.block(i), dense[s, s]) < 1e-12


@pytest.mark.parametrize("name", sorted(set(CLASSES) - {"K-FAC tridiagonal"}))
def test_damped_solve_is_exact_tikhonov(name):
    approx = approximation(name)
    dense = host(approx.to_dense())
    v = np.random.default_rng(2).standard_normal((39, 2))
    for damping in (1e-3, 1.0):
        expected = np.linalg.solve(dense + damping * np.eye(39), v)
        assert relative(approx.solve(v, damping), expected) < 1e-10
        assert relative(approx.inverse(damping) @ v, expected) < 1e-10


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_backends_agree_with_numpy(backend_name, name):
    approx, reference = build(name, backend_name), approximation(name)
    v = np.random.default_rng(3).standard_normal(39)
    solve = approx.solve(on(backend_name, v), 0.1, factored=True) if name == "K-FAC tridiagonal" else \
        approx.solve(on(backend_name, v), 0.1)
    solve_ref = reference.solve(v, 0.1, factored=True) if name == "K-FAC tridiagonal" else reference.solve(v, 0.1)
    assert backend.backend_of(solve) == backend_name
    assert relative(solve, solve_ref) < 1e-12
    assert relative(approx.matvec(on(backend_name, v)), reference.matvec(v)) < 1e-12
    assert relative(approx.solve(on(backend_name, v)), reference.solve(v)) < 1e-10
    assert relative(approx.eigenvalues(), reference.eigenvalues()) < 1e-12


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_bad_inputs_raise_clear_errors(name):
    approx = approximation(name)
    with pytest.raises(ValueError, match=r"v must have shape \(39,\)"):
        approx.solve(np.zeros(38))
    with pytest.raises(ValueError, match=r"\(39, m\)"):
        approx.matvec(np.zeros((3, 39)))
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        approx.solve(np.zeros(39), -1.0)
    with pytest.raises(TypeError, match="damping must be a number"):
        approx.inverse("small")
    with pytest.raises(ValueError, match="layer index"):
        approx.block(3)


def test_undamped_solve_of_a_singular_matrix_raises():
    """One example: the exact Fisher has rank <= D_out; CE's G has the null vector 1 (softmax)."""
    rng = np.random.default_rng(4)
    net, X = mlp(), rng.standard_normal((1, 3))
    for cls in (Exact, ExactBlockDiagonal, KFACBlockDiagonal, EKFAC):
        approx = cls.from_net(net, nn.CrossEntropyLoss(), X)
        with pytest.raises(ValueError, match="singular"):
            approx.solve(np.ones(39))
        assert np.all(np.isfinite(approx.solve(np.ones(39), 1e-3)))
    with pytest.raises(ValueError, match="singular"):
        ExactDiagonal(np.zeros(39)).solve(np.ones(39))


def test_constructors_check_shapes():
    A, G = np.eye(3), np.eye(2)
    with pytest.raises(ValueError, match="slices have lengths"):
        KFACBlockDiagonal([(A, G)], [slice(0, 5)])
    with pytest.raises(ValueError, match="pair"):
        KFACBlockDiagonal([A])
    with pytest.raises(ValueError, match="square"):
        Exact(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="contiguous"):
        ExactDiagonal(np.ones(4), [slice(0, 2), slice(3, 4)])
    with pytest.raises(ValueError, match="expected"):
        EKFAC([(A, G)], [np.ones((3, 2))])
    with pytest.raises(ValueError, match="missing"):
        KFACTridiagonal({(0, 0): (A, G), (1, 1): (A, G)})
    with pytest.raises(ValueError, match="Linear layers only"):
        KFACTridiagonal.from_net(nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(2, 2)),
                                 nn.MSELoss(), np.zeros((2, 1, 2, 2)))


# --------------------------------------------------------------------------- #
# K-FAC: the factored natural gradient
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("damping", [0.0, 1e-3, 1.0])
def test_factored_natural_gradient_equals_dense_solve(damping):
    """G⁻¹ ∇W̄ A⁻¹ (damped) = (A ⊗ G + λI)⁻¹ vec(∇W̄); factored: ((A + π√λ) ⊗ (G + √λ/π))⁻¹ vec(∇W̄)."""
    mk.nn.init.manual_seed(0)
    net, (X, y) = mlp(), data()
    loss_fn = nn.MSELoss()
    kfac = KFACBlockDiagonal.from_net(net, loss_fn, X, y)
    loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    gradient = flatten(net, "grad")
    gradients = unflatten(net, gradient)
    exact = kfac.precondition(gradients, damping)
    factored = kfac.precondition(gradients, damping, factored=True)
    for kf, grad, got, got_factored in zip(kfac.factors, gradients, exact, factored):
        A, G = kf.A, kf.G
        dense = np.linalg.solve(np.kron(A, G) + damping * np.eye(grad.size), vec(grad))
        assert relative(vec(got), dense) < 1e-10
        pi, root = factored_pi(A, G), np.sqrt(damping)
        damped = np.kron(A + pi * root * np.eye(len(A)), G + root / pi * np.eye(len(G)))
        assert relative(vec(got_factored), np.linalg.solve(damped, vec(grad))) < 1e-10
    whole = kfac.solve(gradient, damping, factored=True)
    assert relative(whole, np.concatenate([vec(g) for g in factored])) < 1e-12
    assert relative(kfac.inverse(damping, factored=True) @ gradient, whole) < 1e-10


def test_kfac_pi_and_eigenvalues():
    kfac = approximation("K-FAC")
    v = np.random.default_rng(5).standard_normal(39)
    A, G = kfac.factors[0].A, kfac.factors[0].G
    got = kfac.solve(v, 0.5, factored=True, pi=[2.0, 1.0, 1.0])[kfac.slices[0]]
    damped = np.kron(A + 2.0 * np.sqrt(0.5) * np.eye(len(A)), G + np.sqrt(0.5) / 2.0 * np.eye(len(G)))
    assert relative(got, np.linalg.solve(damped, v[kfac.slices[0]])) < 1e-10
    with pytest.raises(ValueError, match="one value per layer"):
        kfac.solve(v, 0.5, factored=True, pi=[1.0, 2.0])
    products = np.concatenate([np.outer(np.linalg.eigvalsh(kf.A), np.linalg.eigvalsh(kf.G)).ravel()
                               for kf in kfac.factors])
    assert relative(kfac.eigenvalues(), np.sort(products)[::-1]) < 1e-12


def test_float32_solves_work():
    mk.nn.init.manual_seed(0)
    X, y = data()
    net = mlp().astype("float32")
    v = np.random.default_rng(6).standard_normal(39)
    for name in ("K-FAC", "EKFAC", "K-FAC tridiagonal", "exact"):
        approx = CLASSES[name].from_net(net, nn.MSELoss(), X.astype(np.float32), y.astype(np.float32))
        assert approx.dtype == np.float32
        extra = {"factored": True} if name == "K-FAC tridiagonal" else {}
        got = approx.solve(v.astype(np.float32), 0.1, **extra)
        assert got.dtype == np.float32
        assert relative(got, approximation(name).solve(v, 0.1, **extra)) < 1e-4


# --------------------------------------------------------------------------- #
# Block-tridiagonal K-FAC
# --------------------------------------------------------------------------- #
def tanh_chain(seed):
    """A random 4-5-4-3 tanh net with N = 300 (MSE): factors well conditioned."""
    mk.nn.init.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    rng = np.random.default_rng(seed)
    cross = kfac_cross_factors(net, nn.MSELoss(), rng.standard_normal((300, 4)), rng.standard_normal((300, 3)))
    return cross, layer_slices(net)


@pytest.mark.parametrize("damping", [0.0, 0.05])
def test_tridiagonal_inverse_is_the_exact_inverse_of_its_model(damping):
    cross, slices = tanh_chain(0)
    model = KFACTridiagonal(cross, slices)
    inverse, dense = model.inverse(damping, factored=True), model.to_dense(damping)
    # (a) blocks beyond the first off-diagonal of F̂⁻¹ are zero
    assert np.abs(inverse[slices[0], slices[2]]).max() < 1e-10 * np.abs(inverse).max()
    assert np.abs(inverse[slices[2], slices[0]]).max() < 1e-10 * np.abs(inverse).max()
    # (b) inv(F̂⁻¹) keeps F̃'s diagonal and first off-diagonal blocks (damped diagonal factors when λ > 0)
    recovered = np.linalg.inv(inverse)
    pis = [factored_pi(*cross[(i, i)]) for i in range(3)]
    for (i, j), (A, G) in cross.items():
        if j - i > 1:
            continue
        if i == j and damping:
            A = A + pis[i] * np.sqrt(damping) * np.eye(len(A))
            G = G + np.sqrt(damping) / pis[i] * np.eye(len(G))
        assert relative(recovered[slices[i], slices[j]], np.kron(A, G)) < 1e-9
        assert relative(dense[slices[i], slices[j]], np.kron(A, G)) < 1e-12
    # (c) F̂ F̂⁻¹ = I; (e) solve(v) = F̂⁻¹ v and matvec(v) = F̂ v by Kronecker matvecs
    assert np.abs(dense @ inverse - np.eye(len(dense))).max() < 1e-10
    v = np.random.default_rng(7).standard_normal((len(dense), 2))
    assert relative(model.solve(v, damping, factored=True), inverse @ v) < 1e-10
    assert relative(model.matvec(v, damping), dense @ v) < 1e-12
    xi, lam = model.ggm_factors(damping)
    assert np.allclose(np.diag(xi), 1) and np.all(np.tril(xi, -1) == 0)
    assert_symmetric_psd(lam)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tridiagonal_inverse_is_closer_to_ftilde_inverse_than_block_diagonal(seed):
    """Martens & Grosse 2015, Fig. 3: F̃⁻¹ is nearly block-tridiagonal, not block-diagonal."""
    cross, slices = tanh_chain(seed)
    target = np.linalg.inv(kfac_dense(cross, slices))
    tridiagonal = KFACTridiagonal(cross, slices).inverse()
    block_diagonal = KFACBlockDiagonal([cross[(i, i)] for i in range(3)], slices).inverse()
    assert np.linalg.norm(tridiagonal - target) <= np.linalg.norm(block_diagonal - target)


def test_tridiagonal_exact_tikhonov_solve_is_refused_and_inverse_is_dense():
    model = approximation("K-FAC tridiagonal")
    with pytest.raises(ValueError, match="factored=True"):
        model.solve(np.ones(39), 0.1)
    expected = np.linalg.inv(model.to_dense() + 0.1 * np.eye(39))
    assert relative(model.inverse(0.1), expected) < 1e-10
    assert relative(model.solve(np.ones(39), 0.0), model.inverse() @ np.ones(39)) < 1e-10


def test_tridiagonal_of_one_layer_is_kfac():
    mk.nn.init.manual_seed(0)
    net, (X, y) = nn.Sequential(nn.Linear(3, 2)), data()
    tridiagonal, kfac = KFACTridiagonal.from_net(net, nn.MSELoss(), X, y), KFACBlockDiagonal.from_net(net, nn.MSELoss(), X, y)
    assert relative(tridiagonal.inverse(), kfac.inverse()) < 1e-10


# --------------------------------------------------------------------------- #
# EKFAC
# --------------------------------------------------------------------------- #
def conv_net():
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 2, stride=2), nn.Flatten(),
                         nn.Linear(8, 3))


@pytest.mark.parametrize("case", ["mlp-ce-true", "mlp-bce-empirical", "conv-ce-true", "conv-ce-mc", "conv-ce-ggn"])
def test_ekfac_is_never_further_from_the_exact_blocks_than_kfac(case):
    """s = diag(Qᵀ F_l Q) is the best diagonal in K-FAC's eigenbasis Q (George et al. 2018)."""
    structure, loss, kind = case.split("-")
    rng = np.random.default_rng(8)
    for seed in range(2):
        mk.nn.init.manual_seed(seed)
        if structure == "conv":
            net, X = conv_net(), rng.standard_normal((12, 2, 4, 4))
        else:
            net, X = mlp(), rng.standard_normal((12, 3))
        d_out = 3 if structure == "conv" else 2
        y = rng.integers(0, d_out, 12) if loss == "ce" else rng.uniform(0, 1, (12, d_out))
        loss_fn = nn.CrossEntropyLoss() if loss == "ce" else nn.BCEWithLogitsLoss()
        args = dict(kind=kind, samples=2, seed=seed)
        ekfac, kfac = EKFAC.from_net(net, loss_fn, X, y, **args), KFACBlockDiagonal.from_net(net, loss_fn, X, y, **args)
        for i, exact in enumerate(fisher_blocks(net, loss_fn, X, y, **args)):
            assert np.linalg.norm(ekfac.block(i) - exact) <= np.linalg.norm(kfac.block(i) - exact) * (1 + 1e-12)
            assert relative(np.trace(ekfac.block(i)), np.trace(exact)) < 1e-12
