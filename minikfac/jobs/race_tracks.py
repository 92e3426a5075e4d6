"""The race's tracks: its problems, their data made ready, and how a run's loss is measured.

A :class:`Problem` fixes everything but the optimizer: a dataset, a network,
its loss and targets, a batch size, a budget of epochs, the training loss to
reach and how the result is scored on the test split (:data:`PROBLEMS`).
:func:`prepare` loads a problem's data onto the backend; the measuring
helpers (:func:`evaluation_steps`, :func:`time_to_target`, :func:`best_run`,
:func:`suggest_target`) say when a run reached its target. The race itself is
:mod:`minikfac.jobs.race`; the per-step cost :mod:`minikfac.jobs.step_cost`.
"""

import dataclasses
import math

import numpy as np

from minikfac import backend, data, models, training

METHODS = ("sgd", "adam", "kfac")
#: Heavy-ball coefficient of every SGD run.
SGD_MOMENTUM = 0.9
#: Examples of the training split whose mean loss is "the training loss".
TRAIN_SUBSET = 1000
#: About how many times each run measures that loss.
EVALUATIONS = 60


@dataclasses.dataclass(frozen=True)
class Problem:
    """One race track.

    name : "digits-mlp", ...; dataset, model : names for :func:`minikfac.data.load`
        and :func:`minikfac.models.build`.
    batch_size : the same for every method, so that an iteration means the same
        amount of data for all (see :data:`PROBLEMS` for the choices).
    epochs : the budget of every run.
    target_loss : the training loss to reach (mean over the subset).
    lrs : {"sgd": (lr, ...), "adam": (lr, ...)}, the sweeps; the middle value is
        the one a quick race uses.
    goals : dict of the benchmark goals for this problem, some of
        "accuracy" (K-FAC's test accuracy ≥), "iterations" and "seconds"
        (K-FAC's count to the target ≤ this × the best Adam's).
    """

    name: str
    dataset: str
    model: str
    batch_size: int
    epochs: int
    target_loss: float
    lrs: dict
    goals: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        """The definition as a JSON-ready dict, with the model's task ("classification", ...)."""
        return dict(dataclasses.asdict(self), task=models.task(self.model).name)


#: The three problems. Batch sizes: the same for the three methods of a problem (so
#: that an iteration means the same data for all), chosen where first-order methods do
#: well too (K-FAC trains at any batch size: see benchmarks/robustness.py).
#: Targets were measured with ``minikfac bench`` (seed 0): for each, the best
#: first-order run's lowest training loss by 80% of its budget
#: (:func:`suggest_target`, rounded up to three digits) — a loss the best tuned
#: method reaches late, so that reaching it early means something.
PROBLEMS = {
    # 1,438 digits, batch 128: 11 full batches an epoch, 110 steps in the 10 epochs of the goal.
    "digits-mlp": Problem("digits-mlp", "digits", "mlp", 128, 10, target_loss=0.0075,
                          lrs={"sgd": (0.03, 0.1, 0.3), "adam": (3e-3, 1e-2, 3e-2)},
                          goals={"accuracy": 0.97}),
    # 4,000 MNIST images, batch 128: 31 steps an epoch, 155 in the 5 epochs of the goal.
    "mnist-cnn": Problem("mnist-cnn", "mnist", "cnn", 128, 5, target_loss=0.0489,
                         lrs={"sgd": (0.03, 0.1, 0.3), "adam": (3e-3, 1e-2, 3e-2)},
                         goals={"accuracy": 0.96}),
    # The 784-200-100-30-100-200-784 sigmoid autoencoder, Bernoulli loss on the pixels
    # (summed over them: ~200 at the mean image's plateau), batch 256: 15 steps an
    # epoch, 2,250 in 150 epochs (first-order methods need many to leave the plateau,
    # and Adam must reach the target for the wall-clock goal to be decided). Adam's
    # sweep is lower than elsewhere: 3e-2 stays on the plateau.
    "mnist-autoencoder": Problem("mnist-autoencoder", "mnist", "autoencoder", 256, 150, target_loss=80.7,
                                 lrs={"sgd": (0.03, 0.1, 0.3), "adam": (1e-3, 3e-3, 1e-2)},
                                 goals={"iterations": 1 / 3, "seconds": 1 / 2}),
}


def _check_problem(name):
    """The :class:`Problem` called ``name`` (one of :data:`PROBLEMS`), or ``name`` itself if it is a Problem."""
    if isinstance(name, Problem):
        return name
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {tuple(PROBLEMS)}, got {name!r}")
    return PROBLEMS[name]


# --------------------------------------------------------------------------- #
# Measuring: curves and their reading
# --------------------------------------------------------------------------- #
def evaluation_steps(total, count=EVALUATIONS):
    """Sorted steps in [0, total] at which a run measures its training loss.

    About a third of ``count`` log-spaced from 1 (fast early progress is
    resolved) and the rest evenly spaced; step 0 (the initial loss) and
    ``total`` are always included. Returns a list of ints.
    """
    if total < 0 or count < 2:
        raise ValueError(f"evaluation_steps: need total >= 0 and count >= 2, got total={total}, count={count}")
    if total == 0:
        return [0]
    early = np.geomspace(1, total, max(count // 3, 2))
    even = np.linspace(0, total, count - len(early))
    return sorted({0, total, *np.rint(early).astype(int).tolist(), *np.rint(even).astype(int).tolist()})


def time_to_target(curve, target):
    """(step, seconds) of the first point of ``curve`` whose train loss is ≤ ``target``.

    curve : {"step": [...], "seconds": [...], "train_loss": [...]}, in step
        order. Returns (None, None) if the target is never reached (NaN
        losses never reach it).
    """
    for step, seconds, loss in zip(curve["step"], curve["seconds"], curve["train_loss"], strict=True):
        if loss <= target:
            return step, seconds
    return None, None


def best_run(runs, method):
    """Index in ``runs`` of the best run of ``method``: fewest steps to the target, then lowest final loss.

    runs : list of run records (:func:`.race.run_one`). Returns None if ``method`` has none.
    """
    def key(i):
        steps, final = runs[i]["steps_to_target"], runs[i]["final_train_loss"]
        return (math.inf if steps is None else steps, final if math.isfinite(final) else math.inf)
    indices = [i for i, r in enumerate(runs) if r["method"] == method]
    return min(indices, key=key) if indices else None


def suggest_target(runs, fraction=0.8):
    """A target loss the best first-order run reaches late: how :data:`PROBLEMS`' targets were chosen.

    Takes the SGD/Adam run with the lowest final training loss and returns its
    lowest loss among the points up to ``fraction`` of its steps, rounded *up*
    to three significant digits (so that run reaches it). None without such runs.
    """
    first_order = [r for r in runs if r["method"] != "kfac" and math.isfinite(r["final_train_loss"])]
    if not first_order:
        return None
    best = min(first_order, key=lambda r: r["final_train_loss"])
    curve = best["curve"]
    limit = fraction * curve["step"][-1]
    low = min(loss for step, loss in zip(curve["step"], curve["train_loss"], strict=True) if step <= limit)
    scale = 10.0 ** (math.floor(math.log10(low)) - 2)
    return float(f"{math.ceil(low / scale) * scale:.3g}")


# --------------------------------------------------------------------------- #
# A problem's data, and each method's optimizer
# --------------------------------------------------------------------------- #
@dataclasses.dataclass
class Setup:
    """A problem's data, ready on the backend: the training split, the loss-measuring subset, the test split.

    X_* : (N, ...) inputs; Y_* : their targets (labels, or the inputs for an
    autoencoder); loss : a callable making the problem's loss; dataset : the
    :class:`minikfac.data.Dataset` (for building the net).
    """

    dataset: object
    loss: object
    X_train: object
    Y_train: object
    X_subset: object
    Y_subset: object
    X_test: object
    Y_test: object


def prepare(problem, seed=0, max_train=None):
    """The :class:`Setup` of ``problem``: data loaded, targets made, subset drawn (seeded).

    max_train : keep only this many training (and test) examples, drawn with
        ``seed`` — for smoke tests; None keeps all.
    """
    problem = _check_problem(problem) if isinstance(problem, str) else problem
    dataset = data.load(problem.dataset, flat=models.input_is_flat(problem.model))
    task = models.task(problem.model)
    X_train, X_test = dataset.X_train, dataset.X_test
    Y_train, Y_test = task.targets(X_train, dataset.y_train), task.targets(X_test, dataset.y_test)
    rng = np.random.default_rng(seed)
    if max_train is not None:
        keep = np.sort(rng.permutation(len(X_train))[:max_train])
        X_train, Y_train = X_train[keep], Y_train[keep]
        X_test, Y_test = X_test[:max_train], Y_test[:max_train]
    rows = np.sort(rng.choice(len(X_train), min(TRAIN_SUBSET, len(X_train)), replace=False))
    dtype = backend.get_default_dtype()

    def move(array):  # labels stay integers, everything else takes the default float dtype
        return backend.asarray(array, dtype=None if np.dtype(array.dtype).kind in "iu" else dtype)
    return Setup(dataset, task.loss, move(X_train), move(Y_train), move(X_train[rows]), move(Y_train[rows]),
                 move(X_test), move(Y_test))


def _optimizer(method, net, loss_fn, lr, seed=0):
    if method == "kfac":  # its defaults, untuned
        return training.make_optimizer("kfac", net, loss_fn=loss_fn, seed=seed)
    return training.make_optimizer(method, net, lr, SGD_MOMENTUM if method == "sgd" else 0.0)


def _label(method, lr):
    return "kfac (defaults)" if lr is None else f"{method} lr {lr:g}"


