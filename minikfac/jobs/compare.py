"""The ``compare`` job: a partially trained net, its exact Fisher, and K-FAC & co. beside it.

Martens & Grosse 2015, Figs. 2 and 3, on their 256-20-20-20-20-20-10 tanh
network and 16×16 MNIST by default: a few epochs of Adam, the exact Fisher of a
seeded subset of the training split (float64), every approximation of
:func:`minikfac.studies.approximation_errors.compare` measured against it, and the
figures. ``minikfac compare`` and ``minikfac demo`` both run it through
:func:`run`; the command line only parses and prints.

Settings are one namespace (:func:`settings`), the attributes being the
command's options: dataset, model, hidden, channels, train_epochs, examples,
seed, kind, damping, mc_samples, mc_seeds, layers (counted from 1, or None),
no_spectra, backend, out. Problems a user can fix raise ``ValueError`` naming
the option.
"""

import math
import os
import time
import types

import numpy as np

from minikfac import backend, data, models, nn, training

DEFAULTS = {
    "dataset": "mnist16", "model": "martens-grosse", "hidden": [16, 16], "channels": [4, 8], "train_epochs": 3,
    "examples": 1000, "seed": 0, "kind": "true", "damping": 1e-3, "mc_samples": [1, 4, 16, 64], "mc_seeds": 2,
    "layers": None, "no_spectra": False, "backend": "numpy", "out": os.path.join("report", "compare"),
}
#: The exact Fisher is a dense P×P float64 matrix: 12,000 parameters make 1.15 GB, and eig(F) minutes.
MAX_PARAMETERS = 12_000
#: Adam's settings for the partial training (the training defaults).
TRAIN_BATCH = 16


def settings(**overrides):
    """The job's settings: :data:`DEFAULTS` with ``overrides`` (unknown names raise ``TypeError``)."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"comparison.settings: unknown settings {unknown}; expected some of {sorted(DEFAULTS)}")
    return types.SimpleNamespace(**{**DEFAULTS, **overrides})


def network(options, dataset):
    """The network compared (martens-grosse, mlp with ``hidden`` or cnn with ``channels``)."""
    features = math.prod(dataset.image_shape)
    if options.model == "martens-grosse":
        return models.martens_grosse(features, dataset.num_classes)
    if options.model == "mlp":
        return models.mlp(features, dataset.num_classes, hidden=options.hidden)
    return models.cnn(dataset.image_shape, dataset.num_classes, channels=options.channels)


def setup(options):
    """The dataset and the (seeded) network, with the options checked against them; raises ValueError."""
    dataset = data.load(options.dataset, flat=models.input_is_flat(options.model))
    nn.init.manual_seed(options.seed)
    net = network(options, dataset)
    size = training.num_parameters(net)
    if size > MAX_PARAMETERS:
        raise ValueError(f"the {options.model} network has P = {size:,} parameters; its exact Fisher would be "
                         f"{size:,}x{size:,} ({8 * size * size / 1e9:.1f} GB). compare needs P <= "
                         f"{MAX_PARAMETERS:,}: use a smaller --hidden or --channels")
    if options.examples > len(dataset.y_train):
        raise ValueError(f"--examples: {options.dataset} has {len(dataset.y_train):,} training examples, "
                         f"got {options.examples:,}")
    count = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in net.modules())
    if options.layers is not None and (max(options.layers) > count or options.layers != sorted(set(options.layers))):
        raise ValueError(f"--layers: expected increasing layer numbers from 1 to {count}, got "
                         f"{','.join(map(str, options.layers))}")
    return dataset, net


def partially_train(options, net, loss_fn, dataset, log=print):
    """``options.train_epochs`` epochs of Adam (lr 3e-3, batch 16); returns a record with test metrics."""
    started = time.perf_counter()
    record = {"optimizer": "adam", "lr": training.DEFAULT_LR["adam"], "batch_size": TRAIN_BATCH,
              "epochs": options.train_epochs}
    if options.train_epochs:
        optimizer = training.make_optimizer("adam", net)
        loader = data.DataLoader(dataset.X_train, dataset.y_train, TRAIN_BATCH, seed=options.seed)
        training.train(net, loss_fn, optimizer, loader, options.train_epochs, progress=False, log=None)
    record.update(training.evaluate(net, loss_fn, dataset.X_test, dataset.y_test))
    record["seconds"] = time.perf_counter() - started
    if log:
        log(f"  training: {record['seconds']:.1f} s ({options.train_epochs} epochs of Adam; test accuracy "
            f"{100 * record['accuracy']:.1f}%)")
    return record


def figures(options, net, loss_fn, X, y, F, result):
    """Write Figs. 2 and 3, the spectra and the Monte-Carlo curves to ``options.out``.

    X : (N, ...) the examples of the Fisher; y : (N,) their labels; F : (P, P) the
    exact Fisher; result : the :class:`~minikfac.studies.approximation_errors.Comparison`.

    Returns (paths, layers, inverse_means): the figures written, the indices
    (from 0) of the layers drawn, and the (B, B) block means of |F̃⁻¹| on those
    layers divided by their largest — the numbers in Fig. 3's right panel —
    as nested lists.
    """
    from minikfac import plot  # matplotlib only when a figure is drawn
    from minikfac.studies.figure_data import figure_matrices

    layers = None if options.layers is None else [i - 1 for i in options.layers]
    mats = figure_matrices(net, loss_fn, X, F, layers, y=y, kind=options.kind)
    os.makedirs(options.out, exist_ok=True)
    short = f"{options.model} on {options.dataset}, N = {options.examples:,}"
    context = (f"layers {', '.join(str(i + 1) for i in mats.layers)} of {options.model} on {options.dataset} "
               f"after {options.train_epochs} epochs of Adam, N = {options.examples:,}")

    def path(name):
        return os.path.join(options.out, name + ".png")

    inverse, damping = plot.damped_inverse(mats.approximation)
    means = plot.block_means(inverse, mats.boundaries)
    written = [
        plot.fisher_vs_kfac(mats.fisher, mats.approximation, mats.boundaries, path("fisher_vs_kfac"),
                            title=f"Exact Fisher F vs K-FAC's F̃ ({mats.note})\n"
                                  f"{context}; Martens & Grosse 2015, Fig. 2"),
        plot.inverse_structure(mats.approximation, mats.boundaries, path("inverse_structure"), damping=damping,
                               labels=[f"layer {i + 1}" for i in mats.layers],
                               title=f"K-FAC's F̃ ({mats.note}) and its inverse\n"
                                     f"{context}; Martens & Grosse 2015, Fig. 3"),
    ]
    if result.spectra:
        written.append(plot.spectra(result.spectra, path("spectra"), title=f"Eigenvalues: {short}"))
    mc = result.monte_carlo
    if mc:
        curves = {"K-FAC from k samples": mc["kfac"]["total"]}
        if mc["fisher"]:
            curves = {"MC Fisher": mc["fisher"]["total"], **curves}
        written.append(plot.monte_carlo_error(mc["samples"], curves, path("monte_carlo"),
                                              title=f"Monte-Carlo noise: {short}"))
    return written, mats.layers, (means / means.max()).tolist()


def run(options, log=print):
    """The whole job: train, exact Fisher, comparison, figures; returns ``(comparison, report)``.

    comparison : the :class:`~minikfac.studies.approximation_errors.Comparison` (its
    ``table()`` is the printed error table); report : a JSON-ready dict with the
    settings, the parameter count, the training record, the figures written,
    the comparison's results (the Kronecker family's study under
    ``"kronecker"``) and the time of each part. The backend and the
    default dtype are restored afterwards (the job itself is float64).
    """
    started = time.perf_counter()
    # From the module itself: the package may export the function compare under the same name.
    from minikfac.studies.approximation_errors import compare
    from minikfac.curvature.exact import fisher

    log = log or (lambda line: None)
    try:
        backend.module_of(options.backend)
    except RuntimeError as err:  # e.g. cupy without a GPU: the message says how to fix it
        raise ValueError(f"--backend: {err}") from None
    with backend.using(options.backend, "float64"):  # exact-Fisher work is float64 (docs/design.md)
        dataset, net = setup(options)
        size = training.num_parameters(net)
        log(f"{options.model} ({size:,} parameters) on {options.dataset}, exact {options.kind} Fisher of "
            f"{options.examples:,} training examples")
        loss_fn = nn.CrossEntropyLoss()
        record = partially_train(options, net, loss_fn, dataset, log)
        # A seeded subset of the training split: the examples the net was (partially) trained on.
        rows = np.random.default_rng(options.seed).choice(len(dataset.y_train), options.examples, replace=False)
        X, y = backend.asarray(dataset.X_train[rows]), backend.asarray(dataset.y_train[rows])
        timings = {"training": record["seconds"]}
        clock = time.perf_counter()
        F = fisher(net, loss_fn, X, y, kind=options.kind)
        timings["exact Fisher"] = time.perf_counter() - clock
        log(f"  exact Fisher: {timings['exact Fisher']:.1f} s ({size:,} x {size:,})")
        result = compare(net, loss_fn, X, y, kind=options.kind, damping=options.damping, F=F,
                         mc_samples=options.mc_samples, mc_seeds=options.mc_seeds, seed=options.seed,
                         spectra=not options.no_spectra, log=log)
        timings.update(result.timings)
        clock = time.perf_counter()
        written, layers, inverse_means = figures(options, net, loss_fn, X, y, F, result)
        timings["figures"] = time.perf_counter() - clock
        log(f"  figures: {timings['figures']:.1f} s")
    timings["total"] = time.perf_counter() - started
    report = {"arguments": dict(vars(options)), "parameters": size, "training": record,
              "figure_layers": [i + 1 for i in layers], "figures": written,
              "inverse_block_means": inverse_means, **result.to_dict(),
              "timings": timings}
    return result, report
