"""The race's tracks: its problems, their data made ready, and how a run's loss is measured.

A :class:`Problem` fixes everything but the optimizer: a dataset, a network,
its loss and targets, a batch size, a budget of epochs, the training loss to
reach, each tuned method's learning-rate sweep and how the result is scored
on the test split (:data:`PROBLEMS`). Each problem also names a second batch
size (:attr:`Problem.second_batch`); :meth:`Problem.at_batch_size` and
:func:`tracks` make the variant, the same problem in everything else.
:func:`prepare` loads a problem's data onto the backend; the measuring
helpers (:func:`evaluation_steps`, :func:`time_to_target`, :func:`best_run`,
:func:`sweep_edge`, :func:`suggest_target`) say when a run reached its target. The race itself is
:mod:`minikfac.jobs.race`; the per-step cost :mod:`minikfac.jobs.step_cost`.
"""

import dataclasses
import math
import re

import numpy as np

from minikfac import backend, data, models, training

#: The contenders, in the order of every table and figure. K-FAC runs once, with its
#: defaults; every other method runs the learning-rate sweep of :attr:`Problem.lrs`.
METHODS = ("sgd", "adam", "kfac", "shampoo", "soap", "muon")
#: The methods whose best run set the targets (:func:`suggest_target`): the first-order ones.
FIRST_ORDER = ("sgd", "adam")
#: Which batch sizes a race runs by default: each problem's own, then its :attr:`Problem.second_batch`.
BATCHES = ("own", "second")
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
    lrs : {method: (lr, ...)}, the sweeps of every method but K-FAC, in
        increasing order; the middle value is the one a quick race and the step
        cost use. A method without a sweep runs once at its default
        (``lr=None``).
    goals : dict of the benchmark goals for this problem, some of
        "accuracy" (K-FAC's test accuracy ≥), "iterations" and "seconds"
        (K-FAC's count to the target ≤ this × the best Adam's).
    second_batch : (batch size, epochs) of the problem's second track
        (:meth:`at_batch_size`), or () for none.
    """

    name: str
    dataset: str
    model: str
    batch_size: int
    epochs: int
    target_loss: float
    lrs: dict
    goals: dict = dataclasses.field(default_factory=dict)
    second_batch: tuple = ()

    def to_dict(self):
        """The definition as a JSON-ready dict, with the model's task ("classification", ...)."""
        return dict(dataclasses.asdict(self), task=models.task(self.model).name)

    def at_batch_size(self, batch_size, epochs=None):
        """This problem at another batch size: a :class:`Problem` named ``"<name>-b<batch_size>"``.

        The same data, net, target, sweeps and initial weights; ``epochs``
        (default: the same number of epochs) is its budget. The goals were set
        at the problem's own batch size and are not carried over, nor is
        ``second_batch``. At the problem's own batch size and budget it is
        the problem itself.
        """
        epochs = self.epochs if epochs is None else epochs
        if batch_size == self.batch_size and epochs == self.epochs:
            return self
        if not (isinstance(batch_size, int) and batch_size > 0 and isinstance(epochs, int) and epochs > 0):
            raise ValueError(f"{self.name}: batch_size and epochs must be positive integers, "
                             f"got {batch_size!r} and {epochs!r}")
        return dataclasses.replace(self, name=f"{self.name}-b{batch_size}", batch_size=batch_size, epochs=epochs,
                                   goals={}, second_batch=())


#: The learning-rate sweeps of the three later contenders: three values a factor ≈ 3 apart, set
#: around each one's published default (``training.DEFAULT_LR``) and moved up where the race found
#: the best at the sweep's high edge on a problem's own track. Muon: the reference
#: implementation's 0.02 (Jordan et al. 2024; torch's class default 1e-3, with its default
#: ``adjust_lr_fn`` — None, "original", lr·√max(1, m/n) — is tiny for these nets: a step moves
#: each weight by about lr/√max(m, n)), so 0.01, 0.03, 0.1 (on the digits MLP the best is 0.03; 0.3
#: left the loss at 1.95); on the autoencoder 0.03, 0.1, 0.3 (0.1 was the best of the first sweep).
#: Shampoo (grafted onto Adam's step norm, so Adam's scale: default 3e-3) and SOAP (its authors'
#: 3e-3, Vyas et al. 2024): Shampoo 3e-3, 1e-2, 3e-2; SOAP 1e-2, 3e-2, 0.1 (3e-2 was the best
#: of 3e-3, 1e-2, 3e-2 on every problem; on the autoencoder Adam's 1e-3 to 1e-2 was the first).
MATRIX_SWEEPS = {"shampoo": (3e-3, 1e-2, 3e-2), "soap": (1e-2, 3e-2, 0.1), "muon": (0.01, 0.03, 0.1)}
MATRIX_SWEEPS_AUTOENCODER = dict(MATRIX_SWEEPS, muon=(0.03, 0.1, 0.3))

#: The three problems. Batch sizes: the same for every method of a problem (so
#: that an iteration means the same data for all), chosen where first-order methods do
#: well too (K-FAC trains at any batch size: see benchmarks/robustness.py).
#: Targets were measured with ``minikfac bench`` (seed 0): for each, the best
#: first-order run's lowest training loss by 80% of its budget
#: (:func:`suggest_target`, rounded up to three digits) — a loss the best tuned
#: method reaches late, so that reaching it early means something.
#: The second track of each (``second_batch``) is batch 512, the batch of the step-cost
#: goal, with the base's epochs × the batch ratio: about the same budget in *steps*
#: (so that the iterations to the target compare across the two batch sizes), with
#: 4× (2× for the autoencoder) the data.
PROBLEMS = {
    # 1,438 digits, batch 128: 11 full batches an epoch, 110 steps in the 10 epochs of the goal.
    # At 512: 2 full batches an epoch (1,024 of the 1,438 digits), 80 steps in 40 epochs.
    "digits-mlp": Problem("digits-mlp", "digits", "mlp", 128, 10, target_loss=0.0075,
                          lrs={"sgd": (0.03, 0.1, 0.3), "adam": (3e-3, 1e-2, 3e-2), **MATRIX_SWEEPS},
                          goals={"accuracy": 0.97}, second_batch=(512, 40)),
    # 4,000 MNIST images, batch 128: 31 steps an epoch, 155 in the 5 epochs of the goal.
    # At 512: 7 steps an epoch, 140 in 20 epochs.
    "mnist-cnn": Problem("mnist-cnn", "mnist", "cnn", 128, 5, target_loss=0.0489,
                         lrs={"sgd": (0.03, 0.1, 0.3), "adam": (3e-3, 1e-2, 3e-2), **MATRIX_SWEEPS},
                         goals={"accuracy": 0.96}, second_batch=(512, 20)),
    # The 784-200-100-30-100-200-784 sigmoid autoencoder, Bernoulli loss on the pixels
    # (summed over them: ~200 at the mean image's plateau), batch 256: 15 steps an
    # epoch, 2,250 in 150 epochs (first-order methods need many to leave the plateau,
    # and Adam must reach the target for the wall-clock goal to be decided). Adam's
    # sweep is lower than elsewhere: 3e-2 stays on the plateau.
    # At 512: 7 steps an epoch, 2,100 in 300 epochs.
    "mnist-autoencoder": Problem("mnist-autoencoder", "mnist", "autoencoder", 256, 150, target_loss=80.7,
                                 lrs={"sgd": (0.03, 0.1, 0.3), "adam": (1e-3, 3e-3, 1e-2), **MATRIX_SWEEPS_AUTOENCODER},
                                 goals={"iterations": 1 / 3, "seconds": 1 / 2}, second_batch=(512, 300)),
}


def _check_problem(name):
    """The :class:`Problem` called ``name`` (one of :data:`PROBLEMS`), or ``name`` itself if it is a Problem."""
    if isinstance(name, Problem):
        return name
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {tuple(PROBLEMS)}, got {name!r}")
    return PROBLEMS[name]


def tracks(problems=None, batches=BATCHES):
    """The race's tracks: each problem at each of ``batches``, problem by problem.

    problems : names or :class:`Problem` objects (default all of :data:`PROBLEMS`);
    batches : some of "own" (the problem as defined) and "second" (its
        :attr:`Problem.second_batch` variant, skipped for a problem without one).
    Returns a list of :class:`Problem`.
    """
    unknown = [b for b in batches if b not in BATCHES]
    if unknown or not batches:
        raise ValueError(f"batches must be some of {BATCHES}, got {tuple(batches)!r}")
    chosen = []
    for problem in (_check_problem(p) for p in (PROBLEMS if problems is None else problems)):
        if "own" in batches:
            chosen.append(problem)
        if "second" in batches and problem.second_batch:
            chosen.append(problem.at_batch_size(*problem.second_batch))
    return chosen


def problem_of_track(name):
    """The :data:`PROBLEMS` entry whose track ``name`` is: "mnist-cnn-b512" -> PROBLEMS["mnist-cnn"]."""
    base = re.sub(r"-b[0-9]+$", "", name)
    return _check_problem(name if name in PROBLEMS else base)


def check_methods(methods):
    """``methods`` as a tuple, checked against :data:`METHODS` (``ValueError`` naming the unknown ones)."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be distinct names among {METHODS}, got {methods!r}")
    return methods


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


def sweep_edge(runs, method):
    """Whether ``method``'s best run is at an edge of its sweep: "low", "high" or None.

    runs : run records with ``method`` and ``lr``. None when the method ran one
    learning rate or none (K-FAC, a quick race) or its best is inside the
    sweep. At an edge, a learning rate beyond it may have done better: the
    sweep does not bracket the best.
    """
    best = best_run(runs, method)
    rates = sorted({r["lr"] for r in runs if r["method"] == method and r["lr"] is not None})
    if best is None or len(rates) < 2 or runs[best]["lr"] is None:
        return None
    return "low" if runs[best]["lr"] == rates[0] else "high" if runs[best]["lr"] == rates[-1] else None


def suggest_target(runs, fraction=0.8):
    """A target loss the best first-order run reaches late: how :data:`PROBLEMS`' targets were chosen.

    Takes the run of :data:`FIRST_ORDER` (SGD, Adam) with the lowest final
    training loss and returns its lowest loss among the points up to
    ``fraction`` of its steps, rounded *up* to three significant digits (so
    that run reaches it). None without such runs.
    """
    first_order = [r for r in runs if r["method"] in FIRST_ORDER and math.isfinite(r["final_train_loss"])]
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
    """``method``'s optimizer over ``net``: K-FAC at its defaults, SGD with :data:`SGD_MOMENTUM`,
    the others at learning rate ``lr`` (None: their default) and every other default."""
    if method == "kfac":  # its defaults, untuned
        return training.make_optimizer("kfac", net, loss_fn=loss_fn, seed=seed)
    if method == "sgd":
        return training.make_optimizer(method, net, lr, SGD_MOMENTUM)
    return training.make_optimizer(method, net, lr)


def _label(method, lr):
    return f"{method} (defaults)" if lr is None else f"{method} lr {lr:g}"


