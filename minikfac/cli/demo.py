"""``minikfac demo``: the main job (:mod:`minikfac.jobs.demo`)."""

from minikfac.cli.arguments import check_output, nonnegative_int
from minikfac.jobs.output import write_json


def add(commands):
    """The ``demo`` sub-parser."""
    demo = commands.add_parser(
        "demo", help="the main job: exact Fisher vs K-FAC, a short K-FAC vs Adam race, report/",
        description="What minikfac is for, in about two minutes on a CPU: the exact Fisher of Martens & "
                    "Grosse's network on 16x16 MNIST next to K-FAC and its rivals (errors, cosines, spectra, "
                    "their Figs. 2 and 3), then K-FAC against Adam on the digits MLP, the MNIST CNN and the MNIST autoencoder. "
                    "Writes DIR/summary.md (tables and figures), DIR/summary.json and the PNG figures.",
    )
    demo.add_argument("--out", metavar="DIR", default="report", help="where to write the report (default: report)")
    demo.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    demo.add_argument("--seed", type=nonnegative_int, metavar="S", default=0,
                      help="seeds the weights, the data order and K-FAC's sampling (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="tiny sizes, seconds: a smoke test, not a result")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars and no progress lines")
    demo.set_defaults(handler=handle, command_parser=demo)


def handle(parser, args):
    from minikfac.jobs import demo

    check_output(parser, "--json", args.json)
    check_output(parser, "--out", args.out, folder=True)
    quiet = args.no_progress
    print("minikfac demo: exact Fisher vs K-FAC, then a short race of K-FAC against Adam"
          + (" (quick)" if args.quick else ""))
    report = demo.run(args.out, seed=args.seed, quick=args.quick, progress=not quiet,
                      log=None if quiet else print)
    if args.json is not None:
        write_json(report, args.json)
    print()
    print(demo.console_summary(report))
    return 0
