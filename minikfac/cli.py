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
           Martens & Grosse's (2015) Figs. 2 and 3 (``--out``, ``--json``).
``bench``  the race: K-FAC against SGD with momentum and Adam on three problems
           (iterations and seconds to a target loss, test metrics, step cost
           against the batch size), as a table, JSON and figures.
``check``  grade a student's solution of a classroom exercise
           (``tutorials/exercises/``) against the library, on random inputs.

This module only parses arguments and prints; the work is done by
:func:`minikfac.jobs.train.fit`, :mod:`minikfac.jobs.compare`, :mod:`minikfac.jobs.demo`,
:func:`minikfac.jobs.race.race` and :mod:`minikfac.exercises`. matplotlib is imported (through
:mod:`minikfac.plot`) only when a figure is written.
"""

import argparse
import json
import os
import sys


from minikfac import backend, models, training
from minikfac.jobs import train as train_job
from minikfac.curvature.statistics import KINDS
from minikfac.optim.kfac import PRECONDITIONERS, UPDATES

DATASETS = ("digits", "mnist", "mnist16")
MODELS = models.MODELS
#: The models trained on labels (compare's Fisher is that of a classifier).
CLASSIFIERS = tuple(name for name in MODELS if models.task(name) is models.CLASSIFICATION)
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
fraction = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _int_list(text):
    """``"1,4,16"`` -> [1, 4, 16]: comma-separated integers >= 1."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1 (like 1,4,16), got {text!r}")
    return values


_int_list.__name__ = "a list of integers"


def _default(key):
    """The default of run argument ``key``, as shown in ``--help``."""
    if key == "lr":
        return ("per optimizer, " + ", ".join(f"{k} {v:g}" for k, v in training.DEFAULT_LR.items())
                + "; kfac: K-FAC's own, with --kfac-update kl_clip only")
    if key == "momentum":
        return "0 for sgd; kfac: K-FAC's own, with --kfac-update kl_clip only"
    if key in train_job.KFAC_ARGS:
        return train_job.kfac_defaults()[key]
    return train_job.DEFAULTS[key]


#: Run argument -> the flag that sets it, for the K-FAC options whose flag is not simply --the-name.
KFAC_FLAGS = {"adapt_damping": ("--adapt-damping", "--no-adapt-damping"),
              "factored_damping": ("--factored-damping", "--exact-damping")}


def _flag(key, value=None):
    """The command-line flag that sets run argument ``key`` to ``value``."""
    if key in KFAC_FLAGS:
        return KFAC_FLAGS[key][0 if value else 1]
    return "--" + key.replace("_", "-")


def _add_kfac_options(train):
    """The "K-FAC options" group of ``train`` (each None unless given: K-FAC's own default)."""
    kfac = train.add_argument_group(
        "K-FAC options", "for --optimizer kfac only; M&G = Martens & Grosse 2015, Optimizing neural networks "
                         "with Kronecker-factored approximate curvature")
    kfac.add_argument("--damping", type=positive_float, metavar="λ",
                      help="initial Tikhonov damping λ, adapted by the Levenberg-Marquardt rule (M&G §6.5) "
                           f"(default: {_default('damping')})")
    kfac.add_argument("--kfac-update", choices=UPDATES,
                      help="quadratic: step size and momentum from the quadratic model (M&G §7); kl_clip: "
                           "--lr and --momentum, the step's KL bounded by --kl-clip (Ba, Grosse & Martens 2017) "
                           f"(default: {_default('kfac_update')})")
    kfac.add_argument("--kl-clip", type=positive_float, metavar="κ",
                      help=f"KL bound of the kl_clip update (Ba et al. 2017) (default: {_default('kl_clip')})")
    kfac.add_argument("--max-momentum", type=unit_float, metavar="μ",
                      help="the quadratic update's momentum is kept in [0, μ] "
                           f"(default: {_default('max_momentum')})")
    kfac.add_argument("--kl-per-example", type=positive_float, metavar="κ",
                      help="the quadratic update's trust region: a step's predicted KL divergence is at most "
                           "κ × batch size × output variables per example "
                           f"(default: {_default('kl_per_example')})")
    kfac.add_argument("--stats-fraction", type=fraction, metavar="F",
                      help="fraction of each batch (its first rows) used for the factor statistics, the quadratic "
                           f"model and the guard (M&G §8) (default: {_default('stats_fraction')})")
    kfac.add_argument("--min-stats-examples", type=positive_int, metavar="N",
                      help="but at least this many rows, or the whole batch "
                           f"(default: {_default('min_stats_examples')})")
    kfac.add_argument("--inverse-interval", type=positive_int, metavar="T",
                      help="steps between refreshes of the damped factors' inverses, or of the eigendecompositions "
                           "with --exact-damping or ekfac (M&G §8); factored damping also refreshes when λ moves "
                           f"by 2× (default: {_default('inverse_interval')})")
    kfac.add_argument("--factor-decay", type=unit_float, metavar="ε",
                      help="decay of the running averages of A and G, min(1 - 1/k, ε) at step k (M&G §5) "
                           f"(default: {_default('factor_decay')})")
    kfac.add_argument("--kfac-kind", choices=KINDS,
                      help="the statistics of G: mc, targets sampled from the model (M&G §5); true, the exact "
                           "expectation; empirical, the data labels (a different matrix: Kunstner et al. 2019); "
                           f"ggn (default: {_default('kfac_kind')})")
    adapt = kfac.add_mutually_exclusive_group()
    adapt.add_argument("--adapt-damping", dest="adapt_damping", action="store_const", const=True,
                       help="adapt λ by the Levenberg-Marquardt rule (M&G §6.5) (the default)")
    adapt.add_argument("--no-adapt-damping", dest="adapt_damping", action="store_const", const=False,
                       help="keep λ fixed")
    style = kfac.add_mutually_exclusive_group()
    style.add_argument("--exact-damping", dest="factored_damping", action="store_const", const=False,
                       help="exact Tikhonov damping, (A⊗G + λI)⁻¹ in the eigenbasis (the default for ekfac)")
    style.add_argument("--factored-damping", dest="factored_damping", action="store_const", const=True,
                       help="factored Tikhonov damping, (A + π√λ I) ⊗ (G + √λ/π I) (M&G §6.3; the default for kfac)")
    kfac.add_argument("--preconditioner", choices=PRECONDITIONERS,
                      help="kfac, or ekfac: K-FAC's eigenbasis with re-estimated scalings (George et al. 2018) "
                           f"(default: {_default('preconditioner')})")


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
    run.add_argument("--optimizer", choices=training.OPTIMIZERS,
                     help=f"kfac: see the K-FAC options below (default: {_default('optimizer')})")
    run.add_argument("--train-examples", type=positive_int, metavar="N",
                     help="train on a random subset of N training examples, drawn with --seed (default: all)")
    hyper = train.add_argument_group("hyper-parameters")
    hyper.add_argument("--epochs", type=positive_int, metavar="E",
                       help=f"total epochs, counting a resumed run's (default: {_default('epochs')})")
    hyper.add_argument("--batch-size", type=positive_int, metavar="B", help=f"(default: {_default('batch_size')})")
    hyper.add_argument("--lr", type=positive_float, metavar="LR", help=f"learning rate (default: {_default('lr')})")
    hyper.add_argument("--momentum", type=unit_float, metavar="M",
                       help=f"SGD's momentum, or K-FAC's kl_clip update's (default: {_default('momentum')})")
    hyper.add_argument("--weight-decay", type=nonnegative_float, metavar="WD",
                       help=f"(default: {_default('weight_decay')})")
    hyper.add_argument("--seed", type=nonnegative_int, metavar="S",
                       help="seeds the initial weights, the shuffling, the --train-examples subset and K-FAC's "
                            f"sampled targets (default: {_default('seed')})")
    where = train.add_argument_group("where and how")
    where.add_argument("--backend", choices=BACKENDS,
                       help="numpy, cupy (a GPU), or fakegpu, the strict CuPy stand-in used by the tests "
                            f"(default: {_default('backend')})")
    where.add_argument("--dtype", choices=DTYPES, help=f"(default: {_default('dtype')})")
    _add_kfac_options(train)
    outputs = train.add_argument_group("outputs")
    outputs.add_argument("--json", metavar="PATH", help="write the report (arguments, history, results) as JSON")
    outputs.add_argument("--out", metavar="DIR", help="write figures (loss_curve.png) to DIR, created if missing")
    outputs.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz) after every epoch")
    outputs.add_argument("--resume", metavar="PATH", help="continue from a checkpoint written by --save")
    outputs.add_argument("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")
    train.set_defaults(handler=_train, command_parser=train)

    demo = commands.add_parser(
        "demo", help="the main job: exact Fisher vs K-FAC, a short K-FAC vs Adam race, report/",
        description="What minikfac is for, in about two minutes on a CPU: the exact Fisher of Martens & "
                    "Grosse's network on 16x16 MNIST next to K-FAC and its rivals (errors, cosines, spectra, "
                    "their Figs. 2 and 3), then K-FAC against Adam on the digits MLP and the MNIST CNN. "
                    "Writes DIR/summary.md (tables and figures), DIR/summary.json and the PNG figures.",
    )
    demo.add_argument("--out", metavar="DIR", default="report", help="where to write the report (default: report)")
    demo.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    demo.add_argument("--seed", type=nonnegative_int, metavar="S", default=0,
                      help="seeds the weights, the data order and K-FAC's sampling (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="tiny sizes, seconds: a smoke test, not a result")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars and no progress lines")
    demo.set_defaults(handler=_demo, command_parser=demo)
    _add_compare(commands)
    _add_bench(commands)
    _add_check(commands)
    return parser


def _add_compare(commands):
    from minikfac.jobs.compare import DEFAULTS as defaults

    compare = commands.add_parser(
        "compare", help="exact Fisher vs K-FAC & co.; Martens & Grosse's Figs. 2 and 3",
        description="Partially train a small network with Adam, compute its exact Fisher on a few examples, "
                    "and compare K-FAC, K-FAC tridiagonal, EKFAC, the diagonal and the exact block-diagonal "
                    "with it: errors and their sources, Monte-Carlo noise, cosines with the exact natural "
                    "gradient, spectra. The defaults reproduce Martens & Grosse (2015), Figs. 2 and 3: their "
                    "256-20-20-20-20-20-10 tanh network on 16x16 MNIST, figures of the middle 4 layers.",
    )
    what = compare.add_argument_group("what to compare")
    what.add_argument("--dataset", choices=DATASETS, default=defaults["dataset"], help="(default: %(default)s)")
    what.add_argument("--model", choices=CLASSIFIERS, default=defaults["model"],
                      help="martens-grosse: 20-unit tanh layers x5; mlp: --hidden ReLU layers; cnn: conv "
                           "blocks of --channels (default: %(default)s)")
    what.add_argument("--hidden", type=_int_list, metavar="W,W", default=defaults["hidden"],
                      help="hidden widths of --model mlp (default: 16,16)")
    what.add_argument("--channels", type=_int_list, metavar="C,C", default=defaults["channels"],
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
    how.add_argument("--mc-samples", type=_int_list, metavar="K,K", default=defaults["mc_samples"],
                     help="samples per example of the Monte-Carlo section (default: 1,4,16,64)")
    how.add_argument("--mc-seeds", type=nonnegative_int, metavar="R", default=defaults["mc_seeds"],
                     help="independent draws averaged; 0 skips the section (default: %(default)s)")
    how.add_argument("--layers", type=_int_list, metavar="L,L",
                     help="layers drawn in the figures, counted from 1 (default: the middle 4)")
    how.add_argument("--no-spectra", action="store_true", help="skip eig(F), the slowest step for large P")
    how.add_argument("--backend", choices=BACKENDS, default=defaults["backend"], help="(default: %(default)s)")
    outputs = compare.add_argument_group("outputs")
    outputs.add_argument("--json", metavar="PATH", help="write the results (and the spectra) as JSON")
    outputs.add_argument("--out", metavar="DIR", default=defaults["out"],
                         help="where to write the figures (default: %(default)s)")
    compare.set_defaults(handler=_compare, command_parser=compare)


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
def _fit(parser, run_args, **options):
    """Run :func:`minikfac.jobs.train.fit`, turning the errors a user can fix into argparse errors.

    The run arguments are checked there, once; a :class:`~minikfac.jobs.train.RunArgumentError`
    is reworded here with the flags that set them.
    """
    try:
        return train_job.fit(**run_args, **options)
    except train_job.RunArgumentError as err:
        parser.error(err.describe(lambda key, value: _flag(key, value), lambda key, value: f"{_flag(key, value)} {value}"))
    except FileNotFoundError as err:  # the only file fit reads that the user names
        parser.error(f"--resume: {err}")
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))


def _write_outputs(report, json_path=None, out_dir=None, title=None):
    written = []
    if out_dir is not None:
        from minikfac import plot  # matplotlib only when a figure is asked for

        os.makedirs(out_dir, exist_ok=True)
        written.append(plot.loss_curve(report["history"], os.path.join(out_dir, "loss_curve.png"), title=title,
                                       evaluations=report["evaluations"]))
    if json_path is not None:
        written.append(_write_json(report, json_path))
    return written


def _write_json(report, path):
    """Write ``report`` to ``path`` as indented JSON (folders created); returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    return path


def _kfac_settings(report):
    """K-FAC's settings in a few words, e.g. "quadratic, λ 0.01 adapted, factored, mc on 25%, T 20"."""
    if report["kfac_update"] == "kl_clip":
        update = f"kl_clip κ {report['kl_clip']:g}, lr {report['lr']:g}, μ {report['momentum']:g}"
    else:
        update = "quadratic"
    # The report holds K-FAC's options as it used them (its own choices filled in).
    damping = f"λ {report['damping']:g} {'adapted' if report['adapt_damping'] else 'fixed'}"
    style = "EKFAC" if report["preconditioner"] == "ekfac" else "factored" if report["factored_damping"] else "exact"
    statistics = f"{report['kfac_kind']} on {100 * report['stats_fraction']:g}% (≥ {report['min_stats_examples']} examples)"
    return f"{update}, {damping}, {style}, {statistics}, T {report['inverse_interval']}"


def _title(report):
    if report["optimizer"] == "kfac":
        return f"{report['dataset']} · {report['model']} · kfac ({_kfac_settings(report)})"
    return f"{report['dataset']} · {report['model']} · {report['optimizer']} (lr {report['lr']:g})"


def summary(report, written=()):
    """A few lines describing a finished run's report (as printed at the end of ``train``)."""
    metric = training.metric_text(report["test_accuracy"], report.get("test_squared_error"))
    train_loss = "n/a" if report["train_loss"] is None else f"{report['train_loss']:.4f}"
    lines = [
        f"{_title(report)}, batch {report['batch_size']}, {report['epochs']} epochs = {report['steps']} steps "
        f"on {report['backend']}/{report['dtype']}, {report['num_parameters']:,} parameters",
        f"  train loss {train_loss} (last epoch)   test loss {report['test_loss']:.4f}   {metric}",
    ]
    if report.get("kfac"):
        lines.append(f"  K-FAC: final λ {report['kfac']['damping']:.3g}, {report['kfac']['refused']} refused steps")
    lines += [
        f"  {report['train_time']:.1f} s of training" + (
            f" (with the run resumed from {report['resumed_from']})" if report["resumed_from"] else "")
        + f", {report['wall_time']:.1f} s for this command",
    ]
    if written:
        lines.append("  wrote " + ", ".join(str(w) for w in written))
    return "\n".join(lines)


def _train(parser, args):
    run_args = {key: getattr(args, key) for key in train_job.DEFAULTS}
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
    from minikfac.jobs import demo

    quiet = args.no_progress
    print("minikfac demo: exact Fisher vs K-FAC, then a short race of K-FAC against Adam"
          + (" (quick)" if args.quick else ""))
    report = demo.run(args.out, seed=args.seed, quick=args.quick, progress=not quiet,
                      log=None if quiet else print)
    if args.json is not None:
        _write_json(report, args.json)
    print()
    print(demo.console_summary(report))
    return 0


# --------------------------------------------------------------------------- #
# compare
# --------------------------------------------------------------------------- #
def _compare(parser, args):
    from minikfac.jobs import compare

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
        written.append(_write_json(report, args.json))
    print()
    print("Time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report["timings"].items()))
    print("Wrote " + ", ".join(written))
    return 0


# --------------------------------------------------------------------------- #
# bench
# --------------------------------------------------------------------------- #
def _problem_list(text):
    """``"digits-mlp,mnist-cnn"`` -> a list of race problem names."""
    from minikfac.jobs import race_tracks

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in race_tracks.PROBLEMS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected comma-separated problems among {', '.join(race_tracks.PROBLEMS)}, "
                                         f"got {text!r}")
    return names


_problem_list.__name__ = "a list of problems"


def _add_bench(commands):
    from minikfac.jobs import race_tracks

    bench = commands.add_parser(
        "bench", help="race K-FAC against SGD and Adam to a target training loss",
        description="Race K-FAC (its defaults) against SGD with momentum 0.9 and Adam (each the best of a "
                    "small learning-rate sweep) on digits-MLP, MNIST-CNN and the MNIST autoencoder: "
                    "iterations and seconds to a target training loss, final test metrics, and the cost "
                    "of one step against the batch size. Prints a table; --json and --out write the "
                    "results and the figures. The full race takes about 10-15 minutes on 2 CPU cores.",
    )
    bench.add_argument("--problems", type=_problem_list, metavar="P,P", default=list(race_tracks.PROBLEMS),
                       help=f"comma-separated, among {', '.join(race_tracks.PROBLEMS)} (default: all)")
    bench.add_argument("--quick", action="store_true",
                       help="one learning rate per method, a fifth of the epochs, a short step-cost "
                            "measurement: a smoke test, not a result")
    bench.add_argument("--step-batch-sizes", type=_int_list, metavar="B,B",
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
    bench.set_defaults(handler=_bench, command_parser=bench)


def _bench(parser, args):
    from minikfac import plot
    from minikfac.jobs import race

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
        written.append(_write_json(report, args.json))
    print()
    print(f"Time: {report['seconds']['total']:.1f} s")
    if written:
        print("Wrote " + ", ".join(written))
    return 0


# --------------------------------------------------------------------------- #
# check (the classroom exercises of tutorials/exercises/)
# --------------------------------------------------------------------------- #
def _add_check(commands):
    check = commands.add_parser(
        "check", help="grade a classroom exercise (tutorials/exercises/)",
        description="Grade a student's solution of an exercise in tutorials/exercises/ against the library, on "
                    "random inputs. Prints what passed and what failed, part by part, with hints. Exit status: "
                    "0 all parts passed, 1 some failed (or the file does not import), 2 a usage error.",
    )
    check.add_argument("exercise", nargs="?", help='the exercise: a number ("3") or a name ("03_softmax_cross_entropy")')
    check.add_argument("student_file", nargs="?",
                       help="the file to grade (default: tutorials/exercises/NN_name.py under the working directory)")
    check.add_argument("--list", action="store_true", help="list the exercises and their parts")
    check.add_argument("--seed", type=nonnegative_int, metavar="S",
                       help="seed of the random test inputs, to reproduce a run (default: a fresh one, printed)")
    check.set_defaults(handler=_check, command_parser=check)


def _check(parser, args):
    from minikfac import exercises

    return exercises.run(args.exercise, args.student_file, seed=args.seed, list_exercises=args.list)


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
