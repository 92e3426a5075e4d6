"""Heatmaps of curvature matrices: Martens & Grosse 2015's Figs. 2 and 3, layer by layer."""

import os

import numpy as np
from matplotlib.figure import Figure

from minikfac import backend
from minikfac.curvature.linalg import SymmetricEigen, check_invertible


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
    """Martens & Grosse 2015, Fig. 2: |F|, |F̃| and |F − F̃| side by side, one grey scale.

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
    Grosse 2015, Fig. 3 (right), show this for F̃⁻¹: it is close to
    block-tridiagonal, while F̃'s own is not.
    """
    matrix = _host_matrix("matrix", matrix)
    edges = _check_boundaries(boundaries, matrix.shape[0])
    spans = list(zip(edges[:-1], edges[1:]))
    return np.array([[np.mean(np.abs(matrix[r0:r1, c0:c1])) for c0, c1 in spans] for r0, r1 in spans])


def damped_inverse(F_tilde, damping=None):
    """(F̃ + λI)⁻¹ (k, k) of a symmetric PSD F̃ through its eigendecomposition, and λ.

    λ is ``damping`` if given, else 0 unless F̃ is singular (:func:`minikfac.curvature.linalg.check_invertible`);
    then λ = 1e-6 × the largest eigenvalue, the smallest damping that keeps the
    inverse finite without hiding its structure.
    """
    eigen = SymmetricEigen(np.asarray(F_tilde, dtype=np.float64))
    if damping is None:
        try:
            check_invertible(eigen.values, "damped_inverse")
            damping = 0.0
        except ValueError:
            damping = 1e-6 * float(eigen.values[-1])
    elif not 0 <= damping < float("inf"):
        raise ValueError(f"damping must be None or a finite number >= 0, got {damping!r}")
    return eigen.inverse(damping) if damping else eigen.inverse(0.0, "damped_inverse"), damping


def inverse_structure(F_tilde, boundaries, path, title=None, damping=None, quantile=0.98, name="F̃",
                      labels=None):
    """Martens & Grosse 2015, Fig. 3: |F̃|, |F̃⁻¹| and the block means of |F̃⁻¹|.

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
    inverse, damping = damped_inverse(F_tilde, damping)
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
