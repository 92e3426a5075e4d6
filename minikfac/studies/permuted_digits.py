"""Permuted digits: continual learning with curvature penalties, measured.

A sequence of T tasks, each the 8×8 digits (:func:`minikfac.data.load`,
64 flat inputs) with its pixels shuffled by a fixed permutation (task 0 is
the identity, the others drawn from ``numpy.random.default_rng([seed, t])``).
One small MLP learns them one after the other; after each task it is scored
on every task, giving a (T, T) table ``accuracy[i, j]`` = accuracy on task j
after training on tasks 0..i. The methods (:data:`METHODS`) differ only in
the penalty added while learning task i > 0 (:class:`minikfac.continual.LaplacePenalty`):

============  ========================  ============================================================
method        penalty                   source
============  ========================  ============================================================
"none"        none (plain fine-tuning)  the forgetting baseline
"ewc"         diagonal, one per task    Kirkpatrick et al. 2017 (EWC)
"ewc_online"  diagonal, online Laplace  the diagonal with K-FAC's centre: only the structure differs
"kfac"        K-FAC, online Laplace     Ritter et al. 2018b (Kronecker-factored online Laplace)
"block"       exact per-layer blocks    what K-FAC approximates (online Laplace)
"full"        the exact GGN             the Laplace approximation itself (online; tiny nets only)
============  ========================  ============================================================

The strength λ is chosen per method by :func:`choose_strength` on data held
out from the *training* images (the test images are never looked at until
the final run). Progress is a tqdm bar over the tasks (only on a terminal).
"""

import sys
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from minikfac import backend, continual, data, models, nn, optim, training

#: method -> (structure, centres) of its LaplacePenalty; None = no penalty.
METHODS = {"none": None, "ewc": ("diag", "each"), "ewc_online": ("diag", "last"), "kfac": ("kfac", "last"),
           "block": ("block", "last"), "full": ("full", "last")}


def permutations(num_tasks, num_pixels=64, seed=0):
    """T pixel permutations, list of (num_pixels,) int arrays: the identity first, then seeded draws."""
    if not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"permutations: num_tasks must be an int >= 1, got {num_tasks!r}")
    return [np.arange(num_pixels)] + [np.random.default_rng([seed, t]).permutation(num_pixels)
                                      for t in range(1, num_tasks)]


def make_tasks(num_tasks, validation=None, seed=0, dataset="digits"):
    """The permuted tasks: list of T dicts with "X_train", "y_train", "X_eval", "y_eval" (host arrays).

    validation : None — train on all training images (N = 1438), score on the
        test images (359); or a fraction in (0, 1) — train on the rest of the
        training images, score on that held-out fraction (the same split for
        every task, drawn from ``default_rng(seed)``), for choosing λ.
    """
    source = data.load(dataset)
    X, y, X_eval, y_eval = source.X_train, source.y_train, source.X_test, source.y_test
    if validation is not None:
        if not 0 < validation < 1:
            raise ValueError(f"make_tasks: validation must be None or a fraction in (0, 1), got {validation!r}")
        order = np.random.default_rng(seed).permutation(len(X))
        held = int(round(validation * len(X)))
        X, y, X_eval, y_eval = X[order[held:]], y[order[held:]], X[order[:held]], y[order[:held]]
    return [{"X_train": X[:, p], "y_train": y, "X_eval": X_eval[:, p], "y_eval": y_eval}
            for p in permutations(num_tasks, X.shape[1], seed)]


def train_task(net, loss_fn, optimizer, X, y, penalty=None, epochs=10, batch_size=32, seed=0):
    """``epochs`` epochs of mini-batch steps on (X (N, D), y (N,)), the penalty's gradient added to each.

    A step minimises the batch's mean loss + penalty(θ)/N (scale 1/N:
    :mod:`minikfac.continual`'s "Scale"). Returns the last epoch's mean loss (float).
    """
    loader = data.DataLoader(X, y, batch_size, seed=seed)
    scale = 1.0 / len(X)
    net.train()
    for _ in range(epochs):
        losses = []
        for X_batch, y_batch in loader:
            optimizer.zero_grad()
            losses.append(loss_fn(net(X_batch), y_batch))
            net.backward(loss_fn.backward(), input_grad=False)
            if penalty is not None and penalty.tasks:
                penalty.add_gradient(net, scale=scale)
            optimizer.step()
    xp = backend.get_array_module(losses[0])
    return float(backend.to_numpy(xp.mean(xp.stack(losses))))  # one sync per task


@dataclass
class SequenceResult:
    """One method's run: ``accuracy`` (T, T), row i = every task's accuracy after task i."""

    method: str
    strength: float | None
    accuracy: np.ndarray
    final_losses: list = field(default_factory=list)

    @property
    def average(self):
        """Mean accuracy over all T tasks after the last one (the last row's mean)."""
        return float(self.accuracy[-1].mean())


def run_sequence(method, tasks, strength=1.0, hidden=(20,), epochs=10, batch_size=32, lr=3e-3, seed=0,
                 bar=None):
    """Train one net on ``tasks`` in order with ``method``'s penalty; returns a :class:`SequenceResult`.

    The net is ``models.mlp(D, 10, hidden, "tanh")`` from ``nn.init.manual_seed(seed)``
    (the same start for every method), trained with Adam (lr) for ``epochs``
    per task; after each task the penalty consolidates that task's training
    inputs (GGN, N = its number of examples). ``bar`` is a tqdm bar advanced once per task.
    """
    if method not in METHODS:
        raise ValueError(f"run_sequence: method must be one of {tuple(METHODS)}, got {method!r}")
    nn.init.manual_seed(seed)
    net = models.mlp(tasks[0]["X_train"].shape[1], 10, hidden=hidden, activation="tanh")
    loss_fn = nn.CrossEntropyLoss()
    penalty = None
    if METHODS[method] is not None:
        structure, centres = METHODS[method]
        penalty = continual.LaplacePenalty(structure, strength=strength, centres=centres)
    T = len(tasks)
    accuracy = np.zeros((T, T))
    losses = []
    for i, task in enumerate(tasks):
        optimizer = optim.Adam(net.parameters(), lr=lr)  # fresh moments per task
        losses.append(train_task(net, loss_fn, optimizer, task["X_train"], task["y_train"], penalty, epochs,
                                 batch_size, seed=seed + i))
        for j, other in enumerate(tasks):
            accuracy[i, j] = training.evaluate(net, loss_fn, other["X_eval"], other["y_eval"])["accuracy"]
        if penalty is not None and i < T - 1:
            inputs = backend.asarray(task["X_train"], dtype=net.parameters()[0].data.dtype)
            penalty.consolidate(net, loss_fn, inputs)
        if bar is not None:
            bar.update(1)
    return SequenceResult(method, strength if penalty is not None else None, accuracy, losses)


def _bar(total, progress, what):
    return tqdm(total=total, disable=None if progress else True, unit="task", desc=what, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def choose_strength(method, strengths, num_tasks=3, validation=0.2, progress=True, **options):
    """λ for ``method``: the one of ``strengths`` with the best final average accuracy on held-out images.

    Each candidate runs the whole sequence on ``make_tasks(num_tasks, validation)``
    (training images only: a fraction held out of every task). ``options``
    go to :func:`run_sequence`. Returns ``(best, {λ: average})``.
    """
    tasks = make_tasks(num_tasks, validation=validation, seed=options.get("seed", 0))
    scores = {}
    with _bar(len(strengths) * num_tasks, progress, f"λ for {method}") as bar:
        for strength in strengths:
            scores[strength] = run_sequence(method, tasks, strength=strength, bar=bar, **options).average
    return max(scores, key=scores.get), scores


def run(methods=tuple(METHODS), num_tasks=3, strengths=(1.0, 10.0, 100.0, 1000.0), validation=0.2,
        progress=True, log=print, **options):
    """The whole study: choose λ per method on held-out images, then run on the test split.

    Returns ``{"results": {method: SequenceResult}, "sweeps": {method: {λ: validation average}}}``.
    ``options`` go to :func:`run_sequence` (hidden, epochs, batch_size, lr, seed).
    """
    sweeps, results = {}, {}
    tasks = make_tasks(num_tasks, seed=options.get("seed", 0))
    for method in methods:
        strength = None
        if METHODS.get(method) is not None:
            strength, sweeps[method] = choose_strength(method, strengths, num_tasks, validation, progress, **options)
        with _bar(num_tasks, progress, method) as bar:
            results[method] = run_sequence(method, tasks, strength=strength or 1.0, bar=bar, **options)
        if log:
            log(format_table(results[method]))
    return {"results": results, "sweeps": sweeps}


def format_table(result):
    """The (T, T) table as text: one row per task trained, one column per task scored, in %."""
    T = result.accuracy.shape[0]
    title = result.method + (f" (λ = {result.strength:g})" if result.strength is not None else "")
    lines = [f"{title}: accuracy on task j (columns) after training task i (rows); final average "
             f"{100 * result.average:.1f}%",
             "after  " + " ".join(f"task {j + 1:<2d}" for j in range(T))]
    for i in range(T):
        lines.append(f"task {i + 1:<2d}" + " ".join(f"{100 * a:6.1f}%" for a in result.accuracy[i]))
    return "\n".join(lines)
