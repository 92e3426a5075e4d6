"""The command line: ``minikfac <command>`` (or ``python -m minikfac <command>``).

Commands
--------
``train``  train a model on one of the bundled datasets; prints a summary, and
           writes a JSON report (``--json``), a loss curve (``--out``) and
           checkpoints (``--save``, resumable with ``--resume``).
``demo``   the one-minute tour: a digits MLP trained with Adam, its loss curve
           and summary written to ``report/``.

This module only parses arguments and prints; the work is done by
:func:`minikfac.training.fit`. matplotlib is imported (through
:mod:`minikfac.plot`) only when a figure is written.
"""

import argparse
import json
import os
import sys

from minikfac import training

DATASETS = ("digits", "mnist", "mnist16")
MODELS = ("mlp", "cnn")
BACKENDS = ("numpy", "cupy", "fakegpu")
DTYPES = ("float32", "float64")


# --------------------------------------------------------------------------- #
# Argument types: each rejects a bad value with a message argparse prints
# --------------------------------------------------------------------------- #
def _number(kind, test, expected):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    parse.__name__ = expected  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number > 0")
nonnegative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
unit_float = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _default(key):
    """The default of run argument ``key``, as shown in ``--help``."""
    if key == "lr":
        return "per optimizer, " + ", ".join(f"{k} {v:g}" for k, v in training.DEFAULT_LR.items())
    return training.DEFAULTS[key]


def build_parser():
    """The ``argparse`` parser of all commands."""
    parser = argparse.ArgumentParser(
        prog="minikfac",
        description="minikfac: natural-gradient methods (K-FAC) made visible, in NumPy and CuPy.",
        epilog="Run 'minikfac COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train a model on a bundled dataset",
        description="Train a model on a bundled dataset and evaluate it on the test split. "
                    "Options left out take the resumed checkpoint's value (with --resume) "
                    "or the default shown.",
    )
    run = train.add_argument_group("what to train")
    run.add_argument("--dataset", choices=DATASETS, help=f"(default: {_default('dataset')})")
    run.add_argument("--model", choices=MODELS, help=f"(default: {_default('model')})")
    run.add_argument("--optimizer", choices=training.OPTIMIZERS, help=f"(default: {_default('optimizer')})")
    hyper = train.add_argument_group("hyper-parameters")
    hyper.add_argument("--epochs", type=positive_int, metavar="E",
                       help=f"total epochs, counting a resumed run's (default: {_default('epochs')})")
    hyper.add_argument("--batch-size", type=positive_int, metavar="B", help=f"(default: {_default('batch_size')})")
    hyper.add_argument("--lr", type=positive_float, metavar="LR", help=f"learning rate (default: {_default('lr')})")
    hyper.add_argument("--momentum", type=unit_float, metavar="M",
                       help=f"SGD momentum (default: {_default('momentum')})")
    hyper.add_argument("--weight-decay", type=nonnegative_float, metavar="WD",
                       help=f"(default: {_default('weight_decay')})")
    hyper.add_argument("--seed", type=nonnegative_int, metavar="S",
                       help=f"seeds the initial weights and the shuffling (default: {_default('seed')})")
    where = train.add_argument_group("where and how")
    where.add_argument("--backend", choices=BACKENDS,
                       help="numpy, cupy (a GPU), or fakegpu, the strict CuPy stand-in used by the tests "
                            f"(default: {_default('backend')})")
    where.add_argument("--dtype", choices=DTYPES, help=f"(default: {_default('dtype')})")
    outputs = train.add_argument_group("outputs")
    outputs.add_argument("--json", metavar="PATH", help="write the report (arguments, history, results) as JSON")
    outputs.add_argument("--out", metavar="DIR", help="write figures (loss_curve.png) to DIR, created if missing")
    outputs.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz) after every epoch")
    outputs.add_argument("--resume", metavar="PATH", help="continue from a checkpoint written by --save")
    outputs.add_argument("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")
    train.set_defaults(handler=_train, command_parser=train)

    demo = commands.add_parser(
        "demo", help="train a small MLP on the digits and write report/",
        description="Train an MLP on the 8x8 digits with Adam for a few epochs (seconds), print its "
                    "progress, and write DIR/loss_curve.png and DIR/summary.json.",
    )
    demo.add_argument("--out", metavar="DIR", default="report", help="where to write the report (default: report)")
    demo.add_argument("--epochs", type=positive_int, metavar="E", default=10, help="(default: 10)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")
    demo.set_defaults(handler=_demo, command_parser=demo)
    return parser


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
def _fit(parser, run_args, **options):
    """Run :func:`training.fit`, turning the errors a user can fix into argparse errors."""
    try:
        return training.fit(**run_args, **options)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        parser.error(str(err))


def _write_outputs(report, json_path=None, out_dir=None, title=None):
    written = []
    if out_dir is not None:
        from minikfac import plot  # matplotlib only when a figure is asked for

        os.makedirs(out_dir, exist_ok=True)
        written.append(plot.loss_curve(report["history"], os.path.join(out_dir, "loss_curve.png"), title=title,
                                       evaluations=report["evaluations"]))
    if json_path is not None:
        folder = os.path.dirname(os.path.abspath(json_path))
        os.makedirs(folder, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        written.append(json_path)
    return written


def _title(report):
    return f"{report['dataset']} · {report['model']} · {report['optimizer']} (lr {report['lr']:g})"


def summary(report, written=()):
    """A few lines describing a finished run's report (as printed at the end of ``train``)."""
    accuracy = "n/a" if report["test_accuracy"] is None else f"{100 * report['test_accuracy']:.2f}%"
    train_loss = "n/a" if report["train_loss"] is None else f"{report['train_loss']:.4f}"
    lines = [
        f"{_title(report)}, batch {report['batch_size']}, {report['epochs']} epochs = {report['steps']} steps "
        f"on {report['backend']}/{report['dtype']}, {report['num_parameters']:,} parameters",
        f"  train loss {train_loss} (last epoch)   test loss {report['test_loss']:.4f}   "
        f"test accuracy {accuracy}",
        f"  {report['train_time']:.1f} s of training" + (
            f" (with the run resumed from {report['resumed_from']})" if report["resumed_from"] else "")
        + f", {report['wall_time']:.1f} s for this command",
    ]
    if written:
        lines.append("  wrote " + ", ".join(str(w) for w in written))
    return "\n".join(lines)


def _train(parser, args):
    if args.resume is not None and not os.path.isfile(args.resume):
        parser.error(f"--resume: checkpoint {args.resume!r} does not exist")
    if args.optimizer == "adam" and args.momentum:
        parser.error("--momentum applies to --optimizer sgd only (Adam's momentum is its beta1)")
    run_args = {key: getattr(args, key) for key in training.DEFAULTS}
    quiet = args.no_progress
    result = _fit(parser, run_args, resume=args.resume, save=args.save, progress=not quiet,
                  log=None if quiet else print)
    report = result.report
    written = _write_outputs(report, args.json, args.out, title=_title(report))
    if args.save:
        written.append(args.save)
    print(summary(report, written))
    return 0


def _demo(parser, args):
    print(f"minikfac demo: an MLP on the 8x8 digits, trained with Adam for {args.epochs} epochs")
    run_args = dict(dataset="digits", model="mlp", optimizer="adam", epochs=args.epochs)
    quiet = args.no_progress
    result = _fit(parser, run_args, progress=not quiet, log=None if quiet else print)
    report = result.report
    written = _write_outputs(report, os.path.join(args.out, "summary.json"), args.out, title=_title(report))
    print(summary(report, written))
    return 0


def main(argv=None):
    """Entry point of the ``minikfac`` console script; returns the exit status.

    ``argv`` is the list of arguments (default ``sys.argv[1:]``). Bad
    arguments exit with status 2 and argparse's usage message.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    # Errors show the sub-command's usage, so the handler gets that command's parser.
    return args.handler(args.command_parser, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
