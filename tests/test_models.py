"""The ready-made models: shapes, parameter counts, what each is trained for."""

import numpy as np
import pytest

import minikfac as mk
from minikfac import data, models, training


def _linear_widths(net):
    return [(layer.in_features, layer.out_features) for layer in net if isinstance(layer, mk.nn.Linear)]


@pytest.mark.parametrize("side", [8, 16, 28])
def test_cnn_shapes_follow_the_docstring(side):
    net = models.cnn((1, side, side), 10)
    linear = net[-1]
    assert linear.in_features == 32 * (side // 4) ** 2
    out = net(np.random.default_rng(0).random((3, 1, side, side)))
    assert out.shape == (3, 10)


def test_mlp_shapes_and_errors():
    net = models.mlp(6, 4, hidden=(5, 3), activation="tanh")
    assert _linear_widths(net) == [(6, 5), (5, 3), (3, 4)]
    assert models.mlp(6, 4, hidden=())(np.ones((2, 6))).shape == (2, 4)
    with pytest.raises(ValueError, match="activation"):
        models.mlp(6, 4, activation="gelu")
    with pytest.raises(ValueError, match="too small"):
        models.cnn((1, 3, 3), 10)
    with pytest.raises(ValueError, match="model must be one of"):
        models.input_is_flat("resnet")


# --------------------------------------------------------------------------- #
# The autoencoder
# --------------------------------------------------------------------------- #
def test_autoencoder_shapes_and_parameter_count_follow_the_docstring():
    net = models.autoencoder()
    widths = _linear_widths(net)
    assert widths == [(784, 200), (200, 100), (100, 30), (30, 100), (100, 200), (200, 784)]
    assert training.num_parameters(net) == sum((d_in + 1) * d_out for d_in, d_out in widths) == 361_014
    # Logistic units after every hidden layer, none after the code layer and the output.
    kinds = [type(layer).__name__ for layer in net]
    assert kinds == ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear",
                     "Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]
    assert net(np.random.default_rng(0).random((3, 784))).shape == (3, 784)
    # Martens & Grosse's full size stays reachable.
    full = models.autoencoder(784, widths=(1000, 500, 250), code=30)
    assert _linear_widths(full)[4] == (30, 250) and training.num_parameters(full) == 2_837_314


def test_autoencoder_takes_its_size_from_the_data_and_checks_its_arguments():
    net = models.build("autoencoder", data.load("digits"))
    assert _linear_widths(net)[0] == (64, 200) and _linear_widths(net)[-1] == (200, 64)
    assert models.input_is_flat("autoencoder")
    with pytest.raises(ValueError, match="code must be a positive int, got 0"):
        models.autoencoder(code=0)
    with pytest.raises(ValueError, match="width must be a positive int"):
        models.autoencoder(widths=(10, -1))


def test_each_model_says_its_loss_and_targets():
    X, y = np.ones((2, 3)), np.array([0, 1])
    for name in ("mlp", "martens-grosse", "cnn"):
        assert models.task(name) is models.CLASSIFICATION
    assert isinstance(models.CLASSIFICATION.loss(), mk.nn.CrossEntropyLoss)
    assert models.CLASSIFICATION.targets(X, y) is y
    reconstruction = models.task("autoencoder")
    assert isinstance(reconstruction.loss(), mk.nn.BCEWithLogitsLoss)
    assert reconstruction.targets(X, y) is X  # the same array, no copy
    with pytest.raises(ValueError, match="model must be one of"):
        models.task("resnet")


def test_autoencoder_learns_to_reconstruct_mnist_with_adam():
    images = data.load("mnist", dtype="float64").X_train[::20][:200]  # every class (the file is sorted by class)
    net = models.autoencoder()
    loss_fn = models.task("autoencoder").loss()
    before = training.evaluate(net, loss_fn, images, images)
    optimizer = training.make_optimizer("adam", net)
    loader = data.DataLoader(images, images, 50, seed=0)
    history = training.train(net, loss_fn, optimizer, loader, 2, progress=False, log=None)
    after = training.evaluate(net, loss_fn, images, images)
    assert len(history) == 8
    assert after["loss"] < 0.8 * before["loss"] and after["squared_error"] < before["squared_error"]
    assert after["accuracy"] is None
