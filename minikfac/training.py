"""The training loop, evaluation and checkpoints (the command line is a thin layer over this).

One step is the five lines every framework shares::

    optimizer.zero_grad()
    out = net(X)                       # forward: layers cache what backward needs
    loss = loss_fn(out, y)             # mean NLL, a 0-d array
    net.backward(loss_fn.backward())   # fills every Parameter.grad
    optimizer.step()                   # K-FAC: optimizer.step(X, y) (see train_step)

:func:`fit` runs a whole experiment from names (dataset, model, optimizer) and
returns a JSON-ready report; :func:`train` and :func:`evaluate` are the pieces.
What a model is trained for (its loss and its targets: the labels for a
classifier, the inputs themselves for the autoencoder) comes from
:func:`minikfac.models.task`.

Syncing with the device. Reading a loss as a Python float makes the host wait
for the GPU, so the loop keeps each step's loss as a 0-d array and converts an
epoch's worth in one transfer when the epoch ends. The progress bar (shown only
on a terminal) reads the mean of the last few losses every ``REFRESH_STEPS``
steps, one sync per refresh. Per-step ``wall_time`` is the host clock when the
step was *issued*: on a GPU it runs ahead of the device within an epoch and
catches up at the epoch's end.

Checkpoints are ``.npz`` files readable without pickle (see
:func:`save_checkpoint`). A run resumed from one continues exactly, bit for
bit, as the uninterrupted run: parameters, optimizer state, the loader's epoch
(each epoch's shuffle depends only on (seed, epoch)) and the step count are all
restored.
"""

import inspect
import json
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from minikfac import backend, data, models, nn, optim, threads
from minikfac.nn.activation import logistic

#: Steps between two refreshes of the progress bar's loss (each one syncs the device).
REFRESH_STEPS = 20

OPTIMIZERS = ("sgd", "adam", "kfac")
#: Learning rate used when none is given. Adam's is 3x the textbook 1e-3: with the
#: default batch of 16 it takes the digits MLP past 97% test accuracy in 10 epochs
#: for every seed we tried (1e-3 stays near 96%), and it trains the MNIST CNN well.
#: K-FAC has none here: its quadratic update chooses the step size itself, and its
#: "kl_clip" update takes K-FAC's own default (see :func:`kfac_defaults`).
DEFAULT_LR = {"sgd": 0.1, "adam": 3e-3}

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

CHECKPOINT_FORMAT = "minikfac-checkpoint-1"


# --------------------------------------------------------------------------- #
# Pieces: optimizer by name, one step, one loop, evaluation
# --------------------------------------------------------------------------- #
def kfac_defaults():
    """K-FAC's own defaults by run-argument name (:data:`KFAC_ARGS`, plus "lr" and "momentum").

    They are read from the signature of :class:`minikfac.optim.KFAC`, the one
    place where they are written.
    """
    parameters = inspect.signature(optim.KFAC).parameters
    keywords = dict(KFAC_ARGS, lr="lr", momentum="momentum")
    return {arg: parameters[keyword].default for arg, keyword in keywords.items()}


def make_optimizer(name, net, lr=None, momentum=None, weight_decay=0.0, loss_fn=None, seed=0, **kfac):
    """The optimizer ``name`` ("sgd", "adam" or "kfac") over ``net``'s parameters.

    ``lr=None`` takes :data:`DEFAULT_LR` (K-FAC: its own default).
    ``momentum`` is SGD's heavy-ball coefficient (None = 0); Adam has its own
    (``betas``), so a non-zero momentum with Adam raises ``ValueError`` rather
    than being silently ignored. ``weight_decay`` is the L2 coefficient (K-FAC's η).

    K-FAC only: ``loss_fn`` (the loss the net is trained with; K-FAC forwards
    part of each batch through it), ``seed`` (its sampled targets) and
    ``**kfac``, keyword arguments of :class:`minikfac.optim.KFAC` (``damping``,
    ``update``, ``kind``, ...; absent = K-FAC's defaults). ``lr`` and
    ``momentum`` apply to ``update="kl_clip"`` only; K-FAC refuses them with
    the quadratic update (``ValueError``: that update chooses both itself).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if name != "kfac" and kfac:
        raise ValueError(f"{', '.join(sorted(kfac))}: K-FAC options, for optimizer 'kfac' only (got {name!r})")
    if name == "kfac":
        if loss_fn is None:
            raise ValueError("optimizer 'kfac' needs loss_fn=...: K-FAC forwards part of each batch through the loss")
        return optim.KFAC(net, loss_fn, weight_decay=weight_decay, seed=seed, lr=lr, momentum=momentum, **kfac)
    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "sgd":
        momentum = 0.0 if momentum is None else momentum
        return optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if momentum:
        raise ValueError(f"momentum={momentum!r} applies to SGD only; Adam's momentum is betas[0]")
    return optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)


def train_step(net, loss_fn, optimizer, X, y):
    """One optimisation step on the batch X (N, ...) with targets y (N, ...).

    Returns the batch's mean loss as a 0-d array (not a float: no device sync).
    Runs with one BLAS thread (:func:`minikfac.threads.for_step`: a busy
    machine would otherwise stall the threads of every small product).
    """
    with threads.for_step():
        optimizer.zero_grad()
        loss = loss_fn(net(X), y)
        net.backward(loss_fn.backward(), input_grad=False)  # dL/dX of the data is never needed
        # K-FAC needs the batch itself: it forwards part of it again for its curvature
        # statistics, its quadratic model and its guard.
        if optimizer.needs_batch:
            optimizer.step(X, y)
        else:
            optimizer.step()
    return loss


def _to_floats(losses):
    """Host floats of a list of 0-d arrays, in one transfer."""
    if not losses:
        return []
    xp = backend.get_array_module(*losses)
    return backend.to_numpy(xp.stack(losses)).astype(np.float64).tolist()


def train(net, loss_fn, optimizer, loader, epochs, history=None, progress=True, log=print,
          on_epoch_end=None):
    """Train until ``loader.epoch == epochs``, appending one record per step to ``history``.

    Parameters
    ----------
    net : Module in training mode; loss_fn : a loss; optimizer : over net's parameters.
    loader : :class:`minikfac.data.DataLoader`; its ``epoch`` (finished epochs)
        is where training starts, so setting it resumes a run.
    epochs : int, the total number of epochs to have finished at the end.
    history : list to extend (a resumed run's), or None for a new one. Each
        record is ``{"step", "epoch", "train_loss", "wall_time"}``: ``step``
        counts updates from 1, ``epoch`` from 0, ``train_loss`` is the
        mini-batch mean loss before the update, ``wall_time`` the seconds of
        training (evaluation excluded) since the run first started.
    progress : show a tqdm bar over the steps (only on a terminal).
    log : callable receiving one line per epoch, or None for silence.
    on_epoch_end : optional ``callback(epoch, history)`` after each epoch
        (``epoch`` = finished epochs), e.g. to evaluate or save a checkpoint;
        a string it returns is appended to the epoch's log line.

    Returns ``history``.
    """
    history = [] if history is None else history
    step = history[-1]["step"] if history else 0
    clock = history[-1]["wall_time"] if history else 0.0
    start_epoch = loader.epoch
    if epochs < start_epoch:
        raise ValueError(f"epochs={epochs} is less than the {start_epoch} epochs already finished")
    net.train()
    bar = tqdm(total=(epochs - start_epoch) * len(loader), disable=None if progress else True,
               unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)

    def say(line):
        # Clear the bar while the line is printed, then redraw it below.
        with tqdm.external_write_mode():
            log(line)
    try:
        for epoch in range(start_epoch, epochs):
            losses, times = [], []
            started = time.perf_counter()
            for X, y in loader:
                losses.append(train_step(net, loss_fn, optimizer, X, y))
                times.append(clock + time.perf_counter() - started)
                bar.update(1)
                if not bar.disable and len(losses) % REFRESH_STEPS == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{_mean(losses[-REFRESH_STEPS:]):.4f}")
            values = _to_floats(losses)  # the epoch's one device sync
            clock += time.perf_counter() - started
            for loss, wall in zip(values, times, strict=True):
                step += 1
                history.append({"step": step, "epoch": epoch, "train_loss": loss, "wall_time": wall})
            extra = on_epoch_end(loader.epoch, history) if on_epoch_end else None
            if log:
                mean = sum(values) / max(len(values), 1)
                say(f"epoch {epoch + 1}/{epochs}  train loss {mean:.4f}{extra or ''}  ({clock:.1f} s)")
    finally:
        bar.close()
    return history


def _mean(losses):
    xp = backend.get_array_module(*losses)
    return float(backend.to_numpy(xp.mean(xp.stack(losses))))


def predicted_mean(loss_fn, out):
    """E[y | x] of the loss's output distribution at the outputs ``out`` (N, D_out).

    sigmoid(f) for :class:`~minikfac.nn.BCEWithLogitsLoss` (the Bernoulli means:
    an autoencoder's reconstructed pixels), f itself for
    :class:`~minikfac.nn.MSELoss`. Returns an array of ``out``'s shape.
    """
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return logistic(out)[0]  # σ(f) = 1/(1 + e^{-f})
    if isinstance(loss_fn, nn.MSELoss):
        return out
    raise TypeError(f"predicted_mean: expected a BCEWithLogitsLoss or MSELoss, got {type(loss_fn).__name__}")


def evaluate(net, loss_fn, X, y, batch_size=500):
    """Mean loss and accuracy (or squared error) of ``net`` on (X, y), in evaluation mode and in batches.

    X : (N, ...) host or backend array; y : (N,) integer class labels, or
    float targets (N, D_out) (an autoencoder's: y = X). The net's caches are
    dropped first and eval mode keeps none, so nothing is left behind; the
    net's mode is restored afterwards.

    Returns ``{"loss": float, "accuracy": float or None, "squared_error":
    float or None}``: ``loss`` the mean per-example loss (the objective);
    with labels, ``accuracy`` in [0, 1], the fraction of rows whose largest
    output is the label; with float targets, ``squared_error`` =
    (1/N) Σₙ ‖E[y | xₙ] − yₙ‖² (:func:`predicted_mean`), for an autoencoder
    the squared reconstruction error per image that Martens & Grosse (2015)
    plot.
    """
    params = net.parameters()
    # The data goes where the net lives, in its dtype (the current backend for a net without parameters).
    where = backend.backend_of(params[0].data) if params else backend.get_backend()
    dtype = params[0].data.dtype if params else None
    was_training = net.training
    net.clear_cache()
    net.eval()
    try:
        loader = data.DataLoader(X, y, batch_size, shuffle=False, backend=where, dtype=dtype)
        xp = backend.get_array_module(loader.X)
        classify = np.dtype(loader.y.dtype).kind in "iu"
        total_loss, scores = [], []
        for X_batch, y_batch in loader:
            out = net(X_batch)
            total_loss.append(xp.sum(loss_fn.per_example(out, y_batch)))
            if classify:
                scores.append(xp.sum(xp.argmax(out, axis=1) == y_batch))
            else:
                scores.append(xp.sum((predicted_mean(loss_fn, out) - y_batch) ** 2))
        n = loader.num_examples
        loss = sum(_to_floats(total_loss)) / n
        score = sum(_to_floats(scores)) / n
    finally:
        net.train(was_training)
    return {"loss": loss, "accuracy": score if classify else None, "squared_error": None if classify else score}


def metric_text(accuracy=None, squared_error=None):
    """How a run's test metric is printed: "test accuracy 97.50%" or "squared error 12.34 per image"."""
    if accuracy is not None:
        return f"test accuracy {100 * accuracy:.2f}%"
    if squared_error is not None:
        return f"test squared error {squared_error:.2f} per image"
    return "test accuracy n/a"


def num_parameters(net):
    """Total number of scalar parameters P of ``net``."""
    return int(sum(math.prod(p.shape) for p in net.parameters()))


# --------------------------------------------------------------------------- #
# Checkpoints: arrays in an .npz, everything else as one JSON string beside them
# --------------------------------------------------------------------------- #
def _encode(obj, arrays):
    """A JSON-ready copy of ``obj`` whose arrays are moved to ``arrays`` and referenced by name."""
    if backend.is_array(obj):
        name = f"array_{len(arrays)}"
        arrays[name] = backend.to_numpy(obj)
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        # JSON objects only have string keys; optimizer state is keyed by ints.
        # Pairs keep each key's type, and the order (parameter names come in network order).
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    raise TypeError(f"save_checkpoint: cannot store a {type(obj).__name__} ({obj!r:.80})")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__items__"]}
        return {k: _decode(v, arrays) for k, v in obj.items()}
    return obj


def save_checkpoint(path, net, optimizer, epoch, step, history, args, extra=None):
    """Write a checkpoint to ``path`` (an ``.npz`` file; written atomically).

    Contents: ``model`` (``net.state_dict()``), ``optimizer``
    (``optimizer.state_dict()``), ``epoch`` (finished epochs), ``step``
    (updates done), ``history``, ``args`` (the run's arguments, a dict of
    JSON values) and ``extra`` (any other JSON-ready dict).

    Format: every array is stored as an entry of the ``.npz``; the rest is one
    JSON document in the entry ``checkpoint`` that refers to arrays by entry
    name (``{"__array__": "array_3"}``), keeps tuples (``{"__tuple__": [...]}``)
    and dicts with non-string keys (``{"__items__": [[key, value], ...]}``).
    Nothing is pickled, so loading a checkpoint cannot run code. Floats go
    through JSON's shortest round-trip repr and arrays keep their dtype, so a
    reload is exact.
    """
    arrays = {}
    document = {
        "format": CHECKPOINT_FORMAT, "epoch": int(epoch), "step": int(step), "args": args,
        "history": history, "extra": extra or {},
        "model": _encode(dict(net.state_dict()), arrays), "optimizer": _encode(optimizer.state_dict(), arrays),
    }
    arrays["checkpoint"] = np.array(json.dumps(document))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = path + ".partial"
    # Write then rename, so an interrupted save never leaves a truncated checkpoint behind.
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
    os.replace(temporary, path)
    return path


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`; returns its dict.

    Keys: ``model`` (dict name -> NumPy array, network order), ``optimizer``
    (the optimizer's state_dict), ``epoch``, ``step``, ``history``, ``args``,
    ``extra``, ``format``. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a file that is not a minikfac checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(str(arrays.pop("checkpoint")))
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path!r} is not a minikfac checkpoint ({err})") from None
    if document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path!r} has format {document.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    for key in ("model", "optimizer"):
        document[key] = _decode(document[key], arrays)
    return document


def check_compatible(checkpoint, args, path="checkpoint"):
    """Raise ``ValueError`` if ``checkpoint`` was made by a run other than ``args`` describes.

    Only the :data:`IDENTITY` arguments (dataset, model, optimizer, K-FAC's preconditioner) must agree;
    the others (learning rate, ...) may change on resuming.
    """
    saved = checkpoint["args"]
    wrong = [f"{key}={args[key]!r} but the checkpoint has {key}={saved.get(key)!r}"
             for key in IDENTITY if args.get(key) is not None and args[key] != saved.get(key)]
    if wrong:
        raise ValueError(f"cannot resume from {path}: " + "; ".join(wrong))


# --------------------------------------------------------------------------- #
# A whole run
# --------------------------------------------------------------------------- #
class RunResult:
    """What :func:`fit` returns: ``report`` (a JSON-ready dict), ``net`` and ``optimizer``."""

    def __init__(self, report, net, optimizer):
        self.report, self.net, self.optimizer = report, net, optimizer


def resolve_args(args, checkpoint=None):
    """Fill the run arguments that are None: from the checkpoint if any, else :data:`DEFAULTS`.

    Then per optimizer: SGD and Adam get :data:`DEFAULT_LR` and momentum 0 and
    refuse K-FAC's options (:data:`KFAC_ARGS`) with ``ValueError``; K-FAC gets
    its own defaults (:func:`kfac_defaults`) for the options left out (those
    whose default is None, like ``factored_damping``, stay None: K-FAC picks
    them from the others). ``lr`` and ``momentum`` of K-FAC stay None unless
    given (K-FAC's kl_clip defaults); with the quadratic update a checkpoint's
    values are dropped (given ones make K-FAC raise ``ValueError``).
    """
    unknown = sorted(set(args) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown run arguments {unknown}; expected some of {sorted(DEFAULTS)}")
    saved = checkpoint["args"] if checkpoint else {}
    resolved = {}
    for key, default in DEFAULTS.items():
        value = args.get(key)
        resolved[key] = value if value is not None else saved.get(key, default)
    name = resolved["optimizer"]
    if name != "kfac":
        given = [f"{key}={resolved[key]!r}" for key in KFAC_ARGS if resolved[key] is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: K-FAC options, for optimizer 'kfac' only (got optimizer={name!r})")
        resolved["lr"] = DEFAULT_LR.get(name) if resolved["lr"] is None else resolved["lr"]
        resolved["momentum"] = 0.0 if resolved["momentum"] is None else resolved["momentum"]
        return resolved
    defaults = kfac_defaults()
    for key in KFAC_ARGS:
        resolved[key] = defaults[key] if resolved[key] is None else resolved[key]
    for key in ("lr", "momentum"):
        if resolved["kfac_update"] != "kl_clip" and args.get(key) is None:
            resolved[key] = None  # a kl_clip checkpoint's value does not apply to the quadratic update
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
    checkpoint = load_checkpoint(resume) if resume is not None else None
    if checkpoint is not None:
        check_compatible(checkpoint, args, path=repr(os.fspath(resume)))
    run = resolve_args(args, checkpoint)
    task = models.task(run["model"])
    previous = backend.get_backend(), backend.get_default_dtype()
    try:
        backend.set_backend(run["backend"])
        backend.set_default_dtype(run["dtype"])
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
        if checkpoint is not None:
            net.load_state_dict(checkpoint["model"])
            # load_state_dict restores the saved hyper-parameters; the run's win (a changed lr
            # takes effect, an unchanged one is the saved one anyway).
            hyper = dict(optimizer.hyper)
            optimizer.load_state_dict(checkpoint["optimizer"])
            optimizer.hyper = hyper
            loader.epoch = checkpoint["epoch"]
            history, evaluations = checkpoint["history"], checkpoint["extra"].get("evaluations", [])

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
                save_checkpoint(save, net, optimizer, epoch, history[-1]["step"], history, run,
                                extra={"evaluations": evaluations})
            return line

        train(net, loss_fn, optimizer, loader, run["epochs"], history, progress=progress, log=log,
              on_epoch_end=after_epoch)
        final = evaluate(net, loss_fn, X_test, y_test)
    finally:
        backend.set_backend(previous[0])
        backend.set_default_dtype(previous[1])
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
