"""The matrices of Martens & Grosse's Figs. 2 and 3: the exact F and K-FAC's F̃ on a few layers.

:func:`figure_matrices` cuts the layers shown out of the exact Fisher and builds
F̃ with every cross-layer block A_ij ⊗ G_ij (Martens & Grosse 2015, §3),
ready for :func:`minikfac.plot.fisher_vs_kfac` and
:func:`minikfac.plot.inverse_structure` (this module computes, plot draws).
"""

from typing import NamedTuple

from minikfac import backend
from minikfac.curvature.params import slices_of
from minikfac.studies.approximation_errors import check_fisher
from minikfac.curvature.factors import kfac_cross_factors, kfac_dense, kfac_factors
from minikfac.curvature.params import layer_slices, parametrised_layers
from minikfac.nn.linear import Linear


class FigureMatrices(NamedTuple):
    """F and F̃ on a few layers, for :func:`minikfac.plot.fisher_vs_kfac` and ``inverse_structure``.

    fisher, approximation : (k, k), k = Σ P_l over ``layers``; boundaries :
    [0, ..., k], the layer blocks' edges; layers : the layer indices shown;
    note : how F̃ was built (its blocks).
    """

    fisher: object
    approximation: object
    boundaries: list
    layers: list
    note: str


def default_figure_layers(count):
    """The middle four of ``count`` layers (all when there are four or fewer), as in Martens & Grosse 2015, Fig. 2."""
    start = max(0, (count - 4) // 2)
    return list(range(start, min(count, start + 4)))


def _submatrix(M, slices):
    """M's rows and columns of the given slices, in order: (k, k)."""
    xp = backend.get_array_module(M)
    rows = xp.concatenate([M[s] for s in slices], axis=0)
    return xp.concatenate([rows[:, s] for s in slices], axis=1)


def figure_matrices(net, loss_fn, X, F, layers=None, y=None, kind="true", chunk_size=None):
    """The exact F and K-FAC's F̃ = [A_ij ⊗ G_ij] on ``layers`` (Martens & Grosse 2015, Figs. 2–3).

    F : (P, P) exact Fisher of ``net`` on X (:func:`minikfac.curvature.exact.fisher`); layers :
    increasing layer indices (default :func:`default_figure_layers`, the
    paper's "middle 4 layers"). For Linear nets F̃ has every cross-layer block
    A_ij ⊗ G_ij (:func:`minikfac.curvature.factors.kfac_cross_factors`); with a Conv2d layer it is
    block-diagonal (KFC defines no cross-layer factors). Returns :class:`FigureMatrices`.
    """
    all_layers, slices = parametrised_layers(net), layer_slices(net)
    count = len(all_layers)
    layers = default_figure_layers(count) if layers is None else list(layers)
    if not layers or any(not isinstance(i, int) or not 0 <= i < count for i in layers) or layers != sorted(set(layers)):
        raise ValueError(f"layers must be increasing layer indices in [0, {count}), got {layers!r}")
    check_fisher(F, slices[-1].stop, "figure_matrices")
    shown = [slices[i] for i in layers]
    sizes = [s.stop - s.start for s in shown]
    if all(isinstance(layer, Linear) for layer in all_layers):
        cross = kfac_cross_factors(net, loss_fn, X, y, kind, chunk_size=chunk_size)
        pairs = {(a, b): cross[(i, j)] for a, i in enumerate(layers) for b, j in enumerate(layers) if a <= b}
        note = "every cross-layer block A_ij ⊗ G_ij"
    else:
        factors = kfac_factors(net, loss_fn, X, y, kind, chunk_size=chunk_size)
        pairs = {(a, a): factors[i] for a, i in enumerate(layers)}
        note = "block-diagonal: KFC has no cross-layer factors for conv layers"
    approximation = kfac_dense(pairs, slices_of(sizes))
    boundaries = [0]
    for n in sizes:
        boundaries.append(boundaries[-1] + n)
    return FigureMatrices(_submatrix(F, shown), approximation, boundaries, layers, note)
