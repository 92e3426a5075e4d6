"""The command line: ``minikfac <command>`` (or ``python -m minikfac <command>``).

Commands
--------
``train``  train a model on one of the bundled datasets (SGD, Adam or K-FAC, whose
           options are listed under "K-FAC options" in --help); prints a summary, and
           writes a JSON report (``--json``), a loss curve (``--out``) and
           checkpoints (``--save``, resumable with ``--resume``).
``demo``   the main job: the exact Fisher vs K-FAC (Martens & Grosse's figures)
           and a short K-FAC vs Adam race, written to ``report/`` (summary.md,
           summary.json, figures) in about two minutes.
``compare`` the exact Fisher of a small network against K-FAC and its rivals:
           errors and their sources, natural-gradient cosines, spectra, and
           Martens & Grosse 2015, Figs. 2 and 3 (``--out``, ``--json``).
``bench``  the race: K-FAC against SGD with momentum and Adam on three problems
           (iterations and seconds to a target loss, test metrics, step cost
           against the batch size), as a table, JSON and figures.
``check``  grade a student's solution of a classroom exercise
           (``tutorials/exercises/``) against the library, on random inputs.

This package only parses arguments and prints, one module per command; the work is done by
:func:`minikfac.jobs.train.fit`, :mod:`minikfac.jobs.compare`, :mod:`minikfac.jobs.demo`,
:func:`minikfac.jobs.race.race` and :mod:`minikfac.exercises`. matplotlib is imported (through
:mod:`minikfac.plot`) only when a figure is written.
"""

import argparse
import sys

from minikfac.cli import bench, check, compare, demo, train

COMMANDS = (train, demo, compare, bench, check)


def build_parser():
    """The ``argparse`` parser of all commands."""
    parser = argparse.ArgumentParser(
        prog="minikfac",
        description="minikfac: natural-gradient methods (K-FAC) made visible, in NumPy and CuPy.",
        epilog="Run 'minikfac COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for command in COMMANDS:
        command.add(commands)
    return parser


def main(argv=None):
    """Entry point of the ``minikfac`` console script; returns the exit status.

    ``argv`` is the list of arguments (default ``sys.argv[1:]``). Bad
    arguments exit with status 2 and argparse's usage message.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    # Errors show the sub-command's usage, so the handler gets that command's parser.
    try:
        return args.handler(args.command_parser, args)
    except KeyboardInterrupt:
        print(f"\nminikfac {args.command}: interrupted (a checkpoint written before stays whole)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
