"""``minikfac compare``: the exact Fisher next to K-FAC and its rivals (:mod:`minikfac.jobs.compare`)."""

from minikfac.cli.arguments import BACKENDS, CLASSIFIERS, DATASETS, check_output, int_list, nonnegative_int, positive_float, positive_int
from minikfac.jobs.output import write_json


def add(commands):
    """The ``compare`` sub-parser."""
    from minikfac.jobs.compare import DEFAULTS as defaults

    compare = commands.add_parser(
        "compare", help="exact Fisher vs K-FAC & co.; Martens & Grosse's Figs. 2 and 3",
        description="Partially train a small network with Adam, compute its exact Fisher on a few examples, "
                    "and compare K-FAC, K-FAC tridiagonal, EKFAC, the diagonal and the exact block-diagonal "
                    "with it: errors and their sources, Monte-Carlo noise, cosines with the exact natural "
                    "gradient, spectra. The defaults reproduce Martens & Grosse 2015, Figs. 2 and 3: their "
                    "256-20-20-20-20-20-10 tanh network on 16x16 MNIST, figures of the middle 4 layers.",
    )
    what = compare.add_argument_group("what to compare")
    what.add_argument("--dataset", choices=DATASETS, default=defaults["dataset"], help="(default: %(default)s)")
    what.add_argument("--model", choices=CLASSIFIERS, default=defaults["model"],
                      help="martens-grosse: 20-unit tanh layers x5; mlp: --hidden ReLU layers; cnn: conv "
                           "blocks of --channels (default: %(default)s)")
    what.add_argument("--hidden", type=int_list, metavar="W,W", default=defaults["hidden"],
                      help="hidden widths of --model mlp (default: 16,16)")
    what.add_argument("--channels", type=int_list, metavar="C,C", default=defaults["channels"],
                      help="conv channels of --model cnn (default: 4,8)")
    what.add_argument("--train-epochs", type=nonnegative_int, metavar="E", default=defaults["train_epochs"],
                      help="epochs of Adam (lr 3e-3, batch 16) before the comparison; 0 keeps the "
                           "initial weights (default: %(default)s)")
    what.add_argument("--examples", type=positive_int, metavar="N", default=defaults["examples"],
                      help="training examples the Fisher is computed on (default: %(default)s)")
    what.add_argument("--seed", type=nonnegative_int, metavar="S", default=defaults["seed"],
                      help="seeds the weights, the training and the examples (default: %(default)s)")
    how = compare.add_argument_group("how")
    how.add_argument("--kind", choices=("true", "empirical", "ggn"), default=defaults["kind"],
                     help="the Fisher compared (default: %(default)s)")
    how.add_argument("--damping", type=positive_float, metavar="λ", default=defaults["damping"],
                     help="λ of the steps (F + λI)⁻¹∇ (default: %(default)s)")
    how.add_argument("--mc-samples", type=int_list, metavar="K,K", default=defaults["mc_samples"],
                     help="samples per example of the Monte-Carlo section (default: 1,4,16,64)")
    how.add_argument("--mc-seeds", type=nonnegative_int, metavar="R", default=defaults["mc_seeds"],
                     help="independent draws averaged; 0 skips the section (default: %(default)s)")
    how.add_argument("--layers", type=int_list, metavar="L,L",
                     help="layers drawn in the figures, counted from 1 (default: the middle 4)")
    how.add_argument("--no-spectra", action="store_true", help="skip eig(F), the slowest step for large P")
    how.add_argument("--backend", choices=BACKENDS, default=defaults["backend"], help="(default: %(default)s)")
    outputs = compare.add_argument_group("outputs")
    outputs.add_argument("--json", metavar="PATH", help="write the results (and the spectra) as JSON")
    outputs.add_argument("--out", metavar="DIR", default=defaults["out"],
                         help="where to write the figures (default: %(default)s)")
    compare.set_defaults(handler=handle, command_parser=compare)


def handle(parser, args):
    from minikfac.jobs import compare

    check_output(parser, "--json", args.json)
    check_output(parser, "--out", args.out, folder=True)
    options = compare.settings(**{key: value for key, value in vars(args).items() if key in compare.DEFAULTS})
    print("minikfac compare: ", end="")
    try:
        result, report = compare.run(options, log=print)
    except ValueError as err:
        parser.error(str(err))
    print()
    print(result.table())
    written = list(report["figures"])
    if args.json is not None:
        written.append(write_json(report, args.json))
    print()
    print("Time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report["timings"].items()))
    print("Wrote " + ", ".join(written))
    return 0
