"""The race: K-FAC vs SGD with momentum vs Adam, to a target training loss (``minikfac bench`` as a script).

On digits-MLP (10 epochs), MNIST-CNN (5 epochs) and the MNIST autoencoder,
SGD (momentum 0.9) and Adam each run a sweep of three learning rates and are
reported at their best; K-FAC runs once with its defaults. For every run: the
iterations and seconds of training to the problem's target training loss
(measured on a fixed 1,000-example subset of the training split, clock
stopped), the final test metrics, and the mean step time; then the step cost
of each method against the batch size. Everything is in
:mod:`minikfac.jobs.race`; this script parses arguments, prints the table and
writes the JSON and the figures. The full race takes about 10-15 minutes on
2 CPU cores (NumPy, float32).

Usage: python benchmarks/convergence.py [--problems digits-mlp,mnist-cnn,mnist-autoencoder]
       [--quick] [--seed 0] [--step-batch-sizes 64 128 256 512] [--json PATH] [--out DIR]
"""

import argparse
import json
import os
import time

from minikfac import plot
from minikfac.jobs import race, race_tracks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(race_tracks.PROBLEMS),
                        help="comma-separated problems (default: all)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run, not a result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-batch-sizes", type=int, nargs="*",
                        help="batch sizes of the step cost (default 64 128 256 512; none: skip it)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--json", metavar="PATH", help="write the report (curves included) as JSON")
    parser.add_argument("--out", metavar="DIR", help="write the figures (race_<problem>.png, step_cost.png)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    problems = [name for name in args.problems.split(",") if name]
    report = race.race(problems, quick=args.quick, seed=args.seed, progress=not args.no_progress,
                       step_batch_sizes=args.step_batch_sizes, backend_name=args.backend)
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
