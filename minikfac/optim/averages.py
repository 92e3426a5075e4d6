"""K-FAC's running averages of the factors A and G, brought up to date when they are needed.

The optimizer averages each factor over steps (Martens & Grosse 2015, §5):

    A_k = ε_k A_{k-1} + (1 − ε_k) S_k / N_k,     S_k = X_kᵀ X_k,

with X_k the step's rows (the layer's inputs ā, or its output gradients g,
one row per example — per position for a convolution) and N_k what the sum is
divided by (:func:`minikfac.curvature.kfac.factor_counts`). The averages are
read only when the inverses are formed, every T steps. Updating a d×d
average at every step means writing a Gram matrix and passing over its d²
numbers three times, for a change of rank n (n rows, often n ≪ d: 32 rows
against the autoencoder's 785 inputs). So the rows are kept instead, each
scaled by the weight the average will give it, and folded in with one matrix
product when the average is read, or when the rows would outnumber d.
Unrolling the recursion from the last fold at step r,

    A_k = Q_k (A_r + Σ_j c_j S_j),   Q_k = ε_{r+1} ⋯ ε_k,   c_j = (1 − ε_j) / (Q_j N_j),

and Σ_j c_j S_j = XᵀX for the rows X_j stacked, each scaled by √c_j: the same
average, to rounding.

Each factor ``name`` ("A" or "G") of a layer's state ``entry`` (a dict) is
three entries: ``entry[name]`` the average at the last fold (d, d),
``entry[name + "_rows"]`` the scaled rows since (R, d), R < d, and
``entry[name + "_decay"]`` Q (a float). Every function returns new arrays and
leaves those it was given untouched, so a refused step loses nothing.
"""

import math

from minikfac import backend

#: The entries of each factor in a layer's state, after its own name.
SUFFIXES = ("", "_rows", "_decay")


def names(factor):
    """The state entries of ``factor`` ("A" or "G"): the average, the rows since the last fold, Q."""
    return tuple(factor + suffix for suffix in SUFFIXES)


def add(entry, factor, rows, count, decay, right=None):
    """Add one step's statistics of ``factor`` to ``entry`` (a new dict's entries are replaced, not mutated).

    rows : (R_step, d) X_k; count : N_k; decay : ε_k in [0, 1). ``right``:
    another (R_step, d) array for an asymmetric sum S_k = X_kᵀ Y_k (the GGN's
    H-weighted G), folded in at once. The first statistics (no average yet, or
    ε_k = 0) become the average.
    """
    xp = backend.get_array_module(rows)
    average, kept, product = names(factor)
    none_kept = xp.empty((0, rows.shape[1]), dtype=rows.dtype)
    if average not in entry or decay == 0:
        entry[average], entry[kept], entry[product] = _gram(rows, right) / count, none_kept, 1.0
        return
    if right is not None:
        new = decay * current(entry, factor) + ((1 - decay) / count) * _gram(rows, right)
        entry[average], entry[kept], entry[product] = new, none_kept, 1.0
        return
    q = entry[product] * decay
    scaled = rows * math.sqrt((1 - decay) / (q * count))  # √c_k
    entry[kept] = xp.concatenate([entry[kept], scaled]) if entry[kept].shape[0] else scaled
    entry[product] = q
    if entry[kept].shape[0] >= rows.shape[1]:  # the rows would outnumber the average's d: fold now
        fold(entry, factor)


def current(entry, factor):
    """The average of ``factor`` up to the last step, (d, d), without changing ``entry``."""
    average, kept, product = names(factor)
    if not entry[kept].shape[0]:
        return entry[average] if entry[product] == 1.0 else entry[product] * entry[average]
    rows = entry[kept]
    return entry[product] * (entry[average] + rows.T @ rows)


def fold(entry, factor):
    """Fold the kept rows of ``factor`` into its average (``entry``'s entries replaced, Q reset to 1)."""
    average, kept, product = names(factor)
    xp = backend.get_array_module(entry[average])
    entry[average] = current(entry, factor)
    entry[kept], entry[product] = xp.empty_like(entry[kept][:0]), 1.0


def _gram(rows, right=None):
    return rows.T @ (rows if right is None else right)
