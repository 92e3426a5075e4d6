"""Figures, drawn headless with matplotlib's Agg renderer.

This is the only module of the library that imports matplotlib, and nothing in
the library imports it (the command line does so lazily), so training on a
server never needs a display or even matplotlib's import time.

We build :class:`matplotlib.figure.Figure` objects directly instead of going
through ``pyplot``: ``Figure.savefig`` renders with Agg, and the user's own
pyplot backend (a notebook's inline backend, say) is left untouched.
"""

import os

import numpy as np
from matplotlib.figure import Figure


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
        :func:`minikfac.training.fit`.
    path : str or os.PathLike
        Where to write the figure; the format follows the suffix (``.png``,
        ``.pdf``, ``.svg``). The folder must exist.
    title : str, optional
        The figure's title.
    evaluations : list of dict, optional
        Test-set evaluations, each with ``step`` and ``test_loss`` (the
        ``evaluations`` of :func:`minikfac.training.fit`'s report), drawn as a
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
