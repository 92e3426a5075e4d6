"""SGD and Adam: the paper equations, PyTorch, convergence, in-place updates, checkpoints.

The references below are written from the equations (Sutskever et al. 2013 /
PyTorch's SGD; Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019) on the
host in NumPy, independently of minikfac.optim.
"""

import pickle

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend
from minikfac.nn import Parameter
from minikfac.optim import SGD, Adam, Optimizer

SHAPES = [(3, 4), (4,), (2, 1, 3)]
STEPS = 6


def gradients(steps=STEPS, seed=1, shapes=SHAPES):
    """A different random gradient for every parameter at every step (host arrays)."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def initial(seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def on(name, host_array):
    """Host array -> backend ``name`` (as conftest's helper; test modules cannot import conftest)."""
    return backend.asarray(np.asarray(host_array), backend=name)


def make_params(host_arrays, name, dtype=np.float64):
    return [Parameter(on(name, a.astype(dtype))) for a in host_arrays]


def run(opt, params, grads, name, dtype=np.float64):
    """Set each step's gradients (on backend ``name``) and call opt.step()."""
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = on(name, g.astype(dtype))
        opt.step()


def host(params):
    return [mk.to_numpy(p.data) for p in params]


# --------------------------------------------------------------------------- #
# Independent references (host, float64), straight from the equations
# --------------------------------------------------------------------------- #
def reference_sgd(theta, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    theta = theta.copy()
    buf = None
    for grad in grads:
        g = grad + weight_decay * theta
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            d = g + momentum * buf if nesterov else buf
        else:
            d = g
        theta = theta - lr * d
    return theta


def reference_adam(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    beta1, beta2 = betas
    theta = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, grad in enumerate(grads, start=1):
        g = grad if decoupled else grad + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        decay = lr * weight_decay * theta if decoupled else 0.0
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps) - decay
    return theta


SGD_CASES = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "nesterov": {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    "weight_decay": {"lr": 0.1, "weight_decay": 0.3},
    "all": {"lr": 0.03, "momentum": 0.7, "nesterov": True, "weight_decay": 0.1},
}
ADAM_CASES = {
    "default": {"lr": 1e-2},
    "betas": {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-6},
    "coupled_decay": {"lr": 0.02, "weight_decay": 0.2},
    "decoupled_decay": {"lr": 0.02, "weight_decay": 0.2, "decoupled": True},
}
ALL_CASES = [(SGD, k, v) for k, v in SGD_CASES.items()] + [(Adam, k, v) for k, v in ADAM_CASES.items()]
CASE_IDS = [f"{cls.__name__}-{k}" for cls, k, _ in ALL_CASES]


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_equations(backend_name, case):
    kwargs = SGD_CASES[case]
    theta0, grads = initial(), gradients()
    params = make_params(theta0, backend_name)
    run(SGD(params, **kwargs), params, grads, backend_name)
    for j, got in enumerate(host(params)):
        want = reference_sgd(theta0[j], [g[j] for g in grads], **kwargs)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        assert not np.allclose(got, theta0[j])  # the parameters moved


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_matches_equations(backend_name, case):
    kwargs = ADAM_CASES[case]
    theta0, grads = initial(), gradients()
    params = make_params(theta0, backend_name)
    run(Adam(params, **kwargs), params, grads, backend_name)
    for j, got in enumerate(host(params)):
        want = reference_adam(theta0[j], [g[j] for g in grads], **kwargs)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_coupled_and_decoupled_decay_differ():
    # Guards against the two Adam variants silently doing the same thing.
    theta0, grads = initial(), gradients()
    results = []
    for decoupled in (False, True):
        params = make_params(theta0, "numpy")
        run(Adam(params, lr=0.02, weight_decay=0.5, decoupled=decoupled), params, grads, "numpy")
        results.append(host(params)[0])
    assert not np.allclose(results[0], results[1])


@pytest.mark.parametrize("cls,case,kwargs", ALL_CASES, ids=CASE_IDS)
def test_matches_torch(cls, case, kwargs):
    torch = pytest.importorskip("torch")
    theta0, grads = initial(), gradients()
    params = make_params(theta0, "numpy")
    run(cls(params, **kwargs), params, grads, "numpy")

    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in theta0]
    kw = dict(kwargs)
    if cls is SGD:
        reference = torch.optim.SGD(tensors, **kw)
    elif kw.pop("decoupled", False):
        reference = torch.optim.AdamW(tensors, **kw)
    else:
        # torch's AdamW defaults weight_decay to 1e-2; Adam's to 0, like ours.
        reference = torch.optim.Adam(tensors, **kw)
    for step_grads in grads:
        for t, g in zip(tensors, step_grads):
            t.grad = torch.tensor(g, dtype=torch.float64)
        reference.step()
    for got, t in zip(host(params), tensors):
        np.testing.assert_allclose(got, t.detach().numpy(), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- #
# Convergence on a convex quadratic L(θ) = ½ (θ − θ*)ᵀ H (θ − θ*)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "cls,kwargs,steps",
    [
        (SGD, {"lr": 0.1}, 300),
        (SGD, {"lr": 0.05, "momentum": 0.9}, 300),
        (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, 300),
        (Adam, {"lr": 0.05}, 600),
        (Adam, {"lr": 0.05, "weight_decay": 1e-6, "decoupled": True}, 600),
    ],
    ids=["sgd", "momentum", "nesterov", "adam", "adamw"],
)
def test_minimises_convex_quadratic(backend_name, dtype, cls, kwargs, steps):
    rng = np.random.default_rng(3)
    D = 6
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    H_host = Q @ np.diag(np.linspace(1.0, 8.0, D)) @ Q.T  # condition number 8, L = 8
    target_host = rng.standard_normal(D)
    H, target = on(backend_name, H_host.astype(dtype)), on(backend_name, target_host.astype(dtype))

    def loss(theta):
        r = theta - target_host
        return 0.5 * r @ H_host @ r

    p = Parameter(on(backend_name, np.zeros(D, dtype=dtype)))
    opt = cls([p], **kwargs)
    start = loss(np.zeros(D))
    for _ in range(steps):
        opt.zero_grad()
        p.accumulate(H @ (p.data - target))
        opt.step()
    theta = mk.to_numpy(p.data)
    assert theta.dtype == dtype
    assert loss(theta.astype(np.float64)) < 1e-6 * start
    np.testing.assert_allclose(theta, target_host, atol=1e-2)


# --------------------------------------------------------------------------- #
# Mechanics: skipped parameters, zero_grad, in-place updates, dtypes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("cls,case,kwargs", ALL_CASES, ids=CASE_IDS)
def test_grad_none_is_skipped(backend_name, cls, case, kwargs):
    theta0, grads = initial(), gradients(steps=3)
    params = make_params(theta0, backend_name)
    opt = cls(params, **kwargs)
    # Parameter 1 gets no gradient on the first step, then gradients on steps 2 and 3.
    for t, step_grads in enumerate(grads):
        for j, (p, g) in enumerate(zip(params, step_grads)):
            p.grad = None if (j == 1 and t == 0) else on(backend_name, g)
        opt.step()
        if t == 0:
            np.testing.assert_array_equal(mk.to_numpy(params[1].data), theta0[1])
            assert 1 not in opt.state
    reference = reference_sgd if cls is SGD else reference_adam
    # Its two updates are the method's first two (Adam's bias correction uses t = 1, 2).
    want = reference(theta0[1], [g[1] for g in grads[1:]], **kwargs)
    np.testing.assert_allclose(mk.to_numpy(params[1].data), want, rtol=1e-12)
    assert opt.steps == 3


def test_zero_grad_clears(backend_name):
    params = make_params(initial(), backend_name)
    opt = SGD(params, lr=0.1)
    for p, g in zip(params, gradients(steps=1)[0]):
        p.grad = on(backend_name, g)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    before = host(params)
    opt.step()  # nothing to do
    for a, b in zip(before, host(params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls,case,kwargs", ALL_CASES, ids=CASE_IDS)
def test_updates_in_place_and_leaves_grad_alone(backend_name, cls, case, kwargs):
    theta0, grads = initial(), gradients(steps=3)
    params = make_params(theta0, backend_name)
    arrays = [p.data for p in params]
    opt = cls(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = on(backend_name, g)
        opt.step()
        for p, g in zip(params, step_grads):
            np.testing.assert_array_equal(mk.to_numpy(p.grad), g)  # step never writes into grad
    assert [id(p.data) for p in params] == [id(a) for a in arrays]
    assert not np.allclose(mk.to_numpy(arrays[0]), theta0[0])


def test_momentum_buffer_does_not_alias_grad(backend_name):
    # Gradients accumulate in place into p.grad; the buffer must be a copy.
    p = Parameter(on(backend_name, np.zeros(3)))
    opt = SGD([p], lr=1.0, momentum=0.5)
    p.accumulate(on(backend_name, np.ones(3)))
    opt.step()
    p.accumulate(on(backend_name, np.ones(3)))  # p.grad += 1 in place, now 2
    opt.step()
    # θ = −1, then b = 0.5·1 + 2 = 2.5, θ = −3.5
    np.testing.assert_allclose(mk.to_numpy(p.data), -3.5 * np.ones(3), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,case,kwargs", ALL_CASES, ids=CASE_IDS)
def test_state_keeps_parameter_backend_and_dtype(backend_name, dtype, cls, case, kwargs):
    params = make_params(initial(), backend_name, dtype)
    opt = cls(params, **kwargs)
    run(opt, params, gradients(steps=2), backend_name, dtype)
    for p in params:
        assert p.data.dtype == dtype and backend.backend_of(p.data) == backend_name
    for entry in opt.state.values():
        for value in entry.values():
            if backend.is_array(value):
                assert value.dtype == dtype and backend.backend_of(value) == backend_name


def test_grad_with_wrong_shape_raises():
    p = Parameter(np.zeros((2, 3)))
    p.grad = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"params\[0\]\.grad has shape \(3, 2\)"):
        SGD([p], lr=0.1).step()


def test_grad_on_another_backend_raises():
    p = Parameter(on("fakegpu", np.zeros(3)))
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match="different backends"):
        Adam([p]).step()


# --------------------------------------------------------------------------- #
# Checkpoints
# --------------------------------------------------------------------------- #
def _only_host_types(obj):
    if isinstance(obj, dict):
        return all(_only_host_types(k) and _only_host_types(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_only_host_types(v) for v in obj)
    return type(obj) in (np.ndarray, int, float, bool, str, type(None))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,case,kwargs", ALL_CASES, ids=CASE_IDS)
def test_resume_from_state_dict_is_exact(backend_name, dtype, cls, case, kwargs):
    theta0, grads = initial(), gradients(steps=7)
    k = 3
    # Uninterrupted: k + m steps.
    straight = make_params(theta0, backend_name, dtype)
    run(cls(straight, **kwargs), straight, grads, backend_name, dtype)
    # Interrupted after k steps: checkpoint, pickle, a fresh optimizer on copies.
    first = make_params(theta0, backend_name, dtype)
    opt = cls(first, **kwargs)
    run(opt, first, grads[:k], backend_name, dtype)
    saved = opt.state_dict()
    assert _only_host_types(saved)
    assert saved["type"] == cls.__name__ and saved["steps"] == k
    saved = pickle.loads(pickle.dumps(saved))
    resumed = make_params(host(first), backend_name, dtype)
    opt2 = cls(resumed, **kwargs)
    opt2.load_state_dict(saved)
    assert opt2.steps == k and opt2.hyper == opt.hyper
    run(opt2, resumed, grads[k:], backend_name, dtype)
    for a, b in zip(host(straight), host(resumed)):
        np.testing.assert_array_equal(a, b)


def test_state_dict_is_a_copy_both_ways():
    params = make_params(initial(), "numpy")
    opt = Adam(params, lr=0.1)
    run(opt, params, gradients(steps=2), "numpy")
    saved = opt.state_dict()
    snapshot = pickle.loads(pickle.dumps(saved))
    run(opt, params, gradients(steps=2, seed=5), "numpy")  # must not change `saved`
    opt.load_state_dict(saved)
    run(opt, params, gradients(steps=2, seed=6), "numpy")  # must not write into `saved`
    for j, entry in snapshot["state"].items():
        for name, value in entry.items():
            np.testing.assert_array_equal(saved["state"][j][name], value)


def test_load_moves_to_parameter_backend_and_dtype():
    params = make_params(initial(), "numpy", np.float64)
    opt = SGD(params, lr=0.1, momentum=0.9)
    run(opt, params, gradients(steps=2), "numpy")
    target = make_params(initial(), "fakegpu", np.float32)
    opt2 = SGD(target, lr=0.1, momentum=0.9).load_state_dict(opt.state_dict())
    for j, p in enumerate(target):
        buf = opt2.state[j]["momentum_buffer"]
        assert backend.backend_of(buf) == "fakegpu" and buf.dtype == np.float32
        np.testing.assert_allclose(mk.to_numpy(buf), opt.state[j]["momentum_buffer"], rtol=1e-6)


def _trained_sgd():
    params = make_params(initial(), "numpy")
    opt = SGD(params, lr=0.1, momentum=0.9)
    run(opt, params, gradients(steps=2), "numpy")
    return params, opt


@pytest.mark.parametrize(
    "corrupt,message",
    [
        (lambda d: d["state"][0].update(momentum_buffer=np.zeros((2, 2))), r"shape \(2, 2\), expected \(3, 4\)"),
        (lambda d: d.update(type="Adam"), "checkpoint is of a Adam, expected a SGD"),
        (lambda d: d["state"].update({7: d["state"][0]}), "state key 7"),
        (lambda d: d["state"][0].update(exp_avg=np.zeros((3, 4))), "unknown entry 'exp_avg'"),
        (lambda d: d["hyper"].pop("nesterov"), "hyper-parameters"),
        (lambda d: d["hyper"].update(lr=-1.0), "lr must be > 0"),
        (lambda d: d.update(steps=-2), "steps must be an integer"),
        (lambda d: d.pop("state"), "missing keys"),
    ],
    ids=["shape", "type", "key", "name", "hyper-names", "hyper-value", "steps", "missing"],
)
def test_load_rejects_bad_state_and_changes_nothing(corrupt, message):
    _params, opt = _trained_sgd()
    saved = opt.state_dict()
    corrupt(saved)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(saved)
    after = opt.state_dict()
    assert after["hyper"] == before["hyper"] and after["steps"] == before["steps"]
    for j in before["state"]:
        np.testing.assert_array_equal(after["state"][j]["momentum_buffer"], before["state"][j]["momentum_buffer"])


def test_load_rejects_non_array_state():
    _params, opt = _trained_sgd()
    saved = opt.state_dict()
    saved["state"][0]["momentum_buffer"] = "zeros"
    with pytest.raises(TypeError, match="is a str, expected an array"):
        opt.load_state_dict(saved)


def test_load_rejects_adam_state_in_sgd_and_back():
    params, sgd = _trained_sgd()
    adam = Adam(params)
    with pytest.raises(ValueError, match="SGD"):
        adam.load_state_dict(sgd.state_dict())
    with pytest.raises(ValueError, match="Adam"):
        sgd.load_state_dict(adam.state_dict())


# --------------------------------------------------------------------------- #
# Construction and hyper-parameter validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "cls,kwargs,name,value",
    [
        (SGD, {"lr": 0.0}, "lr", 0.0),
        (SGD, {"lr": -0.1}, "lr", -0.1),
        (SGD, {"lr": float("nan")}, "lr", "nan"),
        (SGD, {"lr": float("inf")}, "lr", "inf"),
        (SGD, {"lr": 0.1, "momentum": -0.1}, "momentum", -0.1),
        (SGD, {"lr": 0.1, "momentum": 1.0}, "momentum", 1.0),
        (SGD, {"lr": 0.1, "weight_decay": -1e-4}, "weight_decay", -0.0001),
        (SGD, {"lr": 0.1, "nesterov": True}, "momentum", 0.0),
        (Adam, {"lr": 0.0}, "lr", 0.0),
        (Adam, {"lr": -1e-3}, "lr", -0.001),
        (Adam, {"betas": (1.0, 0.999)}, "betas[0]", 1.0),
        (Adam, {"betas": (0.9, -0.5)}, "betas[1]", -0.5),
        (Adam, {"betas": (0.9,)}, "betas", "(0.9,)"),
        (Adam, {"eps": 0.0}, "eps", 0.0),
        (Adam, {"eps": -1e-8}, "eps", -1e-08),
        (Adam, {"weight_decay": -0.01}, "weight_decay", -0.01),
    ],
)
def test_invalid_hyper_parameter_raises(cls, kwargs, name, value):
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError) as err:
        cls([p], **kwargs)
    message = str(err.value)
    assert name in message and str(value) in message, message


@pytest.mark.parametrize(
    "kwargs,name",
    [({"lr": "0.1"}, "lr"), ({"lr": True}, "lr"), ({"lr": 0.1, "nesterov": 1}, "nesterov")],
)
def test_wrong_hyper_parameter_type_raises(kwargs, name):
    with pytest.raises(TypeError, match=name):
        SGD([Parameter(np.zeros(2))], **kwargs)


def test_hyper_parameters_are_python_values():
    opt = Adam([Parameter(np.zeros(2))], lr=np.float32(0.5), betas=[0.8, 0.9])
    assert type(opt.hyper["lr"]) is float and opt.hyper["betas"] == (0.8, 0.9)
    assert isinstance(opt, Optimizer)


def test_params_are_checked():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\] is a ndarray"):
        SGD([p, np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="one Parameter"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        SGD(3, lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([p, p], lr=0.1)
    assert SGD(iter([p]), lr=0.1).params == [p]  # any iterable, e.g. a generator
