"""The race: K-FAC against SGD with momentum, Adam, Shampoo, SOAP and Muon, to a target training loss.

A :class:`.race_tracks.Problem` fixes everything but the optimizer: a dataset, a network,
its loss and targets, a batch size, a budget of epochs, the training loss to
reach and how the result is scored on the test split. On each problem,

- every method but K-FAC (:data:`.race_tracks.METHODS`: SGD with heavy-ball
  momentum 0.9, Adam, Shampoo, SOAP, Muon) runs a sweep of three learning
  rates (:attr:`.race_tracks.Problem.lrs`) and is reported at its best: the
  fewest iterations to the target, ties (e.g. none reached it) broken by the
  lower final training loss; a best at the edge of its sweep is flagged
  (:func:`.race_tracks.sweep_edge`);
- K-FAC runs once with its defaults (``training.make_optimizer("kfac", ...)``),
  untuned: the point of a second-order method is not to need the sweep.

Each problem is raced at its own batch size and at a second one
(:attr:`.race_tracks.Problem.second_batch`, :func:`.race_tracks.tracks`): the
same protocol, another track.

Measuring. The mini-batch loss is too noisy to say *when* a target was
reached, so every run measures the mean loss of a fixed subset of the
training split (:data:`TRAIN_SUBSET` examples, eval mode) at the steps of
:func:`evaluation_steps` — log-spaced early, evenly spaced later, about
:data:`EVALUATIONS` points — with the clock stopped: seconds count training
only. The time to the target is the first evaluated point at or below it
(:func:`time_to_target`), so it is exact to one evaluation interval. Every run
of a problem starts from the same initial weights (the seed) and sees the same
mini-batches in the same order, so the optimizers alone differ.

The per-step cost is measured apart (:func:`step_cost`): medians of blocks of
consecutive steps, K-FAC's blocks spanning whole inverse periods so that the
formation of its inverses is counted.

This module only computes and returns JSON-ready dicts; the figures are
:func:`minikfac.plot.race_figures` and the command is ``minikfac bench``.
"""

import math
import sys
import time

from tqdm import tqdm

from minikfac import backend, data, models, nn, training
from minikfac.jobs.race_tracks import (
    BATCHES,
    EVALUATIONS,
    METHODS,
    PROBLEMS,
    SGD_MOMENTUM,
    TRAIN_SUBSET,
    _check_problem,
    _label,
    _optimizer,
    best_run,
    check_methods,
    evaluation_steps,
    prepare,
    suggest_target,
    sweep_edge,
    time_to_target,
    tracks,
)
from minikfac.jobs.step_cost import STEP_COST_GOAL, step_cost


def run_one(problem, method, lr, setup, epochs=None, seed=0, progress=False, stop_at_target=False,
            evaluations=EVALUATIONS):
    """Train ``problem``'s net with one optimizer; returns the run's record (a JSON-ready dict).

    method : one of :data:`.race_tracks.METHODS`; lr : its learning rate (None:
    its defaults, K-FAC's always); setup : :func:`prepare`'s; epochs : default the problem's;
    stop_at_target : end the run at the first measured point at or below the
    target (the demo's races: the time to the target is what they show);
    evaluations : about how many times the training loss is measured
    (:func:`evaluation_steps`).

    The record: ``method``, ``lr``, ``label``, ``steps``, ``train_seconds``
    (evaluations excluded), ``seconds_per_step``, ``curve`` ({"step",
    "seconds", "train_loss"} lists), ``steps_to_target``/``seconds_to_target``
    (None if not reached), ``final_train_loss``, ``diverged`` (a non-finite
    loss stopped the run), ``test`` (see :func:`test_metrics`) and, for K-FAC,
    ``damping`` and ``refused`` at the end.
    """
    epochs = problem.epochs if epochs is None else epochs
    nn.init.manual_seed(seed)
    net = models.build(problem.model, setup.dataset)
    loss_fn = setup.loss()
    optimizer = _optimizer(method, net, loss_fn, lr, seed)
    # Full batches only: K-FAC's statistics take a fixed fraction of each batch, and an
    # iteration then means the same amount of data throughout.
    loader = data.DataLoader(setup.X_train, setup.Y_train, problem.batch_size, seed=seed, drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"{problem.name}: batch_size {problem.batch_size} is larger than the "
                         f"{len(setup.X_train)} training examples")
    total = epochs * len(loader)
    checkpoints = set(evaluation_steps(total, evaluations))
    curve = {"step": [], "seconds": [], "train_loss": []}
    seconds = 0.0

    def measure(step):
        loss = training.evaluate(net, loss_fn, setup.X_subset, setup.Y_subset)["loss"]
        for key, value in (("step", step), ("seconds", seconds), ("train_loss", loss)):
            curve[key].append(value)
        return math.isfinite(loss)

    def batches():
        for _ in range(epochs):
            yield from loader

    measure(0)
    step, diverged = 0, False
    bar = tqdm(total=total, disable=None if progress else True, unit="step", file=sys.stderr,
               dynamic_ncols=True, leave=False, desc=f"{problem.name} {_label(method, lr)}")
    try:
        started = time.perf_counter()
        for X, y in batches():
            loss = training.train_step(net, loss_fn, optimizer, X, y)
            step += 1
            bar.update(1)
            if step in checkpoints:
                backend.synchronize(loss)  # the clock stops when the device has finished
                seconds += time.perf_counter() - started
                if not measure(step):
                    diverged = True
                    break
                if stop_at_target and curve["train_loss"][-1] <= problem.target_loss:
                    break
                started = time.perf_counter()
    finally:
        bar.close()
    reached = time_to_target(curve, problem.target_loss)
    record = {"method": method, "lr": lr, "label": _label(method, lr), "steps": step, "epochs": epochs,
              "stopped_at_target": bool(stop_at_target and reached[0] is not None),
              "train_seconds": seconds, "seconds_per_step": seconds / max(step, 1), "curve": curve,
              "steps_to_target": reached[0], "seconds_to_target": reached[1],
              "final_train_loss": curve["train_loss"][-1], "diverged": diverged,
              "test": test_metrics(problem, net, loss_fn, setup)}
    if method == "kfac":
        record["damping"] = float(getattr(optimizer, "damping", math.nan))
        record["refused"] = int(getattr(optimizer, "refused", 0))
    return record


def test_metrics(problem, net, loss_fn, setup):
    """The test-split scores: {"loss", "accuracy"} (classification) or {"loss", "squared_error"}.

    squared_error is the mean over test examples of ‖x̂ − x‖², x̂ the
    reconstruction (the sigmoid of the logits for a Bernoulli loss).
    """
    result = training.evaluate(net, loss_fn, setup.X_test, setup.Y_test)
    if models.task(problem.model).name == "classification":
        return {"loss": result["loss"], "accuracy": result["accuracy"]}
    return {"loss": result["loss"], "squared_error": result["squared_error"]}


# --------------------------------------------------------------------------- #
# A problem's race, the step cost, the whole race
# --------------------------------------------------------------------------- #
def _versus(kfac, other):
    """K-FAC's iterations and seconds to the target ÷ another run's.

    None where K-FAC never reached the target. Where only the other run never
    reached it, its whole run stands in for its count and ``upper_bound`` is
    True: the true ratio is smaller than the one given.
    """
    bound = other["steps_to_target"] is None
    if kfac["steps_to_target"] is None:
        return {"iterations": None, "seconds": None, "upper_bound": bound}
    steps, seconds = ((other["steps"], other["train_seconds"]) if bound else
                      (other["steps_to_target"], other["seconds_to_target"]))
    return {"iterations": kfac["steps_to_target"] / steps if steps else None,
            "seconds": kfac["seconds_to_target"] / seconds if seconds else None, "upper_bound": bound}


def race_problem(problem, quick=False, seed=0, progress=True, log=print, max_train=None, methods=METHODS,
                 stop_at_target=False, evaluations=EVALUATIONS, setup=None):
    """Race ``methods`` on ``problem`` (a name or :class:`.race_tracks.Problem`); returns a JSON-ready dict.

    quick : one learning rate per method (the sweep's middle) and a fifth of
        the epochs (at least 1) — a smoke test, not a result.
    log : callable receiving one line per finished run, or None.
    methods : the contenders, in order (default :data:`.race_tracks.METHODS`, all six).
    stop_at_target : end each run when it reaches the target (see :func:`run_one`);
        then there is no suggested target (the runs stop before 80% of their budget).
    evaluations : see :func:`run_one`; setup : :func:`.race_tracks.prepare`'s,
        if already made (default: made here).

    The dict: ``problem`` (its definition), ``epochs``, ``train_examples``,
    ``methods``, ``runs`` (records of :func:`run_one`, method by method in the
    order of ``methods``, each method's learning rates in increasing order),
    ``best`` ({method: index into runs}), ``best_lr`` ({method: its best run's
    lr, None for K-FAC}), ``sweep_edge`` ({method: "low", "high" or None, see
    :func:`.race_tracks.sweep_edge`}), ``kfac_vs`` ({every other method:
    {"iterations", "seconds", "upper_bound"}}: K-FAC's count to the target ÷
    that method's best run's, see :func:`_versus`; empty without K-FAC) and
    ``suggested_target`` (:func:`suggest_target`).
    """
    problem = _check_problem(problem) if isinstance(problem, str) else problem
    methods = check_methods(methods)
    setup = prepare(problem, seed, max_train) if setup is None else setup
    epochs = max(1, problem.epochs // 5) if quick else problem.epochs
    runs = []
    for method in methods:
        sweep = problem.lrs.get(method, (None,))
        for lr in (sweep[len(sweep) // 2],) if quick else sweep:
            record = run_one(problem, method, lr, setup, epochs, seed, progress, stop_at_target, evaluations)
            runs.append(record)
            if log:
                log(f"  {problem.name:<18} {_run_line(record)}")
    result = {"problem": problem.to_dict(), "epochs": epochs, "train_examples": len(setup.X_train),
              "test_examples": len(setup.X_test), "subset_examples": len(setup.X_subset),
              "stopped_at_target": stop_at_target}
    return _with_verdicts(result, methods, runs)


def _with_verdicts(result, methods, runs):
    """``result`` with ``methods``, ``runs`` and what is read from them: ``best``, ``best_lr``,
    ``sweep_edge``, ``kfac_vs`` and ``suggested_target`` (see :func:`race_problem`)."""
    best = {method: best_run(runs, method) for method in methods}
    kfac_vs = {}
    if "kfac" in best:
        kfac = runs[best["kfac"]]
        kfac_vs = {method: _versus(kfac, runs[best[method]]) for method in methods if method != "kfac"}
    return dict(result, methods=list(methods), runs=runs, best=best,
                best_lr={method: runs[i]["lr"] for method, i in best.items()},
                sweep_edge={method: sweep_edge(runs, method) for method in methods}, kfac_vs=kfac_vs,
                suggested_target=None if result["stopped_at_target"] else suggest_target(runs))


def _run_line(record):
    reached = ("target not reached" if record["steps_to_target"] is None else
               f"target at step {record['steps_to_target']} ({record['seconds_to_target']:.3g} s)")
    test = record["test"]
    score = (f"test acc {100 * test['accuracy']:.2f}%" if "accuracy" in test else
             f"test sq. err {test['squared_error']:.2f}")
    return (f"{record['label']:<18} {record['steps']:>5} steps {record['train_seconds']:6.3g} s  "
            f"loss {record['final_train_loss']:.4g}  {reached}  {score}" + ("  DIVERGED" if record["diverged"] else ""))


def race(problems=None, quick=False, seed=0, progress=True, log=print, step_batch_sizes=None,
         step_repeats=None, max_train=None, backend_name="numpy", dtype="float32", methods=METHODS,
         stop_at_target=(), evaluations=EVALUATIONS, batches=BATCHES):
    """The whole race: :func:`race_problem` on each track and :func:`step_cost` on each net; a JSON-ready report.

    problems : names or :class:`.race_tracks.Problem` objects (default all of
    :data:`.race_tracks.PROBLEMS`); batches : at which batch sizes each is raced,
    some of "own" and "second" (default both; :func:`.race_tracks.tracks`);
    quick : see :func:`race_problem` (and the step cost at batch 64 and 256, one repeat);
    step_batch_sizes : default 64, 128, 256, 512 (() skips the step cost);
    step_repeats : default 3 (1 when quick); max_train : see :func:`prepare`;
    backend_name, dtype : where and how to train (restored afterwards);
    methods : the contenders (default :data:`.race_tracks.METHODS`, all six);
    stop_at_target : names of the tracks whose runs end at the target (:func:`run_one`);
    evaluations : about how many times each run measures its training loss.

    The report: ``settings``, ``problems`` ({track name: race_problem's dict},
    e.g. "digits-mlp" and "digits-mlp-b512"), ``step_cost`` ({problem name:
    step_cost's dict}, once per net), ``goals`` (:func:`check_goals`) and
    ``seconds`` (the wall clock of each part and the total).
    """
    methods = check_methods(methods)
    bases = [_check_problem(p) for p in (PROBLEMS if problems is None else problems)]
    chosen = tracks(bases, batches)
    names = [problem.name for problem in chosen]
    if step_batch_sizes is None:
        step_batch_sizes = (64, 256) if quick else (64, 128, 256, 512)
    step_repeats = (1 if quick else 3) if step_repeats is None else step_repeats
    started = time.perf_counter()
    report = {"settings": {"problems": names, "methods": list(methods), "batches": list(batches), "quick": quick, "seed": seed, "backend": backend_name,
                           "dtype": dtype, "max_train": max_train, "sgd_momentum": SGD_MOMENTUM,
                           "train_subset": TRAIN_SUBSET, "step_batch_sizes": list(step_batch_sizes),
                           "step_repeats": step_repeats, "step_cost_goal": list(STEP_COST_GOAL)},
              "problems": {}, "step_cost": {}, "seconds": {}}
    with backend.using(backend_name, dtype):
        setups = {}  # one data set per problem, shared by its tracks
        for problem in chosen:
            clock = time.perf_counter()
            key = (problem.dataset, problem.model)
            setups[key] = setups.get(key) or prepare(problem, seed, max_train)
            report["problems"][problem.name] = race_problem(problem, quick, seed, progress, log, max_train,
                                                            methods, stop_at_target=problem.name in stop_at_target,
                                                            evaluations=evaluations, setup=setups[key])
            report["seconds"][problem.name] = time.perf_counter() - clock
        for problem in bases if step_batch_sizes else ():
            clock = time.perf_counter()
            report["step_cost"][problem.name] = step_cost(problem, step_batch_sizes, step_repeats, seed=seed,
                                                          max_train=max_train, methods=methods, log=log)
            report["seconds"][f"{problem.name} step cost"] = time.perf_counter() - clock
    report["goals"] = check_goals(report)
    report["seconds"]["total"] = time.perf_counter() - started
    return report


def merge(reports, sweeps=None):
    """One race report from several run apart with the same protocol (e.g. some methods now, others later).

    reports : :func:`race` reports with the same seed, quick flag, training
    split, backend and dtype, whose tracks of the same name have the same
    problem (batch size, epochs, target). Runs are identical whichever report
    holds them — the same initial weights and batches — but their seconds were
    measured in different sessions, so the clocks compare only as far as the
    machine's load was alike. A (method, learning rate) run in two reports
    raises ``ValueError``. sweeps : {method: (lr, ...)} or a callable taking a
    track's problem dict and returning that, e.g. the current sweeps of
    :data:`.race_tracks.PROBLEMS`: keep only the runs at those rates (K-FAC's
    always), so that the report is the race of those sweeps; None keeps all.

    Returns a report like :func:`race`'s: each track's runs method by method in
    :data:`.race_tracks.METHODS` order, its best runs, edges and K-FAC's ratios
    read again; the step costs of each net with their methods put together
    (ratios to the SGD of the report that measured SGD); the goals judged
    again; ``settings["merged"]`` the number of reports and
    ``settings["dropped"]`` the labels of the runs left out, per track.
    """
    if not reports:
        raise ValueError("merge: no reports")
    keys = ("seed", "quick", "max_train", "backend", "dtype")
    first = reports[0]["settings"]
    for report in reports[1:]:
        differ = [k for k in keys if report["settings"].get(k) != first.get(k)]
        if differ:
            raise ValueError(f"merge: the reports differ in {', '.join(differ)}: not the same protocol")
    order = {method: i for i, method in enumerate(METHODS)}
    problems, costs, seconds = {}, {}, {}
    for report in reports:
        for name, result in report["problems"].items():
            if name not in problems:
                problems[name] = dict(result, runs=list(result["runs"]))
                continue
            held = problems[name]
            same = ("batch_size", "epochs", "target_loss", "dataset", "model")
            if any(held["problem"][k] != result["problem"][k] for k in same) or held["epochs"] != result["epochs"]:
                raise ValueError(f"merge: track {name!r} is not the same problem in every report")
            done = {(run["method"], run["lr"]) for run in held["runs"]}
            twice = [run["label"] for run in result["runs"] if (run["method"], run["lr"]) in done]
            if twice:
                raise ValueError(f"merge: {name}: {', '.join(twice)} in two reports")
            held["runs"] += result["runs"]
        for name, cost in report["step_cost"].items():
            held = costs.setdefault(name, dict(cost, seconds={}, intervals={}))
            if held["batch_sizes"] != cost["batch_sizes"]:
                raise ValueError(f"merge: the step cost of {name} has other batch sizes in another report")
            held["seconds"].update(cost["seconds"])
            held["intervals"].update(cost.get("intervals", {}))
        for part, value in report["seconds"].items():
            seconds[part] = seconds.get(part, 0.0) + value
    dropped = {}
    for name, result in problems.items():
        wanted = sweeps(result["problem"]) if callable(sweeps) else sweeps
        if wanted is not None:
            kept = [run for run in result["runs"] if run["lr"] is None or run["lr"] in wanted.get(run["method"], ())]
            dropped[name] = [run["label"] for run in result["runs"] if run not in kept]
            result["runs"] = kept
        runs = sorted(result["runs"], key=lambda run: (order.get(run["method"], len(order)), run["lr"] or 0.0))
        methods = sorted({run["method"] for run in runs}, key=lambda m: order.get(m, len(order)))
        problems[name] = _with_verdicts(result, methods, runs)
    for cost in costs.values():
        cost["seconds"] = {m: cost["seconds"][m] for m in sorted(cost["seconds"], key=lambda m: order.get(m, 99))}
        baseline = cost["seconds"].get("sgd", [None] * len(cost["batch_sizes"]))
        cost["ratio_to_sgd"] = {m: [None if s is None or b is None else s / b for s, b in zip(values, baseline, strict=True)]
                                for m, values in cost["seconds"].items()}
    methods = [m for m in METHODS if any(m in r["settings"].get("methods", METHODS) for r in reports)]
    merged = {"settings": dict(first, problems=list(problems), methods=methods, merged=len(reports), dropped=dropped),
              "problems": problems, "step_cost": costs, "seconds": seconds}
    merged["goals"] = check_goals(merged)
    return merged


# --------------------------------------------------------------------------- #
# Goals and the printed table
# --------------------------------------------------------------------------- #
def check_goals(report):
    """The benchmark goals, each {"goal", "value", "threshold", "met"}; misses are reported, not hidden.

    Per problem (its ``goals``): K-FAC's test accuracy ≥ "accuracy"; K-FAC's
    iterations and seconds to the target ≤ "iterations"/"seconds" × the best
    Adam's (value None, a miss, when K-FAC never reaches it; when only Adam
    never does, the value is an upper bound, and "met" None if it is above
    the threshold: undecided). Per measured net: K-FAC's
    step ≤ :data:`STEP_COST_GOAL` × SGD's at that batch size.
    """
    goals = []

    def add(text, value, threshold, at_most, bound=False):
        met = value is not None and (value <= threshold if at_most else value >= threshold)
        if bound and not met and value is not None:
            met = None  # only an upper bound, and above the threshold: undecided
        goals.append({"goal": text, "value": value, "threshold": threshold, "met": met, "upper_bound": bound})

    for name, result in report["problems"].items():
        wanted = result["problem"]["goals"]
        if "kfac" not in result["best"]:
            continue
        kfac = result["runs"][result["best"]["kfac"]]
        if "accuracy" in wanted:
            add(f"{name}: K-FAC test accuracy after {result['epochs']} epochs ≥ {wanted['accuracy']:.0%}",
                kfac["test"].get("accuracy"), wanted["accuracy"], at_most=False)
        for key in ("iterations", "seconds"):
            versus = result["kfac_vs"].get("adam")
            if key in wanted and versus is not None:
                add(f"{name}: K-FAC {key} to the target ≤ {wanted[key]:.2g} × best Adam's",
                    versus[key], wanted[key], at_most=True, bound=versus["upper_bound"])
    size, limit = STEP_COST_GOAL
    for name, cost in report["step_cost"].items():
        if size in cost["batch_sizes"] and "kfac" in cost["ratio_to_sgd"]:
            value = cost["ratio_to_sgd"]["kfac"][cost["batch_sizes"].index(size)]
            add(f"{name}: K-FAC step ≤ {limit} × SGD step at batch {size} (T = {cost['inverse_interval']})",
                value, limit, at_most=True)
    return goals


def _number(value, form):
    return "—" if value is None else format(value, form)


def _metric(problem, test):
    """A run's test score as text: accuracy in % (classification) or the squared error."""
    if problem["task"] == "classification":
        return _number(None if test.get("accuracy") is None else 100 * test["accuracy"], ".2f")
    return _number(test.get("squared_error"), ".3f")


def _edge_text(edge):
    return {None: "", "low": "EDGE low", "high": "EDGE high"}[edge]


def _track_lines(name, result):
    """One track's block of :func:`table`: every run, then each method's best and K-FAC's ratios to it."""
    problem = result["problem"]
    runs, best = result["runs"], result["best"]
    steps = max((run["steps"] for run in runs), default=0)
    lines = [f"{name}: {problem['model']} on {problem['dataset']} ({result['train_examples']:,} examples), "
             f"batch {problem['batch_size']}, {result['epochs']} epochs (≤ {steps} steps), "
             f"target training loss {problem['target_loss']:g}"]
    score = "test acc" if problem["task"] == "classification" else "test sq.err"
    lines.append(f"  {'run':<20}{'steps→target':>13}{'s→target':>10}{'final loss':>12}{'test loss':>11}"
                 f"{score:>12}{'ms/step':>9}")
    chosen = set(best.values())
    for i, run in enumerate(runs):
        mark = "*" if i in chosen else " "
        lines.append(f" {mark}{run['label']:<20}{_number(run['steps_to_target'], 'd'):>13}"
                     f"{_number(run['seconds_to_target'], '.3g'):>10}{run['final_train_loss']:>12.4g}"
                     f"{run['test']['loss']:>11.4g}{_metric(problem, run['test']):>12}"
                     f"{1e3 * run['seconds_per_step']:>9.1f}")
    lines.append(f"  best of each method{'':<3}{'lr':>8}{'sweep':>11}{'steps→target':>13}{'s→target':>10}"
                 f"{score:>12}  K-FAC ÷ it: iterations, seconds")
    edges = result.get("sweep_edge", {})
    for method, i in best.items():
        run, versus = runs[i], result["kfac_vs"].get(method)
        ratio = ""
        if versus is not None:
            sign = "<" if versus["upper_bound"] and versus["iterations"] is not None else ""
            ratio = (f"{sign}{_number(versus['iterations'], '.2f')}, {sign}{_number(versus['seconds'], '.2f')}"
                     + (f" ({method} never reached the target)" if versus["upper_bound"] else ""))
        lines.append(f"  {method:<22}{_number(run['lr'], 'g'):>8}{_edge_text(edges.get(method)):>11}"
                     f"{_number(run['steps_to_target'], 'd'):>13}{_number(run['seconds_to_target'], '.3g'):>10}"
                     f"{_metric(problem, run['test']):>12}  {ratio}")
    flagged = [method for method in best if edges.get(method)]
    if flagged:
        lines.append(f"  EDGE: the best run of {', '.join(flagged)} is at the edge of its sweep; "
                     "a learning rate beyond it may do better")
    lines.append(f"  suggested target from this race: {_number(result['suggested_target'], 'g')}")
    return lines + [""]


def _step_cost_lines(step_cost_report):
    """The step-cost block of :func:`table`: ms per step of every method and its ratio to SGD's."""
    first = next(iter(step_cost_report.values()))
    methods = list(first["seconds"])
    lines = [f"Step cost: ms per step (÷ SGD's), median of {first['repeats']} blocks of {first['steps_per_block']} "
             f"steps (K-FAC: T = {first['inverse_interval']})",
             f"  {'net':<18}{'batch':>6}" + "".join(f"{m:>16}" for m in methods)]
    for name, cost in step_cost_report.items():
        for i, size in enumerate(cost["batch_sizes"]):
            cells = []
            for method in methods:
                seconds, ratio = cost["seconds"][method][i], cost["ratio_to_sgd"][method][i]
                cells.append("—" if seconds is None else
                             f"{1e3 * seconds:.1f}" + ("" if ratio is None else f" ({ratio:.2f}×)"))
            lines.append(f"  {name:<18}{size:>6}" + "".join(f"{cell:>16}" for cell in cells))
    return lines + [""]


def table(report):
    """The race's results as text: one block per track (every run, each method's best, K-FAC's ratios
    to it, flagged sweeps), the step cost of every method, the goals."""
    lines = []
    for name, result in report["problems"].items():
        lines += _track_lines(name, result)
    if report["step_cost"]:
        lines += _step_cost_lines(report["step_cost"])
    if report["goals"]:
        lines.append("Goals" + (" (quick run: not meaningful)" if report["settings"]["quick"] else ""))
        for goal in report["goals"]:
            sign = "<" if goal["upper_bound"] and goal["value"] is not None else ""
            verdict = {True: "met", False: "MISS", None: "?"}[goal["met"]]
            lines.append(f"  [{verdict:>4}] {goal['goal']}: {sign}{_number(goal['value'], '.3g')}")
    return "\n".join(lines)
