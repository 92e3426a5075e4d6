"""Forward mode: every layer's and network's ``jvp`` against central finite
differences and against ``backward`` (the adjoint identity), stacked tangents,
``None`` tangents, errors, no side effects; the losses' Hessian-vector products
against their dense Hessians — on every backend."""

import numpy as np
import pytest

import minikfac as mk
from minikfac.gradcheck import check_gradient, numerical_jvp, relative_error
from minikfac.nn.conv import im2col
from tests.conftest import on

nn = mk.nn

# (factory, input shape)
CASES = {
    "linear": (lambda: nn.Linear(4, 3), (5, 4)),
    "linear-nobias": (lambda: nn.Linear(4, 3, bias=False), (2, 4)),
    "conv-stride2-pad1": (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 6, 5)),
    "conv-rect-nobias": (lambda: nn.Conv2d(1, 2, (2, 3), stride=(1, 2), bias=False), (2, 1, 5, 7)),
    "relu": (lambda: nn.ReLU(), (3, 5)),
    "tanh": (lambda: nn.Tanh(), (3, 5)),
    "sigmoid": (lambda: nn.Sigmoid(), (2, 3, 4)),
    "identity": (lambda: nn.Identity(), (4, 3)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2, 2)),
    "maxpool-overlap": (lambda: nn.MaxPool2d(3, stride=2), (2, 2, 7, 5)),
    "avgpool": (lambda: nn.AvgPool2d((2, 3), stride=1), (2, 1, 4, 5)),
    "mlp-tanh": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 3)),
                 (6, 4)),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(3, 2, 2), nn.AvgPool2d(2, stride=1), nn.Flatten(), nn.Linear(8, 3)),
            (2, 1, 8, 8)),
}
WITHOUT_CACHE = {"identity"}  # nothing to check before a forward
H = 1e-6  # finite-difference step; kinks must be further than 10 H away


def _input(shape, seed=0):
    """Inputs away from the kinks: |x| >= 0.1 and no ties within pooling windows."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x + 1e-3 * np.arange(x.size).reshape(shape) / x.size


def _layers(net):
    return net.layers if isinstance(net, nn.Sequential) else [net]


def _assert_away_from_kinks(net, x, margin=100 * H):
    """Every ReLU input is further than ``margin`` from 0 and every max-pool
    window's winner beats the runner-up by more than ``margin`` (so that the
    finite differences see a smooth function)."""
    h = x
    for layer in _layers(net):
        host = mk.to_numpy(h)
        if isinstance(layer, nn.ReLU):
            assert np.abs(host).min() > margin
        if isinstance(layer, nn.MaxPool2d):
            n, c = host.shape[:2]
            windows = im2col(host, layer.kernel_size, layer.stride, (0, 0))
            windows = np.sort(windows.reshape(n, -1, c, windows.shape[-1] // c), axis=-1)
            gap, top = windows[..., -1] - windows[..., -2], windows[..., -1]
            # A window of zeros after a ReLU is a tie, but every entry's tangent is 0 there.
            assert np.all((gap > margin) | (top == 0))
        h = layer(h)


def _directions(net, x, backend_name, k=None, seed=1):
    """Random dx and a tangent per parameter, (*shape) or (k, *shape), on the backend."""
    rng = np.random.default_rng(seed)
    lead = () if k is None else (k,)
    dx = on(backend_name, rng.standard_normal(lead + tuple(x.shape)))
    tangents = {p: on(backend_name, rng.standard_normal(lead + p.shape)) for p in net.parameters()}
    return dx, tangents


def _setup(case, backend_name):
    factory, shape = CASES[case]
    net = factory()
    x = on(backend_name, _input(shape))
    _assert_away_from_kinks(net, x)
    return net, x


@pytest.mark.parametrize("case", CASES)
def test_jvp_matches_central_differences(case, backend_name):
    net, x = _setup(case, backend_name)
    dx, tangents = _directions(net, x, backend_name)
    net(x)
    analytic = net.jvp(dx, tangents)
    moves = [(x, dx)] + [(p.data, t) for p, t in tangents.items()]
    numeric = numerical_jvp(lambda: net(x), moves, h=H)
    check_gradient(analytic, numeric, f"jvp of {case}", rtol=1e-7)


@pytest.mark.parametrize("case", ["linear", "conv-stride2-pad1", "mlp-tanh", "cnn"])
@pytest.mark.parametrize("which", ["bias-only", "one-layer"])
def test_jvp_of_some_parameters_matches_central_differences(case, which, backend_name):
    """Tangents for the biases only, or for the last layer's weight only, with dx=None."""
    net, x = _setup(case, backend_name)
    _, tangents = _directions(net, x, backend_name)
    names = dict(net.named_parameters())
    if which == "bias-only":
        kept = [p for name, p in names.items() if name.endswith("bias")]
    else:
        kept = [[p for name, p in names.items() if name.endswith("weight")][-1]]
    tangents = {p: tangents[p] for p in kept}
    net(x)
    analytic = net.jvp(None, tangents)
    numeric = numerical_jvp(lambda: net(x), [(p.data, t) for p, t in tangents.items()], h=H)
    check_gradient(analytic, numeric, f"{which} jvp of {case}", rtol=1e-7)


@pytest.mark.parametrize("case", CASES)
def test_jvp_is_the_adjoint_of_backward(case, backend_name):
    """<u, J v> = <Jᵀu, v>, with Jᵀu from backward (input and parameter gradients)."""
    net, x = _setup(case, backend_name)
    dx, tangents = _directions(net, x, backend_name)
    out = net(x)
    u = on(backend_name, np.random.default_rng(7).standard_normal(out.shape))
    forward = float((u * net.jvp(dx, tangents)).sum())
    net.zero_grad()
    input_grad = net.backward(u, input_grad=True)
    reverse = float((input_grad * dx).sum()) + sum(float((p.grad * t).sum()) for p, t in tangents.items())
    assert abs(forward - reverse) < 1e-10 * max(abs(forward), abs(reverse))


@pytest.mark.parametrize("case", CASES)
def test_stacked_tangents_equal_separate_calls(case, backend_name):
    net, x = _setup(case, backend_name)
    dx, tangents = _directions(net, x, backend_name, k=3)
    net(x)
    stacked = mk.to_numpy(net.jvp(dx, tangents))
    separate = np.stack([mk.to_numpy(net.jvp(dx[i], {p: t[i] for p, t in tangents.items()})) for i in range(3)])
    np.testing.assert_allclose(stacked, separate, rtol=1e-12, atol=1e-12)
    if tangents:  # an unstacked dx broadcasts against stacked parameter tangents, and vice versa
        mixed = mk.to_numpy(net.jvp(dx[0], tangents))
        separate = [mk.to_numpy(net.jvp(dx[0], {p: t[i] for p, t in tangents.items()})) for i in range(3)]
        np.testing.assert_allclose(mixed, np.stack(separate), rtol=1e-12, atol=1e-12)
        mixed = mk.to_numpy(net.jvp(dx, {p: t[0] for p, t in tangents.items()}))
        separate = [mk.to_numpy(net.jvp(dx[i], {p: t[0] for p, t in tangents.items()})) for i in range(3)]
        np.testing.assert_allclose(mixed, np.stack(separate), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_no_tangent_gives_none(case, backend_name):
    net, x = _setup(case, backend_name)
    net(x)
    other = nn.Linear(2, 2)  # a tangent for someone else's parameter is ignored
    assert net.jvp(None) is None
    assert net.jvp(None, {}) is None
    assert net.jvp(None, {other.weight: on(backend_name, np.ones((2, 2)))}) is None


def test_linear_bias_tangent_is_broadcast_over_the_batch(backend_name):
    layer = nn.Linear(3, 2)
    layer(on(backend_name, _input((4, 3))))
    d_bias = np.array([1.5, -2.0])
    np.testing.assert_array_equal(mk.to_numpy(layer.jvp(None, {layer.bias: on(backend_name, d_bias)})),
                                  np.tile(d_bias, (4, 1)))
    stacked = mk.to_numpy(layer.jvp(None, {layer.bias: on(backend_name, np.stack([d_bias, 2 * d_bias]))}))
    np.testing.assert_array_equal(stacked, np.stack([np.tile(d_bias, (4, 1)), np.tile(2 * d_bias, (4, 1))]))


@pytest.mark.parametrize("case", CASES)
def test_jvp_changes_no_cache_gradient_or_parameter(case, backend_name):
    net, x = _setup(case, backend_name)
    out = net(x)
    net.backward(on(backend_name, np.ones(out.shape)))  # non-None .grad and every cache filled
    caches = {(id(m), name): value for m in net.modules() for name, value in vars(m).items()
              if name.startswith("cache_")}
    copies = {key: mk.to_numpy(v).copy() if mk.backend.is_array(v) else v for key, v in caches.items()}
    grads = [(p.grad, mk.to_numpy(p.grad).copy()) for p in net.parameters()]
    params = [(p.data, mk.to_numpy(p.data).copy()) for p in net.parameters()]
    for k in (None, 3):
        dx, tangents = _directions(net, x, backend_name, k=k)
        inputs = [mk.to_numpy(a).copy() for a in [dx, *tangents.values()]]
        net.jvp(dx, tangents)
        for before, a in zip(inputs, [dx, *tangents.values()]):
            np.testing.assert_array_equal(mk.to_numpy(a), before)
    for m in net.modules():
        for name, value in vars(m).items():
            if name.startswith("cache_"):
                assert value is caches[(id(m), name)], name
                np.testing.assert_array_equal(mk.to_numpy(value) if mk.backend.is_array(value) else value,
                                              copies[(id(m), name)])
    for p, (grad, copy) in zip(net.parameters(), grads):
        assert p.grad is grad
        np.testing.assert_array_equal(mk.to_numpy(p.grad), copy)
    for p, (data, copy) in zip(net.parameters(), params):
        assert p.data is data
        np.testing.assert_array_equal(mk.to_numpy(p.data), copy)


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("case", sorted(set(CASES) - WITHOUT_CACHE))
def test_jvp_needs_a_training_forward(case):
    factory, shape = CASES[case]
    net = factory()
    with pytest.raises(RuntimeError, match=r"\.jvp needs the cache.*training mode"):
        net.jvp(None)
    net.eval()
    net(_input(shape))
    with pytest.raises(RuntimeError, match="training mode"):
        net.jvp(np.ones(shape))


def test_wrong_shapes_name_the_layer_the_argument_and_both_shapes(backend_name):
    layer = nn.Linear(4, 3)
    layer(on(backend_name, _input((2, 4))))
    zeros = lambda *shape: on(backend_name, np.zeros(shape))  # noqa: E731
    with pytest.raises(ValueError, match=r"Linear\(4, 3.*weight has shape \(4, 3\), expected \(3, 4\) or \(K, 3, 4\)"):
        layer.jvp(None, {layer.weight: zeros(4, 3)})
    with pytest.raises(ValueError, match=r"bias has shape \(2, 1, 3\), expected \(3,\) or \(K, 3\)"):
        layer.jvp(None, {layer.bias: zeros(2, 1, 3)})
    with pytest.raises(ValueError, match=r"dx has shape \(3, 4\), expected \(2, 4\) or \(K, 2, 4\)"):
        layer.jvp(zeros(3, 4))
    with pytest.raises(TypeError, match="tangents must be None or a dict"):
        layer.jvp(None, [zeros(3, 4)])
    pool = nn.MaxPool2d(2)
    pool(on(backend_name, _input((1, 2, 4, 4))))
    with pytest.raises(ValueError, match=r"MaxPool2d.*dx has shape \(1, 2, 4, 2\)"):
        pool.jvp(zeros(1, 2, 4, 2))


def test_mismatched_stack_counts_raise(backend_name):
    net = CASES["mlp-tanh"][0]()
    x = on(backend_name, _input((6, 4)))
    net(x)
    rng = np.random.default_rng(0)
    first, last = net[0], net[4]
    with pytest.raises(ValueError, match="dx has K=3, weight has K=2"):
        first.jvp(on(backend_name, rng.standard_normal((3, 6, 4))),
                  {first.weight: on(backend_name, rng.standard_normal((2, 5, 4)))})
    with pytest.raises(ValueError, match=r"Linear\(5, 3.*K=3.*K=2"):  # found where the two meet
        net.jvp(None, {first.bias: on(backend_name, rng.standard_normal((3, 5))),
                       last.bias: on(backend_name, rng.standard_normal((2, 3)))})


def test_tangents_on_another_backend_are_refused():
    mk.set_backend("fakegpu")
    layer = nn.Linear(3, 2)
    layer(mk.asarray(_input((2, 3))))
    with pytest.raises(ValueError, match="weight is a numpy array"):
        layer.jvp(None, {layer.weight: np.zeros((2, 3))})
    with pytest.raises(ValueError, match="dx is a numpy array"):
        layer.jvp(np.zeros((2, 3)))


# --------------------------------------------------------------------------- #
# Loss Hessian-vector products
# --------------------------------------------------------------------------- #
LOSSES = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("lead", [(), (2,)])
def test_output_hessian_product_equals_the_dense_hessian(loss, lead, backend_name):
    rng = np.random.default_rng(3)
    out = 3 * rng.standard_normal((5, 4))
    out[0, 0] = 40.0  # saturated sigmoid and softmax: no overflow
    v = rng.standard_normal(lead + (5, 4))
    loss_fn = LOSSES[loss]()
    product = loss_fn.output_hessian_product(on(backend_name, out), on(backend_name, v))
    hessian = mk.to_numpy(loss_fn.output_hessian(on(backend_name, out)))
    expected = np.einsum("nij,...nj->...ni", hessian, v)
    assert tuple(product.shape) == v.shape
    assert relative_error(product, expected) < 1e-14


@pytest.mark.parametrize("loss", LOSSES)
def test_output_hessian_product_leaves_the_caches_and_checks_v(loss, backend_name):
    loss_fn = LOSSES[loss]()
    out = on(backend_name, np.random.default_rng(4).standard_normal((3, 2)))
    y = on(backend_name, np.array([0, 1, 1]) if loss == "ce" else np.array([[0.0, 1.0]] * 3))
    loss_fn(out, y)
    caches = {name: getattr(loss_fn, name) for name in loss_fn.cache_names}
    copies = {name: mk.to_numpy(value).copy() for name, value in caches.items()}
    v = on(backend_name, np.ones((3, 2)))
    product = loss_fn.output_hessian_product(out, v)
    assert product is not v
    for name, value in caches.items():
        assert getattr(loss_fn, name) is value
        np.testing.assert_array_equal(mk.to_numpy(value), copies[name])
    for shape in [(3, 3), (2,), (2, 2, 3, 2)]:
        with pytest.raises(ValueError, match=rf"v has shape {re_shape(shape)}, expected \(3, 2\) or \(K, 3, 2\)"):
            loss_fn.output_hessian_product(out, on(backend_name, np.ones(shape)))


def re_shape(shape):
    """The regular expression matching ``str(shape)``."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")
