"""``minikfac train``: one experiment from names (:func:`minikfac.jobs.train.fit`), and its summary."""

import math
import os
import sys

from minikfac import training
from minikfac.cli.arguments import (
    BACKENDS,
    DATASETS,
    DTYPES,
    MODELS,
    add_kfac_options,
    check_output,
    default_of,
    flag_of,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_float,
)
from minikfac.jobs.output import write_json
from minikfac.jobs import train as train_job


def add(commands):
    """The ``train`` sub-parser."""
    train = commands.add_parser(
        "train", help="train a model on a bundled dataset",
        description="Train a model on a bundled dataset and evaluate it on the test split. "
                    "Options left out take the resumed checkpoint's value (with --resume) "
                    "or the default shown.",
    )
    run = train.add_argument_group("what to train")
    run.add_argument("--dataset", choices=DATASETS, help=f"(default: {default_of('dataset')})")
    run.add_argument("--model", choices=MODELS, help=f"(default: {default_of('model')})")
    run.add_argument("--optimizer", choices=training.OPTIMIZERS,
                     help="kfac: see the K-FAC options below; muon (Jordan et al. 2024), shampoo (Gupta et al. "
                          "2018, grafted onto Adam as in Shi et al. 2023) and soap (Vyas et al. 2024) precondition "
                          "each weight matrix, their other hyper-parameters at their defaults "
                          f"(default: {default_of('optimizer')})")
    run.add_argument("--train-examples", type=positive_int, metavar="N",
                     help="train on a random subset of N training examples, drawn with --seed (default: all)")
    hyper = train.add_argument_group("hyper-parameters")
    hyper.add_argument("--epochs", type=positive_int, metavar="E",
                       help=f"total epochs, counting a resumed run's (default: {default_of('epochs')})")
    hyper.add_argument("--batch-size", type=positive_int, metavar="B", help=f"(default: {default_of('batch_size')})")
    hyper.add_argument("--lr", type=positive_float, metavar="LR", help=f"learning rate (default: {default_of('lr')})")
    hyper.add_argument("--momentum", type=unit_float, metavar="M",
                       help=f"SGD's momentum, or K-FAC's kl_clip update's (Adam, Muon, Shampoo and SOAP keep their own) (default: {default_of('momentum')})")
    hyper.add_argument("--weight-decay", type=nonnegative_float, metavar="WD",
                       help=f"(default: {default_of('weight_decay')})")
    hyper.add_argument("--seed", type=nonnegative_int, metavar="S",
                       help="seeds the initial weights, the shuffling, the --train-examples subset and K-FAC's "
                            f"sampled targets (default: {default_of('seed')})")
    where = train.add_argument_group("where and how")
    where.add_argument("--backend", choices=BACKENDS,
                       help="numpy, cupy (a GPU), or fakegpu, the strict CuPy stand-in used by the tests "
                            f"(default: {default_of('backend')})")
    where.add_argument("--dtype", choices=DTYPES, help=f"(default: {default_of('dtype')})")
    add_kfac_options(train)
    outputs = train.add_argument_group("outputs")
    outputs.add_argument("--json", metavar="PATH", help="write the report (arguments, history, results) as JSON")
    outputs.add_argument("--out", metavar="DIR", help="write figures (loss_curve.png) to DIR, created if missing")
    outputs.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz) after every epoch")
    outputs.add_argument("--resume", metavar="PATH", help="continue from a checkpoint written by --save")
    outputs.add_argument("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")
    train.set_defaults(handler=handle, command_parser=train)


def _fit(parser, run_args, **options):
    """Run :func:`minikfac.jobs.train.fit`, turning the errors a user can fix into argparse errors.

    The run arguments are checked there, once; a :class:`~minikfac.jobs.train.RunArgumentError`
    is reworded here with the flags that set them.
    """
    try:
        return train_job.fit(**run_args, **options)
    except train_job.RunArgumentError as err:
        parser.error(err.describe(lambda key, value: flag_of(key, value), lambda key, value: f"{flag_of(key, value)} {value}"))
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
        written.append(write_json(report, json_path))
    return written


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


def handle(parser, args):
    check_output(parser, "--json", args.json)
    check_output(parser, "--save", args.save)
    check_output(parser, "--out", args.out, folder=True)
    run_args = {key: getattr(args, key) for key in train_job.DEFAULTS}
    quiet = args.no_progress
    result = _fit(parser, run_args, resume=args.resume, save=args.save, progress=not quiet,
                  log=None if quiet else print)
    report = result.report
    written = _write_outputs(report, args.json, args.out, title=_title(report))
    if args.save:
        written.append(args.save)
    print(summary(report, written))
    if not all(math.isfinite(report[key]) for key in ("train_loss", "test_loss") if report[key] is not None):
        print("minikfac train: the loss is not finite: the run diverged (the JSON report writes null for "
              "the non-finite numbers)", file=sys.stderr)
        return 1
    return 0


