"""Ready-made networks for the command line, tutorials and benchmarks.

Three classifier families, ending in logits for :class:`~minikfac.nn.CrossEntropyLoss`:

- :func:`mlp` — a multilayer perceptron on flat inputs ``(N, D_in)``;
- :func:`martens_grosse` — the deep, narrow tanh MLP 256-20-20-20-20-20-10 of
  Martens & Grosse 2015, small enough for its exact Fisher (P = 7,030);
- :func:`cnn` — a small LeNet-style conv net on images ``(N, C, H, W)``;

and one model trained to reconstruct its input:

- :func:`autoencoder` — the deep sigmoid autoencoder of Martens & Grosse's
  MNIST experiments (smaller by default), ending in logits for
  :class:`~minikfac.nn.BCEWithLogitsLoss` with the pixels as targets.

:func:`build` picks one by name for a :class:`minikfac.data.Dataset`,
:func:`input_is_flat` says which input layout it expects (load the data with
``minikfac.data.load(name, flat=input_is_flat(model))``) and :func:`task`
says what it is trained for: its loss and its targets.

Every layer draws its initial weights from the global host generator of
:mod:`minikfac.nn.init`, so ``mk.nn.init.manual_seed(seed)`` before building
makes a network reproducible, on every backend.
"""

import math
from dataclasses import dataclass

from minikfac import nn

MODELS = ("mlp", "martens-grosse", "cnn", "autoencoder")

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

# The initialiser that keeps activations at a steady scale for each nonlinearity:
# He et al. 2015 for ReLU (half the units are zero), Glorot & Bengio 2010 otherwise.
_DEFAULT_INIT = {"relu": "kaiming", "tanh": "xavier", "sigmoid": "xavier"}


def _activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def _check_positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")


def mlp(in_features, num_classes, hidden=(128,), activation="relu", init=None):
    """A multilayer perceptron ``Linear-act-...-Linear`` producing logits.

    Parameters
    ----------
    in_features : int, D_in (64 for digits, 784 for MNIST, 256 for 16×16 MNIST).
    num_classes : int, C.
    hidden : sequence of int, the widths of the hidden layers (may be empty:
        then the model is multinomial logistic regression).
    activation : "relu", "tanh" or "sigmoid", applied after every hidden layer.
    init : weight initialiser (name or callable, see :mod:`minikfac.nn.init`);
        default "kaiming" for ReLU, "xavier" otherwise. Biases start at zero.

    Shapes, for ``hidden=(H1, H2)``::

        x (N, D_in) -> Linear(D_in, H1) -> act -> Linear(H1, H2) -> act
                    -> Linear(H2, C) -> logits (N, C)

    Returns a :class:`~minikfac.nn.Sequential`.
    """
    _check_positive_int("mlp", "in_features", in_features)
    _check_positive_int("mlp", "num_classes", num_classes)
    hidden = tuple(hidden)
    for width in hidden:
        _check_positive_int("mlp", "hidden width", width)
    act = _activation(activation)
    init = init or _DEFAULT_INIT[activation]
    widths = (in_features,) + hidden
    layers = []
    for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(d_in, d_out, init=init), act()]
    # The output layer feeds a softmax, not a ReLU: Glorot's scale suits it.
    layers.append(nn.Linear(widths[-1], num_classes, init="xavier"))
    return nn.Sequential(*layers)


def martens_grosse(in_features=256, num_classes=10, hidden=(20, 20, 20, 20, 20), activation="tanh", init=None):
    """The network of Martens & Grosse 2015, Figs. 2 and 3: 256-20-20-20-20-20-10, tanh.

    They drew the exact Fisher of this network, partially trained on 16×16
    MNIST (``minikfac.data.load("mnist16")``), next to K-FAC's approximation:
    five hidden layers of 20 tanh units are deep enough for cross-layer
    structure and narrow enough for the dense (P, P) Fisher,

        P = 257·20 + 4·(21·20) + 21·10 = 5,140 + 1,680 + 210 = 7,030.

    ``in_features`` (D_in, 256 for 16×16 images) and ``num_classes`` (C) adapt
    it to other data (64 inputs for the 8×8 digits give P = 3,190).
    ``hidden``, ``activation`` and ``init`` are as in :func:`mlp` (whose
    network this is; the paper's initialisation is not what is studied, so
    Glorot's default stands). Shapes: x (N, D_in) -> logits (N, C).
    """
    return mlp(in_features, num_classes, hidden=hidden, activation=activation, init=init)


def cnn(image_shape, num_classes, channels=(16, 32), hidden=None, activation="relu", init=None):
    """A small conv net: blocks of ``Conv2d(3×3, padding 1)-act-MaxPool2d(2)``, then Linear.

    Parameters
    ----------
    image_shape : (C, H, W) of the inputs, e.g. (1, 8, 8) digits, (1, 28, 28)
        MNIST, (1, 16, 16) down-sampled MNIST. H and W must be at least
        ``2**len(channels)`` so that every pooling step has a full window.
    num_classes : int, the number of classes.
    channels : output channels of the conv blocks (default two blocks, 16 and 32).
    hidden : optional width of a fully connected hidden layer before the output.
    activation, init : as in :func:`mlp` (init applies to every conv and hidden layer).

    Shapes with the defaults (C_in = 1, ⌊·⌋ from the 2×2 pooling)::

        x (N, 1, H, W)
          -> Conv2d(1→16, 3×3, pad 1) -> act   (N, 16, H, W)
          -> MaxPool2d(2)                       (N, 16, H/2, W/2)
          -> Conv2d(16→32, 3×3, pad 1) -> act  (N, 32, H/2, W/2)
          -> MaxPool2d(2)                       (N, 32, H/4, W/4)
          -> Flatten                            (N, 32·⌊H/4⌋·⌊W/4⌋)
          -> Linear(32·⌊H/4⌋·⌊W/4⌋, C)          logits (N, C)

    i.e. 8×8 digits flatten to 32·2·2 = 128 features, 16×16 to 512 and
    28×28 MNIST to 32·7·7 = 1568. Returns a :class:`~minikfac.nn.Sequential`.
    """
    if len(image_shape) != 3:
        raise ValueError(f"cnn: image_shape must be (C, H, W), got {tuple(image_shape)!r}")
    in_channels, height, width = (int(s) for s in image_shape)
    _check_positive_int("cnn", "num_classes", num_classes)
    channels = tuple(channels)
    smallest = 2 ** len(channels)
    if min(height, width) < smallest:
        raise ValueError(
            f"cnn: images of {height}×{width} are too small for {len(channels)} pooling steps; "
            f"need at least {smallest}×{smallest} (or fewer channels=...)")
    act = _activation(activation)
    init = init or _DEFAULT_INIT[activation]

    layers = []
    c_in = in_channels
    for c_out in channels:
        _check_positive_int("cnn", "channels", c_out)
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, init=init), act(), nn.MaxPool2d(2)]
        c_in = c_out
        height, width = height // 2, width // 2
    layers.append(nn.Flatten())
    features = c_in * height * width
    if hidden:
        _check_positive_int("cnn", "hidden", hidden)
        layers += [nn.Linear(features, hidden, init=init), act()]
        features = hidden
    layers.append(nn.Linear(features, num_classes, init="xavier"))
    return nn.Sequential(*layers)


def autoencoder(in_features=784, widths=(200, 100), code=30, activation="sigmoid", init=None):
    """A deep autoencoder: encoder ``in-widths-code``, mirrored decoder ``code-reversed(widths)-in``.

    In their experiments Martens & Grosse 2015 trained Hinton & Salakhutdinov's MNIST
    autoencoder 784-1000-500-250-30-250-500-1000-784: logistic units everywhere
    except the 30 linear units of the code layer, and a Bernoulli output, i.e.
    the loss is :class:`~minikfac.nn.BCEWithLogitsLoss` of the output logits
    with the pixels in [0, 1] as targets. That network has P = 2,837,314
    parameters and its first layer's K-FAC factor A is 785×785; it is
    ``autoencoder(784, widths=(1000, 500, 250), code=30)``.

    The default is the same design at a size that K-FAC trains in a few minutes
    on two CPU cores, 784-200-100-30-100-200-784::

        x (N, 784) -> Linear(784, 200) -> σ -> Linear(200, 100) -> σ
                   -> Linear(100, 30)                  code (N, 30), linear
                   -> Linear(30, 100) -> σ -> Linear(100, 200) -> σ
                   -> Linear(200, 784)                 logits (N, 784)

    P = 785·200 + 201·100 + 101·30 + 31·100 + 101·200 + 201·784
      = 157,000 + 20,100 + 3,030 + 3,100 + 20,200 + 157,584 = 361,014,
    and the largest factors are A = 785×785 (first layer) and G = 784×784 (last).

    Parameters
    ----------
    in_features : int, D_in (784 for MNIST, 256 for 16×16 MNIST, 64 for digits).
    widths : sequence of int, the encoder's hidden widths (the decoder's, reversed).
    code : int, the width of the linear code layer.
    activation : "sigmoid" (the paper's), "tanh" or "relu", after every hidden
        layer but the code layer and the output.
    init : weight initialiser (name or callable); default as in :func:`mlp`
        (Glorot's for sigmoid; the paper's sparse initialisation is not used).

    Returns a :class:`~minikfac.nn.Sequential` mapping x (N, D_in) to logits (N, D_in).
    """
    _check_positive_int("autoencoder", "in_features", in_features)
    _check_positive_int("autoencoder", "code", code)
    widths = tuple(widths)
    for width in widths:
        _check_positive_int("autoencoder", "width", width)
    act = _activation(activation)
    init = init or _DEFAULT_INIT[activation]
    layers = []
    encoder = (in_features,) + widths
    for d_in, d_out in zip(encoder[:-1], encoder[1:], strict=True):
        layers += [nn.Linear(d_in, d_out, init=init), act()]
    # The code layer is linear (no activation) and feeds the decoder directly.
    layers.append(nn.Linear(encoder[-1], code, init="xavier"))
    decoder = (code,) + widths[::-1]
    for d_in, d_out in zip(decoder[:-1], decoder[1:], strict=True):
        layers += [nn.Linear(d_in, d_out, init=init), act()]
    # The output logits feed a sigmoid (in the loss): Glorot's scale suits them.
    layers.append(nn.Linear(decoder[-1], in_features, init="xavier"))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- #
# What each model is trained for
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Task:
    """What a model is trained to do: its loss (a negative log-likelihood) and its targets.

    name : "classification" (labels y (N,) int, scored by accuracy) or
        "reconstruction" (targets = the inputs X (N, D_in), scored by the
        squared reconstruction error).
    loss : the loss class of :mod:`minikfac.nn` (``task.loss()`` makes one).
    targets_are_inputs : True if the targets are the inputs themselves.
    """

    name: str
    loss: type
    targets_are_inputs: bool

    def targets(self, X, y):
        """The training targets for inputs X (N, ...) with labels y (N,): y, or X itself."""
        return X if self.targets_are_inputs else y


CLASSIFICATION = Task("classification", nn.CrossEntropyLoss, targets_are_inputs=False)
RECONSTRUCTION = Task("reconstruction", nn.BCEWithLogitsLoss, targets_are_inputs=True)

# name -> (takes flat inputs, task)
_SPECS = {
    "mlp": (True, CLASSIFICATION),
    "martens-grosse": (True, CLASSIFICATION),
    "cnn": (False, CLASSIFICATION),
    "autoencoder": (True, RECONSTRUCTION),
}


def _spec(name):
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    return _SPECS[name]


def input_is_flat(name):
    """True if model ``name`` takes flat inputs (N, D_in), False if images (N, C, H, W)."""
    return _spec(name)[0]


def task(name):
    """The :class:`Task` of model ``name``: CLASSIFICATION (cross-entropy on the labels) for
    "mlp", "martens-grosse" and "cnn"; RECONSTRUCTION (Bernoulli cross-entropy with the
    inputs as targets) for "autoencoder"."""
    return _spec(name)[1]


def build(name, dataset):
    """The default network ``name`` (one of :data:`MODELS`) for ``dataset``.

    ``dataset`` is a :class:`minikfac.data.Dataset` (or anything with
    ``image_shape`` = (C, H, W) and ``num_classes``). The MLP has two hidden
    ReLU layers of 256 and 128 units on the flattened image (C·H·W inputs);
    "martens-grosse" is :func:`martens_grosse` on the flattened image; the
    CNN is :func:`cnn` with its defaults; "autoencoder" is :func:`autoencoder`
    with its defaults on the flattened image (D_in = C·H·W).
    """
    image_shape = tuple(dataset.image_shape)
    features = math.prod(image_shape)
    if name == "martens-grosse":
        return martens_grosse(features, dataset.num_classes)
    if name == "autoencoder":
        return autoencoder(features)
    if input_is_flat(name):
        return mlp(features, dataset.num_classes, hidden=(256, 128))
    return cnn(image_shape, dataset.num_classes)
