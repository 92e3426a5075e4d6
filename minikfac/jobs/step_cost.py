"""The cost of one training step of each optimizer, measured as the race measures it.

Medians of blocks of consecutive steps on a problem's net (:mod:`.race_tracks`),
the blocks spanning whole periods of every method that refreshes its
preconditioner every few steps (K-FAC's inverses, Shampoo's roots, SOAP's
eigenbases), so that the refreshes are counted; the methods take turns, so
that a shared machine's drift hits all alike.
"""

import math
import statistics
import time

from minikfac import backend, data, models, nn, training
from minikfac.jobs.race_tracks import METHODS, _check_problem, _optimizer, prepare

#: The step cost's block unit when no method measured refreshes anything every few steps.
INVERSE_INTERVAL = 20
#: The names under which an optimizer's ``hyper`` keeps the steps between two refreshes of its
#: preconditioner (K-FAC's inverses; Shampoo's inverse roots, SOAP's eigenbases).
REFRESH_KEYS = ("inverse_interval", "precondition_frequency", "preconditioner_interval", "update_interval",
                "update_freq")
#: The goal for the step cost: K-FAC's mean step at this batch size ≤ this × SGD's.
STEP_COST_GOAL = (512, 2.0)


def cycle_batches(loader):
    """The loader's batches, epoch after epoch, without end."""
    while True:
        yield from loader


def refresh_interval(optimizer):
    """Steps between two refreshes of ``optimizer``'s preconditioner (one of :data:`REFRESH_KEYS`
    in its ``hyper``), or None for an optimizer that has none (SGD, Adam, Muon)."""
    hyper = getattr(optimizer, "hyper", {})
    for key in REFRESH_KEYS:
        if key in hyper and hyper[key]:
            return int(hyper[key])
    return None


def _timed_block(step, steps):
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    backend.synchronize(loss)
    return (time.perf_counter() - started) / steps


def step_cost(problem, batch_sizes=(64, 128, 256, 512), repeats=3, periods=2, seed=0, max_train=None,
              methods=METHODS, log=None):
    """Median seconds per training step of each method on ``problem``'s net, per batch size.

    Each method first runs one untimed period (warm-up), then ``repeats``
    timed blocks of ``periods`` × T consecutive steps, T the least common
    multiple of the refresh intervals of the methods measured
    (:func:`refresh_interval`: K-FAC's inverse interval, ...;
    :data:`INVERSE_INTERVAL` when none has one), the methods taking turns so
    that a shared machine's drift hits all alike; a K-FAC block therefore
    holds ``periods`` steps that form the inverses and the steps between, i.e.
    its real average, and so for every method that refreshes. Steps draw
    successive mini-batches of the training split (batch sizes larger than the
    split are skipped: None). Learning rates: each sweep's middle value;
    K-FAC's defaults.

    Returns {"problem", "batch_sizes", "repeats", "steps_per_block",
    "inverse_interval" (K-FAC's T, or T without K-FAC), "intervals"
    ({method: its refresh interval or None}), "seconds": {method: [s per step
    or None]}, "ratio_to_sgd": {method: [...]}} (ratios None without SGD).
    """
    problem = _check_problem(problem) if isinstance(problem, str) else problem
    setup = prepare(problem, seed, max_train)
    seconds = {method: [] for method in methods}
    intervals = {}
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
            intervals[method] = refresh_interval(optimizer)
            batches = cycle_batches(data.DataLoader(setup.X_train, setup.Y_train, size, seed=seed, drop_last=True))
            steps[method] = (lambda n=net, f=loss_fn, o=optimizer, b=batches:
                             training.train_step(n, f, o, *next(b)))
        interval = math.lcm(*(t for t in intervals.values() if t)) if any(intervals.values()) else INVERSE_INTERVAL
        block = periods * interval  # every block holds `periods` refreshes of each method's preconditioner
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
    baseline = seconds.get("sgd", [None] * len(batch_sizes))
    ratio = {method: [None if s is None or base is None else s / base
                      for s, base in zip(seconds[method], baseline, strict=True)]
             for method in methods}
    if not intervals:  # every batch size skipped
        interval = INVERSE_INTERVAL
    return {"problem": problem.name, "batch_sizes": list(batch_sizes), "repeats": repeats,
            "steps_per_block": periods * interval, "inverse_interval": intervals.get("kfac") or interval,
            "intervals": intervals, "seconds": seconds, "ratio_to_sgd": ratio}


