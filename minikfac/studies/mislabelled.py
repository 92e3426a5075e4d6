"""Finding mislabelled training examples by self-influence, and how the structures agree on influence.

Two measurements over :mod:`minikfac.influence`:

- :func:`damping_sweep`: Spearman's rank correlation between the influences
  of each structure (K-FAC, EK-FAC, the exact blocks, the diagonal) and
  those of the exact GGN, for a range of damping λ (Grosse et al. 2023,
  §5.1 compare EK-FAC with their reference the same way);
- the label-flip experiment (Koh & Liang 2017, §5.4): flip the labels of a
  fraction of the training set (:func:`flip_labels`), train on it
  (:func:`train_with_flipped_labels`), rank the training examples by a score
  — self-influence in each structure, or the training loss — and check them
  from the top (:func:`detection_curve`, :func:`label_flip_study`).

Host NumPy arrays come out (the scores are small: one number per example).
"""

from dataclasses import dataclass, field

import numpy as np

from minikfac import backend, data, influence, models, nn, training
from minikfac.curvature.statistics import per_example_gradients
from minikfac.curvature.structures import approximate, check_structure

#: Scores of the label-flip study: a structure's self-influence, or the training loss.
LOSS = "training loss"


# --------------------------------------------------------------------------- #
# The data and the net
# --------------------------------------------------------------------------- #
def flip_labels(y, fraction, num_classes, seed=0):
    """Labels with ``round(fraction·N)`` of them changed to another class, chosen at random.

    y : (N,) integer labels in [0, num_classes). fraction : in [0, 1).
    Returns (y_noisy (N,) int64, flipped (N,) bool): each flipped label is
    y + k mod C with k uniform in 1..C−1, so it is never the true one.
    """
    y = np.asarray(backend.to_numpy(y))
    if y.ndim != 1 or np.dtype(y.dtype).kind not in "iu":
        raise ValueError(f"flip_labels: y must be (N,) integer labels, got shape {y.shape} and dtype {y.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"flip_labels: num_classes must be an int >= 2, got {num_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"flip_labels: labels must be in [0, {num_classes}), got {y.min()} .. {y.max()}")
    if not 0 <= fraction < 1:
        raise ValueError(f"flip_labels: fraction must be in [0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    rows = rng.choice(y.size, size=int(round(fraction * y.size)), replace=False)
    flipped = np.zeros(y.size, dtype=bool)
    flipped[rows] = True
    y_noisy = y.astype(np.int64)
    y_noisy[rows] = (y_noisy[rows] + rng.integers(1, num_classes, size=rows.size)) % num_classes
    return y_noisy, flipped


def train_with_flipped_labels(dataset="digits", fraction=0.05, hidden=(32,), epochs=30, batch_size=32, lr=None,
                              seed=0):
    """Train ``models.mlp`` with Adam on a training set with flipped labels (float64).

    Returns (net, loss_fn, X_train (N, D), y_noisy (N,), flipped (N,) bool, the
    :class:`~minikfac.data.Dataset`). ``lr=None`` is Adam's default of
    :data:`minikfac.training.DEFAULT_LR`.
    """
    ds = data.load(dataset, dtype="float64")
    y_noisy, flipped = flip_labels(ds.y_train, fraction, ds.num_classes, seed)
    nn.init.manual_seed(seed)
    with backend.using("numpy", "float64"):
        net = models.mlp(ds.X_train.shape[1], ds.num_classes, hidden=hidden)
        loss_fn = nn.CrossEntropyLoss()
        optimizer = training.make_optimizer("adam", net, lr=lr)
        loader = data.DataLoader(ds.X_train, y_noisy, batch_size, seed=seed)
        training.train(net, loss_fn, optimizer, loader, epochs, progress=False, log=None)
    net.clear_cache()
    return net, loss_fn, ds.X_train, y_noisy, flipped, ds


def per_example_losses(net, loss_fn, X, y):
    """ℓ_n (N,) of ``net`` on (X, y) in evaluation mode, as a host array."""
    net.clear_cache()
    with net.mode(training=False):
        losses = loss_fn.per_example(net(X), y)
    net.clear_cache()
    return backend.to_numpy(losses)


# --------------------------------------------------------------------------- #
# Checking from the top
# --------------------------------------------------------------------------- #
def detection_curve(scores, flipped):
    """The fraction of flipped labels found when the examples are checked from the highest score down.

    scores : (N,) any backend; flipped : (N,) bool, at least one True.
    Returns (checked (N,), found (N,)): after checking the top k examples,
    checked[k−1] = k/N and found[k−1] = (flipped among them) / (all flipped).
    Ties are broken by the example's index (a stable sort).
    """
    scores, flipped = backend.to_numpy(scores), np.asarray(backend.to_numpy(flipped), dtype=bool)
    if scores.ndim != 1 or scores.shape != flipped.shape:
        raise ValueError(f"detection_curve: scores and flipped must both be (N,), got {scores.shape} and "
                         f"{flipped.shape}")
    if not flipped.any():
        raise ValueError("detection_curve: flipped has no True entry; there is nothing to find")
    order = np.argsort(-scores, kind="stable")
    found = np.cumsum(flipped[order]) / flipped.sum()
    return np.arange(1, scores.size + 1) / scores.size, found


def detection_area(found):
    """The area under a detection curve, mean(found): 1 − f/2 at best (f flipped), ≈ 0.5 for a random order."""
    return float(np.mean(found))


def found_at(checked, found, fraction):
    """The fraction of flipped labels found after checking the top ``fraction`` of the examples."""
    k = max(int(np.ceil(fraction * checked.size)), 1)
    return float(found[k - 1])


@dataclass
class LabelFlipResult:
    """The label-flip study's numbers (host arrays).

    scores : {name: (N,)}, self-influence per structure and the training loss.
    curves : {name: (checked (N,), found (N,))}; areas : {name: float}.
    flipped : (N,) bool. damping : {structure: λ used}.
    """

    scores: dict
    curves: dict
    areas: dict
    flipped: np.ndarray
    damping: dict = field(default_factory=dict)

    def table(self, fractions=(0.05, 0.10, 0.20)):
        """A text table: per score, the fraction found at each checked fraction, and the area."""
        head = f"{'ranked by':<28}" + "".join(f"{f'top {f:.0%}':>10}" for f in fractions) + f"{'area':>8}"
        rows = [head, "-" * len(head)]
        for name, (checked, found) in self.curves.items():
            rows.append(f"{name:<28}" + "".join(f"{found_at(checked, found, f):>10.3f}" for f in fractions)
                        + f"{self.areas[name]:>8.3f}")
        return "\n".join(rows)


def label_flip_study(net, loss_fn, X, y_noisy, flipped, damping, structures=("full", "kfac", "ekfac", "diag"),
                     kind="ggn"):
    """Rank the training examples by self-influence in each structure and by their loss; measure detection.

    net, loss_fn : trained on (X (N, ...), y_noisy (N,)); flipped (N,) bool marks the flipped labels.
    damping : λ >= 0 or "heuristic", the same rule for every structure.
    Returns a :class:`LabelFlipResult`.
    """
    for structure in structures:
        check_structure(structure, "label_flip_study")
    gradients = per_example_gradients(net, loss_fn, X, y_noisy)
    scores, used = {}, {}
    for structure in structures:
        approximation = approximate(net, loss_fn, X, structure, kind=kind)
        used[structure] = float(backend.to_numpy(influence.resolve_damping(approximation, damping)))
        scores[f"self-influence, {structure}"] = backend.to_numpy(
            influence.self_influences(approximation, gradients, used[structure]))
    scores[LOSS] = per_example_losses(net, loss_fn, X, y_noisy)
    curves = {name: detection_curve(s, flipped) for name, s in scores.items()}
    areas = {name: detection_area(found) for name, (_, found) in curves.items()}
    return LabelFlipResult(scores, curves, areas, np.asarray(flipped, dtype=bool), used)


# --------------------------------------------------------------------------- #
# Agreement with the exact GGN, against damping
# --------------------------------------------------------------------------- #
def damping_sweep(net, loss_fn, X_train, y_train, X_test, y_test, dampings, structures=("block", "kfac", "ekfac", "diag"),
                  kind="ggn"):
    """Spearman correlation of each structure's influences with the exact GGN's at the same λ, for each λ.

    Returns {name: (len(dampings),) host array}: each structure, and "gradient
    dot product" — −∇ℓ_testᵀ ∇ℓ_m, no curvature at all, the λ → ∞ limit of
    every structure (λ·I(λ) → −∇ℓ_testᵀ ∇ℓ_m). The correlation of an (N, T)
    influence matrix is the mean over the T test examples
    (:func:`minikfac.influence.rank_correlation`).
    """
    dampings = [float(d) for d in dampings]
    if not dampings or min(dampings) <= 0:
        raise ValueError(f"damping_sweep: dampings must be a non-empty list of numbers > 0, got {dampings!r}")
    train = per_example_gradients(net, loss_fn, X_train, y_train)
    test = per_example_gradients(net, loss_fn, X_test, y_test)
    exact = approximate(net, loss_fn, X_train, "full", kind=kind)
    references = [influence.influences(exact, train, test, d) for d in dampings]
    result = {}
    for structure in structures:
        approximation = approximate(net, loss_fn, X_train, check_structure(structure, "damping_sweep"), kind=kind)
        result[structure] = np.array([influence.rank_correlation(influence.influences(approximation, train, test, d),
                                                                 reference)
                                      for d, reference in zip(dampings, references)])
    dot = -(train @ test.T)
    result["gradient dot product"] = np.array([influence.rank_correlation(dot, r) for r in references])
    return result
