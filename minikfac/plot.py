"""Figures, drawn headless with matplotlib's Agg renderer.

This is the only module of the library that imports matplotlib, and nothing in
the library imports it (the command line does so lazily), so training on a
server never needs a display or even matplotlib's import time.

We build :class:`matplotlib.figure.Figure` objects directly instead of going
through ``pyplot``: ``Figure.savefig`` renders with Agg, and the user's own
pyplot backend (a notebook's inline backend, say) is left untouched. The one
exception is :func:`show`, the tutorials' "save and display" for figures they
drew with pyplot themselves.
"""

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


# --------------------------------------------------------------------------- #
# Curvature matrices (Martens & Grosse 2015, Figs. 2 and 3)
# --------------------------------------------------------------------------- #
def _host_matrix(name, matrix, size=None):
    """``matrix`` as a host float64 (k, k) array; ValueError naming ``name`` otherwise."""
    # The arrays may live on another backend: a figure is an edge, where data moves to the host.
    host = np.asarray(backend.to_numpy(matrix) if backend.is_array(matrix) else matrix, dtype=np.float64)
    if host.ndim != 2 or host.shape[0] != host.shape[1] or (size is not None and host.shape[0] != size):
        expected = "a square matrix" if size is None else f"shape ({size}, {size})"
        raise ValueError(f"{name} must be {expected}, got shape {host.shape}")
    return host


def _check_boundaries(boundaries, size):
    """The layer boundaries as a list [0, b_1, ..., size] of increasing ints."""
    edges = [int(b) for b in boundaries]
    if len(edges) < 2 or edges[0] != 0 or edges[-1] != size or any(b >= c for b, c in zip(edges, edges[1:])):
        raise ValueError(f"boundaries must be increasing block edges from 0 to the matrix size {size} "
                         f"(e.g. [0, 420, 840, {size}]), got {list(boundaries)}")
    return edges


def _layer_lines(ax, edges):
    """Dashed lines between the layer blocks (pixel i spans [i − 0.5, i + 0.5])."""
    for edge in edges[1:-1]:
        ax.axhline(edge - 0.5, color="tab:red", linestyle="--", linewidth=0.8)
        ax.axvline(edge - 0.5, color="tab:red", linestyle="--", linewidth=0.8)


def _panel(fig, ax, image, vmax, title, edges=None, cmap="gray"):
    """One heat map of ``image`` (entries >= 0) from black (0) to white (``vmax`` and above)."""
    shown = ax.imshow(image, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="antialiased")
    if edges is not None:
        _layer_lines(ax, edges)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)


def _white_level(matrix, quantile):
    """The entry size drawn white: the ``quantile`` of |entries| (1.0 = the largest entry)."""
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    level = float(np.quantile(np.abs(matrix), quantile))
    return level if level > 0 else float(np.max(np.abs(matrix))) or 1.0


def fisher_vs_kfac(F, F_tilde, boundaries, path, title=None, quantile=0.98, names=("F", "F̃")):
    """Martens & Grosse (2015), Fig. 2: |F|, |F̃| and |F − F̃| side by side, one grey scale.

    Parameters
    ----------
    F : (k, k) exact Fisher (usually the part of a few layers, as in the
        paper's "middle 4 layers"); any backend, moved to the host here.
    F_tilde : (k, k) its approximation in the same order (K-FAC's F̃ with
        blocks A_ij ⊗ G_ij, cross-layer blocks included, in the paper).
    boundaries : the layer blocks' edges [0, k_1, ..., k]: dashed lines.
    path : the image file to write (folder must exist).
    title : figure title (suptitle).
    quantile : entries of absolute value at or above this quantile of |F|
        are white, 0 is black; the same level in all three images (the
        paper's "white level linear in the size of the entry up to a
        maximum"). 1.0 takes the largest entry.
    names : how the two matrices are called in the panel titles.

    Returns ``path``.
    """
    F = _host_matrix("F", F)
    F_tilde = _host_matrix("F_tilde", F_tilde, F.shape[0])
    edges = _check_boundaries(boundaries, F.shape[0])
    level = _white_level(F, quantile)
    fig = Figure(figsize=(18, 6.2), dpi=110)
    axes = fig.subplots(1, 3)
    exact, approx = names
    for ax, image, label in zip(axes, (np.abs(F), np.abs(F_tilde), np.abs(F - F_tilde)),
                                (f"|{exact}| (exact)", f"|{approx}| (approximation)", f"|{exact} − {approx}|")):
        _panel(fig, ax, image, level, label, edges)
    fig.suptitle(title or f"{exact} vs {approx}; white = |entry| ≥ {level:.3g} ({100 * quantile:g}% quantile of |{exact}|)")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return path


def block_means(matrix, boundaries):
    """The (B, B) means of |entries| over the layer blocks of ``matrix`` (k, k).

    ``boundaries`` = [0, k_1, ..., k] as in :func:`fisher_vs_kfac`. Martens &
    Grosse (2015), Fig. 3 (right), show this for F̃⁻¹: it is close to
    block-tridiagonal, while F̃'s own is not.
    """
    matrix = _host_matrix("matrix", matrix)
    edges = _check_boundaries(boundaries, matrix.shape[0])
    spans = list(zip(edges[:-1], edges[1:]))
    return np.array([[np.mean(np.abs(matrix[r0:r1, c0:c1])) for c0, c1 in spans] for r0, r1 in spans])


def _inverse(F_tilde, damping):
    """(F̃ + λI)⁻¹ through eigh, and λ: the given one, else 0 unless F̃ is singular.

    Singular means an eigenvalue at or below largest × k × eps (numpy's
    ``matrix_rank`` tolerance); then λ = 1e-6 × the largest eigenvalue, the
    smallest damping that keeps the inverse finite without hiding its structure.
    """
    values, vectors = np.linalg.eigh((F_tilde + F_tilde.T) / 2)
    if damping is None:
        singular = values[0] <= values[-1] * len(values) * np.finfo(np.float64).eps
        damping = 1e-6 * values[-1] if singular else 0.0
    elif not 0 <= damping < float("inf"):
        raise ValueError(f"damping must be None or a finite number >= 0, got {damping!r}")
    return (vectors / (values + damping)) @ vectors.T, damping


def inverse_structure(F_tilde, boundaries, path, title=None, damping=None, quantile=0.98, name="F̃",
                      labels=None):
    """Martens & Grosse (2015), Fig. 3: |F̃|, |F̃⁻¹| and the block means of |F̃⁻¹|.

    Parameters
    ----------
    F_tilde : (k, k) symmetric PSD matrix, e.g. K-FAC's F̃ on the middle layers.
    boundaries : the layer blocks' edges [0, k_1, ..., k].
    path : the image file to write.
    title : figure title.
    damping : λ added to the diagonal before inverting; None inverts exactly
        unless F̃ is singular, then uses 1e-6 × its largest eigenvalue; the
        λ used is written in the middle panel's title.
    quantile : white level of each heat map (its own, as the scales differ).
    name : how the matrix is called in the titles.
    labels : the blocks' names in the right panel (default "block 1", ...).

    The right panel is the (B, B) matrix of :func:`block_means` of the
    inverse, annotated with its values and normalised by its largest entry:
    for a chain-structured F̃ it is close to block-tridiagonal.

    Returns ``path``.
    """
    F_tilde = _host_matrix("F_tilde", F_tilde)
    edges = _check_boundaries(boundaries, F_tilde.shape[0])
    inverse, damping = _inverse(F_tilde, damping)
    means = block_means(inverse, edges)
    means = means / means.max()
    fig = Figure(figsize=(18, 6.2), dpi=110)
    axes = fig.subplots(1, 3)
    _panel(fig, axes[0], np.abs(F_tilde), _white_level(F_tilde, quantile), f"|{name}|", edges)
    inverted = f"|{name}⁻¹|" if damping == 0 else f"|({name} + λI)⁻¹|, λ = {damping:.2g} ({name} is singular)"
    _panel(fig, axes[1], np.abs(inverse), _white_level(inverse, quantile), inverted, edges)
    _panel(fig, axes[2], means, 1.0, "block means of the inverse's |entries|\n(÷ largest)")
    blocks = len(means)
    labels = [f"block {i + 1}" for i in range(blocks)] if labels is None else [str(label) for label in labels]
    if len(labels) != blocks:
        raise ValueError(f"labels must name the {blocks} blocks, got {len(labels)} labels")
    for i in range(blocks):
        for j in range(blocks):
            axes[2].text(j, i, f"{means[i, j]:.2f}", ha="center", va="center", fontsize=9,
                         color="black" if means[i, j] > 0.5 else "white")
    axes[2].set_xticks(range(blocks), labels, fontsize=8)
    axes[2].set_yticks(range(blocks), labels, fontsize=8)
    fig.suptitle(title or f"{name} and its inverse")
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


def _series(name, values, length):
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
        values = _series(f"errors[{label!r}]", values, k.size)
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
        y = _series(f"series[{label!r}]", [np.nan if t is None else t for t in times], x.size)
        shown = np.isfinite(y) & (y > 0)
        legend = label if slopes.get(label) is None else f"{label} (slope {slopes[label]:.2f})"
        ax.plot(x[shown], y[shown], marker="o", linewidth=1.4, label=legend)
    return _save_loglog(fig, ax, "width", "time (s)", title, path)


# --------------------------------------------------------------------------- #
# The race (minikfac.jobs.race, `minikfac bench`)
# --------------------------------------------------------------------------- #
#: One colour per optimizer in every race figure.
METHOD_COLORS = {"sgd": "tab:blue", "adam": "tab:orange", "kfac": "tab:green"}


def _race_axes(ax, xlabel, ylabel, title, log_x=False):
    """Labels, grid and legend of one race panel (log y; log x on request)."""
    if log_x:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def race_curves(result, path, title=None):
    """Training loss against iterations (left) and against seconds (right) of one race problem.

    result : one problem's dict of :func:`minikfac.jobs.race.race_problem` — its
        ``runs`` (each with ``method``, ``label`` and ``curve`` = {"step",
        "seconds", "train_loss"}), ``best`` ({method: index}) and
        ``problem["target_loss"]``. Every run is drawn, faint; the best run of
        each method bold, its crossing of the target (dashed line) marked.
    path : the image file; title : the figure's title (default the problem's name).

    Returns ``path``.
    """
    try:
        runs, best, target = result["runs"], set(result["best"].values()), result["problem"]["target_loss"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"result must be a problem's dict from minikfac.jobs.race.race_problem ({err!r} missing)") from None
    if not runs:
        raise ValueError("result has no runs to plot")
    fig = Figure(figsize=(12, 4.4), dpi=100)
    axes = fig.subplots(1, 2, sharey=True)
    swept = {m for m in METHOD_COLORS if sum(run["method"] == m for run in runs) > 1}
    for i, run in enumerate(runs):
        curve, color = run["curve"], METHOD_COLORS.get(run["method"], "tab:gray")
        loss = np.asarray(curve["train_loss"], dtype=np.float64)
        shown = np.isfinite(loss) & (loss > 0)
        for ax, x, reached in zip(axes, ("step", "seconds"), ("steps_to_target", "seconds_to_target"), strict=True):
            xs = np.asarray(curve[x], dtype=np.float64)
            if i in best:
                label = run["label"] + (" (best)" if run["method"] in swept else "")
                ax.plot(xs[shown], loss[shown], color=color, linewidth=2.0, label=label)
                if run[reached] is not None:
                    ax.plot(run[reached], target, marker="o", color=color, markersize=6)
            else:
                ax.plot(xs[shown], loss[shown], color=color, linewidth=0.9, alpha=0.35, label=run["label"])
    for ax in axes:
        ax.axhline(target, color="gray", linestyle="--", linewidth=1.0, label=f"target {target:g}")
    name = result["problem"].get("name", "")
    _race_axes(axes[0], "iteration", "training loss (subset, eval mode)", "loss vs iterations")
    _race_axes(axes[1], "seconds of training", "", "loss vs wall-clock")
    rivals = [{"sgd": "SGD with momentum", "adam": "Adam"}[m] for m in ("sgd", "adam")
              if any(run["method"] == m for run in runs)]
    fig.suptitle(title or f"{name}: K-FAC (defaults) vs {' and '.join(rivals) or 'nothing'}"
                 + (" (best of a sweep)" if swept - {"kfac"} else ""))
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return path


def step_cost(costs, path, title=None, goal=None):
    """Seconds per step against the batch size (left) and the ratio to SGD's (right), one row per net.

    costs : list of :func:`minikfac.jobs.step_cost.step_cost` dicts (``problem``,
        ``batch_sizes``, ``seconds`` and ``ratio_to_sgd``: {method: [value or
        None per batch size]}, ``inverse_interval``).
    goal : optional (batch size, ratio) drawn as a dashed line in the ratio
        panels, e.g. :data:`minikfac.jobs.step_cost.STEP_COST_GOAL`.
    path, title as usual. Returns ``path``.
    """
    if not costs:
        raise ValueError("costs is empty: pass a list of step_cost dicts")
    fig = Figure(figsize=(11, 3.6 * len(costs)), dpi=100)
    axes = np.atleast_2d(fig.subplots(len(costs), 2, squeeze=False))
    for row, cost in zip(axes, costs, strict=True):
        sizes = np.asarray(cost["batch_sizes"], dtype=np.float64)
        for panel, key in zip(row, ("seconds", "ratio_to_sgd"), strict=True):
            for method, values in cost[key].items():
                if key == "ratio_to_sgd" and method == "sgd":
                    continue
                y = _series(f"{key}[{method!r}]", [np.nan if v is None else v for v in values], sizes.size)
                shown = np.isfinite(y) & (y > 0)
                panel.plot(sizes[shown], y[shown], marker="o", linewidth=1.4,
                           color=METHOD_COLORS.get(method, "tab:gray"), label=method)
        if goal is not None:
            row[1].axhline(goal[1], color="gray", linestyle="--", linewidth=1.0,
                           label=f"goal ≤ {goal[1]:g} at batch {goal[0]}")
        _race_axes(row[0], "batch size", "seconds per step", f"{cost['problem']}: step time", log_x=True)
        _race_axes(row[1], "batch size", "÷ SGD's step",
                   f"{cost['problem']}: ratio to SGD (T = {cost['inverse_interval']})", log_x=True)
        for panel in row:  # the measured batch sizes as plain numbers, not powers of ten
            panel.set_xticks(sizes, [f"{size:g}" for size in sizes])
            panel.set_xticks([], minor=True)
    fig.suptitle(title or "Cost of one training step (median of repeated blocks)")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return path


def race_figures(report, out_dir):
    """All figures of a race report (:func:`minikfac.jobs.race.race`) in ``out_dir`` (created); returns the paths.

    ``race_<problem>.png`` per problem (:func:`race_curves`) and
    ``step_cost.png`` (:func:`step_cost`) when the step cost was measured.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = [race_curves(result, os.path.join(out_dir, f"race_{name}.png"))
               for name, result in report["problems"].items()]
    if report.get("step_cost"):
        goal = report.get("settings", {}).get("step_cost_goal")
        written.append(step_cost(list(report["step_cost"].values()), os.path.join(out_dir, "step_cost.png"),
                                 goal=tuple(goal) if goal else None))
    return written


# --------------------------------------------------------------------------- #
# Tutorials
# --------------------------------------------------------------------------- #
#: Where :func:`show` saves figures unless told otherwise (``make tutorials`` and the tests set it).
FIGURES_ENV = "MINIKFAC_FIGURES"
DEFAULT_FIGURES = os.path.join("report", "tutorials")


def show(fig, name, out=None):
    """Save a tutorial's figure as ``out/name.png`` and display it where a display exists.

    Tutorials draw with ``matplotlib.pyplot`` like any notebook; this is their
    last line for each figure. In a notebook (an interactive or inline backend)
    the figure is shown below the cell; run as a script (Agg, headless) it is
    only saved, then closed so that long scripts do not hold every figure.

    Args:
        fig: a :class:`matplotlib.figure.Figure`.
        name: file name without extension, e.g. ``"01_kronecker_product"``.
        out: the folder; default ``$MINIKFAC_FIGURES``, else ``report/tutorials``
            (relative to the working directory), created if missing.

    Returns:
        The path of the PNG written.
    """
    if not isinstance(name, str) or not name or os.sep in name:
        raise ValueError(f"show: name must be a non-empty file name without a folder, got {name!r}")
    import matplotlib
    import matplotlib.pyplot as plt  # tutorials only: the rest of this module never touches pyplot

    folder = out if out is not None else os.environ.get(FIGURES_ENV) or DEFAULT_FIGURES
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if matplotlib.get_backend().lower() in ("agg", "pdf", "ps", "svg", "cairo", "template"):
        plt.close(fig)
        print(f"[figure saved: {path}]")
    else:
        plt.show()
    return path
