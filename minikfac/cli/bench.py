"""``minikfac bench``: the race (:mod:`minikfac.jobs.race`)."""

import argparse
import os

from minikfac import backend
from minikfac.cli.arguments import BACKENDS, check_output, int_list, nonnegative_int, positive_int, problem_list
from minikfac.jobs.output import write_json

#: --batches: which batch sizes of each problem are raced.
BATCH_CHOICES = {"both": ("own", "second"), "own": ("own",), "second": ("second",)}


def method_list(text):
    """``"kfac,adam"`` -> a list of race methods (:data:`minikfac.jobs.race_tracks.METHODS`)."""
    from minikfac.jobs import race_tracks

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in race_tracks.METHODS]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated methods among "
                                         f"{', '.join(race_tracks.METHODS)}, got {text!r}")
    return names


method_list.__name__ = "a list of methods"


def add(commands):
    """The ``bench`` sub-parser."""
    from minikfac.jobs import race_tracks

    bench = commands.add_parser(
        "bench", help="race K-FAC against SGD, Adam, Shampoo, SOAP and Muon to a target training loss",
        description="Race K-FAC (its defaults) against SGD with momentum 0.9, Adam, Shampoo, SOAP and Muon "
                    "(each the best of a sweep of three learning rates) on digits-MLP, MNIST-CNN and the "
                    "MNIST autoencoder, each at its own batch size and at batch 512: iterations and seconds "
                    "to a target training loss, final test metrics, and the cost of one step against the "
                    "batch size. Prints a table; --json and --out write the results and the figures. "
                    "The full race takes about 90 minutes on one CPU core, most of it Shampoo and SOAP on "
                    "the autoencoder; --methods, --problems and --batches run a part of it, --quick a smoke "
                    "run of all of it (about 8 minutes).",
    )
    bench.add_argument("--problems", type=problem_list, metavar="P,P", default=list(race_tracks.PROBLEMS),
                       help=f"comma-separated, among {', '.join(race_tracks.PROBLEMS)} (default: all)")
    bench.add_argument("--methods", type=method_list, metavar="M,M", default=list(race_tracks.METHODS),
                       help=f"comma-separated, among {', '.join(race_tracks.METHODS)} (default: all)")
    bench.add_argument("--batches", choices=list(BATCH_CHOICES), default="both",
                       help="race each problem at its own batch size, at its second (512), or both "
                            "(default: %(default)s)")
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
    print(f"minikfac bench: {', '.join(args.problems)}; {', '.join(args.methods)}; batch sizes: {args.batches}"
          + (" (quick)" if args.quick else ""))
    report = race.race(args.problems, quick=args.quick, seed=args.seed, progress=not quiet,
                       log=None if quiet else print, step_batch_sizes=() if args.no_step_cost else args.step_batch_sizes,
                       max_train=args.max_train, backend_name=args.backend, methods=args.methods,
                       batches=BATCH_CHOICES[args.batches])
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
