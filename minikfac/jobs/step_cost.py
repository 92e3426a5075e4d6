"""The cost of one training step of each optimizer, measured as the race measures it.

Medians of blocks of consecutive steps on a problem's net (:mod:`.race_tracks`),
K-FAC's blocks spanning whole inverse periods so that the formation of its
inverses is counted; the methods take turns, so that a shared machine's drift
hits all alike.
"""

import statistics
import time

from minikfac import backend, data, models, nn, training
from minikfac.jobs.race_tracks import METHODS, _check_problem, _optimizer, prepare

#: The step cost's block unit when K-FAC is not measured (else K-FAC's own inverse interval T).
INVERSE_INTERVAL = 20
#: The goal for the step cost: K-FAC's mean step at this batch size ≤ this × SGD's.
STEP_COST_GOAL = (512, 2.0)


def cycle_batches(loader):
    """The loader's batches, epoch after epoch, without end."""
    while True:
        yield from loader


def _timed_block(step, steps):
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    backend.synchronize(loss)
    return (time.perf_counter() - started) / steps


def step_cost(problem, batch_sizes=(64, 128, 256, 512), repeats=3, periods=2, seed=0, max_train=None,
              methods=METHODS, log=None):
    """Median seconds per training step of each method on ``problem``'s net, per batch size.

    Each method first runs one untimed inverse period (warm-up), then ``repeats``
    timed blocks of ``periods`` × T consecutive steps (T = K-FAC's inverse
    interval; :data:`INVERSE_INTERVAL` when K-FAC is not measured),
    the methods taking turns so that a shared machine's drift hits all alike;
    a K-FAC block therefore holds ``periods`` steps that form the inverses and
    the steps between, i.e. its real average. Steps draw successive mini-batches
    of the training split (batch sizes larger than the split are skipped:
    None). Learning rates: each sweep's middle value; K-FAC's defaults.

    Returns {"problem", "batch_sizes", "repeats", "steps_per_block",
    "seconds": {method: [s per step or None]}, "ratio_to_sgd": {method: [...]}}.
    """
    problem = _check_problem(problem) if isinstance(problem, str) else problem
    setup = prepare(problem, seed, max_train)
    seconds = {method: [] for method in methods}
    interval = INVERSE_INTERVAL
    for size in batch_sizes:
        if size > len(setup.X_train):
            for method in methods:
                seconds[method].append(None)
            continue
        steps = {}
        for method in methods:
            nn.init.manual_seed(seed)
            net = models.build(problem.model, setup.dataset)
            loss_fn = setup.loss()
            sweep = problem.lrs.get(method, (None,))
            optimizer = _optimizer(method, net, loss_fn, sweep[len(sweep) // 2], seed)
            interval = optimizer.hyper.get("inverse_interval", interval)
            batches = cycle_batches(data.DataLoader(setup.X_train, setup.Y_train, size, seed=seed, drop_last=True))
            steps[method] = (lambda n=net, f=loss_fn, o=optimizer, b=batches:
                             training.train_step(n, f, o, *next(b)))
        block = periods * interval  # K-FAC's blocks hold `periods` refreshes of its inverses
        for method in methods:
            _timed_block(steps[method], interval)  # warm-up: one inverse period
        samples = {method: [] for method in methods}
        for _ in range(repeats):
            for method in methods:
                samples[method].append(_timed_block(steps[method], block))
        for method in methods:
            seconds[method].append(statistics.median(samples[method]))
        if log:
            log(f"  {problem.name:<18} batch {size:>5}: " + "  ".join(
                f"{m} {1e3 * seconds[m][-1]:.1f} ms" for m in methods))
    ratio = {method: [None if s is None or base is None else s / base
                      for s, base in zip(seconds[method], seconds.get("sgd", seconds[method]), strict=True)]
             for method in methods}
    return {"problem": problem.name, "batch_sizes": list(batch_sizes), "repeats": repeats,
            "steps_per_block": periods * interval, "inverse_interval": interval, "seconds": seconds,
            "ratio_to_sgd": ratio}


