"""Curves: the training loss, spectra, Monte-Carlo errors and scaling laws (log axes)."""

import os

import numpy as np
from matplotlib.figure import Figure

from minikfac import backend


def _history_arrays(history):
    """(steps, epochs, losses) as NumPy arrays from a list of history records."""
    if not history:
        raise ValueError("history is empty: there is no loss to plot")
    try:
        steps = np.array([record["step"] for record in history], dtype=np.int64)
        epochs = np.array([record["epoch"] for record in history], dtype=np.int64)
        losses = np.array([record["train_loss"] for record in history], dtype=np.float64)
    except (KeyError, TypeError) as err:
        raise ValueError(
            "history must be a list of dicts with keys 'step', 'epoch' and 'train_loss' "
            f"(as made by minikfac.training), got {type(history[0]).__name__} records ({err})"
        ) from None
    return steps, epochs, losses


def loss_curve(history, path, title=None, evaluations=None):
    """Plot the training loss against the step (log y-axis) and save it as an image.

    Parameters
    ----------
    history : list of dict
        One record per optimisation step, each with ``step`` (int), ``epoch``
        (int, the epoch the step belongs to, counted from 0) and ``train_loss``
        (float, the mini-batch loss) — the ``history`` of
        :func:`minikfac.jobs.train.fit`.
    path : str or os.PathLike
        Where to write the figure; the format follows the suffix (``.png``,
        ``.pdf``, ``.svg``). The folder must exist.
    title : str, optional
        The figure's title.
    evaluations : list of dict, optional
        Test-set evaluations, each with ``step`` and ``test_loss`` (the
        ``evaluations`` of :func:`minikfac.jobs.train.fit`'s report), drawn as a
        second curve so that over-fitting shows.

    Returns
    -------
    str : ``path``.

    The mini-batch losses are drawn faintly (they are noisy); on top, each
    epoch's mean training loss is drawn at the step that ends the epoch.
    """
    steps, epochs, losses = _history_arrays(history)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.subplots()
    # A log axis cannot show a loss of exactly 0; such steps are left out.
    positive = losses > 0
    ax.plot(steps[positive], losses[positive], color="tab:blue", alpha=0.35, linewidth=0.8,
            label="mini-batch loss")

    # Epoch means: group the steps by epoch (np.unique's inverse index) and average.
    _, index = np.unique(epochs, return_inverse=True)
    means = np.bincount(index, weights=losses) / np.bincount(index)
    last_step = np.zeros(len(means), dtype=np.int64)
    np.maximum.at(last_step, index, steps)
    ax.plot(last_step, means, color="tab:orange", marker="o", markersize=3, linewidth=1.5,
            label="epoch mean (train)")
    if evaluations:
        ax.plot([e["step"] for e in evaluations], [e["test_loss"] for e in evaluations], color="tab:green",
                marker="s", markersize=3, linewidth=1.5, label="test loss")

    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean NLL)")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return path


def _positive_descending(name, values):
    """(the entries of ``values`` above rounding, largest first, as a host array; how many were not).

    Eigenvalues below largest × P × eps (numpy's ``matrix_rank`` tolerance) are
    zeros blurred by rounding: drawn on a log axis they would fill it with noise.
    """
    host = np.asarray(backend.to_numpy(values) if backend.is_array(values) else values, dtype=np.float64)
    if host.ndim != 1 or host.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of eigenvalues, got shape {host.shape}")
    host = np.sort(host)[::-1]
    kept = host[host > max(host[0], 0.0) * host.size * np.finfo(np.float64).eps]
    return kept, host.size - kept.size


def spectra(eigenvalues, path, title=None):
    """Eigenvalues against their rank, log-log, one curve per matrix (largest first).

    eigenvalues : dict label -> (P,) eigenvalues (any order, any backend),
        e.g. {"exact F": ..., "K-FAC": ..., "EKFAC": ...}. Eigenvalues at the
        rounding level (below largest × P × eps, zeros in exact arithmetic)
        are left out; the legend says how many.
    path : the image file; title : the figure's title. Returns ``path``.
    """
    if not eigenvalues:
        raise ValueError("eigenvalues is empty: pass a dict label -> array of eigenvalues")
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.subplots()
    for label, values in eigenvalues.items():
        positive, dropped = _positive_descending(f"eigenvalues[{label!r}]", values)
        ax.plot(np.arange(1, positive.size + 1), positive, linewidth=1.4,
                label=label + (f" ({dropped} ≈ 0 not shown)" if dropped else ""))
    return _save_loglog(fig, ax, "rank (largest eigenvalue = 1)", "eigenvalue", title or "Spectra", path)


def _save_loglog(fig, ax, xlabel, ylabel, title, path):
    """Log-log axes with labels, grid and legend; save ``fig`` to ``path`` and return ``path``."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return path


def check_series(name, values, length):
    """``values`` as a float64 host array of shape (length,); ValueError naming ``name`` otherwise."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (length,):
        raise ValueError(f"{name} must have one value per x entry ({length}), got shape {array.shape}")
    return array


def monte_carlo_error(samples, errors, path, title=None):
    """Relative error of Monte-Carlo estimates against the number of samples k, log-log.

    samples : (S,) sample counts k (> 0); errors : dict label -> (S,)
    relative errors, e.g. {"MC Fisher": ..., "K-FAC (MC)": ...}. A dashed
    line ∝ 1/√k through the first series' first point shows the rate of an
    unbiased average. path, title as usual. Returns ``path``.
    """
    k = np.asarray(samples, dtype=np.float64)
    if k.ndim != 1 or k.size == 0 or np.any(k <= 0):
        raise ValueError(f"samples must be a non-empty list of counts > 0, got {samples!r}")
    if not errors:
        raise ValueError("errors is empty: pass a dict label -> errors, one per sample count")
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.subplots()
    first = None
    for label, values in errors.items():
        values = check_series(f"errors[{label!r}]", values, k.size)
        first = values[0] if first is None else first
        ax.plot(k, values, marker="o", linewidth=1.4, label=label)
    ax.plot(k, first * np.sqrt(k[0] / k), color="gray", linestyle="--", linewidth=1.0, label="∝ 1/√k")
    return _save_loglog(fig, ax, "samples per example k", "relative Frobenius error",
                        title or "Monte-Carlo noise", path)


def scaling_loglog(widths, series, path, title=None, slopes=None):
    """Cost against size on log-log axes, e.g. seconds per step against layer width.

    widths : (W,) sizes (> 0); series : dict label -> (W,) times in seconds
        (None or NaN where not measured, left out); slopes : optional dict
        label -> fitted log-log slope, shown in the legend ("slope 2.9": time
        ∝ width^2.9). path, title as usual. Returns ``path``.
    """
    x = np.asarray(widths, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or np.any(x <= 0):
        raise ValueError(f"widths must be a non-empty list of sizes > 0, got {widths!r}")
    if not series:
        raise ValueError("series is empty: pass a dict label -> times, one per width")
    slopes = slopes or {}
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.subplots()
    for label, times in series.items():
        y = check_series(f"series[{label!r}]", [np.nan if t is None else t for t in times], x.size)
        shown = np.isfinite(y) & (y > 0)
        legend = label if slopes.get(label) is None else f"{label} (slope {slopes[label]:.2f})"
        ax.plot(x[shown], y[shown], marker="o", linewidth=1.4, label=legend)
    return _save_loglog(fig, ax, "width", "time (s)", title, path)
