"""Layers: finite-difference gradients, forward against naive references, caches,
stacked cotangents, accumulation, state, errors — on every backend."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minikfac as mk
from minikfac import backend
from minikfac.backend import to_numpy
from minikfac.gradcheck import check_module
from tests.conftest import on

nn = mk.nn

# (factory, input shape): batch 1, odd sizes, stride 2, padding, non-square kernels.
LAYER_CASES = {
    "linear": (lambda: nn.Linear(4, 3), (5, 4)),
    "linear-batch1-nobias": (lambda: nn.Linear(7, 2, bias=False), (1, 7)),
    "conv": (lambda: nn.Conv2d(2, 3, 3), (2, 2, 5, 5)),
    "conv-stride2-pad1": (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), (3, 2, 7, 6)),
    "conv-rect-batch1-nobias": (lambda: nn.Conv2d(1, 2, (2, 3), stride=(1, 2), bias=False), (1, 1, 5, 7)),
    "maxpool": (lambda: nn.MaxPool2d(2), (2, 3, 4, 6)),
    "maxpool-overlap-odd": (lambda: nn.MaxPool2d(3, stride=2), (2, 2, 7, 5)),
    "avgpool": (lambda: nn.AvgPool2d(2), (1, 2, 5, 4)),
    "avgpool-overlap": (lambda: nn.AvgPool2d((2, 3), stride=1), (2, 1, 4, 5)),
    "relu": (lambda: nn.ReLU(), (3, 5)),
    "tanh": (lambda: nn.Tanh(), (3, 5)),
    "sigmoid": (lambda: nn.Sigmoid(), (2, 3, 4)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2, 2)),
    "identity": (lambda: nn.Identity(), (4, 3)),
    "sequential-cnn": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                                            nn.Flatten(), nn.Linear(8, 3)), (2, 1, 4, 4)),
}


def _input(shape, seed=0):
    """Inputs away from the kinks: |x| >= 0.1 and no ties within pooling windows."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x + 1e-3 * np.arange(x.size).reshape(shape) / x.size  # break ties


@pytest.mark.parametrize("case", LAYER_CASES)
def test_gradients_match_finite_differences(case, backend_name):
    factory, shape = LAYER_CASES[case]
    layer = factory()
    errors = check_module(layer, on(backend_name, _input(shape)))
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("case", LAYER_CASES)
def test_backward_never_mutates_dout_and_accumulates(case, backend_name):
    factory, shape = LAYER_CASES[case]
    layer = factory()
    x = on(backend_name, _input(shape))
    out = layer(x)
    dout = on(backend_name, np.random.default_rng(1).standard_normal(out.shape))
    before = mk.to_numpy(dout).copy()
    dx1 = mk.to_numpy(layer.backward(dout, input_grad=True)).copy()
    np.testing.assert_array_equal(mk.to_numpy(dout), before)
    first = [mk.to_numpy(p.grad).copy() for p in layer.parameters()]
    dx2 = mk.to_numpy(layer.backward(dout, input_grad=True))
    np.testing.assert_array_equal(dx1, dx2)
    for g1, p in zip(first, layer.parameters()):
        np.testing.assert_allclose(mk.to_numpy(p.grad), 2 * g1, rtol=1e-14, atol=1e-14)
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())


@pytest.mark.parametrize("case", LAYER_CASES)
def test_backward_without_input_grad_gives_the_same_parameter_grads(case, backend_name):
    factory, shape = LAYER_CASES[case]
    layer = factory()
    x = on(backend_name, _input(shape))
    dout = on(backend_name, np.random.default_rng(1).standard_normal(layer(x).shape))
    layer.backward(dout, input_grad=True)
    full = [mk.to_numpy(p.grad).copy() for p in layer.parameters()]
    layer.zero_grad()
    assert layer.backward(dout, input_grad=False) is None
    for g, p in zip(full, layer.parameters()):
        np.testing.assert_array_equal(mk.to_numpy(p.grad), g)


def test_sequential_backward_skips_the_data_gradient_unless_asked(backend_name):
    """A network's backward defaults to input_grad=False (None); input_grad=True chains the layers' dL/dX."""
    factory, shape = LAYER_CASES["sequential-cnn"]
    net = factory()
    x = on(backend_name, _input(shape))
    dout = on(backend_name, np.random.default_rng(1).standard_normal(net(x).shape))
    assert net.backward(dout) is None
    skipped = [mk.to_numpy(p.grad).copy() for p in net.parameters()]
    net.zero_grad()
    dx = net.backward(dout, input_grad=True)
    chained = dout
    for layer in reversed(list(net)):
        chained = layer.backward(chained)  # a single layer's default: input_grad=True
    np.testing.assert_allclose(mk.to_numpy(dx), mk.to_numpy(chained), rtol=1e-14, atol=1e-14)
    for g, p in zip(skipped, net.parameters()):
        np.testing.assert_allclose(mk.to_numpy(p.grad), 2 * g, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_stacked_cotangents_equal_separate_backwards(case, backend_name):
    """backward((K, *out_shape)) = the K backwards stacked; parameter grads summed."""
    factory, shape = LAYER_CASES[case]
    layer = factory()
    x = on(backend_name, _input(shape))
    out = layer(x)
    k = 3
    douts = np.random.default_rng(2).standard_normal((k,) + tuple(out.shape))
    separate, grads = [], [np.zeros(p.shape) for p in layer.parameters()]
    for i in range(k):
        layer.zero_grad()
        separate.append(mk.to_numpy(layer.backward(on(backend_name, douts[i]), input_grad=True)))
        grads = [g + mk.to_numpy(p.grad) for g, p in zip(grads, layer.parameters())]
    layer.zero_grad()
    stacked = mk.to_numpy(layer.backward(on(backend_name, douts), input_grad=True))
    np.testing.assert_allclose(stacked, np.stack(separate), rtol=1e-12, atol=1e-12)
    for g, p in zip(grads, layer.parameters()):
        np.testing.assert_allclose(mk.to_numpy(p.grad), g, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- #
# Forward values against naive, obviously-correct references (on the host)
# --------------------------------------------------------------------------- #
def naive_conv(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (wd + 2 * padding[1] - kw) // stride[1] + 1
    out = np.zeros((n, co, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp_[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out + (0 if b is None else b[None, :, None, None])


def naive_pool(x, kernel, stride, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[:, :, i * stride[0]:i * stride[0] + kernel[0], j * stride[1]:j * stride[1] + kernel[1]]
            out[:, :, i, j] = reduce(window, axis=(2, 3))
    return out


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
       h=st.integers(3, 8), w=st.integers(3, 8), kh=st.integers(1, 3), kw=st.integers(1, 3),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       bias=st.booleans())
def test_conv_forward_matches_naive_loops(n, c_in, c_out, h, w, kh, kw, sh, sw, ph, pw, bias):
    layer = nn.Conv2d(c_in, c_out, (kh, kw), stride=(sh, sw), padding=(ph, pw), bias=bias)
    if bias:
        layer.bias.data[...] = np.random.default_rng(3).standard_normal(c_out)
    x = np.random.default_rng(4).standard_normal((n, c_in, h, w))
    expected = naive_conv(x, layer.weight.data, layer.bias.data if bias else None, (sh, sw), (ph, pw))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 9), w=st.integers(2, 9), kh=st.integers(1, 3), kw=st.integers(1, 3),
       sh=st.integers(1, 3), sw=st.integers(1, 3))
def test_pool_forward_matches_naive_loops(h, w, kh, kw, sh, sw):
    kh, kw = min(kh, h), min(kw, w)
    x = np.random.default_rng(5).standard_normal((2, 3, h, w))
    np.testing.assert_array_equal(nn.MaxPool2d((kh, kw), (sh, sw))(x), naive_pool(x, (kh, kw), (sh, sw), np.max))
    np.testing.assert_allclose(nn.AvgPool2d((kh, kw), (sh, sw))(x), naive_pool(x, (kh, kw), (sh, sw), np.mean),
                               rtol=1e-12)


def test_linear_forward_is_W_a_plus_b():
    layer = nn.Linear(3, 2)
    layer.bias.data[...] = [0.5, -1.0]
    a = np.random.default_rng(6).standard_normal((4, 3))
    expected = np.stack([layer.weight.data @ row + layer.bias.data for row in a])
    np.testing.assert_allclose(layer(a), expected, rtol=1e-14)


def test_maxpool_gradient_goes_to_the_first_winner_on_ties():
    x = np.ones((1, 1, 2, 2))
    pool = nn.MaxPool2d(2)
    pool(x)
    dx = pool.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx, [[[[1.0, 0.0], [0.0, 0.0]]]])


def test_activations_match_their_definitions():
    x = np.linspace(-30, 30, 13)[None, :]
    np.testing.assert_allclose(nn.Sigmoid()(x), 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(nn.Tanh()(x), np.tanh(x), rtol=1e-14)
    np.testing.assert_array_equal(nn.ReLU()(x), np.where(x > 0, x, 0.0))
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow inside
        assert np.all(np.isfinite(nn.Sigmoid()(np.array([[-1000.0, 1000.0]]))))


# --------------------------------------------------------------------------- #
# Caches, modes, structure, state
# --------------------------------------------------------------------------- #
def test_parameter_layers_keep_input_and_output_gradient():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    x = _input((4, 1, 4, 4))
    out = net(x)
    dout = np.ones_like(out)
    net.backward(dout)
    conv, linear = net[0], net[3]
    assert conv.cache_input.shape == (4, 2 * 2, 1 * 3 * 3)  # (N, L, C_in·KH·KW)
    assert conv.cache_grad_output.shape == (4, 2, 2, 2)
    assert linear.cache_input.shape == (4, 8)
    assert linear.cache_grad_output is dout
    # dW is the sum over examples of g aᵀ (Linear) and over positions too (Conv2d).
    g, a = linear.cache_grad_output, linear.cache_input
    np.testing.assert_allclose(linear.weight.grad, np.einsum("ni,nj->ij", g, a), rtol=1e-12)
    gc = conv.cache_grad_output.reshape(4, 2, 4).transpose(0, 2, 1)  # (N, L, C_out)
    np.testing.assert_allclose(conv.weight.grad.reshape(2, -1), np.einsum("nlo,nlp->op", gc, conv.cache_input),
                               rtol=1e-12)


def test_eval_mode_keeps_no_cache_and_refuses_backward():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    net.eval()
    out = net(np.ones((2, 3)))
    assert all(getattr(m, name) is None for m in net.modules() for name in vars(m) if name.startswith("cache_"))
    with pytest.raises(RuntimeError, match="training mode"):
        net.backward(np.ones_like(out))
    net.train()
    net(np.ones((2, 3)))
    net.backward(np.ones_like(out))


def test_mode_block_sets_every_module_and_restores_each_ones_own_mode():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    net[1].eval()  # a mixed network: the block must give each module back its own mode
    before = [m.training for m in net.modules()]
    with net.mode(training=False):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before
    with pytest.raises(ValueError, match="inside"):
        with net.mode(training=True):
            assert all(m.training for m in net.modules())
            raise ValueError("inside")
    assert [m.training for m in net.modules()] == before


def test_parameters_in_network_order_weight_before_bias():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, bias=False), nn.Conv2d(1, 1, 1))
    names = [name for name, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "3.weight", "3.bias"]
    assert [p.shape for p in net.parameters()] == [(4, 3), (4,), (2, 4), (1, 1, 1, 1), (1,)]


def test_state_dict_round_trip_and_errors(backend_name):
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    state = net.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    other = nn.Sequential(nn.Linear(3, 4, rng=1), nn.Tanh(), nn.Linear(4, 2, rng=2))
    x = on(backend_name, _input((5, 3)))
    assert not np.allclose(mk.to_numpy(other(x)), mk.to_numpy(net(x)))
    other.load_state_dict(state)
    np.testing.assert_array_equal(mk.to_numpy(other(x)), mk.to_numpy(net(x)))
    assert backend.backend_of(other[0].weight.data) == backend_name
    state["0.weight"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"0.weight has shape \(3, 4\), expected \(4, 3\)"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        other.load_state_dict({"0.weight": np.zeros((4, 3))})


def test_to_moves_parameters_and_gives_identical_results():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    x = _input((3, 1, 4, 4))
    expected = net(x)
    net.backward(np.ones_like(expected))
    grads = [p.grad.copy() for p in net.parameters()]
    net.to("fakegpu")
    assert all(backend.backend_of(p.data) == "fakegpu" for p in net.parameters())
    assert net[0].cache_input is None  # caches were dropped, not left on the old backend
    net.zero_grad()
    out = net(backend.asarray(x, backend="fakegpu"))
    net.backward(backend.asarray(np.ones_like(expected), backend="fakegpu"))
    np.testing.assert_array_equal(mk.to_numpy(out), expected)
    for g, p in zip(grads, net.parameters()):
        np.testing.assert_array_equal(mk.to_numpy(p.grad), g)
    net.to("numpy")
    np.testing.assert_array_equal(net(x), expected)


def test_float32_stays_float32():
    mk.set_default_dtype("float32")
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    x = _input((2, 1, 6, 6)).astype(np.float32)
    out = net(x)
    dx = net.backward(np.ones_like(out), input_grad=True)
    assert out.dtype == dx.dtype == np.float32
    assert all(p.data.dtype == p.grad.dtype == np.float32 for p in net.parameters())


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_shape_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Linear\(4, 3.*input has shape \(2, 5\), expected \(N, 4\)"):
        nn.Linear(4, 3)(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"Conv2d\(2, 3.*input has shape \(1, 3, 5, 5\), expected \(N, 2, H, W\)"):
        nn.Conv2d(2, 3, 3)(np.ones((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        nn.Conv2d(1, 1, 5)(np.ones((1, 1, 3, 3)))
    layer = nn.Linear(4, 3)
    layer(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 4\), expected \(2, 3\)"):
        layer.backward(np.ones((2, 4)))
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        nn.Conv2d(1, 1, (1, 2, 3))


def test_mixed_backends_are_refused_with_both_named():
    layer = nn.Linear(4, 3).to("fakegpu")
    with pytest.raises(ValueError, match=r"input is a numpy array .* weight is a fakegpu array"):
        layer(np.ones((2, 4)))


# --------------------------------------------------------------------------- #
# Initialisers
# --------------------------------------------------------------------------- #
def test_initialisers_have_their_defining_properties():
    w = nn.Linear(50, 20, init="orthogonal").weight.data  # rows orthonormal
    np.testing.assert_allclose(w @ w.T, np.eye(20), atol=1e-12)
    w = nn.Linear(10, 30, init="orthogonal").weight.data  # columns orthonormal
    np.testing.assert_allclose(w.T @ w, np.eye(10), atol=1e-12)
    w = nn.Conv2d(3, 4, 3, init="orthogonal").weight.data.reshape(4, -1)
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)
    w = nn.Linear(100, 40, init="sparse").weight.data
    assert np.all((w != 0).sum(axis=1) == 15)
    w = nn.Linear(400, 300, init="xavier").weight.data
    bound = np.sqrt(6 / 700)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=0.02)
    w = nn.Linear(400, 300, init="kaiming").weight.data
    np.testing.assert_allclose(w.std(), np.sqrt(2 / 400), rtol=0.02)
    assert np.all(nn.Linear(3, 2).bias.data == 0)
    with pytest.raises(ValueError, match="init must be a callable or one of"):
        nn.Linear(3, 2, init="glorious")


def test_initialisation_is_seeded_and_identical_on_every_backend(backend_name):
    mk.nn.init.manual_seed(7)
    a = mk.to_numpy(nn.Linear(5, 4).weight.data)
    mk.nn.init.manual_seed(7)
    b = mk.to_numpy(nn.Linear(5, 4).weight.data)
    backend.set_backend("numpy")
    mk.nn.init.manual_seed(7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, nn.Linear(5, 4).weight.data)
    np.testing.assert_array_equal(nn.Linear(5, 4, rng=3).weight.data, nn.Linear(5, 4, rng=3).weight.data)


@pytest.mark.parametrize("stacked", [False, True])
def test_no_parameter_grads_leaves_grad_alone_and_keeps_the_rest(backend_name, stacked):
    """Inside nn.no_parameter_grads(): the same input gradient and cached g, no .grad touched; restored after."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(32, 3))
    net.to(backend_name)
    x = on(backend_name, _input((2, 1, 4, 4)))
    out = net(x)
    dout = np.random.default_rng(3).standard_normal(((2,) if stacked else ()) + tuple(out.shape))
    dout = on(backend_name, dout)
    dx = net.backward(dout, input_grad=True)
    want = [(to_numpy(p.grad).copy(), to_numpy(layer.cache_grad_output).copy())
            for layer in (net[0], net[3]) for p in layer.parameters()]
    net.zero_grad()
    with nn.no_parameter_grads():
        assert not nn.module.parameter_grads_enabled()
        dx_without = net.backward(dout, input_grad=True)
    assert nn.module.parameter_grads_enabled()
    assert all(p.grad is None for p in net.parameters())
    np.testing.assert_allclose(to_numpy(dx_without), to_numpy(dx), rtol=1e-14)
    got = [to_numpy(layer.cache_grad_output) for layer in (net[0], net[3]) for _ in layer.parameters()]
    for (_, g_want), g_got in zip(want, got):
        np.testing.assert_array_equal(g_got, g_want)
    net.backward(dout)  # and outside the block the gradients are back
    for p, (grad, _) in zip([p for layer in (net[0], net[3]) for p in layer.parameters()], want):
        np.testing.assert_allclose(to_numpy(p.grad), grad, rtol=1e-14)


def test_no_parameter_grads_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with nn.no_parameter_grads():
            raise RuntimeError("inside")
    assert nn.module.parameter_grads_enabled()
