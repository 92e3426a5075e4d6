"""K-FAC's running averages of the factors A and G, brought up to date when they are needed.

The optimizer averages each factor over steps (Martens & Grosse 2015, §5):

    A_k = ε_k A_{k-1} + (1 − ε_k) S_k / N_k,     S_k = X_kᵀ X_k,

with X_k the step's rows (the layer's inputs ā, or its output gradients g,
one row per example — per position for a convolution) and N_k what the sum is
divided by (:func:`minikfac.curvature.factors.factor_counts`). The averages are
read only when the inverses are formed, every T steps. Updating a d×d
average at every step means writing a Gram matrix and passing over its d²
numbers three times, for a change of rank n (n rows, often n ≪ d: 128 rows
against the autoencoder's 785 inputs). So the rows are kept instead, each
scaled by the weight the average will give it, and folded in with one matrix
product when the average is read, or when the rows would outnumber d, or
when their weights would grow too large (Q below :data:`MIN_DECAY`).
Unrolling the recursion from the last fold at step r,

    A_k = Q_k (A_r + Σ_j c_j S_j),   Q_k = ε_{r+1} ⋯ ε_k,   c_j = (1 − ε_j) / (Q_j N_j),

and Σ_j c_j S_j = XᵀX for the rows X_j stacked, each scaled by √c_j: the same
average, to rounding.

Each factor ``name`` ("A" or "G") of a layer's state ``entry`` (a dict) is
three entries: ``entry[name]`` the average at the last fold (d, d),
``entry[name + "_rows"]`` the scaled rows since (R, d), R < d, and
``entry[name + "_decay"]`` Q (a float). The functions replace a dict's entries
with new arrays and never write into the ones they replace, so a refused
step, which drops the new dict, loses nothing (``add_sum`` writes into the
sum it is given, which is the caller's own). Each ``add_*`` returns a 0-d
number that is finite only if everything it stored is: the optimizer's guard
reads it.
"""

import math

from minikfac import backend

#: The entries of each factor in a layer's state, after its own name.
SUFFIXES = ("", "_rows", "_decay")
#: Kept rows are folded in before Q falls below this: their weights √c grow like 1/√Q, and in float32
#: rows scaled by 1/√Q overflow long before Q underflows (a small ε and a long interval get there).
MIN_DECAY = 1e-4


def names(factor):
    """The state entries of ``factor`` ("A" or "G"): the average, the rows since the last fold, Q."""
    return tuple(factor + suffix for suffix in SUFFIXES)


def keeps_rows(rows, d):
    """Whether a step's R rows are worth keeping rather than summing now: fewer than the factor's d."""
    return rows < d


def add_rows(entry, factor, rows, count, decay):
    """Add one step's statistics of ``factor`` to ``entry`` from its rows X_k (R, d): S_k = X_kᵀ X_k.

    count : N_k; decay : ε_k in [0, 1). The rows are kept, scaled by √c_k, and
    folded in once they would outnumber d; the first statistics (no average
    yet, or ε_k = 0) become the average. ``entry``'s entries are replaced,
    never written into.
    """
    xp = backend.get_array_module(rows)
    average, kept, product = names(factor)
    q = entry.get(product, 1.0) * decay
    if average not in entry or q < MIN_DECAY or not keeps_rows(rows.shape[0], rows.shape[1]):
        return add_sum(entry, factor, rows.T @ rows, count, decay)
    scaled = rows * math.sqrt((1 - decay) / (q * count))  # √c_k
    entry[kept] = xp.concatenate([entry[kept], scaled]) if entry[kept].shape[0] else scaled
    entry[product] = q
    if entry[kept].shape[0] >= rows.shape[1]:  # the rows would outnumber the average's d: fold now
        fold(entry, factor)
        return xp.trace(entry[average])
    return xp.vdot(scaled, scaled)


def add_sum(entry, factor, total, count, decay):
    """Add one step's statistics of ``factor`` to ``entry`` as their sum S_k (d, d), folded in at once.

    The running average becomes ε_k A + (1 − ε_k) S_k / N_k, A the average up
    to the last step (kept rows included); the first statistics become it.
    ``total`` is not kept: the new average is written into it. Returns the
    check number, the new average's trace (a NaN or an infinity anywhere in
    a sum of outer products shows on its diagonal).
    """
    xp = backend.get_array_module(total)
    average, kept, product = names(factor)
    if average not in entry or decay == 0:
        total /= count
    else:  # ε A + (1 − ε) S/N = ε ((1 − ε)/(ε N) S + A), written into S: no temporary
        total *= (1 - decay) / (decay * count)
        total += current(entry, factor)
        total *= decay
    entry[average], entry[kept], entry[product] = total, xp.empty((0, total.shape[0]), dtype=total.dtype), 1.0
    return xp.trace(total)


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
