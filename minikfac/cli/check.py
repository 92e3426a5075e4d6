"""``minikfac check``: grade a classroom exercise (:mod:`minikfac.exercises`)."""

import argparse
import os

from minikfac.cli.arguments import check_output, nonnegative_int, positive_float
from minikfac.exercises.grader import DEFAULT_TIME_LIMIT
from minikfac.exercises.spec import DEFAULT_HINTS, HINT_TIERS


def hint_tier(text):
    """--hints: 0, 1 or 2 (argparse type); a clear message otherwise."""
    if text.strip() not in {str(tier) for tier in HINT_TIERS}:
        raise argparse.ArgumentTypeError(f"expected 0 (no hints), 1 (a nudge) or 2 (the formula too), got {text!r}")
    return int(text)


def _files_after_options(parser):
    """Let the files come after options too (``minikfac check 4 --hints 2 my.py``).

    argparse fills the positionals ``exercise`` and ``FILE ...`` from the first run of
    them only, and leaves a later one unrecognised; here such leftovers (anything not
    starting with '-') become files, in the order given. Unknown options stay errors.
    """
    parse_known_args = parser.parse_known_args

    def parse(args=None, namespace=None):
        namespace, extras = parse_known_args(args, namespace)
        later = [text for text in extras if not text.startswith("-")]
        if later and getattr(namespace, "exercise", None) is None:
            namespace.exercise = later.pop(0)
        if later:
            namespace.student_files = list(namespace.student_files or []) + later
        return namespace, [text for text in extras if text.startswith("-")]

    parser.parse_known_args = parse


def add(commands):
    """The ``check`` sub-parser."""
    check = commands.add_parser(
        "check", help="grade a classroom exercise (tutorials/exercises/)",
        description="Grade a student's solution of an exercise in tutorials/exercises/ against the library, on "
                    "random inputs. Prints what passed and what failed, part by part, with hints. Several files "
                    "are graded in turn on the same seed, one line each (a class report). Exit status: 0 all "
                    "parts passed (in every file), 1 some failed (or a file does not import), 2 a usage error.",
    )
    check.add_argument("exercise", nargs="?", help='the exercise: a number ("3") or a name ("03_softmax_cross_entropy")')
    check.add_argument("student_files", nargs="*", metavar="FILE",
                       help="the file(s) to grade (default: tutorials/exercises/NN_name.py under the working "
                            "directory; outside a checkout, the blank file installed with minikfac); with several, "
                            "one line per file and, with --json, one class report")
    check.add_argument("--list", action="store_true", help="list the exercises and their parts")
    check.add_argument("--copy", metavar="DIR",
                       help="copy the blank exercise files to DIR/tutorials/exercises/ (never overwrites); then run "
                            "minikfac check N in DIR")
    check.add_argument("--hints", type=hint_tier, metavar="{0,1,2}",
                       help=f"how much help a failure shows: 0 none, 1 a nudge (what to think about, which tutorial "
                            f"section), 2 the formula too (default: {DEFAULT_HINTS})")
    check.add_argument("--graded", action="store_true",
                       help="graded mode: no hints at all, and the JSON report records \"graded\": true")
    check.add_argument("--time-limit", type=positive_float, metavar="S", default=DEFAULT_TIME_LIMIT,
                       help="seconds a part may take before it fails as timed out (default: %(default)g)")
    check.add_argument("--allow-library", action="store_true",
                       help="let the file import the library modules the exercise forbids (for a teacher's "
                            "reference solution built from the library)")
    check.add_argument("--json", metavar="PATH",
                       help="also write the report as JSON (for grading a class by script); with several files, "
                            "every file's report and a summary per part")
    check.add_argument("--seed", type=nonnegative_int, metavar="S",
                       help="seed of the random test inputs, to reproduce a run (default: a fresh one, printed)")
    check.set_defaults(handler=handle, command_parser=check)
    _files_after_options(check)


def handle(parser, args):
    from minikfac import exercises

    if args.copy is not None:
        if args.exercise or args.student_files or args.list:
            parser.error("--copy DIR takes no exercise, file or --list")
        return exercises.registry.run_copy(args.copy)
    if args.graded and args.hints is not None:
        parser.error(f"--graded shows no hints, so it takes no --hints (got --hints {args.hints}); drop one of them")
    check_output(parser, "--json", args.json)
    if args.json is not None:
        if args.json.endswith(".py"):
            parser.error(f"--json: {args.json!r} is a Python file; expected the path of the JSON report, like "
                         f"class.json (was the report's name left out, so that a student file took its place?)")
        graded = [path for path in args.student_files if os.path.exists(path) and os.path.exists(args.json)
                  and os.path.samefile(path, args.json)]
        if graded:
            parser.error(f"--json: {args.json!r} is one of the files to grade; expected the path of the JSON "
                         f"report, like class.json (it would be overwritten)")
    hints = DEFAULT_HINTS if args.hints is None else args.hints
    return exercises.run(args.exercise, args.student_files, seed=args.seed, list_exercises=args.list,
                         time_limit=args.time_limit, json_path=args.json, allow_library=args.allow_library,
                         hints=hints, graded=args.graded)
