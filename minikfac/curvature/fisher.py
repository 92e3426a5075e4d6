"""The exact Fisher family of a small network: dense, diagonal, per-layer blocks, products.

With the per-example rows J_nk of :mod:`.backprop` (one per cotangent s_nk),

    F = (1/N) Σ_n Σ_k J_nkᵀ J_nk          kinds "true", "mc", "empirical"
    F = (1/N) Σ_n J_nᵀ H_n J_n            kind "ggn" (J_n: the D_out rows of ∂f(x_n)/∂θ)

in the canonical parameter order (DESIGN.md). "true" is the exact expectation
over the model's predictive distribution, E_y[∇ℓ ∇ℓᵀ] (Amari 1998; Martens
2020, eq. (9)), "mc" its estimate from sampled targets, "empirical" the
second moment of the data gradients (Kunstner et al. 2019, eq. (3)), and
"ggn" the generalised Gauss-Newton matrix Jᵀ H J (Schraudolph 2002;
Martens 2020, section 8). For the three losses of :mod:`minikfac.nn.loss` the
true Fisher and the GGN coincide (Martens 2020, section 9.2); "ggn" computes
it along a separate path (output Jacobian and loss Hessian) so that this can
be checked.

The dense matrix is accumulated chunk by chunk as a symmetric rank-k update
(BLAS ``syrk`` on the host: half the work of a general product), so memory
is the P×P matrix plus one chunk of rows.
"""

import numpy as np

from minikfac import backend
from minikfac.curvature import backprop
from minikfac.curvature.params import layer_sizes, layer_slices


def _rows(chunk):
    """J of a chunk: (K, n, P), the per-layer rows side by side in canonical order."""
    xp = backend.get_array_module(chunk.layers[0].inputs)
    return xp.concatenate([backprop.layer_gradients(s) for s in chunk.layers], axis=2)


def _hessian_times(hessian, rows):
    """(H J) for rows (K = D_out, n, p) and H (n, D_out, D_out): Σ_j H_n[k, j] J[j, n]."""
    xp = backend.get_array_module(rows)
    return xp.einsum("nkj,jnp->knp", hessian, rows)


class _SymmetricAccumulator:
    """Σ Jᵀ J over chunks, in place: ``syrk`` into the upper triangle on the host.

    scipy's BLAS wrapper updates a Fortran-ordered C with C ← Jᵀ J + C and no
    temporary; other backends fall back to ``C += Jᵀ J``.
    """

    def __init__(self, size, dtype, xp):
        self.xp = xp
        self.host = xp is np
        if self.host:
            from scipy.linalg import blas  # scipy is a run-time dependency
            self.syrk = blas.get_blas_funcs("syrk", dtype=np.dtype(dtype))
            self.matrix = np.zeros((size, size), dtype=dtype, order="F")
        else:
            self.matrix = xp.zeros((size, size), dtype=dtype)

    def add_gram(self, rows):
        """C += rowsᵀ rows for rows (R, P)."""
        if self.host:
            # rows is C-ordered, so rows.T is Fortran-ordered and no copy is made.
            self.matrix = self.syrk(1.0, np.ascontiguousarray(rows).T, beta=1.0, c=self.matrix,
                                    trans=0, lower=0, overwrite_c=1)
        else:
            self.matrix += rows.T @ rows

    def add_product(self, left, right):
        """C += leftᵀ right (R, P) each; the caller guarantees the sum is symmetric."""
        self.matrix += left.T @ right

    def result(self, scale, symmetric_upper):
        """The full symmetric matrix times ``scale``, C-ordered."""
        matrix = self.matrix
        if self.host and symmetric_upper:
            _fill_lower_from_upper(matrix)
        matrix *= scale
        # A symmetric Fortran array's transpose is the same matrix, C-ordered.
        return matrix.T if self.host else matrix


def _fill_lower_from_upper(matrix, block=512):
    """Copy the upper triangle onto the lower one in place, ``block`` columns at a time."""
    size = matrix.shape[0]
    for start in range(0, size, block):
        stop = min(start + block, size)
        diagonal = matrix[start:stop, start:stop]
        upper = np.triu(diagonal)
        diagonal[...] = upper + np.triu(upper, 1).T
        matrix[stop:, start:stop] = matrix[start:stop, stop:].T


def fisher(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """The dense (P, P) Fisher-type matrix of ``net`` on ``X``, canonical order.

    Parameters
    ----------
    net : Module with Linear / Conv2d parametrised layers (any activations,
        pooling, Flatten in between).
    loss_fn : CrossEntropyLoss, MSELoss or BCEWithLogitsLoss.
    X : (N, ...) inputs; y : targets (needed for ``kind="empirical"``).
    kind : "true", "ggn", "mc" (``samples`` targets per example drawn with
        ``seed``) or "empirical".
    chunk_size : examples per chunk (memory: chunk_size·K·P numbers).

    Returns
    -------
    (P, P) symmetric positive semi-definite array, X's backend and dtype,
    normalised by 1/N (DESIGN.md). The network's ``.grad`` are untouched.
    """
    backprop.check_kind(kind)
    xp = backend.get_array_module(X)
    size = sum(layer_sizes(net))
    total = None
    accumulator = None
    for chunk in backprop.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        rows = _rows(chunk)
        if accumulator is None:
            accumulator = _SymmetricAccumulator(size, rows.dtype, xp)
        k, n, p = rows.shape
        if kind == "ggn":
            accumulator.add_product(rows.reshape(k * n, p), _hessian_times(chunk.output_hessian, rows).reshape(k * n, p))
        else:
            accumulator.add_gram(rows.reshape(k * n, p))
        total = chunk.stop
    return accumulator.result(1.0 / total, symmetric_upper=kind != "ggn")


def fisher_diagonal(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """diag(F), shape (P,), without forming F: (1/N) Σ_nk J_nk² (or Σ J ⊙ HJ for "ggn").

    Same parameters as :func:`fisher`. Costs one pass of per-example rows.
    """
    backprop.check_kind(kind)
    xp = backend.get_array_module(X)
    slices = layer_slices(net)
    diagonal = None
    for chunk in backprop.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        parts = []
        for stats in chunk.layers:
            rows = backprop.layer_gradients(stats)
            weighted = _hessian_times(chunk.output_hessian, rows) if kind == "ggn" else rows
            parts.append(xp.sum(rows * weighted, axis=(0, 1)))
        update = xp.concatenate(parts)
        diagonal = update if diagonal is None else diagonal + update
        total = chunk.stop
    assert diagonal.shape[0] == slices[-1].stop
    return diagonal / total


def fisher_blocks(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """The exact per-layer diagonal blocks F_ll, a list of (P_l, P_l) arrays.

    Same parameters as :func:`fisher`; memory Σ_l P_l² instead of P².
    """
    backprop.check_kind(kind)
    blocks = None
    for chunk in backprop.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        updates = []
        for stats in chunk.layers:
            rows = backprop.layer_gradients(stats)
            weighted = _hessian_times(chunk.output_hessian, rows) if kind == "ggn" else rows
            k, n, p = rows.shape
            updates.append(rows.reshape(k * n, p).T @ weighted.reshape(k * n, p))
        blocks = updates if blocks is None else [b + u for b, u in zip(blocks, updates)]
        total = chunk.stop
    return [block / total for block in blocks]


def fisher_vector_product(net, loss_fn, X, v, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """F v without forming F: (1/N) Σ_nk J_nkᵀ (J_nk v) (with H for "ggn").

    Parameters
    ----------
    v : (P,) or (P, m) array in the canonical order, on X's backend.
    Other parameters as in :func:`fisher`.

    Returns
    -------
    Array of ``v``'s shape. Memory is one chunk of rows, never P².
    """
    backprop.check_kind(kind)
    xp = backend.get_array_module(X)
    backend.check_same_backend(X=X, v=v)
    size = sum(layer_sizes(net))
    if v.ndim not in (1, 2) or v.shape[0] != size:
        raise ValueError(f"fisher_vector_product: v has shape {tuple(v.shape)}, expected ({size},) or ({size}, m)")
    matrix = v if v.ndim == 2 else v[:, None]
    result = xp.zeros(matrix.shape, dtype=X.dtype)
    for chunk in backprop.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        rows = _rows(chunk)
        k, n, p = rows.shape
        products = rows @ matrix  # (K, n, m): J v
        if kind == "ggn":
            products = _hessian_times(chunk.output_hessian, products)
        result += rows.reshape(k * n, p).T @ products.reshape(k * n, -1)
        total = chunk.stop
    result /= total
    return result if v.ndim == 2 else result[:, 0]
