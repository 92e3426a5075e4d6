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

:func:`run` does the work and returns the report; :func:`markdown` writes it as
text. ``quick=True`` shrinks every part to a smoke test (seconds) for the test
suite; its numbers mean nothing.
"""

import dataclasses
import os
import platform
import time

import numpy as np

from minikfac import __version__, threads
from minikfac.jobs import compare, race, race_tracks
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
                            stop_at_target=[p.name for p in problems], evaluations=RACE_EVALUATIONS)
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


# --------------------------------------------------------------------------- #
# summary.md
# --------------------------------------------------------------------------- #
def _cell(value, form):
    return "—" if value is None else format(value, form)


def _bound(versus):
    """"< " when the ratio is only an upper bound (the other method never reached the target)."""
    return "< " if versus["upper_bound"] else ""


def _error_rows(errors, sizes):
    head = "| approximation | whole F | " + " | ".join(f"layer {i + 1} ({n:,})" for i, n in enumerate(sizes)) + " |"
    rows = [head, "|---" * (len(sizes) + 2) + "|"]
    for name, error in errors.items():
        rows.append(f"| {name} | {error['total']:.3f} | " + " | ".join(f"{e:.3f}" for e in error["layers"]) + " |")
    return rows


def _race_rows(result):
    classify = result["problem"]["task"] == "classification"
    rows = ["| run | steps to target | seconds to target | final training loss | "
            + ("test accuracy" if classify else "test squared error") + " | ms per step |",
            "|---|---|---|---|---|---|"]
    best = set(result["best"].values())
    for i, run_ in enumerate(result["runs"]):
        test = run_["test"]
        metric = (_cell(None if test.get("accuracy") is None else 100 * test["accuracy"], ".2f") + "%" if classify
                  else _cell(test.get("squared_error"), ".2f"))
        label = f"**{run_['label']}**" if i in best else run_["label"]
        rows.append(f"| {label} | {_cell(run_['steps_to_target'], 'd')} | {_cell(run_['seconds_to_target'], '.3g')} "
                    f"| {run_['final_train_loss']:.4g} | {metric} | {1e3 * run_['seconds_per_step']:.1f} |")
    return rows


def _race_section(race_report):
    lines = []
    for name, result in race_report["problems"].items():
        problem = result["problem"]
        lines += [f"### {name}", "",
                  f"{problem['model']} on {problem['dataset']} ({result['train_examples']:,} training examples), "
                  f"batch {problem['batch_size']}, {result['epochs']} epochs; target training loss "
                  f"{problem['target_loss']:g} (mean over a fixed subset, measured with the clock stopped)"
                  + ("; each run stops when it reaches the target, so its final loss and test score are "
                     "those at that point" if result.get("stopped_at_target") else "")
                  + ". Bold: each method's best run.", ""]
        lines += _race_rows(result)
        versus = result["kfac_vs"].get("adam")
        if versus and versus["iterations"] is None:
            lines += ["", "K-FAC did not reach the target within the budget."]
        elif versus:
            lines += ["", f"K-FAC ÷ best Adam: **{_bound(versus)}{versus['iterations']:.2f}× the iterations**, "
                          f"**{_bound(versus)}{_cell(versus['seconds'], '.2f')}× the seconds** to the target"
                          + (" (Adam never reached it: an upper bound)" if versus["upper_bound"] else "") + "."]
        lines += ["", f"![race on {name}](race_{name}.png)", ""]
    return lines


def markdown(report, comparison_table=None, race_table=None):
    """``summary.md``'s text from a :func:`run` report (the two tables' text versions go in an appendix)."""
    compared, raced = report["comparison"], report["race"]
    setup, training = compared["setup"], compared["training"]
    args = compared["arguments"]
    quick = " (quick: a smoke test, the numbers mean nothing)" if report["settings"]["quick"] else ""
    lines = [f"# minikfac demo{quick}", "",
             f"minikfac {report['settings']['minikfac']}, Python {report['settings']['python']}, NumPy "
             f"{report['settings']['numpy']}, seed {report['settings']['seed']}; "
             f"{report['seconds']['total']:.0f} s in all.", "",
             "## 1. Exact Fisher vs K-FAC", "",
             f"The {args['model']} network (P = {compared['parameters']:,}) on {args['dataset']}, after "
             f"{training['epochs']} epochs of Adam (test accuracy {100 * training['accuracy']:.1f}%). Exact "
             f"{setup['kind']} Fisher F of N = {setup['examples']:,} training examples, float64. Relative Frobenius "
             "errors ‖F − F̂‖/‖F‖ for the whole matrix, ‖F_ll − F̂_ll‖/‖F_ll‖ for each layer's diagonal block "
             "(its size in parentheses):", ""]
    lines += _error_rows(compared["errors"], setup["layer_sizes"])
    sources = compared["sources"]
    lines += ["", f"K-FAC's error has two sources: the cross-layer blocks it drops ({sources['cross_layer']:.3f} of "
                  f"‖F‖) and the independence of activations and gradients it assumes within a layer "
                  f"({sources['independence']['total']:.3f}); the best Kronecker product of each block would "
                  f"still be {sources['best_kronecker']['total']:.3f} away.", "",
              f"Cosine of each step with the exact natural gradient (F + λI)⁻¹∇, λ = {setup['damping']:g}:", "",
              "| direction | cosine |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in compared["cosines"].items()]
    figures = {os.path.basename(path): path for path in compared["figures"]}
    lines += ["", "![exact Fisher vs K-FAC](fisher_vs_kfac.png)", "",
              "Martens & Grosse 2015, Fig. 2: |F| and K-FAC's |F̃| on the middle layers (white: large), F̃ "
              "built with every cross-layer block A_ij ⊗ G_ij as in the paper (the optimizer keeps only the "
              "diagonal blocks). Compare the coarse structure, block by block, with the detail inside each block.",
              "", "![K-FAC and its inverse](inverse_structure.png)", "",
              "Martens & Grosse 2015, Fig. 3: F̃, its inverse, and the mean |entry| of each block of the inverse. "
              "The paper's argument for a block-diagonal or block-tridiagonal *inverse* is that the inverse "
              "concentrates on the diagonal blocks and their neighbours; the right panel measures how much it "
              "does on this network.", ""]
    for name, caption in (("spectra.png", "Eigenvalues of F and its approximations."),
                          ("monte_carlo.png", "Monte-Carlo noise: error against the number of sampled targets.")):
        if name in figures:
            lines += [f"![{caption}]({name})", "", caption, ""]
    lines += ["## 2. The race: K-FAC vs Adam", "",
              "K-FAC runs with its defaults, untuned; Adam is the best of three learning rates (on the "
              "autoencoder only the best of them runs: `minikfac bench` shows the other two never reach the "
              "target). Every run starts from the same weights, sees the same batches and stops at the target. "
              "Seconds count training only, on this machine. On the two small classifiers, on a CPU, K-FAC's "
              "extra work per step (statistics, inverses, its quadratic model, its guard) can cost more seconds "
              "than its fewer iterations save. The MNIST autoencoder — deep, with a long plateau for first-order "
              "methods, its work per step dominated by large matrix products — is the classic K-FAC problem.", ""]
    lines += _race_section(raced)
    if comparison_table or race_table:
        lines += ["## Appendix: the tables as printed", ""]
        for text in (comparison_table, race_table):
            if text:
                lines += ["```", text, "```", ""]
    lines += ["## Time", "", ", ".join(f"{name} {value:.1f} s" for name, value in report["seconds"].items()), ""]
    return "\n".join(lines)


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
                  f"K-FAC ÷ best Adam {_bound(versus)}{versus['iterations']:.2f}× the iterations, "
                  f"{_bound(versus)}{_cell(versus['seconds'], '.2f')}× the seconds to the target")
        lines.append(f"Race {name}: {ratios}" + ("" if accuracy is None else f"; K-FAC test accuracy {100 * accuracy:.2f}%"))
    lines.append(f"Wrote {report['summary']} and {len(report['figures'])} figures "
                 f"in {report['seconds']['total']:.0f} s")
    return "\n".join(lines)
