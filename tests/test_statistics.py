"""The canonical parameter order (curvature.params) and per-example quantities (curvature.statistics).

The order is checked against indices built by hand from docs/design.md's rule
(vec stacks the columns of W̄ = [W | b]); per-example gradients against the
ordinary backward, one example at a time and for the mean loss.
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac.curvature import statistics, params
from tests.conftest import inputs_and_targets, on

nn = mk.nn


# --------------------------------------------------------------------------- #
# Networks and data
# --------------------------------------------------------------------------- #
NETS = {
    # every activation, a layer without bias, Identity
    "mlp": (lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5, bias=False), nn.Sigmoid(),
                                  nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.Identity()), (4,)),
    # stride and padding, max pooling, Flatten
    "cnn-maxpool": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Flatten(), nn.Linear(6, 3)), (2, 7, 6)),
    # rectangular kernel and stride, no bias, overlapping average pooling, two convolutions
    "cnn-avgpool": (lambda: nn.Sequential(nn.Conv2d(1, 2, (2, 3), stride=(1, 2), bias=False), nn.Sigmoid(),
                                          nn.AvgPool2d(2, stride=1), nn.Conv2d(2, 3, 2, padding=1), nn.Tanh(),
                                          nn.Flatten(), nn.Linear(36, 3)), (1, 5, 7)),
}

LOSSES = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}


def _grad_of_mean_loss(net, loss_fn, X, y):
    net.zero_grad()
    loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    return mk.to_numpy(params.flatten(net, "grad"))


# --------------------------------------------------------------------------- #
# params: the canonical order, by hand
# --------------------------------------------------------------------------- #
def _numbered(layer):
    """Give every parameter entry a distinct value (its position in weight.ravel(), then bias)."""
    layer.weight.data = np.arange(layer.weight.data.size, dtype=float).reshape(layer.weight.shape)
    if layer.bias is not None:
        layer.bias.data = 1000.0 + np.arange(layer.bias.data.size, dtype=float)


def _by_hand(layer):
    """vec(W̄): column by column of the matrix view, the bias column last."""
    weight = layer.weight.data
    d_out = weight.shape[0]
    columns = [[weight[(o,) + index] for o in range(d_out)] for index in np.ndindex(*weight.shape[1:])]
    if layer.bias is not None:
        columns.append(list(layer.bias.data))
    return np.array([value for column in columns for value in column])


@pytest.mark.parametrize("layer", [nn.Linear(3, 2), nn.Linear(2, 3, bias=False), nn.Conv2d(2, 3, (2, 2)),
                                   nn.Conv2d(1, 2, (1, 3), bias=False)], ids=repr)
def test_canonical_order_is_vec_of_the_augmented_matrix(layer):
    _numbered(layer)
    np.testing.assert_array_equal(params.flatten(nn.Sequential(layer)), _by_hand(layer))


def test_canonical_order_on_a_tiny_linear_layer_spelled_out():
    layer = nn.Linear(3, 2)
    layer.weight.data = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    layer.bias.data = np.array([7.0, 8.0])
    np.testing.assert_array_equal(params.flatten(nn.Sequential(layer)), [1, 4, 2, 5, 3, 6, 7, 8])


def test_layers_follow_network_order_and_sizes_add_up():
    net = NETS["cnn-avgpool"][0]()
    layers = params.parametrised_layers(net)
    assert layers == [net[0], net[3], net[6]]
    assert params.layer_sizes(net) == [2 * 6, 3 * (8 + 1), 3 * 37]
    slices = params.layer_slices(net)
    assert [(s.start, s.stop) for s in slices] == [(0, 12), (12, 39), (39, 150)]
    for layer, s in zip(layers, slices):
        _numbered(layer)
    flat = params.flatten(net)
    for layer, s in zip(layers, slices):
        np.testing.assert_array_equal(flat[s], _by_hand(layer))
    assert params.block_shape(net[3]) == (3, 9) and params.block_shape(net[0]) == (2, 6)


def test_flatten_unflatten_assign_round_trip(backend_name):
    net = NETS["cnn-maxpool"][0]()
    flat = params.flatten(net)
    matrices = params.unflatten(net, flat)
    for layer, matrix in zip(params.parametrised_layers(net), matrices):
        np.testing.assert_array_equal(mk.to_numpy(matrix), mk.to_numpy(params.augmented_matrix(layer)))
    new = on(backend_name, np.random.default_rng(0).standard_normal(flat.shape[0]))
    params.assign(net, new)
    np.testing.assert_array_equal(mk.to_numpy(params.flatten(net)), mk.to_numpy(new))
    params.assign(net, 2 * new, which="grad")
    np.testing.assert_array_equal(mk.to_numpy(params.flatten(net, "grad")), 2 * mk.to_numpy(new))
    assert mk.to_numpy(net[0].bias.data)[0] == mk.to_numpy(new)[3 * 19 - 3]  # bias column of W̄ (3, 19)


def test_assign_writes_new_arrays_in_the_parameters_dtype():
    mk.set_default_dtype("float32")
    net = nn.Sequential(nn.Linear(3, 2))
    vector = np.arange(8.0)
    params.assign(net, vector)
    assert net[0].weight.data.dtype == np.float32 and net[0].bias.data.dtype == np.float32
    vector[:] = -1  # the parameters do not share memory with the vector
    np.testing.assert_array_equal(params.flatten(net), np.arange(8.0))


def test_params_errors():
    class Scale(nn.Module):
        def __init__(self):
            self.gain = nn.Parameter(np.ones(3))

    with pytest.raises(TypeError, match="Scale"):
        params.parametrised_layers(nn.Sequential(nn.Linear(3, 3), Scale()))
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        params.parametrised_layers(nn.Sequential(nn.Tanh()))
    shared = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="twice"):
        params.parametrised_layers(nn.Sequential(shared, nn.Tanh(), shared))
    net = nn.Sequential(nn.Linear(3, 2))
    before = params.flatten(net).copy()
    for bad in (np.zeros(7), np.zeros((8, 1)), np.zeros(9)):
        with pytest.raises(ValueError, match=r"expected \(8,\)"):
            params.unflatten(net, bad)
        with pytest.raises(ValueError, match=r"expected \(8,\)"):
            params.assign(net, bad)
    with pytest.raises(TypeError, match="array"):
        params.assign(net, [0.0] * 8)
    with pytest.raises(ValueError, match="which"):
        params.assign(net, np.zeros(8), which="weights")
    with pytest.raises(ValueError, match="which"):
        params.flatten(net, which="weights")
    with pytest.raises(ValueError, match="backward"):
        params.flatten(net, which="grad")
    mk.set_backend("fakegpu")
    gpu_net = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="numpy"):
        params.assign(gpu_net, np.zeros(8))
    np.testing.assert_array_equal(params.flatten(net), before)


# --------------------------------------------------------------------------- #
# statistics: per-example gradients
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", NETS)
def test_per_example_gradients_average_to_the_gradient_of_the_mean_loss(name, loss):
    factory, shape = NETS[name]
    net, loss_fn = factory(), LOSSES[loss]()
    X, y = inputs_and_targets(shape, loss, n=5)
    rows = statistics.per_example_gradients(net, loss_fn, X, y)
    assert rows.shape == (X.shape[0], sum(params.layer_sizes(net)))
    np.testing.assert_allclose(rows.mean(axis=0), _grad_of_mean_loss(net, loss_fn, X, y), rtol=1e-12, atol=1e-14)
    # Row n is the gradient of example n alone (a batch of one: its mean loss is ℓ_n).
    for n in (0, X.shape[0] - 1):
        alone = _grad_of_mean_loss(net, loss_fn, X[n:n + 1], y[n:n + 1])
        np.testing.assert_allclose(rows[n], alone, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NETS)
def test_per_example_gradients_do_not_depend_on_the_chunk_size(name):
    factory, shape = NETS[name]
    net, loss_fn = factory(), nn.CrossEntropyLoss()
    X, y = inputs_and_targets(shape, "ce", n=7)
    reference = statistics.per_example_gradients(net, loss_fn, X, y)
    for chunk_size in (1, 3, 7, 100):
        np.testing.assert_allclose(statistics.per_example_gradients(net, loss_fn, X, y, chunk_size=chunk_size),
                                   reference, rtol=1e-13, atol=1e-15)


def test_per_example_gradients_match_across_backends(backend_name):
    factory, shape = NETS["cnn-maxpool"]
    X, y = inputs_and_targets(shape, "ce", n=5)
    mk.nn.init.manual_seed(0)
    reference = statistics.per_example_gradients(factory().to("numpy"), nn.CrossEntropyLoss(), X, y)
    mk.nn.init.manual_seed(0)
    rows = statistics.per_example_gradients(factory(), nn.CrossEntropyLoss(), on(backend_name, X), on(backend_name, y))
    assert mk.backend.backend_of(rows) == backend_name
    np.testing.assert_allclose(mk.to_numpy(rows), reference, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["mlp", "cnn-avgpool"])
def test_layer_gradients_are_outer_products_summed_over_positions(name):
    factory, shape = NETS[name]
    net = factory()
    X, y = inputs_and_targets(shape, "mse", n=3)
    chunk = next(statistics.chunks(net, nn.MSELoss(), X, y, kind="true"))
    for stats in chunk.layers:
        a, g = stats.inputs, stats.grads
        rows = statistics.layer_gradients(stats)
        k, n = g.shape[:2]
        a = a if a.ndim == 3 else a[:, None, :]  # Linear: one position
        g = g if g.ndim == 4 else g[:, :, None, :]
        for kk in range(k):
            for nn_ in range(n):
                gradient_of_w_bar = g[kk, nn_].T @ a[nn_]  # (D_out, D_in + 1): Σ_l g_l ā_lᵀ
                np.testing.assert_allclose(rows[kk, nn_], gradient_of_w_bar.T.reshape(-1), rtol=1e-13, atol=1e-15)
        out = np.full((k, n, 2 * rows.shape[2]), np.nan)[:, :, ::2]  # a strided view, like a buffer's columns
        assert statistics.layer_gradients(stats, out=out) is out
        np.testing.assert_array_equal(out, rows)
        with pytest.raises(ValueError, match="out has shape"):
            statistics.layer_gradients(stats, out=np.zeros((k, n, rows.shape[2] + 1)))


# --------------------------------------------------------------------------- #
# statistics: chunks
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind, samples, expected_k", [("true", 1, 3), ("ggn", 1, 3), ("mc", 4, 4),
                                                       ("empirical", 1, 1)])
def test_chunk_shapes(kind, samples, expected_k):
    factory, shape = NETS["cnn-maxpool"]
    net = factory()
    X, y = inputs_and_targets(shape, "ce", n=5)
    chunks = list(statistics.chunks(net, nn.CrossEntropyLoss(), X, y, kind=kind, samples=samples, chunk_size=2))
    assert [(c.start, c.stop) for c in chunks] == [(0, 2), (2, 4), (4, 5)]
    conv, linear = chunks[0].layers
    assert conv.layer is net[0] and linear.layer is net[4]
    assert conv.inputs.shape == (2, 4 * 3, 2 * 9 + 1) and conv.grads.shape == (expected_k, 2, 4 * 3, 3)
    assert linear.inputs.shape == (2, 7) and linear.grads.shape == (expected_k, 2, 3)
    np.testing.assert_array_equal(linear.inputs[:, -1], 1.0)
    assert (chunks[0].output_hessian.shape == (2, 3, 3)) if kind == "ggn" else chunks[0].output_hessian is None


def _prepared_net():
    """A net with gradients already held by the caller and mixed training modes."""
    factory, shape = NETS["cnn-maxpool"]
    net = factory()
    X, y = inputs_and_targets(shape, "ce", n=5)
    _grad_of_mean_loss(net, nn.CrossEntropyLoss(), X, y)
    held = [p.grad for p in net.parameters()]
    values = [g.copy() for g in held]
    net.eval()
    net[1].training = True
    return net, X, y, held, values


def _assert_restored(net, held, values):
    for p, array, value in zip(net.parameters(), held, values):
        assert p.grad is array
        np.testing.assert_array_equal(p.grad, value)  # not even written to in place
    assert [m.training for m in net.modules()] == [False, False, True, False, False, False]
    for module in net.modules():
        for name, cached in vars(module).items():
            assert not name.startswith("cache_") or cached is None, (module, name)


@pytest.mark.parametrize("kind", statistics.KINDS)
def test_chunks_restore_grads_and_modes_and_clear_caches(kind):
    net, X, y, held, values = _prepared_net()
    for chunk in statistics.chunks(net, nn.CrossEntropyLoss(), X, y, kind=kind, samples=2, chunk_size=2):
        assert all(m.training for m in net.modules())
    _assert_restored(net, held, values)


def test_chunks_restore_everything_when_the_consumer_stops_early():
    net, X, y, held, values = _prepared_net()
    generator = statistics.chunks(net, nn.CrossEntropyLoss(), X, y, chunk_size=1)
    next(generator)
    generator.close()
    _assert_restored(net, held, values)
    for _ in statistics.chunks(net, nn.CrossEntropyLoss(), X, y, chunk_size=1):
        break  # the loop drops the generator, which closes it
    _assert_restored(net, held, values)


def test_chunks_check_their_arguments_at_once():
    net = NETS["mlp"][0]()
    X, y = inputs_and_targets((4,), "ce", n=5)
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="needs the data labels"):
        statistics.chunks(net, loss_fn, X, kind="empirical")
    with pytest.raises(ValueError, match="needs the data labels"):
        statistics.per_example_gradients(net, loss_fn, X, None)
    with pytest.raises(ValueError, match=r"N = 5 rows"):
        statistics.chunks(net, loss_fn, X, y[:3], kind="empirical")
    with pytest.raises(ValueError, match="kind must be one of"):
        statistics.chunks(net, loss_fn, X, y, kind="fisher")
    for samples in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="samples must be a positive int"):
            statistics.chunks(net, loss_fn, X, kind="mc", samples=samples)
    for chunk_size in (0, -2, 2.5, True, "4"):
        with pytest.raises(ValueError, match="chunk_size must be a positive int"):
            statistics.chunks(net, loss_fn, X, chunk_size=chunk_size)
    for bad in (X[0], [[1.0] * 4], X[:0]):
        with pytest.raises(ValueError, match=r"X must be an array of shape \(N, ...\)"):
            statistics.chunks(net, loss_fn, bad)
    assert all(p.grad is None for p in net.parameters())  # nothing ran


def test_monte_carlo_cotangents_are_sampled_gradients_scaled_by_root_k():
    net = NETS["mlp"][0]()
    X, _ = inputs_and_targets((4,), "ce", n=5)
    loss_fn = nn.CrossEntropyLoss()
    out = net(X)
    stacked = statistics.cotangents(loss_fn, out, "mc", samples=3, rng=np.random.default_rng(5))
    rng = np.random.default_rng(5)
    expected = [loss_fn.per_example_gradient(out, loss_fn.sample_targets(out, rng)) for _ in range(3)]
    np.testing.assert_allclose(stacked, np.stack(expected) / np.sqrt(3), rtol=1e-15)
