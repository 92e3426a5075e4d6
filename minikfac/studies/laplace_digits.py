"""The Laplace approximation on 8×8 digits: accuracy, likelihood, calibration and OOD detection per structure.

One small MLP is trained on the digits (:func:`minikfac.data.load`, 64 flat
inputs, 10 classes) to the MAP of the mean loss plus an L2 term that is the
Gaussian prior N(0, δ⁻¹I):

    (1/N) Σ_n ℓ_n(θ) + (δ / 2N) ‖θ‖²  =  (1/N) · [ −log p(D | θ) − log p(θ) ] + const,

so the optimizer's *coupled* weight decay wd (:class:`minikfac.optim.Adam` and
:class:`~minikfac.optim.SGD` add wd·θ to the gradient of the mean loss) is
wd = δ/N. Then, for every structure × subset, :class:`minikfac.laplace.Laplace`
is fitted at that MAP, its δ is tuned by the evidence (post hoc, without
retraining: the MAP stays the one trained with the first δ, as in
laplace-torch), and its linearised predictive is scored with
:mod:`minikfac.studies.calibration`: test accuracy, NLL, ECE (15 bins), and the
AUROC of the top-label confidence between the test digits and each set of
out-of-distribution inputs (:data:`OOD_SETS`):

- ``"noise"``: images of i.i.d. uniform pixels in [0, 1];
- ``"rotated"``: the test digits rotated by an angle drawn uniformly from
  60°–90° (:func:`scipy.ndimage.rotate`, bilinear, clipped to [0, 1]);
- ``"mnist"``: MNIST test digits shrunk to 8×8 (the 16×16 ``"mnist16"``
  averaged over 2×2 blocks) — the same ten classes, other writers and
  scanning: a dataset shift rather than new classes.

The MAP's own softmax is the baseline row. Fit and predictive times are
measured and reported, never relied on. Progress is a tqdm bar over the fits
(only on a terminal), as in :mod:`minikfac.training`.
"""

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
from tqdm import tqdm

from minikfac import backend, data, laplace, models, nn, optim, training
from minikfac.curvature import flatten
from minikfac.curvature.structures import STRUCTURES
from minikfac.studies import calibration

OOD_SETS = ("noise", "rotated", "mnist")


def ood_inputs(X_test, names=("noise", "rotated"), angles=(60.0, 90.0), seed=0):
    """Out-of-distribution inputs like the digits, dict name -> host array (n, 64), n = len(X_test) (at most 1000 for "mnist").

    X_test : (n, 64) host digits in [0, 1]; names : a subset of :data:`OOD_SETS` (module docstring).
    """
    unknown = [name for name in names if name not in OOD_SETS]
    if unknown:
        raise ValueError(f"ood_inputs: names must be among {OOD_SETS}, got {unknown}")
    X_test = np.asarray(X_test)
    if X_test.ndim != 2 or X_test.shape[1] != 64:
        raise ValueError(f"ood_inputs: X_test must be (n, 64) flat 8×8 digits, got {X_test.shape}")
    rng = np.random.default_rng(seed)
    n, sets = len(X_test), {}
    for name in names:
        if name == "noise":
            sets[name] = rng.random(X_test.shape).astype(X_test.dtype)
        elif name == "rotated":
            turns = rng.uniform(*angles, size=n)
            images = [scipy.ndimage.rotate(image.reshape(8, 8), angle, reshape=False, order=1)
                      for image, angle in zip(X_test, turns)]
            sets[name] = np.clip(np.stack(images).reshape(n, 64), 0, 1).astype(X_test.dtype)
        else:
            mnist = data.load("mnist16", dtype=X_test.dtype).X_test[:n].reshape(-1, 8, 2, 8, 2)
            sets[name] = mnist.mean(axis=(2, 4)).reshape(-1, 64)
    return sets


def train_map(X, y, hidden=(32,), activation="tanh", prior_precision=1.0, epochs=60, lr=0.01, batch_size=64,
              seed=0, progress=True):
    """Train ``mk.models.mlp(64, 10, hidden)`` with Adam to the MAP of prior precision δ = ``prior_precision``.

    X : (N, 64), y : (N,) labels. Adam's coupled weight decay wd = δ/N makes the
    mean loss + (wd/2)‖θ‖² the negative log posterior divided by N (module
    docstring); the learning rate falls linearly to lr/10 in the last third of
    the epochs so that the end is close to stationary.
    Returns (net, info) with info: "weight_decay", "train_loss" (the mean loss at
    the end), "gradient_norm" (‖∇ of the regularised mean objective‖ over all N
    examples: 0 at an exact MAP), "seconds".
    """
    nn.init.manual_seed(seed)
    net = models.mlp(X.shape[1], 10, hidden=hidden, activation=activation)
    loss_fn = nn.CrossEntropyLoss()
    decay = prior_precision / len(X)
    adam = optim.Adam(net.parameters(), lr=lr, weight_decay=decay)
    loader = data.DataLoader(X, y, batch_size, seed=seed)
    started = time.perf_counter()
    head = max(1, (2 * epochs) // 3)
    training.train(net, loss_fn, adam, loader, head, progress=progress, log=None)
    for epoch in range(head, epochs):
        adam.hyper["lr"] = lr * (1 - 0.9 * (epoch - head + 1) / (epochs - head))
        training.train(net, loss_fn, adam, loader, epoch + 1, progress=False, log=None)
    seconds = time.perf_counter() - started
    Xb, yb = loader.X, loader.y
    net.zero_grad()
    loss = loss_fn(net(Xb), yb)
    net.backward(loss_fn.backward())
    gradient = flatten(net, "grad") + decay * flatten(net)
    net.clear_cache()
    net.zero_grad()
    return net, {"weight_decay": decay, "train_loss": float(loss),
                 "gradient_norm": float(backend.get_array_module(gradient).linalg.norm(gradient)),
                 "seconds": seconds}


@dataclass
class MethodScores:
    """One row of the table: a predictive's scores on the digits' test set and the OOD sets.

    name : "MAP" or "<structure>/<subset>". prior_precision, log_evidence,
    effective_parameters : δ after tuning, log p(D | δ) and γ(δ) (None for the MAP).
    accuracy, nll, ece : on the test set. auroc : OOD set name -> AUROC of the
    top-label confidence (test digits as positives). fit_seconds : the fit and
    the tuning of δ; predict_seconds : the predictive on the test and OOD inputs.
    reliability : the host :class:`~minikfac.studies.calibration.Reliability` of the test set.
    """

    name: str
    structure: object
    subset: object
    prior_precision: object
    log_evidence: object
    effective_parameters: object
    accuracy: float
    nll: float
    ece: float
    auroc: dict
    fit_seconds: float
    predict_seconds: float
    reliability: object = field(repr=False)


@dataclass
class DigitsLaplace:
    """The result of :func:`run`: ``methods`` (the MAP first, then each fit), ``training`` (:func:`train_map`'s
    info), ``settings`` (the arguments), ``n_params`` ("all" and "last_layer" -> P)."""

    methods: list
    training: dict
    settings: dict
    n_params: dict


def _host_reliability(table):
    return calibration.Reliability(*(backend.to_numpy(getattr(table, name))
                                     for name in ("edges", "counts", "confidence", "accuracy")))


def score(name, probabilities, labels, ood_probabilities, bins=calibration.DEFAULT_BINS, **fields):
    """A :class:`MethodScores` from test ``probabilities`` (n, C), ``labels`` (n,) and ``ood_probabilities``
    (dict name -> (m, C)); ``fields`` fills the rest (structure, subset, prior_precision, ..., timings)."""
    aurocs = {key: float(calibration.ood_auroc(probabilities, value)) for key, value in ood_probabilities.items()}
    defaults = {"structure": None, "subset": None, "prior_precision": None, "log_evidence": None,
                "effective_parameters": None, "fit_seconds": 0.0, "predict_seconds": 0.0}
    defaults.update(fields)
    return MethodScores(name=name, accuracy=float(calibration.accuracy(probabilities, labels)),
                        nll=float(calibration.negative_log_likelihood(probabilities, labels)),
                        ece=float(calibration.expected_calibration_error(probabilities, labels, bins)),
                        auroc=aurocs, reliability=_host_reliability(calibration.reliability(probabilities, labels, bins)),
                        **defaults)


def _check_names(values, allowed, caller, name):
    values = tuple(values)
    if not values or any(value not in allowed for value in values):
        raise ValueError(f"{caller}: {name} must be a non-empty selection of {tuple(allowed)}, got {values!r}")
    return values


def run(structures=tuple(STRUCTURES), subsets=laplace.SUBSETS, hidden=(32,), activation="tanh",
        prior_precision=1.0, epochs=60, method="probit", samples=100, bins=calibration.DEFAULT_BINS,
        ood=("noise", "rotated"), tune=True, train_size=None, seed=0, progress=True):
    """Train the MAP on digits and score the Laplace predictive of each structure × subset (module docstring).

    structures : names of :data:`minikfac.curvature.structures.STRUCTURES`; subsets : "all", "last_layer".
    prior_precision : δ of the training prior (and the start of the tuning).
    method, samples : of :meth:`minikfac.laplace.Laplace.predictive` ("probit" or "mc").
    ood : names of :data:`OOD_SETS`. tune : set each δ by the evidence (else keep the training δ).
    train_size : use the first ``train_size`` training images only (quick runs), default all 1438.
    Data and net live on the current backend. Returns a :class:`DigitsLaplace`.
    """
    caller = "laplace_digits.run"
    structures = _check_names(structures, STRUCTURES, caller, "structures")
    subsets = _check_names(subsets, laplace.SUBSETS, caller, "subsets")
    if method not in ("probit", "mc"):
        raise ValueError(f"{caller}: method must be 'probit' or 'mc', got {method!r}")
    digits = data.load("digits")
    X_host, y_host = digits.X_train[:train_size], digits.y_train[:train_size]
    net, info = train_map(X_host, y_host, hidden, activation, prior_precision, epochs, seed=seed, progress=progress)
    dtype = net.parameters()[0].data.dtype
    X, y = backend.asarray(X_host, dtype=dtype), backend.asarray(y_host)
    X_test, y_test = backend.asarray(digits.X_test, dtype=dtype), backend.asarray(digits.y_test)
    others = {name: backend.asarray(value, dtype=dtype) for name, value in ood_inputs(digits.X_test, ood, seed=seed).items()}
    loss_fn = nn.CrossEntropyLoss()

    def predict(la, how):
        return (la.predictive(X_test, how, samples, seed),
                {name: la.predictive(value, how, samples, seed) for name, value in others.items()})

    methods, n_params = [], {}
    bar = tqdm(total=len(structures) * len(subsets), disable=None if progress else True, unit="fit",
               file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        for subset in subsets:
            for structure in structures:
                bar.set_postfix(structure=structure, subset=subset)
                started = time.perf_counter()
                la = laplace.Laplace(net, loss_fn, X, y, structure=structure, prior_precision=prior_precision,
                                     subset=subset)
                if tune:
                    la.optimize_prior_precision()
                evidence = float(la.log_marginal_likelihood())
                backend.synchronize(X)
                fitted = time.perf_counter()
                if not methods:
                    test, ood_probabilities = predict(la, "map")
                    methods.append(score("MAP", test, y_test, ood_probabilities, bins))
                predicted = time.perf_counter()
                test, ood_probabilities = predict(la, method)
                backend.synchronize(X)
                done = time.perf_counter()
                n_params[subset] = la.n_params
                methods.append(score(f"{structure}/{subset}", test, y_test, ood_probabilities, bins,
                                     structure=structure, subset=subset, prior_precision=la.prior_precision,
                                     log_evidence=evidence, effective_parameters=float(la.effective_parameters()),
                                     fit_seconds=fitted - started, predict_seconds=done - predicted))
                bar.update(1)
    finally:
        bar.close()
    settings = {"structures": structures, "subsets": subsets, "hidden": tuple(hidden), "activation": activation,
                "prior_precision": prior_precision, "epochs": epochs, "method": method, "samples": samples,
                "bins": bins, "ood": tuple(ood), "tune": tune, "n_train": len(X_host), "n_test": len(digits.X_test),
                "seed": seed}
    return DigitsLaplace(methods=methods, training=info, settings=settings, n_params=n_params)


def format_table(result):
    """The result of :func:`run` as a text table, one row per method (times measured, not asserted)."""
    ood = result.settings["ood"]
    head = (f"{'method':<18} {'δ':>8} {'γ':>7} {'log evidence':>13} {'acc':>6} {'NLL':>6} {'ECE':>6} "
            + " ".join(f"{'AUROC ' + name:>13}" for name in ood) + f" {'fit s':>6} {'pred s':>6}")
    lines = [head, "-" * len(head)]
    for row in result.methods:
        delta = "" if row.prior_precision is None else f"{row.prior_precision:.3g}"
        gamma = "" if row.effective_parameters is None else f"{row.effective_parameters:.1f}"
        evidence = "" if row.log_evidence is None else f"{row.log_evidence:.1f}"
        aurocs = " ".join(f"{row.auroc[name]:>13.3f}" for name in ood)
        timing = "" if row.structure is None else f"{row.fit_seconds:>6.2f} {row.predict_seconds:>6.2f}"
        lines.append(f"{row.name:<18} {delta:>8} {gamma:>7} {evidence:>13} {row.accuracy:>6.3f} {row.nll:>6.3f} "
                     f"{row.ece:>6.3f} {aurocs} {timing}")
    info, settings = result.training, result.settings
    lines.append(f"MLP 64-{'-'.join(map(str, settings['hidden']))}-10 ({settings['activation']}), "
                 f"P = {result.n_params}, N = {settings['n_train']}, trained {settings['epochs']} epochs with "
                 f"weight decay δ/N = {info['weight_decay']:.3g} (δ = {settings['prior_precision']:g}): train loss "
                 f"{info['train_loss']:.4f}, ‖∇‖ = {info['gradient_norm']:.2g}; predictive: {settings['method']}; "
                 f"ECE with {settings['bins']} bins")
    return "\n".join(lines)
