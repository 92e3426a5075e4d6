"""The main job, ``minikfac demo`` (``make demo``): what minikfac is for, in about two minutes on a CPU.

Three parts, each announced with its progress:

1. **Exact Fisher vs K-FAC** (:mod:`minikfac.jobs.compare`): Martens & Grosse's
   256-20-20-20-20-20-10 tanh network on 16×16 MNIST, trained for a few
   epochs of Adam; its exact Fisher on 1,000 training examples (P = 7,030,
   float64) next to K-FAC, K-FAC tridiagonal, EKFAC, the diagonal and the exact
   block-diagonal: relative errors, the sources of K-FAC's error, Monte-Carlo
   noise, cosines with the exact natural gradient, spectra, and their Figs. 2
   and 3.
2. **A short race** (:mod:`minikfac.jobs.race`): K-FAC (its defaults, untuned)
   against Adam (the best of three learning rates; on the autoencoder the
   best of them only) on the digits MLP, the MNIST CNN and the MNIST
   autoencoder: iterations and seconds to a target training loss, where each
   run stops. The small classifiers show where K-FAC's extra work per step
   costs more seconds than its fewer steps save; the autoencoder, a deep net
   with a long plateau at batch 256, where it wins on both counts.
3. **The report**: ``OUT/summary.md`` (the error table, the race table and the
   figures, readable on GitHub or in any Markdown viewer), ``OUT/summary.json``
   (every number) and the PNG figures beside them.

:func:`run` does the work and returns the report;
:func:`minikfac.jobs.demo_summary.markdown` writes it as text that teaches
(how to read each table and figure, what it shows). ``quick=True`` shrinks every part to a smoke test (seconds) for the test
suite; its numbers mean nothing.
"""

import dataclasses
import os
import platform
import time

import numpy as np

from minikfac import __version__, threads
from minikfac.jobs import compare, race, race_tracks
from minikfac.jobs.demo_summary import format_or_dash, markdown, upper_bound_mark
from minikfac.jobs.output import write_json

#: The race's contenders and problems. Every run stops at the target: the time to it is what the
#: demo shows. On the autoencoder Adam runs only its best learning rate of the race's three
#: (``minikfac bench`` runs all: the other two do not reach the target within the budget, and
#: would cost the demo a minute).
RACE_METHODS = ("adam", "kfac")
#: Measurements of the training loss per run: half the bench's (each costs a pass over 1,000 examples).
RACE_EVALUATIONS = 30
_AUTOENCODER = race_tracks.PROBLEMS["mnist-autoencoder"]
RACE_PROBLEMS = (race_tracks.PROBLEMS["digits-mlp"], race_tracks.PROBLEMS["mnist-cnn"],
                 dataclasses.replace(_AUTOENCODER, lrs=dict(_AUTOENCODER.lrs, adam=(1e-2,))))


def _comparison_settings(out, seed, quick):
    if quick:  # a 2-16-16-10 ReLU net on the 8×8 digits: seconds, not the paper's figures
        return compare.settings(dataset="digits", model="mlp", hidden=[16, 16], train_epochs=1, examples=100,
                                   mc_samples=[1, 4], mc_seeds=1, seed=seed, out=out)
    return compare.settings(seed=seed, out=out)


def run(out="report", seed=0, quick=False, progress=True, log=print):
    """Run the three parts and write ``out``; returns the report (a JSON-ready dict).

    out : the folder (created); seed : seeds the weights, the data order and
    K-FAC's sampling; quick : smoke-test sizes; progress : progress bars for the
    race's runs; log : receives each progress line (None: silent).

    The report: ``settings``, ``comparison`` (the report of
    :func:`minikfac.jobs.compare.run`), ``race`` (of :func:`minikfac.jobs.race.race`),
    ``figures`` (paths, relative to ``out``), ``seconds`` (per part and total).
    ``out/summary.md`` and ``out/summary.json`` are written last.
    """
    from minikfac import plot  # matplotlib only here: the demo's job is its figures

    say = log or (lambda line: None)
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    seconds = {}

    say("[1/3] Exact Fisher vs K-FAC")
    clock = time.perf_counter()
    # One BLAS thread here too: on 2 cores with one busy, this part took 66 s with one and 82 s with two.
    with threads.limit(1):
        compared, compare_report = compare.run(_comparison_settings(out, seed, quick), log=say)
    seconds["exact Fisher vs K-FAC"] = time.perf_counter() - clock

    problems = RACE_PROBLEMS[:1] if quick else RACE_PROBLEMS
    say(f"[2/3] The race: K-FAC vs Adam on {', '.join(p.name for p in problems)}")
    clock = time.perf_counter()
    race_report = race.race(problems, quick=quick, seed=seed, progress=progress, log=say, step_batch_sizes=(),
                            max_train=300 if quick else None, methods=RACE_METHODS,
                            stop_at_target=[p.name for p in problems], evaluations=RACE_EVALUATIONS,
                            batches=("own",))
    race_figures = plot.race_figures(race_report, out)
    seconds["race"] = time.perf_counter() - clock

    say("[3/3] The report")
    seconds["total"] = time.perf_counter() - started
    report = {"settings": {"out": out, "seed": seed, "quick": quick, "minikfac": __version__,
                           "python": platform.python_version(), "numpy": np.__version__},
              "comparison": compare_report, "race": race_report,
              "figures": [os.path.relpath(path, out) for path in compare_report["figures"] + race_figures],
              "seconds": seconds}
    report["summary"] = os.path.join(out, "summary.md")
    with open(report["summary"], "w", encoding="utf-8") as f:
        f.write(markdown(report, compared.table(), race.table(race_report)))
    write_json(report, os.path.join(out, "summary.json"))
    return report


def console_summary(report):
    """The few lines ``minikfac demo`` prints at the end: K-FAC's error, the race's ratios, where the report is."""
    compared = report["comparison"]
    errors, cosines = compared["errors"], compared["cosines"]
    lines = [f"Exact Fisher vs K-FAC ({compared['arguments']['model']}, P = {compared['parameters']:,}, "
             f"N = {compared['setup']['examples']:,}): relative error "
             + ", ".join(f"{name} {error['total']:.3f}" for name, error in errors.items())]
    lines.append("  cosine with the exact natural gradient: "
                 + ", ".join(f"{name} {value:.3f}" for name, value in cosines.items() if name != "exact"))
    for name, result in report["race"]["problems"].items():
        versus = result["kfac_vs"].get("adam", {})
        kfac = result["runs"][result["best"]["kfac"]]
        accuracy = kfac["test"].get("accuracy")
        ratios = ("K-FAC did not reach the target" if versus.get("iterations") is None else
                  f"K-FAC ÷ best Adam {upper_bound_mark(versus)}{versus['iterations']:.2f}× the iterations, "
                  f"{upper_bound_mark(versus)}{format_or_dash(versus['seconds'], '.2f')}× the seconds to the target")
        lines.append(f"Race {name}: {ratios}" + ("" if accuracy is None else f"; K-FAC test accuracy {100 * accuracy:.2f}%"))
    lines.append(f"Wrote {report['summary']} and {len(report['figures'])} figures "
                 f"in {report['seconds']['total']:.0f} s")
    return "\n".join(lines)
