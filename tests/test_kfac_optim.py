"""The K-FAC optimizer against independent references where its step is known exactly.

- One step with ν = 1, no momentum and fresh statistics is −(F̂ + (λ+η)I)⁻¹(∇L + ηθ)
  with F̂ from the curvature module (K-FAC exact/factored damping, EKFAC), and
  with one example it is the exact block natural gradient (Martens & Grosse 2015, §3).
- α, μ solve the 2×2 system of the quadratic model with the *dense* Fisher
  (Martens & Grosse 2015, §7); ρ and the Levenberg–Marquardt rule (Martens & Grosse 2015, §6.5) are recomputed from
  the dense Fisher; a linear net with MSE has an exact quadratic model (ρ = 1).
- The guard: non-finite numbers, statistics, parameters or losses, and a loss
  far above the model's promise, refuse the step and change nothing but λ,
  also at a step that forms the inverses; checkpoints resume bit for bit;
  float32 and float64 both train; small batches train; backends agree.
"""

import math
import pickle

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend
from minikfac.jobs import train as train_job
from minikfac.curvature import EKFAC, fisher, flatten, kfac_factors, layer_slices, vec
from minikfac.curvature import KFACBlockDiagonal as KFACApprox
from minikfac.optim import KFAC, SGD
from minikfac.optim import kfac as kfac_module
from minikfac.curvature import quadratic_model
from tests.conftest import inputs_and_targets, on

nn = mk.nn
LOSSES = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss}
NETS = {  # name: (builder, input shape, loss)
    "mlp-ce": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)), (4,), "ce"),
    "mlp-mse": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)), (4,), "mse"),
    "conv-ce": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)), (1, 3, 3), "ce"),
}
#: One step that is exactly δ = Δ: ν = min(1, sqrt(κ / |∇hᵀΔ|)) = 1, no momentum, fresh statistics.
EXACT_STEP = {"update": "kl_clip", "lr": 1.0, "momentum": 0.0, "kl_clip": 1e30, "stats_fraction": 1.0,
              "kind": "true", "adapt_damping": False}


def host(x):
    return backend.to_numpy(x)


def relative(a, b):
    a, b = host(a), host(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def problem(name, backend_name="numpy", n=6, seed=0):
    """(net, loss_fn, X, y) on ``backend_name``; the same weights for the same ``seed``."""
    build, shape, loss = NETS[name]
    mk.nn.init.manual_seed(seed)
    net = build().to(backend_name)
    X, y = inputs_and_targets(shape, loss, n=n, seed=seed + 1)
    return net, LOSSES[loss](), on(backend_name, X), on(backend_name, y)


def backward(net, loss_fn, X, y):
    """Fresh gradients of the mean loss on (X, y); returns the loss."""
    net.zero_grad()
    loss = loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    return loss


def objective_gradient(net, eta):
    """∇h = ∇L + ηθ in the canonical order (after a backward)."""
    return flatten(net, "grad") + eta * flatten(net)


def state_arrays(opt):
    """Host copies of every per-layer state array: {(layer, name): array}."""
    return {(i, name): host(v).copy() if backend.is_array(v) else v for i, entry in opt.state.items()
            if i != "global" for name, v in entry.items()}


def factored_inverse_by_hand(A, G, damping):
    """((A + π√λ I)⁻¹, (G + (√λ/π) I)⁻¹) with π = sqrt((tr A / n) / (tr G / m)), written out (host, float64)."""
    A, G = host(A), host(G)
    pi = math.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G)))
    root = math.sqrt(damping)
    return np.linalg.inv(A + pi * root * np.eye(len(A))), np.linalg.inv(G + root / pi * np.eye(len(G)))


# --------------------------------------------------------------------------- #
# 1. One step equals the curvature module's damped solve
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("preconditioner,factored", [("kfac", False), ("kfac", True), ("ekfac", None)],
                         ids=["kfac-exact", "kfac-factored", "ekfac"])
@pytest.mark.parametrize("eta", [0.0, 0.1])
def test_first_step_is_the_damped_solve_of_the_curvature_module(backend_name, name, preconditioner, factored, eta):
    net, loss_fn, X, y = problem(name, backend_name)
    backward(net, loss_fn, X, y)
    damping, theta, grad = 0.05, host(flatten(net)), objective_gradient(net, eta)
    if preconditioner == "kfac":
        approx = KFACApprox.from_net(net, loss_fn, X, kind="true")
        want = -approx.solve(grad, damping + eta, factored=factored)
        statistics = [("A", kf.A) for kf in approx.factors] + [("G", kf.G) for kf in approx.factors]
    else:
        approx = EKFAC.from_net(net, loss_fn, X, kind="true")
        want = -approx.solve(grad, damping + eta)
        statistics = [("scalings", s) for s in approx.scalings]  # George et al.'s s = diag(Qᵀ F_l Q)
    opt = KFAC(net, loss_fn, damping=damping, weight_decay=eta, factored=factored, preconditioner=preconditioner,
               **EXACT_STEP)
    opt.step(X, y)
    layers = len(opt.layers)
    for j, (key, value) in enumerate(statistics):  # first step: the averages are the fresh statistics
        assert relative(opt.state[j % layers][key], value) < 1e-12, (key, j % layers)
    assert relative(host(flatten(net)) - theta, want) < 1e-10
    stored = np.concatenate([host(vec(opt.state[i]["update"])) for i in range(layers)])
    assert relative(stored, want) < 1e-12  # δ₀ for the next step is the step taken
    assert opt.last["alpha"] == 1.0 and opt.last["mu"] == 0.0 and opt.steps == 1


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_one_example_step_is_the_exact_block_natural_gradient(loss):
    """N = 1: A ⊗ G is the exact Fisher block of a Linear layer, so δ_l = −(F_ll + λI)⁻¹ ∇_l."""
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3))
    loss_fn = LOSSES[loss]()
    X, y = inputs_and_targets((3,), loss, n=1, seed=2)
    backward(net, loss_fn, X, y)
    damping, theta, grad = 1e-6, flatten(net).copy(), flatten(net, "grad")
    F = fisher(net, loss_fn, X, kind="true")
    want = np.concatenate([-np.linalg.solve(F[s, s] + damping * np.eye(s.stop - s.start), grad[s])
                           for s in layer_slices(net)])
    KFAC(net, loss_fn, damping=damping, min_damping=damping, factored=False, **EXACT_STEP).step(X, y)
    assert relative(flatten(net) - theta, want) < 1e-7


def test_factor_averages_and_inverse_schedule():
    """A ← εA + (1−ε)A_new with ε = min(1 − 1/k, factor_decay); the damped inverses only every T steps."""
    net, loss_fn, X, y = problem("mlp-ce", n=8)
    batches = [(X[:4], y[:4]), (X[4:], y[4:]), (X[2:6], y[2:6])]
    opt = KFAC(net, loss_fn, damping=1.0, inverse_interval=2, factor_decay=0.6, **EXACT_STEP)
    averages, previous = None, None
    for k, (Xb, yb) in enumerate(batches, start=1):
        fresh = [tuple(map(host, pair)) for pair in kfac_factors(net, loss_fn, Xb, kind="true")]
        decay = min(1 - 1 / k, 0.6)
        averages = fresh if averages is None else [(decay * A + (1 - decay) * An, decay * G + (1 - decay) * Gn)
                                                   for (A, G), (An, Gn) in zip(averages, fresh)]
        backward(net, loss_fn, Xb, yb)
        opt.step(Xb, yb)
        assert opt.last["refreshed"] == (k != 2)
        for i, (A, G) in enumerate(averages):
            A_now, G_now = opt.factors(i)
            assert relative(A_now, A) < 1e-13 and relative(G_now, G) < 1e-13
        # Step 2 preconditions with step 1's inverses; steps 1 and 3 with their own averages' (λ = 1).
        used = previous if k == 2 else averages
        for i, (A, G) in enumerate(used):
            A_inverse, G_inverse = factored_inverse_by_hand(A, G, 1.0)
            assert relative(opt.state[i]["A_inverse"], A_inverse) < 1e-12
            assert relative(opt.state[i]["G_inverse"], G_inverse) < 1e-12
        previous = averages


def test_inverses_are_formed_again_when_the_damping_moves():
    """After a refused step (λ × 10) the next step forms the inverses with the new λ, between two refreshes."""
    net, loss_fn, X, y = problem("mlp-ce", n=8)
    opt = KFAC(net, loss_fn, damping=0.1, inverse_interval=50, **dict(EXACT_STEP, adapt_damping=False))
    backward(net, loss_fn, X, y)
    opt.step(X, y)
    backward(net, loss_fn, X, y)
    opt.step(X, y)
    assert not opt.last["refreshed"] and opt.state["global"]["inverse_damping"] == 0.1
    net[0].bias.grad[0] = float("nan")
    assert opt.step(X, y)["refused"] == "not finite" and opt.damping == pytest.approx(1.0)
    backward(net, loss_fn, X, y)
    opt.step(X, y)
    assert opt.last["refreshed"] and opt.state["global"]["inverse_damping"] == pytest.approx(1.0)
    A_inverse, _ = factored_inverse_by_hand(opt.state[0]["A"], opt.state[0]["G"], 1.0)
    assert relative(opt.state[0]["A_inverse"], A_inverse) < 1e-12


@pytest.mark.parametrize("fraction,minimum,batch,want", [(0.5, 1, 8, 4), (0.25, 1, 10, 3), (0.25, 5, 10, 5),
                                                         (0.25, 128, 10, 10), (1.0, 1, 7, 7)])
def test_statistics_use_the_first_rows_of_the_batch(fraction, minimum, batch, want):
    """n = min(N, max(ceil(fraction·N), min_stats_examples)); A and G come from X[:n] only."""
    net, loss_fn, X, y = problem("mlp-ce", n=batch)
    opt = KFAC(net, loss_fn, min_stats_examples=minimum, **dict(EXACT_STEP, stats_fraction=fraction))
    assert opt.statistics_examples(batch) == want
    fresh = kfac_factors(net, loss_fn, X[:want], kind="true")
    backward(net, loss_fn, X, y)
    opt.step(X, y)
    for i, (A, G) in enumerate(fresh):
        assert relative(opt.state[i]["A"], A) < 1e-13 and relative(opt.state[i]["G"], G) < 1e-13


# --------------------------------------------------------------------------- #
# 2. The quadratic model: α, μ (Martens & Grosse 2015, §7) and the KL-clipped step (Ba et al. 2017)
# --------------------------------------------------------------------------- #
def test_solve_step_solves_the_two_by_two_system():
    rng = np.random.default_rng(4)
    for _ in range(5):
        M = rng.standard_normal((2, 2))
        C, b = M @ M.T + 0.1 * np.eye(2), rng.standard_normal(2)
        x, change = quadratic_model.solve_step(C, b)
        np.testing.assert_allclose(x, np.linalg.solve(C, -b), rtol=1e-12)
        assert change == pytest.approx(0.5 * x @ C @ x + b @ x, rel=1e-12) and change < 0
    x, change = quadratic_model.solve_step([[4.0]], [-2.0])  # K = 1: α = −b/C
    assert x.tolist() == [0.5] and change == -0.5


def test_solve_step_falls_back_to_alpha_when_directions_are_parallel():
    """δ₀ = 3Δ: C is singular on the 'plane'; μ = 0, α = −∇hᵀΔ / ΔᵀCΔ."""
    rng = np.random.default_rng(5)
    M = rng.standard_normal((4, 4))
    C_full, grad, delta = M @ M.T + np.eye(4), rng.standard_normal(4), rng.standard_normal(4)
    D = np.stack([delta, 3 * delta], axis=1)
    x, change = quadratic_model.solve_step(D.T @ C_full @ D, D.T @ grad)
    assert x[1] == 0.0 and x[0] == pytest.approx(-(grad @ delta) / (delta @ C_full @ delta), rel=1e-12)
    assert change == pytest.approx(0.5 * x[0] * (grad @ delta), rel=1e-12)


@pytest.mark.parametrize("C,b,match", [([[1.0, 0.0], [0.0, 1.0]], [1.0], "gradient_dots"),
                                       ([[1.0, 2.0, 3.0]], [1.0], "curvature"),
                                       ([[0.0]], [1.0], "must be > 0")])
def test_solve_step_rejects_bad_input(C, b, match):
    with pytest.raises(ValueError, match=match):
        quadratic_model.solve_step(C, b)


def _constrained_minimiser(C, b, max_momentum):
    """argmin of ½xᵀCx + bᵀx over x = (α, μ) with μ in [0, max_momentum], by brute force on a fine μ grid."""
    grid = np.linspace(0.0, max_momentum, 200001)
    alpha = -(b[0] + grid * C[0, 1]) / C[0, 0]
    values = 0.5 * (C[0, 0] * alpha**2 + 2 * C[0, 1] * alpha * grid + C[1, 1] * grid**2) + b[0] * alpha + b[1] * grid
    best = int(np.argmin(values))
    return np.array([alpha[best], grid[best]])


@pytest.mark.parametrize("eta", [0.0, 0.02])
@pytest.mark.parametrize("max_momentum", [0.9, 0.05])
def test_alpha_and_mu_minimise_the_model_with_the_dense_fisher(eta, max_momentum):
    """Second step: x = (α, μ) minimises ½xᵀCx + bᵀx with C = Dᵀ(F + (λ+η)I)D, b = Dᵀ∇h, D = [Δ, δ₀],
    over μ in [0, max_momentum] (the free minimiser when it is inside, the boundary otherwise).

    F is the dense Fisher of the statistics rows (the first 3 of 5), ∇h the whole batch's gradient.
    """
    net, loss_fn, X, y = problem("mlp-ce", n=10)
    X1, y1, X2, y2 = X[:5], y[:5], X[5:], y[5:]
    damping = 0.03
    opt = KFAC(net, loss_fn, damping=damping, weight_decay=eta, stats_fraction=0.6, min_stats_examples=1,
               kind="true", adapt_damping=False, max_momentum=max_momentum, kl_per_example=1e6)
    assert opt.statistics_examples(5) == 3
    factors = kfac_factors(net, loss_fn, X1[:3], kind="true")  # step 1's statistics, inverted at step 1
    backward(net, loss_fn, X1, y1)
    opt.step(X1, y1)
    previous = np.concatenate([vec(opt.state[i]["update"]) for i in range(len(opt.layers))])
    backward(net, loss_fn, X2, y2)
    theta, grad = flatten(net).copy(), objective_gradient(net, eta)
    F = fisher(net, loss_fn, X2[:3], kind="true")
    opt.step(X2, y2)
    assert not opt.last["refreshed"]
    proposal = -KFACApprox(factors).solve(grad, damping + eta, factored=True)
    D = np.stack([proposal, previous], axis=1)
    C, b = D.T @ (F + (damping + eta) * np.eye(len(grad))) @ D, D.T @ grad
    x = np.array([opt.last["alpha"], opt.last["mu"]])
    free = np.linalg.solve(C, -b)
    if 0 <= free[1] <= max_momentum:
        np.testing.assert_allclose(x, free, rtol=1e-8)
    else:  # the boundary: μ at the nearer end, α the model's best for it (checked against a grid search)
        assert x[1] in (0.0, max_momentum)
        np.testing.assert_allclose(x, _constrained_minimiser(C, b, max_momentum), rtol=1e-4, atol=1e-9)
    assert relative(flatten(net) - theta, D @ x) < 1e-10
    assert opt.last["model_change"] == pytest.approx(0.5 * x @ C @ x + b @ x, rel=1e-8)
    assert opt.last["kl"] == pytest.approx(0.5 * (D @ x) @ F @ (D @ x), rel=1e-8)


def test_kl_trust_region_scales_the_step_to_its_bound():
    """½δᵀFδ of the model's step (dense F of the statistics rows) is ``last["kl"]``; with kl_per_example·B
    below it the same step comes out scaled by sqrt(bound / KL), so that its KL is the bound."""
    steps = {}
    for name, per_example in (("free", 1e6), ("clipped", None)):
        net, loss_fn, X, y = problem("mlp-ce", n=6)  # the same weights and data for both
        if per_example is None:
            per_example = steps["free"][1] / 10 / len(X)  # a bound of a tenth of the free step's KL
        opt = KFAC(net, loss_fn, damping=0.01, stats_fraction=1.0, kind="true", kl_per_example=per_example)
        F = fisher(net, loss_fn, X, kind="true")  # at the starting point, the same for both
        backward(net, loss_fn, X, y)
        theta = flatten(net).copy()
        opt.step(X, y)
        steps[name] = (flatten(net) - theta, opt.last["kl"])
    (free, kl), (clipped, clipped_kl) = steps["free"], steps["clipped"]
    assert kl == pytest.approx(0.5 * free @ F @ free, rel=1e-8) and kl > 0
    np.testing.assert_allclose(clipped, free * math.sqrt(0.1), rtol=1e-8, atol=1e-14)
    assert clipped_kl == pytest.approx(kl / 10, rel=1e-8)


def test_kl_bound_counts_the_output_variables_of_the_loss():
    """kl_per_example × B × V: V = 1 for a class label (cross-entropy's C logits), D_out for MSE and BCE."""
    net = nn.Sequential(nn.Linear(4, 3))
    for loss_fn, variables in ((nn.CrossEntropyLoss(), 1), (nn.MSELoss(), 3), (nn.BCEWithLogitsLoss(), 3)):
        assert KFAC(net, loss_fn, kl_per_example=0.01).kl_bound(16, 3) == pytest.approx(0.16 * variables)


def test_kl_clip_scales_the_proposal_and_adds_momentum():
    """δ = lr·ν·Δ + m·δ₀ with ν = min(1, sqrt(κ / (lr² |∇hᵀΔ|))) (Ba et al. 2017, §5)."""
    net, loss_fn, X, y = problem("mlp-ce", n=10)
    lr, kappa, momentum, damping = 0.5, 1e-4, 0.7, 0.02
    opt = KFAC(net, loss_fn, damping=damping, update="kl_clip", lr=lr, momentum=momentum, kl_clip=kappa,
               stats_fraction=1.0, kind="true", adapt_damping=False)
    previous = np.zeros(len(flatten(net)))
    factors = kfac_factors(net, loss_fn, X[:5], kind="true")  # inverted at step 1, used by both steps
    for Xb, yb in ((X[:5], y[:5]), (X[5:], y[5:])):
        backward(net, loss_fn, Xb, yb)
        theta, grad = flatten(net).copy(), flatten(net, "grad")
        opt.step(Xb, yb)
        proposal = -KFACApprox(factors).solve(grad, damping, factored=True)
        nu = min(1.0, math.sqrt(kappa / (lr**2 * abs(grad @ proposal))))
        assert nu < 1  # the clip is active
        want = lr * nu * proposal + momentum * previous
        assert relative(flatten(net) - theta, want) < 1e-10
        previous = flatten(net) - theta


# --------------------------------------------------------------------------- #
# 3. Levenberg–Marquardt damping (Martens & Grosse 2015, §6.5)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("rho,factor", [(0.9, 0.5), (1.0, 0.5), (0.76, 0.5), (0.75, 1.0), (0.5, 1.0), (0.25, 1.0),
                                        (0.2, 2.0), (-3.0, 2.0), (float("nan"), 2.0)])
def test_levenberg_marquardt_rule(rho, factor):
    assert quadratic_model.levenberg_marquardt(0.1, rho, 0.5) == pytest.approx(0.1 * factor, rel=1e-15)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.5])
def test_levenberg_marquardt_rejects_decay_outside_unit_interval(decay):
    with pytest.raises(ValueError, match="decay"):
        quadratic_model.levenberg_marquardt(0.1, 0.5, decay)


def test_reduction_ratio_signs_and_undefined_cases():
    assert quadratic_model.reduction_ratio(2.0, 1.5, -0.5) == 1.0  # h fell as predicted
    assert quadratic_model.reduction_ratio(2.0, 1.9, -0.4) == pytest.approx(0.25)
    assert quadratic_model.reduction_ratio(2.0, 2.5, -0.5) == -1.0  # h went up: ρ < 0
    for args in [(2.0, 1.0, 0.0), (2.0, 1.0, 0.3), (float("nan"), 1.0, -1.0), (2.0, float("inf"), -1.0),
                 (2.0, 1.0, float("nan"))]:
        assert math.isnan(quadratic_model.reduction_ratio(*args)), args


@pytest.mark.parametrize("eta", [0.0, 0.05])
def test_linear_regression_model_is_exact_so_damping_shrinks(eta):
    """Linear net + MSE: h is quadratic and its Hessian is F + ηI, so ρ = 1 at every step and every T₁
    steps λ ← (19/20)^T₁ λ."""
    net, loss_fn = nn.Sequential(nn.Linear(3, 2)), nn.MSELoss()
    X, y = inputs_and_targets((3,), "mse", n=8, classes=2, seed=3)
    opt = KFAC(net, loss_fn, damping=0.5, weight_decay=eta, stats_fraction=1.0, kind="true", damping_interval=2)
    expected = 0.5
    for k in range(1, 5):
        backward(net, loss_fn, X, y)
        opt.step(X, y)
        assert opt.last["rho"] == pytest.approx(1.0, abs=1e-8)
        if k % 2:
            assert opt.last["rho_interval"] is None
        else:
            assert opt.last["rho_interval"] == pytest.approx(1.0, abs=1e-8)
            expected *= (19 / 20) ** 2
        assert opt.damping == pytest.approx(expected, rel=1e-14)


def test_damping_never_drops_below_min_damping():
    net, loss_fn = nn.Sequential(nn.Linear(3, 2)), nn.MSELoss()
    X, y = inputs_and_targets((3,), "mse", n=8, classes=2, seed=3)
    opt = KFAC(net, loss_fn, damping=0.0105, min_damping=0.01, stats_fraction=1.0, kind="true", damping_interval=1)
    for _ in range(2):
        backward(net, loss_fn, X, y)
        opt.step(X, y)
        assert opt.last["rho"] == pytest.approx(1.0, abs=1e-8) and opt.damping == 0.01
    with pytest.raises(ValueError, match="min_damping"):
        KFAC(net, loss_fn, damping=1e-4, min_damping=1e-3)


def flat(candidates):
    """The canonical vector of the optimizer's candidate parameters [(weight, bias), ...] (host)."""
    return np.concatenate([vec(np.concatenate([host(w).reshape(len(w), -1), host(b)[:, None]], axis=1))
                           for w, b in candidates])


def _dense_prediction(net, loss_fn, X, y, eta):
    """(h(θ), M_h as a function of the step δ): the objective and its model, both written out densely."""
    theta, grad = flatten(net).copy(), objective_gradient(net, eta)
    F = fisher(net, loss_fn, X, kind="true")
    h = float(loss_fn(net(X), y)) + 0.5 * eta * theta @ theta
    return theta, h, lambda delta: 0.5 * delta @ (F + eta * np.eye(len(delta))) @ delta + grad @ delta


@pytest.mark.parametrize("target", [None, 0.9, 0.5, 0.1, -0.5])
def test_reduction_ratio_from_the_dense_model_drives_damping(monkeypatch, target):
    """ρ = (h(θ+δ) − h(θ)) / M_h(δ), M_h = ½δᵀ(F + ηI)δ + ∇hᵀδ with the dense F; then the LM rule.

    ``target`` replaces the new objective by h(θ) + target·M_h(δ) (the guard's evaluation patched),
    so every branch of the rule is reached; None keeps the true h.
    """
    net, loss_fn, X, y = problem("mlp-ce", n=8)
    eta, damping = 0.01, 0.1
    opt = KFAC(net, loss_fn, damping=damping, weight_decay=eta, stats_fraction=1.0, kind="true", damping_interval=1)
    backward(net, loss_fn, X, y)
    theta, h, model = _dense_prediction(net, loss_fn, X, y, eta)
    real_objective_at, seen = opt._objective_at, {}

    def objective_at(candidates, Xb, yb):
        value = real_objective_at(candidates, Xb, yb)
        delta = flat(candidates) - theta
        seen["model"], seen["after"] = model(delta), value if target is None else h + target * model(delta)
        return seen["after"]

    monkeypatch.setattr(opt, "_objective_at", objective_at)
    opt.step(X, y)
    rho = (seen["after"] - h) / seen["model"]
    assert opt.last["rho"] == pytest.approx(rho, rel=1e-7) and opt.last["rho_interval"] == pytest.approx(rho, rel=1e-7)
    assert opt.last["loss_change"] == pytest.approx(seen["after"] - h, rel=1e-7, abs=1e-12)
    omega = 19 / 20
    want = damping * omega if rho > 0.75 else damping / omega if not rho >= 0.25 else damping
    assert opt.damping == pytest.approx(want, rel=1e-14) and opt.last["damping"] == opt.damping


# --------------------------------------------------------------------------- #
# 4. The guard
# --------------------------------------------------------------------------- #
def _snapshot(net, opt):
    return [host(p.data).copy() for p in net.parameters()], state_arrays(opt), dict(opt.state["global"])


def _assert_unchanged(net, opt, snapshot, damping, reason):
    params, arrays, glob = snapshot
    assert opt.last["refused"] == reason and opt.refused == glob["refused"] + 1
    assert opt.damping == pytest.approx(min(damping * kfac_module.REFUSED_DAMPING_FACTOR, kfac_module.MAX_DAMPING))
    for p, before in zip(net.parameters(), params):
        np.testing.assert_array_equal(host(p.data), before)
    now = state_arrays(opt)
    assert now.keys() == arrays.keys()
    for key, before in arrays.items():
        np.testing.assert_array_equal(now[key], before)
    assert {k: v for k, v in opt.state["global"].items() if k not in ("damping", "refused")} == \
        {k: v for k, v in glob.items() if k not in ("damping", "refused")}


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("after", [0, 2])
def test_non_finite_gradient_refuses_the_step(backend_name, bad, after):
    net, loss_fn, X, y = problem("mlp-ce", backend_name, n=6)
    opt = KFAC(net, loss_fn, damping=0.1, stats_fraction=0.5, min_stats_examples=1, kind="mc", inverse_interval=2,
               damping_interval=1)
    for _ in range(after):
        backward(net, loss_fn, X, y)
        opt.step(X, y)
    backward(net, loss_fn, X, y)
    grad = host(net[2].weight.grad)
    grad[1, 2] = bad
    net[2].weight.grad = on(backend_name, grad)
    snapshot, damping, steps = _snapshot(net, opt), opt.damping, opt.steps
    last = opt.step(X, y)
    assert opt.last is last and opt.steps == steps == after
    _assert_unchanged(net, opt, snapshot, damping, "not finite")
    backward(net, loss_fn, X, y)  # a healthy step proceeds
    opt.step(X, y)
    assert not opt.last["refused"] and opt.steps == after + 1 and opt.refused == 1
    assert not np.array_equal(host(net[0].weight.data), snapshot[0][0])
    assert all(np.all(np.isfinite(host(p.data))) for p in net.parameters())


@pytest.mark.filterwarnings("ignore:(invalid value|overflow) encountered:RuntimeWarning")
@pytest.mark.parametrize("preconditioner,factored", [("kfac", True), ("kfac", False), ("ekfac", None)])
@pytest.mark.parametrize("at_refresh", [True, False])
def test_non_finite_batch_is_refused_also_where_the_inverses_are_formed(backend_name, preconditioner, factored,
                                                                         at_refresh):
    """A batch with an infinite input: NaN gradients and NaN statistics. At a step that forms the
    inverses (or eigendecompositions) it is refused like anywhere else: no LinAlgError, nothing changed."""
    net, loss_fn, X, y = problem("mlp-ce", backend_name, n=6)
    opt = KFAC(net, loss_fn, damping=0.1, inverse_interval=3, factored=factored, preconditioner=preconditioner)
    for _ in range(2 if at_refresh else 1):  # the next step is k = 3 (no refresh) or k = 4 (refresh)
        backward(net, loss_fn, X, y)
        opt.step(X, y)
    if not at_refresh:
        backward(net, loss_fn, X, y)
        opt.step(X, y)
    bad = host(X).copy()
    bad[0, 1] = float("inf")
    bad = on(backend_name, bad)
    backward(net, loss_fn, bad, y)
    snapshot, damping = _snapshot(net, opt), opt.damping
    opt.step(bad, y)
    _assert_unchanged(net, opt, snapshot, damping, "not finite")
    backward(net, loss_fn, X, y)
    assert not opt.step(X, y)["refused"]


def test_non_finite_rows_kept_for_later_are_refused_too():
    """With 4 rows per step and 21 inputs, A's rows are kept rather than summed: an infinite input in them
    is refused at once, not folded into the average at the next refresh."""
    net, loss_fn = nn.Sequential(nn.Linear(20, 3)), nn.CrossEntropyLoss()
    X, y = inputs_and_targets((20,), "ce", n=4, seed=4)
    opt = KFAC(net, loss_fn, damping=0.1, inverse_interval=50)
    backward(net, loss_fn, X, y)
    opt.step(X, y)
    backward(net, loss_fn, X, y)
    opt.step(X, y)
    assert opt.state[0]["A_rows"].shape == (4, 21)  # kept, not yet folded
    bad = X.copy()
    bad[2, 5] = np.inf
    backward(net, loss_fn, X, y)  # a finite gradient: only the statistics see the bad row
    snapshot, damping = _snapshot(net, opt), opt.damping
    with np.errstate(all="ignore"):
        opt.step(bad, y)
    _assert_unchanged(net, opt, snapshot, damping, "not finite")


def test_finite_but_huge_parameters_are_refused(monkeypatch):
    """θ + δ finite but so large that the loss overflows: the new loss is not finite, so the step is refused."""
    net, loss_fn, X, y = problem("mlp-ce")
    opt = KFAC(net, loss_fn, damping=0.1, **dict(EXACT_STEP, adapt_damping=True, damping_interval=1))
    backward(net, loss_fn, X, y)
    real = opt._coefficients
    monkeypatch.setattr(opt, "_coefficients", lambda *args: real(*args) * 1e300)
    snapshot = _snapshot(net, opt)
    with np.errstate(all="ignore"):
        opt.step(X, y)
    _assert_unchanged(net, opt, snapshot, 0.1, opt.last["refused"])
    assert opt.last["refused"] in ("not finite", "above the promise")  # the loss overflows, or soars
    assert opt.steps == 0 and list(opt.state) == ["global"]


def test_loss_far_above_the_promise_is_refused(monkeypatch):
    """h(θ+δ) − h(θ) > |M_h(δ)| (ρ < −1): refused; just below it (ρ = −0.9) the step is taken."""
    for target, refused in ((-1.5, "above the promise"), (-0.9, False)):
        net, loss_fn, X, y = problem("mlp-ce", n=8)
        opt = KFAC(net, loss_fn, damping=0.1, stats_fraction=1.0, kind="true", damping_interval=1)
        backward(net, loss_fn, X, y)
        opt.step(X, y)  # a first step, so that δ₀ and the averages exist
        backward(net, loss_fn, X, y)
        theta, h, model = _dense_prediction(net, loss_fn, X, y, 0.0)

        def objective_at(candidates, Xb, yb, target=target, theta=theta, h=h, model=model):
            return h + target * model(flat(candidates) - theta)

        monkeypatch.setattr(opt, "_objective_at", objective_at)
        snapshot, damping = _snapshot(net, opt), opt.damping
        opt.step(X, y)
        if refused:
            _assert_unchanged(net, opt, snapshot, damping, refused)
        else:
            assert opt.last["refused"] is False and opt.last["rho"] == pytest.approx(-0.9, rel=1e-6)
            assert opt.damping == pytest.approx(damping * 20 / 19)


def test_refused_damping_stays_bounded():
    net, loss_fn, X, y = problem("mlp-ce")
    opt = KFAC(net, loss_fn, damping=1e7)
    backward(net, loss_fn, X, y)
    net[0].bias.grad[0] = float("nan")
    opt.step(X, y)
    opt.step(X, y)
    assert opt.damping == kfac_module.MAX_DAMPING and opt.refused == 2


# --------------------------------------------------------------------------- #
# 5. Checkpoints
# --------------------------------------------------------------------------- #
CHECKPOINT_ARGS = {"damping": 0.05, "weight_decay": 1e-3, "kind": "mc", "samples": 2, "stats_fraction": 0.5,
                   "min_stats_examples": 1, "inverse_interval": 3, "damping_interval": 2, "seed": 7}


def _train(net, loss_fn, opt, batches):
    for Xb, yb in batches:
        backward(net, loss_fn, Xb, yb)
        opt.step(Xb, yb)


@pytest.mark.parametrize("preconditioner", ["kfac", "ekfac"])
def test_resumed_run_is_identical_to_the_uninterrupted_one(backend_name, preconditioner):
    """Run on NumPy, resume after step 2 on ``backend_name``; steps 3–6 include an inverse
    refresh (k = 4) and two ρ steps (k = 4, 6), all with sampled targets."""
    if backend_name == "cupy":
        pytest.skip("CuPy's random stream differs from NumPy's (backend.default_rng)")
    backend.set_backend("numpy")
    net, loss_fn, X, y = problem("mlp-ce", n=24)
    batches = [(X[4 * i:4 * i + 4], y[4 * i:4 * i + 4]) for i in range(6)]
    args = dict(CHECKPOINT_ARGS, preconditioner=preconditioner)
    opt = KFAC(net, loss_fn, **args)
    _train(net, loss_fn, opt, batches[:2])
    saved = pickle.loads(pickle.dumps((net.state_dict(), opt.state_dict())))
    _train(net, loss_fn, opt, batches[2:])

    backend.set_backend(backend_name)
    mk.nn.init.manual_seed(99)  # different weights until loaded
    resumed_net = NETS["mlp-ce"][0]()
    resumed_net.load_state_dict(saved[0])
    resumed = KFAC(resumed_net, loss_fn, damping=1.0, preconditioner=preconditioner)
    resumed.load_state_dict(saved[1])
    assert resumed.steps == 2 and resumed.hyper == opt.hyper
    _train(resumed_net, loss_fn, resumed, [(on(backend_name, Xb), on(backend_name, yb)) for Xb, yb in batches[2:]])

    # On NumPy the resumed run is the same run, bit for bit. Another backend inverts the damped
    # factors with its own routine (CuPy has no Cholesky inverse), so there it agrees to rounding.
    same = np.testing.assert_array_equal if backend_name == "numpy" else \
        (lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12))
    assert resumed.steps == opt.steps == 6 and resumed.refused == opt.refused and opt.last["rho"] is not None
    assert resumed.last.keys() == opt.last.keys()
    for key, value in opt.last.items():
        if isinstance(value, float):
            same(resumed.last[key], value)
        else:
            assert resumed.last[key] == value, key
    same(resumed.damping, opt.damping)
    for p, q in zip(net.parameters(), resumed_net.parameters()):
        same(p.data, host(q.data))
    mine, theirs = state_arrays(opt), state_arrays(resumed)
    assert all(backend.backend_of(v) == backend_name for i in range(2) for v in resumed.state[i].values()
               if backend.is_array(v))
    assert mine.keys() == theirs.keys()
    for key in mine:
        same(mine[key], theirs[key])


def _trained():
    net, loss_fn, X, y = problem("mlp-ce")
    opt = KFAC(net, loss_fn, **CHECKPOINT_ARGS)
    _train(net, loss_fn, opt, [(X, y), (X, y)])
    return net, opt


def _break_shape(saved):
    saved["state"][1]["G"] = np.zeros((4, 4))


def _break_name(saved):
    saved["state"][0]["momentum"] = np.zeros((5, 5))


def _break_key(saved):
    saved["state"][2] = dict(saved["state"][1])


def _break_global(saved):
    del saved["state"]["global"]


def _break_damping(saved):
    saved["state"]["global"]["damping"] = -1.0


def _drop_entry(saved):
    del saved["state"][0]["A_inverse"]


def _drop_layer(saved):
    del saved["state"][1]


@pytest.mark.parametrize("corrupt,match", [
    (_drop_entry, "(?i)missing"),
    (_drop_layer, "(?i)missing"),
    (_break_shape, r"state\[1\]\['G'\] has shape \(4, 4\), expected \(3, 3\)"),
    (_break_name, "(?i)unknown"),
    (_break_key, "state key 2 is not 'global' or a layer index"),
    (_break_global, "no 'global' state"),
    (_break_damping, "damping"),
], ids=["missing-entry", "missing-layer", "shape", "name", "key", "global", "damping"])
def test_load_state_dict_rejects_bad_checkpoints_and_changes_nothing(corrupt, match):
    _net, opt = _trained()
    saved = opt.state_dict()
    corrupt(saved)
    before, arrays, damping = opt.state_dict(), state_arrays(opt), opt.damping
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved)
    assert opt.steps == before["steps"] and opt.hyper == before["hyper"] and opt.damping == damping
    now = state_arrays(opt)
    assert now.keys() == arrays.keys() and all(np.array_equal(now[k], arrays[k]) for k in arrays)


def test_load_state_dict_rejects_another_optimizer():
    net, opt = _trained()
    with pytest.raises(ValueError, match="SGD"):
        opt.load_state_dict(SGD(net.parameters(), lr=0.1).state_dict())


def test_state_dict_is_a_copy():
    net, opt = _trained()
    saved = opt.state_dict()
    saved["state"][0]["A"][...] = 0.0
    assert np.any(host(opt.state[0]["A"]) != 0)


# --------------------------------------------------------------------------- #
# 6. Training in float32 and float64; backends
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("preconditioner", ["kfac", "ekfac"])
def test_trains_in_both_dtypes(dtype, preconditioner):
    backend.set_default_dtype(dtype)
    X, y = mk.data.spirals(n_per_class=30, noise=0.1, seed=1, dtype=dtype)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    loss_fn = nn.CrossEntropyLoss()
    opt = KFAC(net, loss_fn, damping=0.01, inverse_interval=5, preconditioner=preconditioner)
    start = float(loss_fn(net(X), y))
    for _ in range(30):
        backward(net, loss_fn, X, y)
        opt.step(X, y)
    end = float(loss_fn(net(X), y))
    assert end < 0.25 * start, (start, end)  # about 1.1 -> 0.04 in either dtype
    assert opt.refused == 0
    for p in net.parameters():
        assert p.data.dtype == np.dtype(dtype)
    for (_, name), value in state_arrays(opt).items():
        assert isinstance(value, float) or value.dtype == np.dtype(dtype), name


@pytest.mark.parametrize("model,batch_size,minimum", [("mlp", 8, 0.85), ("mlp", 16, 0.85), ("cnn", 8, 0.75)])
def test_small_batches_train_at_the_defaults(model, batch_size, minimum):
    """One epoch of the digits at a small batch with K-FAC's defaults: finite, no refused steps,
    and far above chance (10%): the KL trust region and the bounded momentum keep the steps small."""
    result = train_job.fit(dataset="digits", model=model, optimizer="kfac", batch_size=batch_size, epochs=1,
                             progress=False, log=None, eval_every_epoch=False)
    report = result.report
    assert report["steps"] == math.ceil(1438 / batch_size)
    assert math.isfinite(report["train_loss"]) and math.isfinite(report["test_loss"])
    assert all(np.all(np.isfinite(host(p.data))) for p in result.net.parameters())
    assert report["test_accuracy"] > minimum, report["test_accuracy"]
    assert report["kfac"]["refused"] <= 2


@pytest.mark.parametrize("kind,preconditioner", [("true", "kfac"), ("true", "ekfac"), ("mc", "kfac")])
def test_backends_agree(backend_name, kind, preconditioner):
    """The same run on NumPy and on ``backend_name``. "mc" needs the same random stream:
    fakegpu draws from NumPy's generator, CuPy from its own (backend.default_rng)."""
    if kind == "mc" and backend_name == "cupy":
        pytest.skip("CuPy's random stream differs from NumPy's")
    args = dict(damping=0.05, kind=kind, stats_fraction=0.5, min_stats_examples=1, inverse_interval=2,
                damping_interval=2, preconditioner=preconditioner)
    results = []
    for name in ("numpy", backend_name):
        backend.set_backend(name)
        net, loss_fn, X, y = problem("conv-ce", name, n=8)
        opt = KFAC(net, loss_fn, **args)
        _train(net, loss_fn, opt, [(X, y), (X[:4], y[:4]), (X[4:], y[4:]), (X, y)])
        assert all(backend.backend_of(v) == name for entry in opt.state.values() for v in entry.values()
                   if backend.is_array(v))
        results.append(([host(p.data) for p in net.parameters()], opt.damping))
    for p, q in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(q, p, rtol=1e-10, atol=1e-13)
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-12)


# --------------------------------------------------------------------------- #
# 7. Errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kwargs,name", [
    ({"kind": "fisher"}, "kind"),
    ({"stats_fraction": 0.0}, "stats_fraction"),
    ({"stats_fraction": 1.5}, "stats_fraction"),
    ({"lr": 0.1}, "lr"),
    ({"momentum": 0.5}, "momentum"),
    ({"preconditioner": "ekfac", "factored": True}, "factored"),
    ({"preconditioner": "shampoo"}, "preconditioner"),
    ({"update": "adam"}, "update"),
    ({"damping": 0.0}, "damping"),
    ({"inverse_interval": 0}, "inverse_interval"),
    ({"damping_interval": 1.5}, "damping_interval"),
    ({"factor_decay": 1.0}, "factor_decay"),
    ({"samples": 0}, "samples"),
])
def test_bad_hyper_parameters_raise_naming_them(kwargs, name):
    net, loss_fn, _, _ = problem("mlp-ce")
    with pytest.raises(ValueError, match=name):
        KFAC(net, loss_fn, **kwargs)


def test_layers_other_than_linear_and_conv_with_parameters_are_refused():
    class Scale(nn.Module):
        def __init__(self):
            self.gain = nn.Parameter(np.ones(3))

        def forward(self, x):
            return x * self.gain.data

    net = nn.Sequential(nn.Linear(2, 3), Scale())
    with pytest.raises(TypeError, match="Scale has parameters"):
        KFAC(net, nn.MSELoss())


def test_step_without_backward_raises():
    net, loss_fn, X, y = problem("mlp-ce")
    opt, theta = KFAC(net, loss_fn), flatten(net).copy()
    with pytest.raises(ValueError, match=r"layer 0 .* has no gradient; run net.backward"):
        opt.step(X, y)
    assert opt.steps == 0 and opt.refused == 0 and list(opt.state) == ["global"]
    np.testing.assert_array_equal(flatten(net), theta)
