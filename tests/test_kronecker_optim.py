"""Muon, Shampoo and SOAP, and the matrix functions they stand on (curvature/polar.py).

Each exact case is checked against a reference written here from the paper or
from torch's definition, on the host in NumPy: Newton–Schulz's cubic converges
to the polar factor and Muon's quintic does not (its singular values land in a
band); one-gradient Shampoo is the polar factor; SOAP with the identity basis
is AdamW, and with real bases it is the paper's algorithm; Muon's step is
torch's formula. Then what every optimizer of the house passes: exact resume
from state_dict, checks on loading, bad hyper-parameters, NaN carried on,
backends and dtypes, the training loop and the command line.
"""

import math
import pickle

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend, checkpoint, cli, training
from minikfac.curvature.polar import (
    CUBIC_COEFFICIENTS,
    MUON_COEFFICIENTS,
    MUON_SINGULAR_VALUE_BAND,
    matrix_power_psd,
    newton_schulz,
    polar_factor,
)
from minikfac.jobs import train as train_job
from minikfac.nn import Parameter
from minikfac.optim import SOAP, Adam, Muon, Shampoo
from tests.test_optim import _only_host_types

#: A Linear weight, a bias, a Conv2d weight (matrix view (2, 12)) and a tall matrix.
SHAPES = [(3, 4), (4,), (2, 3, 2, 2), (5, 2)]


def on(name, host_array):
    return backend.asarray(np.asarray(host_array), backend=name)


def gradients(steps, seed=1, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def initial(seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def make_params(host_arrays, name="numpy", dtype=np.float64):
    return [Parameter(on(name, a.astype(dtype))) for a in host_arrays]


def run(opt, params, grads, name="numpy", dtype=np.float64):
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = on(name, g.astype(dtype))
        opt.step()


def host(params):
    return [mk.to_numpy(p.data) for p in params]


def conditioned(m, n, low=1.0, high=3.0, seed=0):
    """A random (m, n) matrix with singular values evenly in [low, high] (and its SVD factors)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    v, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    s = np.linspace(high, low, min(m, n))
    return (u * s) @ v.T, u, s, v


# --------------------------------------------------------------------------- #
# curvature/polar.py
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4)])
def test_polar_factor_is_the_orthogonal_factor_of_the_polar_decomposition(backend_name, shape):
    M, u, _, v = conditioned(*shape)
    P = mk.to_numpy(polar_factor(on(backend_name, M)))
    np.testing.assert_allclose(P, u @ v.T, atol=1e-12)
    small = min(shape)
    gram = P.T @ P if shape[0] >= shape[1] else P @ P.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)
    # M = P H with H = Pᵀ M symmetric positive definite (tall case: H is n × n).
    if shape[0] >= shape[1]:
        H = P.T @ M
        np.testing.assert_allclose(H, H.T, atol=1e-12)
        assert np.linalg.eigvalsh((H + H.T) / 2).min() > 0
        np.testing.assert_allclose(P @ H, M, atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4)])
def test_cubic_newton_schulz_converges_to_the_polar_factor(backend_name, shape):
    M, *_ = conditioned(*shape, low=1.0, high=4.0)
    X = mk.to_numpy(newton_schulz(on(backend_name, M), steps=30, coefficients=CUBIC_COEFFICIENTS))
    np.testing.assert_allclose(X, polar_factor(M), atol=1e-10)
    # Five steps are not enough from ‖M‖_F: the cubic's convergence is slow near 0.
    few = newton_schulz(M, steps=5, coefficients=CUBIC_COEFFICIENTS)
    assert np.abs(few - polar_factor(M)).max() > 1e-2


@pytest.mark.parametrize("shape", [(8, 8), (5, 9), (9, 5)])
def test_muons_quintic_keeps_the_singular_vectors_and_lands_in_the_band_not_on_one(shape):
    M, u, s, v = conditioned(*shape, low=0.05, high=3.0, seed=3)
    X = newton_schulz(M)  # Muon's defaults: 5 steps of (3.4445, −4.7750, 2.0315)
    assert (s / np.linalg.norm(M) >= 2e-3).all()  # the band's condition
    # Same singular vectors: Uᵀ X V is diagonal, each σ mapped by the scalar quintic p five times.
    inner = u.T @ X @ v
    expected = s / np.linalg.norm(M)
    a, b, c = MUON_COEFFICIENTS
    for _ in range(5):
        expected = a * expected + b * expected**3 + c * expected**5
    np.testing.assert_allclose(inner, np.diag(expected), atol=1e-12)
    low, high = MUON_SINGULAR_VALUE_BAND
    singular = np.linalg.svd(X, compute_uv=False)
    assert low <= singular.min() and singular.max() <= high
    assert np.abs(singular - 1).max() > 0.05  # not the polar factor: the quintic does not converge
    assert np.abs(X - polar_factor(M)).max() > 0.05


def test_newton_schulz_normalises_by_the_frobenius_norm_floored_at_eps():
    tiny = np.full((2, 3), 1e-9)  # ‖M‖_F ≈ 2.4e-9 < eps = 1e-7: divided by eps, as torch clamps
    X = newton_schulz(tiny, steps=1, coefficients=(1.0, 0.0, 0.0))
    np.testing.assert_allclose(X, tiny / 1e-7, rtol=1e-15)
    np.testing.assert_array_equal(newton_schulz(np.zeros((3, 2))), np.zeros((3, 2)))


def test_matrix_power_psd(backend_name):
    rng = np.random.default_rng(0)
    B = rng.standard_normal((5, 3))
    S = B @ B.T  # PSD, rank 3
    eps = 0.1
    shifted = S + eps * np.eye(5)
    half = mk.to_numpy(matrix_power_psd(on(backend_name, S), -0.5, eps))
    np.testing.assert_allclose(half @ shifted @ half, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(half, half.T, atol=1e-15)
    quarter = matrix_power_psd(S, -0.25, eps)
    np.testing.assert_allclose(np.linalg.matrix_power(quarter, 4) @ shifted, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(matrix_power_psd(S, 1.0), S, atol=1e-12)
    with pytest.raises(ValueError, match=r"matrix_power_psd: M \+ eps·I is singular .* pass eps > 0"):
        matrix_power_psd(S, -0.25)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0, got -1.0"):
        matrix_power_psd(S, 0.5, eps=-1.0)
    with pytest.raises(ValueError, match=r"M must be a square matrix \(k, k\), got \(5, 3\)"):
        matrix_power_psd(B, 0.5)


def test_polar_functions_refuse_what_is_not_a_matrix():
    with pytest.raises(ValueError, match=r"polar_factor: M must be a matrix \(m, n\), got \(3,\)"):
        polar_factor(np.ones(3))
    with pytest.raises(ValueError, match=r"newton_schulz: steps must be an integer in \[0, 100\), got 100"):
        newton_schulz(np.ones((2, 2)), steps=100)
    with pytest.raises(ValueError, match="coefficients must be three numbers"):
        newton_schulz(np.ones((2, 2)), coefficients=(1.0, 2.0))


# --------------------------------------------------------------------------- #
# Muon against torch's formula
# --------------------------------------------------------------------------- #
def torch_muon(theta, grads, lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn):
    """torch.optim.Muon's _single_tensor_muon on one matrix, written out in NumPy (float64)."""
    theta, buf = theta.copy(), np.zeros_like(theta)
    a, b, c = ns_coefficients
    rows, cols = theta.shape
    for g in grads:
        buf = buf + (1 - momentum) * (g - buf)  # buf.lerp_(grad, 1 - momentum)
        update = g + momentum * (buf - g) if nesterov else buf  # grad.lerp(buf, momentum)
        X = update.T if rows > cols else update
        X = X / max(np.linalg.norm(X), eps)
        for _ in range(ns_steps):
            A = X @ X.T
            X = a * X + (b * A + c * A @ A) @ X
        X = X.T if rows > cols else X
        ratio = 0.2 * math.sqrt(max(rows, cols)) if adjust_lr_fn == "match_rms_adamw" else \
            math.sqrt(max(1, rows / cols))
        theta = theta * (1 - lr * weight_decay) - lr * ratio * X
    return theta


MUON_CASES = {
    "defaults": {},
    "plain-momentum": {"nesterov": False, "momentum": 0.9, "lr": 0.02},
    "match-rms": {"adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.0, "ns_steps": 3},
    "cubic": {"ns_coefficients": CUBIC_COEFFICIENTS, "ns_steps": 7, "eps": 1e-3},
}


@pytest.mark.parametrize("case", list(MUON_CASES))
def test_muon_matches_torchs_definition(backend_name, case):
    kwargs = MUON_CASES[case]
    opt_kwargs = {"lr": 1e-3, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True,
                  "ns_coefficients": MUON_COEFFICIENTS, "eps": 1e-7, "ns_steps": 5, "adjust_lr_fn": None, **kwargs}
    shapes = [(3, 5), (5, 3), (2, 3, 2, 2)]
    theta0, grads = initial(shapes=shapes), gradients(4, shapes=shapes)
    params = make_params(theta0, backend_name)
    run(Muon(params, **kwargs), params, grads, backend_name)
    for j, p in enumerate(params):
        view = (shapes[j][0], math.prod(shapes[j][1:]))
        expected = torch_muon(theta0[j].reshape(view), [g[j].reshape(view) for g in grads], **opt_kwargs)
        np.testing.assert_allclose(mk.to_numpy(p.data).reshape(view), expected, rtol=1e-12, atol=1e-13)


def test_muons_first_step_on_a_rank_one_gradient_by_hand():
    # G = [[3, 0, 4]]: ‖G‖_F = 5, one singular value 1 after normalisation, which each quintic step
    # sends to p(1) = a + b + c = 0.701, then p(0.701), ...; Nesterov's first U is (1 − μ²)G, the same
    # direction. So W ← W(1 − lr·wd) − lr·√max(1, 1/3)·p⁵(1)·G/5.
    a, b, c = MUON_COEFFICIENTS
    sigma = 1.0
    for _ in range(5):
        sigma = a * sigma + b * sigma**3 + c * sigma**5
    p = Parameter(np.array([[1.0, 2.0, 3.0]]))
    p.grad = np.array([[3.0, 0.0, 4.0]])
    Muon([p], lr=0.5, weight_decay=0.1).step()
    expected = np.array([[1.0, 2.0, 3.0]]) * (1 - 0.05) - 0.5 * sigma * np.array([[0.6, 0.0, 0.8]])
    np.testing.assert_allclose(p.data, expected, rtol=1e-14)
    assert 0.69 < sigma < 0.70  # not 1: the quintic lands in its band, here near its lower edge


def test_muon_gives_biases_to_its_adamw():
    theta0, grads = initial(), gradients(5)
    params = make_params(theta0)
    run(Muon(params, adam_lr=0.01, adam_betas=(0.8, 0.9), adam_eps=1e-6, adam_weight_decay=0.1), params, grads)
    bias = make_params([theta0[1]])
    run(Adam(bias, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1, decoupled=True), bias,
        [[g[1]] for g in grads])
    np.testing.assert_array_equal(params[1].data, bias[0].data)


# --------------------------------------------------------------------------- #
# Shampoo
# --------------------------------------------------------------------------- #
ONE_GRADIENT = {"lr": 1.0, "betas": (0.0, 0.0), "grafting": None, "start_preconditioning_step": 1,
                "precondition_frequency": 1, "epsilon": 1e-14}


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3)])
def test_one_gradient_shampoo_is_the_polar_factor(backend_name, shape):
    # L = G Gᵀ, R = Gᵀ G: L^{-1/4} G R^{-1/4} = U Σ^{-1/2} Σ Σ^{-1/2} Vᵀ = U Vᵀ (β₂ = 0: each step's own G).
    p = Parameter(on(backend_name, np.zeros(shape)))
    opt = Shampoo([p], **ONE_GRADIENT)
    before = np.zeros(shape)
    for seed in (0, 1):
        G = conditioned(*shape, seed=seed)[0]
        p.grad = on(backend_name, G)
        opt.step()
        after = mk.to_numpy(p.data).copy()
        np.testing.assert_allclose(before - after, polar_factor(G), atol=1e-9)
        before = after


def test_shampoo_with_the_inverse_root_override_inverts_a_square_gradient():
    # exponent 1/2 on each side: L^{-1/2} G R^{-1/2} = U Σ^{-1} Vᵀ = G^{-T}.
    G = conditioned(4, 4)[0]
    p = Parameter(np.zeros((4, 4)))
    p.grad = G
    Shampoo([p], exponent=0.5, **ONE_GRADIENT).step()
    np.testing.assert_allclose(-p.data, np.linalg.inv(G).T, atol=1e-10)


def test_shampoo_with_beta2_one_accumulates_sums_as_gupta_et_al():
    grads = gradients(3, shapes=[(3, 4)])
    p = Parameter(np.zeros((3, 4)))
    opt = Shampoo([p], betas=(0.9, 1.0))
    run(opt, [p], grads)
    np.testing.assert_allclose(opt.state[0]["L"], sum(g[0] @ g[0].T for g in grads), rtol=1e-14)
    np.testing.assert_allclose(opt.state[0]["R"], sum(g[0].T @ g[0] for g in grads), rtol=1e-14)


def test_shampoo_before_its_start_step_is_its_grafted_adam():
    theta0, grads = initial(), gradients(6)
    params = make_params(theta0)
    run(Shampoo(params, lr=0.01, betas=(0.8, 0.5), grafting_beta2=0.99, grafting_eps=1e-6,
                start_preconditioning_step=100), params, grads)
    adam = make_params(theta0)
    run(Adam(adam, lr=0.01, betas=(0.8, 0.99), eps=1e-6), adam, grads)
    for a, b in zip(host(params), host(adam), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("grafting", ["adam", "adagrad", "sgd"])
def test_shampoos_step_has_its_direction_and_the_grafted_norm(grafting):
    # From the start step on, each matrix moves along P_L M̂ P_R (roots of this step's statistics,
    # frequency 1) by exactly lr·‖D_g‖, the grafted method's step length.
    beta1, beta2, gbeta, geps, eps, lr = 0.7, 0.9, 0.95, 1e-6, 1e-3, 0.01
    grads = gradients(4, shapes=[(3, 5)])
    p = Parameter(np.zeros((3, 5)))
    opt = Shampoo([p], lr=lr, betas=(beta1, beta2), epsilon=eps, grafting=grafting, grafting_beta2=gbeta,
                  grafting_eps=geps, precondition_frequency=1, start_preconditioning_step=2)
    m, v, L, R = np.zeros((3, 5)), np.zeros((3, 5)), np.zeros((3, 3)), np.zeros((5, 5))
    for t, (G,) in enumerate(grads, start=1):
        before = p.data.copy()
        p.grad = G
        opt.step()
        m = beta1 * m + (1 - beta1) * G
        m_hat = m / (1 - beta1**t)
        L, R = beta2 * L + (1 - beta2) * G @ G.T, beta2 * R + (1 - beta2) * G.T @ G
        if grafting == "adam":
            v = gbeta * v + (1 - gbeta) * G**2
            graft = m_hat / (np.sqrt(v / (1 - gbeta**t)) + geps)
        elif grafting == "adagrad":
            v = v + G**2
            graft = m_hat / (np.sqrt(v) + geps)
        else:
            graft = m_hat
        step = before - p.data
        if t < 2:
            np.testing.assert_allclose(step, lr * graft, rtol=1e-12)
            continue
        c = 1 - beta2**t

        def root(S):
            w, Q = np.linalg.eigh(S / c)
            return (Q * (np.maximum(w, 0) + eps) ** -0.25) @ Q.T
        direction = root(L) @ m_hat @ root(R)
        np.testing.assert_allclose(np.linalg.norm(step), lr * np.linalg.norm(graft), rtol=1e-12)
        np.testing.assert_allclose(step / np.linalg.norm(step), direction / np.linalg.norm(direction),
                                   atol=1e-9)


def test_shampoo_leaves_a_side_longer_than_its_limit_unpreconditioned():
    p = Parameter(np.zeros((3, 6)))
    opt = Shampoo([p], max_preconditioner_dim=4)
    p.grad = np.ones((3, 6))
    opt.step()
    assert set(opt.state[0]) == {"step", "exp_avg", "graft_sq", "L", "L_root"}


# --------------------------------------------------------------------------- #
# SOAP
# --------------------------------------------------------------------------- #
def test_soap_with_the_identity_basis_is_adamw_step_for_step(backend_name):
    theta0, grads = initial(), gradients(7)
    kwargs = {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1}
    params = make_params(theta0, backend_name)
    soap = SOAP(params, rotate=False, **kwargs)
    adam = make_params(theta0, backend_name)
    adamw = Adam(adam, decoupled=True, **kwargs)
    for step_grads in grads:
        run(soap, params, [step_grads], backend_name)
        run(adamw, adam, [step_grads], backend_name)
        for a, b in zip(host(params), host(adam), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert all(set(entry) == {"step", "exp_avg", "exp_avg_sq"} for entry in soap.state.values())


def soap_reference(theta, grads, lr, betas, shampoo_beta, eps, weight_decay, frequency):
    """Vyas et al. 2024's algorithm on one matrix, in NumPy: M kept in W's coordinates and projected each step;
    the first gradient only sets L, R and the bases (the reference code's first step)."""
    beta1, beta2 = betas

    def basis(S):
        return np.linalg.eigh(S)[1][:, ::-1]
    theta = theta.copy()
    G = grads[0]
    L, R = (1 - shampoo_beta) * G @ G.T, (1 - shampoo_beta) * G.T @ G
    QL, QR = basis(L), basis(R)
    M, V = np.zeros_like(theta), np.zeros_like(theta)
    for t, G in enumerate(grads[1:], start=1):
        rotated = QL.T @ G @ QR
        M = beta1 * M + (1 - beta1) * G
        V = beta2 * V + (1 - beta2) * rotated**2
        N = (QL.T @ M @ QR) / (1 - beta1**t) / (np.sqrt(V / (1 - beta2**t)) + eps)
        theta = theta * (1 - lr * weight_decay) - lr * QL @ N @ QR.T
        L, R = shampoo_beta * L + (1 - shampoo_beta) * G @ G.T, shampoo_beta * R + (1 - shampoo_beta) * G.T @ G
        if t % frequency == 0:
            QL, QR = basis(L), basis(R)
    return theta


def test_soap_is_adam_in_shampoos_eigenbasis_as_in_the_paper(backend_name):
    # Shapes whose first L and R have at most a one-dimensional null space: their eigenbases are then unique
    # up to signs, which SOAP's step does not see (a wider null space's basis is arbitrary).
    shapes = [(3, 4), (2, 3, 1, 1), (4, 3)]
    theta0, grads = initial(shapes=shapes), gradients(8, shapes=shapes)
    kwargs = {"lr": 0.01, "betas": (0.8, 0.9), "shampoo_beta": 0.7, "eps": 1e-6, "weight_decay": 0.1}
    params = make_params(theta0, backend_name)
    opt = SOAP(params, precondition_frequency=3, **kwargs)
    run(opt, params, grads[:1], backend_name)
    np.testing.assert_array_equal(host(params)[0], theta0[0])  # the first step only sets the bases
    run(opt, params, grads[1:], backend_name)
    for j, shape in enumerate(shapes):
        view = (shape[0], math.prod(shape[1:]))
        expected = soap_reference(theta0[j].reshape(view), [g[j].reshape(view) for g in grads], frequency=3,
                                  **kwargs)
        np.testing.assert_allclose(mk.to_numpy(params[j].data).reshape(view), expected, rtol=1e-10, atol=1e-12)
    assert opt.shampoo_beta() == 0.7 and SOAP(params).shampoo_beta() == 0.95  # None = betas[1]


# --------------------------------------------------------------------------- #
# What every optimizer passes: resume, loading checks, hyper-parameters, NaN, backends
# --------------------------------------------------------------------------- #
ALL = {
    "muon": (Muon, {"lr": 0.02}),
    "muon-no-decay": (Muon, {"weight_decay": 0.0, "nesterov": False}),
    "shampoo": (Shampoo, {"precondition_frequency": 2, "start_preconditioning_step": 2}),
    "shampoo-sums-sgd": (Shampoo, {"precondition_frequency": 3, "betas": (0.5, 1.0), "grafting": "sgd",
                                   "start_preconditioning_step": 1, "weight_decay": 0.01}),
    "shampoo-adagrad": (Shampoo, {"precondition_frequency": 2, "grafting": "adagrad", "exponent": 0.5}),
    "soap": (SOAP, {"precondition_frequency": 2}),
    "soap-identity": (SOAP, {"rotate": False}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(ALL))
def test_resume_from_state_dict_is_bit_exact(backend_name, dtype, case):
    cls, kwargs = ALL[case]
    theta0, grads = initial(), gradients(9)
    straight = make_params(theta0, backend_name, dtype)
    run(cls(straight, **kwargs), straight, grads, backend_name, dtype)
    first = make_params(theta0, backend_name, dtype)
    opt = cls(first, **kwargs)
    run(opt, first, grads[:5], backend_name, dtype)
    saved = opt.state_dict()
    assert _only_host_types(saved) and saved["steps"] == 5 and saved["type"] == cls.__name__
    saved = pickle.loads(pickle.dumps(saved))
    resumed = make_params(host(first), backend_name, dtype)
    opt2 = cls(resumed, **kwargs).load_state_dict(saved)
    assert opt2.steps == 5 and opt2.hyper == opt.hyper
    for key, entry in opt2.state.items():
        for name, value in entry.items():
            if backend.is_array(value):
                assert backend.backend_of(value) == backend_name and value.dtype == dtype, (key, name)
    run(opt2, resumed, grads[5:], backend_name, dtype)
    for a, b in zip(host(straight), host(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_state_holds_every_buffer():
    params = make_params(initial())
    shampoo = Shampoo(params, precondition_frequency=2)
    run(shampoo, params, gradients(3))
    assert set(shampoo.state[0]) == {"step", "exp_avg", "graft_sq", "L", "R", "L_root", "R_root"}
    assert shampoo.state[2]["L"].shape == (2, 2) and shampoo.state[2]["R_root"].shape == (12, 12)
    assert set(shampoo.state[1]) == {"step", "exp_avg", "graft_sq"} and shampoo.state[0]["step"] == 3
    soap = SOAP(params)
    run(soap, params, gradients(3))
    assert set(soap.state[3]) == {"step", "exp_avg", "exp_avg_sq", "L", "R", "Q_L", "Q_R"}
    assert soap.state[3]["step"] == 2 and soap.state[1]["step"] == 3  # a matrix's first step sets its bases
    muon = Muon(params)
    run(muon, params, gradients(1))
    assert set(muon.state[0]) == {"momentum_buffer"} and set(muon.state[1]) == {"step", "exp_avg", "exp_avg_sq"}


def _trained(cls, **kwargs):
    params = make_params(initial())
    opt = cls(params, **kwargs)
    run(opt, params, gradients(3))
    return opt


@pytest.mark.parametrize(
    "cls,corrupt,error,message",
    [
        (Shampoo, lambda d: d["state"][0].update(L=np.zeros((4, 4))), ValueError,
         r"state\[0\]\['L'\] has shape \(4, 4\), expected \(3, 3\)"),
        (Shampoo, lambda d: d["state"][0].pop("R_root"), ValueError,
         r"state\[0\] has the entries .*, expected \['L', 'L_root', 'R', 'R_root', 'exp_avg', 'graft_sq', 'step'\]"),
        (Shampoo, lambda d: d["hyper"].update(grafting=None), ValueError, "expected .*'exp_avg', 'step'"),
        (SOAP, lambda d: d["state"][2].update(Q_R=np.zeros((2, 2))), ValueError,
         r"state\[2\]\['Q_R'\] has shape \(2, 2\), expected \(12, 12\)"),
        (SOAP, lambda d: d["state"][0].update(step=-1), ValueError, "must be an integer >= 0, got -1"),
        (SOAP, lambda d: d["state"].update({9: d["state"][0]}), ValueError, "state key 9"),
        (Muon, lambda d: d["state"][0].update(momentum_buffer="zeros"), TypeError, "is a str, expected an array"),
        (Muon, lambda d: d.update(type="SOAP"), ValueError, "checkpoint is of a SOAP, expected a Muon"),
    ],
)
def test_load_rejects_bad_state_and_changes_nothing(cls, corrupt, error, message):
    opt = _trained(cls)
    saved, before = opt.state_dict(), opt.state_dict()
    corrupt(saved)
    with pytest.raises(error, match=message):
        opt.load_state_dict(saved)
    after = opt.state_dict()
    assert after["hyper"] == before["hyper"] and after["steps"] == before["steps"]
    for key, entry in before["state"].items():
        for name, value in entry.items():
            np.testing.assert_array_equal(after["state"][key][name], value)


@pytest.mark.parametrize(
    "cls,kwargs,name,value,expected",
    [
        (Muon, {"lr": 0.0}, "lr", "0.0", "> 0"),
        (Muon, {"momentum": 1.0}, "momentum", "1.0", "[0, 1)"),
        (Muon, {"ns_steps": 0}, "ns_steps", "0", "[1, 100)"),
        (Muon, {"ns_steps": 100}, "ns_steps", "100", "[1, 100)"),
        (Muon, {"ns_coefficients": (1.0, 2.0)}, "ns_coefficients", "(1.0, 2.0)", "three numbers"),
        (Muon, {"adjust_lr_fn": "rms"}, "adjust_lr_fn", "'rms'", "'match_rms_adamw'"),
        (Muon, {"adam_betas": (0.9, 1.0)}, "adam_betas[1]", "1.0", "[0, 1)"),
        (Muon, {"weight_decay": -0.1}, "weight_decay", "-0.1", ">= 0"),
        (Shampoo, {"betas": (0.9, 1.5)}, "betas[1]", "1.5", "[0, 1]"),
        (Shampoo, {"betas": (1.0, 0.9)}, "betas[0]", "1.0", "[0, 1)"),
        (Shampoo, {"exponent": 0.0}, "exponent", "0.0", "> 0"),
        (Shampoo, {"exponent": 2.0}, "exponent", "2.0", "(0, 1]"),
        (Shampoo, {"epsilon": -1e-12}, "epsilon", "-1e-12", "> 0"),
        (Shampoo, {"grafting": "rmsprop"}, "grafting", "'rmsprop'", "'adagrad'"),
        (Shampoo, {"precondition_frequency": 0}, "precondition_frequency", "0", "integer >= 1"),
        (Shampoo, {"start_preconditioning_step": 0}, "start_preconditioning_step", "0", "integer >= 1"),
        (SOAP, {"shampoo_beta": 1.0}, "shampoo_beta", "1.0", "[0, 1)"),
        (SOAP, {"betas": (0.95,)}, "betas", "(0.95,)", "pair"),
        (SOAP, {"precondition_frequency": 2.5}, "precondition_frequency", "2.5", "integer >= 1"),
        (SOAP, {"max_preconditioner_dim": 0}, "max_preconditioner_dim", "0", "integer >= 1"),
        (SOAP, {"rotate": 1}, "rotate", "1", "True or False"),
    ],
)
def test_bad_hyper_parameters_are_refused_naming_argument_value_and_expectation(cls, kwargs, name, value, expected):
    with pytest.raises((ValueError, TypeError)) as err:
        cls([Parameter(np.zeros((2, 2)))], **kwargs)
    message = str(err.value)
    assert message.startswith(f"{cls.__name__}: {name} must ") and value in message and expected in message, message
    opt = cls([Parameter(np.zeros((2, 2)))])
    with pytest.raises((ValueError, TypeError)):  # assignments are checked too, and change nothing
        opt.hyper[name.split("[")[0]] = kwargs[name.split("[")[0]]
    assert opt.hyper == cls([Parameter(np.zeros((2, 2)))]).hyper


def test_settings_that_shape_the_state_cannot_change_under_it_but_a_checkpoint_can_replace_both():
    params = make_params(initial())
    soap = SOAP(params, precondition_frequency=2)
    run(soap, params, gradients(3))
    with pytest.raises(ValueError, match=r"SOAP: rotate=False would change the state kept for params\[0\]"):
        soap.hyper["rotate"] = False
    assert soap.hyper["rotate"] is True
    soap.hyper["precondition_frequency"] = 5  # does not change what is kept: allowed, and takes effect
    assert soap.hyper["precondition_frequency"] == 5
    identity = SOAP(make_params(initial()), rotate=False)
    run(identity, identity.params, gradients(2))
    soap.load_state_dict(identity.state_dict())  # the state and its settings are replaced together
    assert soap.hyper["rotate"] is False and set(soap.state[0]) == {"step", "exp_avg", "exp_avg_sq"}
    shampoo = Shampoo(params)
    run(shampoo, params, gradients(1))
    with pytest.raises(ValueError, match="grafting=None would change the state"):
        shampoo.hyper["grafting"] = None
    shampoo.hyper["grafting"] = "adagrad"  # keeps a graft_sq too


@pytest.mark.parametrize("case", list(ALL))
def test_a_nan_gradient_is_carried_on_as_adam_does_not_raised(backend_name, case):
    cls, kwargs = ALL[case]
    kwargs = {**kwargs, "start_preconditioning_step": 1} if cls is Shampoo else kwargs
    params = make_params(initial(), backend_name)
    opt = cls(params, **kwargs)
    grads = gradients(4)
    for g in grads[1]:
        g[...] = np.nan
    run(opt, params, grads, backend_name)  # refreshes of roots and bases meet NaN statistics: no LinAlgError
    for p in host(params):
        assert np.isnan(p).all()


@pytest.mark.parametrize("optimizer", ["muon", "shampoo", "soap"])
def test_make_optimizer_builds_them_and_keeps_its_checks(optimizer):
    net = mk.models.mlp(4, 3)
    opt = training.make_optimizer(optimizer, net, weight_decay=0.01)
    assert type(opt).__name__.lower() == optimizer
    assert opt.hyper["lr"] == training.DEFAULT_LR[optimizer] and opt.hyper["weight_decay"] == 0.01
    with pytest.raises(ValueError, match=f"momentum=0.9 applies to SGD only; {type(opt).__name__}'s momentum"):
        training.make_optimizer(optimizer, net, momentum=0.9)
    with pytest.raises(ValueError, match="K-FAC options"):
        training.make_optimizer(optimizer, net, damping=0.1)


@pytest.mark.parametrize("optimizer", ["muon", "shampoo", "soap"])
def test_a_run_resumed_from_its_checkpoint_continues_bit_exactly(tmp_path, optimizer):
    path = tmp_path / "run.npz"
    args = {"optimizer": optimizer, "train_examples": 160, "dtype": "float64", "model": "cnn", "batch_size": 32}
    straight = train_job.fit(epochs=4, progress=False, log=None, **args)
    train_job.fit(epochs=2, save=path, progress=False, log=None, **args)
    resumed = train_job.fit(resume=path, epochs=4, progress=False, log=None)
    assert resumed.report["optimizer"] == optimizer and resumed.optimizer.steps == straight.optimizer.steps == 20
    assert [r["train_loss"] for r in resumed.report["history"]] == [r["train_loss"] for r in straight.report["history"]]
    a, b = resumed.optimizer.state_dict(), straight.optimizer.state_dict()
    for key in b["state"]:
        for name, value in b["state"][key].items():
            assert np.array_equal(a["state"][key][name], value), (key, name)
    for name, value in straight.net.state_dict().items():
        np.testing.assert_array_equal(resumed.net.state_dict()[name], value)
    assert checkpoint.load(path)["optimizer"]["type"] == type(straight.optimizer).__name__


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
@pytest.mark.parametrize("optimizer", ["muon", "shampoo", "soap"])
def test_the_command_line_trains_with_them_and_a_diverged_run_exits_1(tmp_path, capsys, optimizer):
    common = ["train", "--optimizer", optimizer, "--epochs", "1", "--train-examples", "64", "--no-progress"]
    assert cli.main(common + ["--backend", "fakegpu"]) == 0
    out = capsys.readouterr().out
    assert f"digits · mlp · {optimizer} (lr {training.DEFAULT_LR[optimizer]:g})" in out and "test accuracy" in out
    assert cli.main(common + ["--lr", "1e30"]) == 1
    assert "diverged" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(common + ["--momentum", "0.9"])
    assert "applies to SGD only" in capsys.readouterr().err
