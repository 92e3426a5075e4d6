"""``minikfac bench``: the race (:mod:`minikfac.jobs.race`)."""

import argparse
import os

from minikfac import backend
from minikfac.cli.arguments import BACKENDS, check_output, int_list, nonnegative_int, positive_int, problem_list
from minikfac.jobs.output import write_json


def add(commands):
    """The ``bench`` sub-parser."""
    from minikfac.jobs import race_tracks

    bench = commands.add_parser(
        "bench", help="race K-FAC against SGD and Adam to a target training loss",
        description="Race K-FAC (its defaults) against SGD with momentum 0.9 and Adam (each the best of a "
                    "small learning-rate sweep) on digits-MLP, MNIST-CNN and the MNIST autoencoder: "
                    "iterations and seconds to a target training loss, final test metrics, and the cost "
                    "of one step against the batch size. Prints a table; --json and --out write the "
                    "results and the figures. The full race takes about 10-15 minutes on 2 CPU cores.",
    )
    bench.add_argument("--problems", type=problem_list, metavar="P,P", default=list(race_tracks.PROBLEMS),
                       help=f"comma-separated, among {', '.join(race_tracks.PROBLEMS)} (default: all)")
    bench.add_argument("--quick", action="store_true",
                       help="one learning rate per method, a fifth of the epochs, a short step-cost "
                            "measurement: a smoke test, not a result")
    bench.add_argument("--step-batch-sizes", type=int_list, metavar="B,B",
                       help="batch sizes of the step-cost measurement (default: 64,128,256,512; "
                            "64,256 with --quick)")
    bench.add_argument("--no-step-cost", action="store_true", help="skip the step-cost measurement")
    bench.add_argument("--seed", type=nonnegative_int, metavar="S", default=0,
                       help="seeds the weights, the shuffling and K-FAC's sampling (default: %(default)s)")
    bench.add_argument("--backend", choices=BACKENDS, default="numpy", help="(default: %(default)s)")
    bench.add_argument("--json", metavar="PATH", help="write the results (curves included) as JSON")
    bench.add_argument("--out", metavar="DIR", default=os.path.join("report", "bench"),
                       help="where to write the figures (default: %(default)s)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar and no per-run lines")
    # Shrinks the training split for the test suite; not for users.
    bench.add_argument("--max-train", type=positive_int, help=argparse.SUPPRESS)
    bench.set_defaults(handler=handle, command_parser=bench)


def handle(parser, args):
    from minikfac import plot
    from minikfac.jobs import race

    check_output(parser, "--json", args.json)
    check_output(parser, "--out", args.out, folder=True)
    try:
        backend.module_of(args.backend)
    except RuntimeError as err:  # e.g. cupy without a GPU: the message says how to fix it
        parser.error(f"--backend: {err}")
    quiet = args.no_progress
    print(f"minikfac bench: {', '.join(args.problems)}" + (" (quick)" if args.quick else ""))
    report = race.race(args.problems, quick=args.quick, seed=args.seed, progress=not quiet,
                       log=None if quiet else print, step_batch_sizes=() if args.no_step_cost else args.step_batch_sizes,
                       max_train=args.max_train, backend_name=args.backend)
    print()
    print(race.table(report))
    written = plot.race_figures(report, args.out) if args.out else []
    if args.json is not None:
        written.append(write_json(report, args.json))
    print()
    print(f"Time: {report['seconds']['total']:.1f} s")
    if written:
        print("Wrote " + ", ".join(written))
    return 0
