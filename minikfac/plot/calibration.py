"""Reliability diagrams and out-of-distribution score histograms (:mod:`minikfac.studies.calibration`).

A reliability diagram (Guo et al. 2017, §2) bins the top-label confidence
and draws each bin's accuracy as a bar: a calibrated predictor's bars reach
the diagonal; bars below it are over-confident bins, bars above it
under-confident ones (each bin's count is written at its foot). ``draw_*`` functions draw into a given matplotlib Axes
(a tutorial's pyplot axes, or a panel here); the others build a whole figure
and save it, like the rest of :mod:`minikfac.plot`.
"""

import os

import numpy as np
from matplotlib.figure import Figure

from minikfac import backend


def _host_bins(reliability):
    """(edges, counts, accuracy) as host arrays, checked against each other."""
    try:
        edges, counts, accuracy = (np.asarray(backend.to_numpy(getattr(reliability, name)), dtype=np.float64)
                                   for name in ("edges", "counts", "accuracy"))
    except AttributeError:
        raise TypeError("reliability must be a minikfac.studies.calibration.Reliability (edges, counts, "
                        f"confidence, accuracy), got {type(reliability).__name__}") from None
    if edges.ndim != 1 or counts.shape != (edges.shape[0] - 1,) or accuracy.shape != counts.shape:
        raise ValueError(f"reliability: edges must be (M + 1,) and counts, accuracy (M,), got {edges.shape}, "
                         f"{counts.shape}, {accuracy.shape}")
    return edges, counts, accuracy


def draw_reliability(ax, reliability, title=None, color="tab:blue", ece=None, counts=True):
    """Draw one reliability diagram into ``ax``: per-bin accuracy bars, the gap to the bin's centre, the diagonal.

    Each occupied bin's bar reaches its accuracy. The gap between the accuracy and the bin's centre is drawn in
    its own colour and never over the bar's: red hatched above a bar that stops short of the diagonal
    (over-confident bin), orange hatched on the part of a bar that rises above it (under-confident bin).
    reliability : a :class:`~minikfac.studies.calibration.Reliability` (M bins). Empty bins draw nothing.
    ece : optional number written in the corner. counts : write each bin's number of examples at its foot.
    Returns ``ax``.
    """
    edges, bin_counts, accuracy = _host_bins(reliability)
    occupied = bin_counts > 0
    left, width = edges[:-1][occupied], np.diff(edges)[occupied]
    centres = left + width / 2
    accuracy = accuracy[occupied]
    ax.bar(left, np.minimum(accuracy, centres), width=width, align="edge", color=color, edgecolor="black",
           linewidth=0.5, label="accuracy")
    over = accuracy < centres  # below the diagonal: over-confident
    ax.bar(left[over], (centres - accuracy)[over], bottom=accuracy[over], width=width[over], align="edge",
           color="mistyrose", edgecolor="tab:red", hatch="//", linewidth=0.5, label="gap: over-confident")
    ax.bar(left[~over], (accuracy - centres)[~over], bottom=centres[~over], width=width[~over], align="edge",
           color="navajowhite", edgecolor="tab:orange", hatch="\\\\", linewidth=0.5, label="gap: under-confident")
    if counts:
        for x, n in zip(centres, bin_counts[occupied]):
            ax.text(x, 0.015, f"{int(n)}", rotation=90, ha="center", va="bottom", fontsize=6,
                    bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0, "pad": 0.6})
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title)
    if ece is not None:
        ax.text(0.04, 0.93, f"ECE {float(ece):.3f}", transform=ax.transAxes, fontsize=9,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
    return ax


def reliability_diagrams(panels, path, title=None, columns=4, ece=None):
    """One reliability diagram per method, side by side, saved as an image.

    panels : mapping name -> :class:`~minikfac.studies.calibration.Reliability`, drawn in order.
    path : where to save (format from the suffix; the folder must exist).
    columns : panels per row. ece : optional mapping name -> number, written in each panel.
    Returns ``path``.
    """
    if not panels:
        raise ValueError("reliability_diagrams: panels is empty; expected a mapping name -> Reliability")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"reliability_diagrams: columns must be an int >= 1, got {columns!r}")
    names = list(panels)
    cols = min(columns, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.2 * cols, 3.3 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        draw_reliability(ax, panels[name], title=name, ece=None if ece is None else ece[name])
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return path


def draw_score_histogram(ax, in_scores, out_scores, title=None, xlabel="top-label confidence", bins=20):
    """Histograms of a score on in-distribution inputs and on each OOD set, into ``ax``.

    in_scores : (n,) scores of the in-distribution inputs; out_scores : mapping name -> (m,) scores.
    Densities, so sets of different sizes compare. Returns ``ax``.
    """
    values = np.asarray(backend.to_numpy(in_scores), dtype=np.float64)
    others = {name: np.asarray(backend.to_numpy(v), dtype=np.float64) for name, v in out_scores.items()}
    if values.ndim != 1 or any(v.ndim != 1 for v in others.values()):
        raise ValueError("draw_score_histogram: scores must be 1-D arrays (one score per input), got shapes "
                         f"{values.shape} and {[v.shape for v in others.values()]}")
    low = min([values.min()] + [v.min() for v in others.values()])
    high = max([values.max()] + [v.max() for v in others.values()])
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    ax.hist(values, bins=edges, density=True, alpha=0.6, label="in distribution (test digits)")
    for name, v in others.items():
        ax.hist(v, bins=edges, density=True, histtype="step", linewidth=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
