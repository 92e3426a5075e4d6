"""``minikfac train``: one experiment from names, and the run arguments that describe it.

:func:`fit` trains a named model on a named dataset with a named optimizer
and returns a :class:`RunResult` (a JSON-ready report, the net and the
optimizer). The run arguments (:data:`DEFAULTS`) are resolved and checked
here, once, for the library and the command line alike: a bad combination
raises :class:`RunArgumentError`, which names the arguments at fault so that
the command line can name its flags instead.
"""

import inspect
import os
import time
from dataclasses import dataclass

import numpy as np

from minikfac import backend, checkpoint, data, models, nn, optim
from minikfac.training import DEFAULT_LR, evaluate, make_optimizer, metric_text, num_parameters, train

#: K-FAC's run arguments, each with the keyword of :class:`minikfac.optim.KFAC` it sets.
#: Their value None means K-FAC's own default (:func:`kfac_defaults`); they are for
#: optimizer "kfac" only.
KFAC_ARGS = {
    "damping": "damping", "kfac_update": "update", "kl_clip": "kl_clip", "max_momentum": "max_momentum",
    "kl_per_example": "kl_per_example", "stats_fraction": "stats_fraction", "min_stats_examples": "min_stats_examples",
    "inverse_interval": "inverse_interval", "factor_decay": "factor_decay", "kfac_kind": "kind",
    "adapt_damping": "adapt_damping", "factored_damping": "factored", "preconditioner": "preconditioner",
}

#: Defaults of :func:`fit`'s run arguments (used when neither the caller nor a
#: checkpoint being resumed gives a value). ``lr`` and ``momentum`` None: per
#: optimizer (:data:`DEFAULT_LR`, momentum 0 for SGD, K-FAC's own for its
#: "kl_clip" update); ``train_examples`` None: the whole training split.
DEFAULTS = {
    "dataset": "digits", "model": "mlp", "optimizer": "adam", "epochs": 10,
    "batch_size": 16, "lr": None, "momentum": None, "weight_decay": 0.0, "seed": 0,
    "backend": "numpy", "dtype": "float32", "train_examples": None,
    **dict.fromkeys(KFAC_ARGS),
}
#: Run arguments that define *what* is trained: a checkpoint only resumes a run that agrees on them
#: (K-FAC's state holds EKFAC's scalings or not, so its preconditioner is one of them).
IDENTITY = ("dataset", "model", "optimizer", "preconditioner")


def kfac_defaults():
    """K-FAC's own defaults by run-argument name (:data:`KFAC_ARGS`, plus "lr" and "momentum").

    They are read from the signature of :class:`minikfac.optim.KFAC`, the one
    place where they are written.
    """
    parameters = inspect.signature(optim.KFAC).parameters
    keywords = dict(KFAC_ARGS, lr="lr", momentum="momentum")
    return {arg: parameters[keyword].default for arg, keyword in keywords.items()}


def check_compatible(saved, args, path="checkpoint"):
    """Raise ``ValueError`` if the checkpoint ``saved`` was made by a run other than ``args`` describes.

    Only the :data:`IDENTITY` arguments (dataset, model, optimizer, K-FAC's preconditioner) must agree;
    the others (learning rate, ...) may change on resuming.
    """
    saved = saved["args"]
    wrong = [f"{key}={args[key]!r} but the checkpoint has {key}={saved.get(key)!r}"
             for key in IDENTITY if args.get(key) is not None and args[key] != saved.get(key)]
    if wrong:
        raise ValueError(f"cannot resume from {path}: " + "; ".join(wrong))


# --------------------------------------------------------------------------- #
# A whole run
# --------------------------------------------------------------------------- #
@dataclass(repr=False)
class RunResult:
    """What :func:`fit` returns: ``report`` (a JSON-ready dict), ``net`` and ``optimizer``."""

    report: dict
    net: object
    optimizer: object

    def __repr__(self):
        r = self.report
        score = metric_text(r["test_accuracy"], r["test_squared_error"])
        return (f"RunResult({r['dataset']} · {r['model']} · {r['optimizer']}: {r['steps']} steps, "
                f"test loss {r['test_loss']:.4f}, {score}, {r['train_time']:.1f} s of training)")


class RunArgumentError(ValueError):
    """Run arguments that do not fit together, named so that any front end can name them its way.

    ``given`` {argument: value} are the arguments at fault, in order;
    ``rule`` says what is wrong, with ``{given}`` where they go and
    ``{name}`` fields for the arguments it refers to, whose values are in
    ``mentions``. ``str(error)`` names arguments as :func:`fit` takes them
    (``damping=0.5: K-FAC options, for optimizer 'kfac' only``);
    :meth:`describe` lets the command line write ``--damping`` and
    ``--optimizer kfac`` instead.
    """

    def __init__(self, given, rule, **mentions):
        self.given, self.rule, self.mentions = dict(given), rule, mentions
        super().__init__(self.describe(lambda name, value: f"{name}={value!r}",
                                       lambda name, value: f"{name} {value!r}"))

    def describe(self, setting, mention):
        """The message with ``setting(name, value)`` for each argument at fault and ``mention(name, value)``
        for each argument the rule refers to."""
        given = ", ".join(setting(name, value) for name, value in self.given.items())
        return self.rule.format(given=given, **{name: mention(name, value) for name, value in self.mentions.items()})


def check_run_args(run):
    """Raise :class:`RunArgumentError` unless the resolved run arguments ``run`` fit together.

    K-FAC's options (:data:`KFAC_ARGS`) are for optimizer "kfac" only;
    ``momentum`` is SGD's (Adam's is its beta1) and, with K-FAC, that of its
    "kl_clip" update, like ``lr``: the quadratic update chooses both itself.
    """
    name = run["optimizer"]
    if name != "kfac":
        given = {key: run[key] for key in KFAC_ARGS if run[key] is not None}
        if given:
            raise RunArgumentError(given, "{given}: K-FAC options, for {optimizer} only", optimizer="kfac")
        if name == "adam" and run["momentum"]:
            raise RunArgumentError({"momentum": run["momentum"]}, "{given} applies to {optimizer} only "
                                   "(Adam's momentum is its beta1)", optimizer="sgd")
        return
    if run["kfac_update"] == "quadratic":
        given = {key: run[key] for key in ("lr", "momentum") if run[key] is not None}
        if given:
            raise RunArgumentError(given, "{given} applies to {optimizer} with {kfac_update} only: the quadratic "
                                   "update chooses its step size and momentum itself, from its quadratic model "
                                   "(Martens & Grosse 2015, §7)", optimizer="kfac", kfac_update="kl_clip")


def resolve_args(args, saved=None):
    """Fill the run arguments that are None: from the checkpoint ``saved`` if any, else :data:`DEFAULTS`.

    Then per optimizer: SGD and Adam get :data:`DEFAULT_LR` and momentum 0 and
    refuse K-FAC's options (:data:`KFAC_ARGS`); K-FAC gets
    its own defaults (:func:`kfac_defaults`) for the options left out (those
    whose default is None, like ``factored_damping``, stay None: K-FAC picks
    them from the others). ``lr`` and ``momentum`` of K-FAC stay None unless
    given (K-FAC's kl_clip defaults); with the quadratic update a checkpoint's
    values are dropped. Arguments that do not fit together raise
    :class:`RunArgumentError` (:func:`check_run_args`).
    """
    unknown = sorted(set(args) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown run arguments {unknown}; expected some of {sorted(DEFAULTS)}")
    saved = saved["args"] if saved else {}
    resolved = {}
    for key, default in DEFAULTS.items():
        value = args.get(key)
        resolved[key] = value if value is not None else saved.get(key, default)
        if isinstance(resolved[key], np.generic):  # np.int64(3) -> 3: the report and checkpoints are JSON
            resolved[key] = resolved[key].item()
    name = resolved["optimizer"]
    if name != "kfac":
        check_run_args(resolved)
        resolved["lr"] = DEFAULT_LR.get(name) if resolved["lr"] is None else resolved["lr"]
        resolved["momentum"] = 0.0 if resolved["momentum"] is None else resolved["momentum"]
        return resolved
    defaults = kfac_defaults()
    for key in KFAC_ARGS:
        resolved[key] = defaults[key] if resolved[key] is None else resolved[key]
    for key in ("lr", "momentum"):
        if resolved["kfac_update"] != "kl_clip" and args.get(key) is None:
            resolved[key] = None  # a kl_clip checkpoint's value does not apply to the quadratic update
    check_run_args(resolved)
    return resolved


def kfac_options(run):
    """The keyword arguments of :class:`minikfac.optim.KFAC` set by the run arguments ``run`` ({} unless K-FAC)."""
    if run["optimizer"] != "kfac":
        return {}
    return {keyword: run[arg] for arg, keyword in KFAC_ARGS.items() if run[arg] is not None}


def _training_examples(dataset, run):
    """(X, labels) of the training split, or of a seeded subset of ``run["train_examples"]`` of it."""
    X, y = dataset.X_train, dataset.y_train
    count = run["train_examples"]
    if count is None:
        return X, y
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(y):
        raise ValueError(f"train_examples must be an int in [1, {len(y)}] ({run['dataset']} has {len(y):,} "
                         f"training examples), got {count!r}")
    # A subset drawn with the run's seed (the files are sorted by class in places, so not the first rows).
    rows = np.sort(np.random.default_rng(run["seed"]).permutation(len(y))[:count])
    return X[rows], y[rows]


def fit(resume=None, save=None, progress=True, log=print, eval_every_epoch=True, **args):
    """Train a named model on a named dataset and evaluate it; returns a :class:`RunResult`.

    Run arguments (``None`` or absent = the resumed checkpoint's value, else
    :data:`DEFAULTS`): ``dataset`` ("digits", "mnist", "mnist16"), ``model``
    (one of :data:`minikfac.models.MODELS`: "mlp", "martens-grosse", "cnn"
    are classifiers, "autoencoder" reconstructs its input; its loss and
    targets come from :func:`minikfac.models.task`), ``optimizer`` ("sgd",
    "adam", "kfac"), ``epochs`` (total, counting those of a resumed run),
    ``batch_size``, ``lr``, ``momentum`` (SGD; K-FAC's kl_clip update),
    ``weight_decay`` (K-FAC's η), ``seed`` (initial weights, shuffling, the
    training subset, K-FAC's sampled targets), ``backend`` ("numpy", "cupy",
    "fakegpu"), ``dtype`` ("float32", "float64"), ``train_examples`` (train
    on a seeded random subset of that many examples; None: all), and K-FAC's
    options :data:`KFAC_ARGS` (see :func:`resolve_args`).

    resume : path of a checkpoint to continue from (its dataset, model and
        optimizer must match the arguments given).
    save : path to write a checkpoint to after every epoch.
    progress, log : as in :func:`train`. eval_every_epoch : evaluate on the
        test split after each epoch (recorded in ``report["evaluations"]``).

    The report holds the resolved arguments (for K-FAC, its options as it used
    them: its defaults filled in) and ``num_parameters``, ``steps``,
    ``history``, ``evaluations``, ``train_loss`` (mean over the last epoch),
    ``test_loss``, ``test_accuracy`` (classifiers; else None),
    ``test_squared_error`` (the autoencoder's squared reconstruction error per
    image; else None; see :func:`evaluate`), ``kfac`` (K-FAC's final damping λ
    and number of refused steps; None for other optimizers), ``train_time``
    (seconds of training, resumed runs included), ``wall_time`` (seconds this
    call took) and ``resumed_from``. The current backend and default dtype are
    restored on return.
    """
    started = time.perf_counter()
    saved = checkpoint.load(resume) if resume is not None else None
    if saved is not None:
        check_compatible(saved, args, path=repr(os.fspath(resume)))
    run = resolve_args(args, saved)
    task = models.task(run["model"])
    with backend.using(run["backend"], run["dtype"]):
        dataset = data.load(run["dataset"], flat=models.input_is_flat(run["model"]))
        X_train, labels = _training_examples(dataset, run)
        # On the backend once: an autoencoder's targets are then the very same array as its inputs.
        X_train = backend.asarray(X_train)
        X_test, y_test = dataset.X_test, task.targets(dataset.X_test, dataset.y_test)
        nn.init.manual_seed(run["seed"])
        net = models.build(run["model"], dataset)
        loss_fn = task.loss()
        optimizer = make_optimizer(run["optimizer"], net, run["lr"], run["momentum"], run["weight_decay"],
                                   loss_fn=loss_fn, seed=run["seed"], **kfac_options(run))
        loader = data.DataLoader(X_train, task.targets(X_train, labels), run["batch_size"], seed=run["seed"])
        history, evaluations = [], []
        if saved is not None:
            net.load_state_dict(saved["model"])
            # load_state_dict restores the saved hyper-parameters; the run's win (a changed lr
            # takes effect, an unchanged one is the saved one anyway).
            hyper = dict(optimizer.hyper)
            optimizer.load_state_dict(saved["optimizer"])
            optimizer.hyper = hyper
            if run["optimizer"] == "kfac" and args.get("damping") is not None:
                optimizer.damping = args["damping"]  # a λ given on resuming replaces the run's adapted one
            loader.epoch = saved["epoch"]
            history, evaluations = saved["history"], saved["extra"].get("evaluations", [])

        def after_epoch(epoch, history):
            line = ""
            if eval_every_epoch:
                result = evaluate(net, loss_fn, X_test, y_test)
                evaluations.append({"epoch": epoch, "step": history[-1]["step"], "test_loss": result["loss"],
                                    "test_accuracy": result["accuracy"],
                                    "test_squared_error": result["squared_error"]})
                line = f"  test loss {result['loss']:.4f}  {metric_text(result['accuracy'], result['squared_error'])}"
            if run["optimizer"] == "kfac":
                line += f"  λ {optimizer.damping:.3g}"  # a host float: no device sync
            if save is not None:
                checkpoint.save(save, net, optimizer, epoch, history[-1]["step"], history, run,
                                extra={"evaluations": evaluations})
            return line

        train(net, loss_fn, optimizer, loader, run["epochs"], history, progress=progress, log=log,
              on_epoch_end=after_epoch)
        final = evaluate(net, loss_fn, X_test, y_test)
    last_epoch = [r["train_loss"] for r in history if r["epoch"] == history[-1]["epoch"]] if history else []
    # K-FAC's options as it used them (its defaults of lr, momentum, factored_damping filled in).
    used = {arg: optimizer.hyper[keyword] for arg, keyword in dict(KFAC_ARGS, lr="lr", momentum="momentum").items()
            } if run["optimizer"] == "kfac" else {}
    report = dict(run, **used, num_parameters=num_parameters(net), steps=history[-1]["step"] if history else 0,
                  train_loss=sum(last_epoch) / len(last_epoch) if last_epoch else None,
                  test_loss=final["loss"], test_accuracy=final["accuracy"],
                  test_squared_error=final["squared_error"],
                  kfac={"damping": float(optimizer.damping), "refused": int(optimizer.refused)}
                  if run["optimizer"] == "kfac" else None,
                  train_time=history[-1]["wall_time"] if history else 0.0,
                  wall_time=time.perf_counter() - started,
                  resumed_from=os.fspath(resume) if resume is not None else None,
                  evaluations=evaluations, history=history)
    return RunResult(report, net, optimizer)
