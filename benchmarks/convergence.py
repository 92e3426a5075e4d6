"""The race: K-FAC vs SGD, Adam, Shampoo, SOAP and Muon, to a target training loss (``minikfac bench`` as a script).

On digits-MLP (10 epochs), MNIST-CNN (5 epochs) and the MNIST autoencoder,
each at its own batch size and at batch 512 (the same budget in steps), every
method but K-FAC runs a sweep of three learning rates and is reported at its
best (a best at the sweep's edge is flagged); K-FAC runs once with its
defaults. For every run: the iterations and seconds of training to the
problem's target training loss (measured on a fixed 1,000-example subset of
the training split, clock stopped), the final test metrics, and the mean step
time; then the step cost of each method against the batch size. Everything is
in :mod:`minikfac.jobs.race`; this script parses arguments, prints the table
and writes the JSON and the figures.

``--methods`` and ``--batches`` run a part of the race, ``--sweep
METHOD=LR,LR`` other learning rates of a method (e.g. one beyond a sweep's
flagged edge); ``--merge A.json
B.json ...`` puts parts run apart (same seed, same protocol) into one report
(:func:`minikfac.jobs.race.merge`), keeping the runs at the rates of the
current sweeps, and prints and draws it without training.

Usage: python benchmarks/convergence.py [--problems digits-mlp,mnist-cnn,mnist-autoencoder]
       [--methods sgd,adam,kfac,shampoo,soap,muon] [--batches both|own|second]
       [--sweep soap=0.1] [--quick] [--seed 0] [--step-batch-sizes 64 128 256 512] [--json PATH] [--out DIR]
       python benchmarks/convergence.py --merge A.json B.json [--json PATH] [--out DIR]
"""

import argparse
import dataclasses
import json
import os
import time

from minikfac import plot
from minikfac.jobs import race, race_tracks

BATCHES = {"both": ("own", "second"), "own": ("own",), "second": ("second",)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(race_tracks.PROBLEMS),
                        help="comma-separated problems (default: all)")
    parser.add_argument("--methods", default=",".join(race_tracks.METHODS),
                        help="comma-separated methods (default: all)")
    parser.add_argument("--batches", choices=list(BATCHES), default="both",
                        help="each problem at its own batch size, its second, or both (default: both)")
    parser.add_argument("--sweep", action="append", default=[], metavar="METHOD=LR,LR",
                        help="run these learning rates of METHOD instead of its sweep (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run, not a result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-batch-sizes", type=int, nargs="*",
                        help="batch sizes of the step cost (default 64 128 256 512; none: skip it)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--json", metavar="PATH", help="write the report (curves included) as JSON")
    parser.add_argument("--out", metavar="DIR", help="write the figures (race_<track>.png, step_cost.png)")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="merge these reports instead of racing")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.merge:
        reports = []
        for path in args.merge:
            with open(path) as f:
                reports.append(json.load(f))
        # The race of the current sweeps (race_tracks.PROBLEMS): runs at other rates are left out.
        report = race.merge(reports, sweeps=lambda problem: race_tracks.problem_of_track(problem["name"]).lrs)
    else:
        sweeps = {}
        for item in args.sweep:
            method, _, rates = item.partition("=")
            sweeps[method] = tuple(float(rate) for rate in rates.split(",") if rate)
            if method not in race_tracks.METHODS or method == "kfac" or not sweeps[method]:
                parser.error(f"--sweep {item!r}: expected METHOD=LR,LR with METHOD among the swept methods")
        problems = [dataclasses.replace(race_tracks.PROBLEMS[name], lrs=dict(race_tracks.PROBLEMS[name].lrs, **sweeps))
                    for name in args.problems.split(",") if name]
        methods = [name for name in args.methods.split(",") if name]
        report = race.race(problems, quick=args.quick, seed=args.seed, progress=not args.no_progress,
                           step_batch_sizes=args.step_batch_sizes, backend_name=args.backend, methods=methods,
                           batches=BATCHES[args.batches])
    print()
    print(race.table(report))
    if args.out:
        for path in plot.race_figures(report, args.out):
            print(f"wrote {path}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    print("time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report["seconds"].items())
          + f" (script {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
