"""The exact Fisher family of a small network: dense, diagonal, per-layer blocks, products.

With the per-example rows J_nk of :mod:`.statistics` (one per cotangent s_nk),

    F = (1/N) Σ_n Σ_k J_nkᵀ J_nk          kinds "true", "mc", "empirical"
    F = (1/N) Σ_n J_nᵀ H_n J_n            kind "ggn" (J_n: the D_out rows of ∂f(x_n)/∂θ)

in the canonical parameter order (docs/design.md). "true" is the exact expectation
over the model's predictive distribution, E_y[∇ℓ ∇ℓᵀ] (Amari 1998; Martens
2020, eq. (9)), "mc" its estimate from sampled targets, "empirical" the
second moment of the data gradients (Kunstner et al. 2019, eq. (3)), and
"ggn" the generalised Gauss-Newton matrix Jᵀ H J (Schraudolph 2002;
Martens 2020, §8). For the three losses of :mod:`minikfac.nn.likelihoods` the
true Fisher and the GGN coincide (Martens 2020, §9.2); "ggn" computes
it along a separate path (output Jacobian and loss Hessian) so that this can
be checked.

The dense matrix is computed in one of two ways (``method=``):

``"rows"``  any network. The rows of a chunk of examples are written side
    by side into one reused (K·n, P) buffer and added as a symmetric rank-K·n
    update (BLAS ``syrk`` on the host: half the work of a general product).
    Work K·P² per example, memory the P×P matrix plus one chunk of rows.
``"kronecker"``  networks whose parametrised layers are all Linear. Layer
    i's part of J_nk is ā_ni ⊗ g_nki, so the (i, j) block is

        F_ij = (1/N) Σ_n Σ_k (ā_ni ā_njᵀ) ⊗ (g_nki g_nkjᵀ)
             = (1/N) Σ_n (ā_ni ā_njᵀ) ⊗ Γ_n^ij,      Γ_n^ij = Σ_k g_nki g_nkjᵀ

    (Martens & Grosse 2015, §3): the exact Fisher is the *expectation
    of a Kronecker product*, where K-FAC takes the Kronecker product of the
    expectations. The sum over the K cotangents happens on the small
    Γ_n^ij (D_out_i × D_out_j), so the work is 2·Σ_{i≤j} P_i P_j ≈ P² + Σ_i P_i²
    per example whatever K is (for Martens & Grosse's 256-20-20-20-20-20-10
    net with ten classes, 6.4 times less than "rows").

``"auto"`` (the default) takes "kronecker" where it applies and K > 1, else
"rows". Both return an exactly symmetric matrix: only the upper triangle is
accumulated, then mirrored.
"""

import numpy as np

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.kron import vec
from minikfac.curvature.linalg import check_dense_size
from minikfac.curvature.params import layer_slices, parametrised_layers
from minikfac.nn.linear import Linear

METHODS = ("auto", "rows", "kronecker")
CHUNK_ROWS = 512  # rows J_nk per chunk for "rows": enough for syrk's full speed, a small buffer


# --------------------------------------------------------------------------- #
# Choosing the method and the chunk size
# --------------------------------------------------------------------------- #
def _cotangents_per_example(layers, kind, samples):
    return statistics.number_of_cotangents(kind, layers[-1].weight.shape[0], samples)


def _choose_method(method, layers, kind, samples):
    """Resolve ``method`` ("auto", "rows", "kronecker") for these layers; see the module docstring.

    "auto" takes "kronecker" when it applies and K > 1: it does the work of
    one row per example, "rows" the work of K (syrk halves that, so for K = 1
    "rows" is the cheaper one).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    all_linear = all(isinstance(layer, Linear) for layer in layers)
    if method == "kronecker" and not all_linear:
        names = sorted({type(layer).__name__ for layer in layers if not isinstance(layer, Linear)})
        raise ValueError(f"method='kronecker' needs Linear layers only, got {', '.join(names)}; use method='rows'")
    if method != "auto":
        return method
    return "kronecker" if all_linear and _cotangents_per_example(layers, kind, samples) > 1 else "rows"


def _rows_chunk_size(net, layers, X, kind, samples, chunk_size):
    """Examples per chunk for "rows": about CHUNK_ROWS rows, within the statistics pass's memory budget."""
    if chunk_size is not None:
        return chunk_size
    per_example = _cotangents_per_example(layers, kind, samples)
    return max(1, min(CHUNK_ROWS // per_example, statistics.default_chunk_size(net, kind, X, samples)))


def _kronecker_chunk_size(X, size, chunk_size):
    """Examples per chunk for "kronecker": its largest temporary is (n, P) numbers."""
    if chunk_size is not None:
        return chunk_size
    return int(max(1, min(X.shape[0], statistics.CHUNK_BYTES // (size * X.dtype.itemsize))))


# --------------------------------------------------------------------------- #
# The "rows" method
# --------------------------------------------------------------------------- #
class _RowBuffer:
    """One (K·n, P) array for the rows of a chunk, allocated once and reused.

    Each layer writes its columns directly (:func:`statistics.layer_gradients`
    with ``out=``): no per-layer temporaries, no concatenation, and no fresh
    large allocation per chunk.
    """

    def __init__(self, slices):
        self.slices = slices
        self.flat = None

    def rows(self, chunk):
        """J of ``chunk`` as (K, n, P), canonical order; valid until the next call."""
        first = chunk.layers[0]
        k, n = first.grads.shape[:2]
        size = self.slices[-1].stop
        if self.flat is None or self.flat.size < k * n * size:
            xp = backend.get_array_module(first.inputs)
            self.flat = xp.empty(k * n * size, dtype=xp.result_type(first.inputs, first.grads))
        rows = self.flat[:k * n * size].reshape(k, n, size)
        for stats, columns in zip(chunk.layers, self.slices):
            statistics.layer_gradients(stats, out=rows[:, :, columns])
        return rows


class _SymmetricAccumulator:
    """scale · Σ Jᵀ J over chunks, in place: ``syrk`` into the upper triangle on the host.

    scipy's BLAS wrapper updates a Fortran-ordered C with C ← αJᵀJ + C and no
    temporary, α = ``scale`` = 1/N (so no pass over C is needed to normalise);
    other backends fall back to ``C += Jᵀ J`` and scale at the end.
    """

    def __init__(self, size, dtype, xp, scale):
        self.scale = scale
        self.host = xp is np
        if self.host:
            from scipy.linalg import blas  # scipy is a run-time dependency
            self.syrk = blas.get_blas_funcs("syrk", dtype=np.dtype(dtype))
            self.matrix = np.zeros((size, size), dtype=dtype, order="F")
        else:
            self.matrix = xp.zeros((size, size), dtype=dtype)

    def add_gram(self, rows):
        """C += scale · rowsᵀ rows for C-ordered rows (R, P)."""
        if self.host:
            # rows is C-ordered, so rows.T is Fortran-ordered and no copy is made.
            self.matrix = self.syrk(self.scale, rows.T, beta=1.0, c=self.matrix, trans=0, lower=0, overwrite_c=1)
        else:
            self.matrix += rows.T @ rows

    def add_product(self, left, right, panel=512):
        """C += scale · leftᵀ right for (R, P) each whose total is symmetric: upper triangle only.

        ``panel`` columns at a time, each down to the diagonal: half the work
        of the full product, and a (P, panel) temporary instead of (P, P).
        """
        size = self.matrix.shape[1]
        for start in range(0, size, panel):
            stop = min(start + panel, size)
            product = left[:, :stop].T @ right[:, start:stop]
            if self.host:
                product *= self.scale
            self.matrix[:stop, start:stop] += product

    def result(self):
        """The full matrix from its upper triangle (exactly symmetric), C-ordered."""
        matrix = self.matrix
        if not self.host:
            matrix *= self.scale
        fill_lower_from_upper(matrix)
        # A symmetric Fortran array's transpose is the same matrix, C-ordered.
        return matrix.T if self.host else matrix


def fill_lower_from_upper(matrix, block=512):
    """Copy the upper triangle of a square ``matrix`` onto its lower one, in place.

    ``block`` columns at a time, so the temporaries stay small. Products
    like Jᵀ H J are symmetric only up to rounding; this makes them exactly so.
    """
    xp = backend.get_array_module(matrix)
    size = matrix.shape[0]
    for start in range(0, size, block):
        stop = min(start + block, size)
        diagonal = matrix[start:stop, start:stop]
        upper = xp.triu(diagonal)
        diagonal[...] = upper + xp.triu(upper, 1).T
        matrix[stop:, start:stop] = matrix[start:stop, stop:].T
    return matrix


def _fisher_rows(net, loss_fn, X, y, kind, samples, seed, chunk_size, slices):
    xp = backend.get_array_module(X)
    buffer, accumulator = _RowBuffer(slices), None
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        rows = buffer.rows(chunk)
        if accumulator is None:
            accumulator = _SymmetricAccumulator(slices[-1].stop, rows.dtype, xp, 1.0 / X.shape[0])
        k, n, p = rows.shape
        if kind == "ggn":
            accumulator.add_product(rows.reshape(k * n, p), statistics.hessian_weighted(rows, chunk.output_hessian).reshape(k * n, p))
        else:
            accumulator.add_gram(rows.reshape(k * n, p))
    return accumulator.result()


# --------------------------------------------------------------------------- #
# The "kronecker" method (Linear layers)
# --------------------------------------------------------------------------- #
def _gram_of_output_gradients(chunk, i, j, scale):
    """scale · Γ_n^ij = scale · Σ_k g_nki ĝ_nkjᵀ, (n, D_out_i, D_out_j); ĝ = H_n g for "ggn", else g."""
    xp = backend.get_array_module(chunk.layers[i].grads)
    g_i, g_j = chunk.layers[i].grads, chunk.layers[j].grads  # (K, n, D_out)
    if chunk.output_hessian is not None:
        g_j = statistics.hessian_weighted(g_j, chunk.output_hessian)
    # (n, D_out_i, K) @ (n, K, D_out_j): the sum over cotangents, per example.
    return xp.matmul(xp.moveaxis(g_i, 0, 2), xp.moveaxis(g_j, 0, 1)) * scale


def _add_kronecker_block(block, inputs_i, inputs_j, gamma, budget_bytes=statistics.CHUNK_BYTES):
    """block (P_i, P_j) += Σ_n (ā_ni ā_njᵀ) ⊗ Γ_n, for ā_ni (n, d_i), ā_nj (n, d_j), Γ (n, o_i, o_j).

    In the canonical order row p·o_i + o, column q·o_j + o' of the block is
    Σ_n ā_ni[p] · ā_nj[q] Γ_n[o, o']: for a group of output units o, the
    product of ā_iᵀ (d_i, n) with R[n, (o, q, o')] = ā_nj[q] Γ_n[o, o'].
    The groups are as large as ``budget_bytes`` allows for R and the product:
    few large BLAS calls rather than many small ones.
    """
    xp = backend.get_array_module(block)
    n, outputs_i, outputs_j = gamma.shape
    d_i, d_j = inputs_i.shape[1], inputs_j.shape[1]
    by_unit = block.reshape(d_i, outputs_i, d_j * outputs_j)  # [p, o] is row p·o_i + o (a view)
    group = max(1, min(outputs_i, budget_bytes // (max(n, d_i) * d_j * outputs_j * block.itemsize)))
    buffer = xp.empty(n * group * d_j * outputs_j, dtype=block.dtype)  # for R, reused by every group
    for start in range(0, outputs_i, group):
        units = slice(start, min(start + group, outputs_i))
        right = buffer[:n * (units.stop - start) * d_j * outputs_j].reshape(n, -1, d_j, outputs_j)
        xp.multiply(inputs_j[:, None, :, None], gamma[:, units, None, :], out=right)
        by_unit[:, units] += (inputs_i.T @ right.reshape(n, -1)).reshape(d_i, -1, d_j * outputs_j)


def _kronecker_sums(chunks, pairs, blocks, total):
    """Add (1/total) Σ_n (ā_ni ā_njᵀ) ⊗ Γ_n^ij into ``blocks[m]`` for each pair (i, j) = ``pairs[m]``."""
    for chunk in chunks:
        for (i, j), block in zip(pairs, blocks):
            gamma = _gram_of_output_gradients(chunk, i, j, 1.0 / total)
            _add_kronecker_block(block, chunk.layers[i].inputs, chunk.layers[j].inputs, gamma)


def _result_dtype(net, X):
    return np.result_type(X.dtype, *(p.data.dtype for p in net.parameters()))


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #
def fisher(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None, method="auto"):
    """The dense (P, P) Fisher-type matrix of ``net`` on ``X``, canonical order.

    Parameters
    ----------
    net : Module with Linear / Conv2d parametrised layers (any activations,
        pooling, Flatten in between).
    loss_fn : CrossEntropyLoss, MSELoss or BCEWithLogitsLoss.
    X : (N, ...) inputs; y : targets (needed for ``kind="empirical"``).
    kind : "true", "ggn", "mc" (``samples`` targets per example drawn with
        ``seed``) or "empirical".
    chunk_size : examples per chunk (default: about 512 rows J_nk for
        "rows", a (chunk_size, P) temporary of at most 64 MiB for "kronecker").
    method : "auto", "rows" or "kronecker" (module docstring); the result is
        the same up to rounding.

    Returns
    -------
    (P, P) symmetric positive semi-definite array, X's backend and dtype,
    normalised by 1/N (docs/design.md). The network's ``.grad`` are untouched.
    """
    statistics.check_data(X, y, statistics.check_kind(kind))
    layers = parametrised_layers(net)
    slices = layer_slices(net)
    method = _choose_method(method, layers, kind, samples)
    size = slices[-1].stop
    check_dense_size((size, size), _result_dtype(net, X), "fisher")
    if method == "rows":
        chunk_size = _rows_chunk_size(net, layers, X, kind, samples, chunk_size)
        return _fisher_rows(net, loss_fn, X, y, kind, samples, seed, chunk_size, slices)
    chunk_size = _kronecker_chunk_size(X, slices[-1].stop, chunk_size)
    chunks = statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size)
    matrix = backend.get_array_module(X).zeros((size, size), dtype=_result_dtype(net, X))
    # The blocks on and above the diagonal; the lower triangle is their mirror image.
    pairs = [(i, j) for i in range(len(slices)) for j in range(i, len(slices))]
    _kronecker_sums(chunks, pairs, [matrix[slices[i], slices[j]] for i, j in pairs], X.shape[0])
    return fill_lower_from_upper(matrix)


def _layer_diagonal(stats, hessian):
    """Σ over the chunk's examples and cotangents of J_nk ⊙ (H J)_nk for one layer, (P_l,).

    A Linear layer's row is vec(g āᵀ), so its squared entries are g_i² ā_j²
    and the sum over examples is one product, vec(γᵀ (ā ⊙ ā)) with γ_n =
    Σ_k g_nk ⊙ ĝ_nk (ĝ = H_n g for "ggn"): N·D_out·(D_in + 1) work, no row is
    formed. A convolution sums over positions first, so its rows are formed.
    """
    xp = backend.get_array_module(stats.grads)
    weighted_grads = statistics.hessian_weighted(stats.grads, hessian)
    if stats.inputs.ndim == 2:
        gamma = xp.sum(stats.grads * weighted_grads, axis=0)  # (n, D_out)
        return vec(gamma.T @ (stats.inputs * stats.inputs))
    rows = statistics.layer_gradients(stats)
    weighted = statistics.hessian_weighted(rows, hessian)
    return xp.sum(rows * weighted, axis=(0, 1))


def fisher_diagonal(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """diag(F), shape (P,), without forming F: (1/N) Σ_nk J_nk² (or Σ J ⊙ HJ for "ggn").

    Same parameters as :func:`fisher`. Linear layers cost one (D_out, n) @ (n,
    D_in + 1) product per chunk (:func:`_layer_diagonal`); conv layers a pass
    of per-example rows.
    """
    statistics.check_kind(kind)
    xp = backend.get_array_module(X)
    if chunk_size is None:
        chunk_size = statistics.statistics_chunk_size(net, kind, X, samples)
    diagonal = None
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        update = xp.concatenate([_layer_diagonal(stats, chunk.output_hessian) for stats in chunk.layers])
        diagonal = update if diagonal is None else diagonal + update
    return diagonal / X.shape[0]


def fisher_blocks(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None, method="auto"):
    """The exact per-layer diagonal blocks F_ll, a list of (P_l, P_l) arrays.

    Same parameters as :func:`fisher` (``method`` too); memory Σ_l P_l²
    instead of P². Each block is exactly symmetric.
    """
    statistics.check_data(X, y, statistics.check_kind(kind))
    layers = parametrised_layers(net)
    slices = layer_slices(net)
    method = _choose_method(method, layers, kind, samples)
    xp = backend.get_array_module(X)
    check_dense_size([(s.stop - s.start,) * 2 for s in slices], _result_dtype(net, X), "fisher_blocks")
    if method == "kronecker":
        chunks = statistics.chunks(net, loss_fn, X, y, kind, samples, seed,
                                 _kronecker_chunk_size(X, slices[-1].stop, chunk_size))
        blocks = [xp.zeros((s.stop - s.start,) * 2, dtype=_result_dtype(net, X)) for s in slices]
        _kronecker_sums(chunks, [(i, i) for i in range(len(slices))], blocks, X.shape[0])
        return [fill_lower_from_upper(block) for block in blocks]
    blocks = None
    chunk_size = _rows_chunk_size(net, layers, X, kind, samples, chunk_size)
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        updates = []
        for stats in chunk.layers:
            rows = statistics.layer_gradients(stats)
            weighted = statistics.hessian_weighted(rows, chunk.output_hessian) if kind == "ggn" else rows
            k, n, p = rows.shape
            updates.append(rows.reshape(k * n, p).T @ weighted.reshape(k * n, p))
        blocks = updates if blocks is None else [b + u for b, u in zip(blocks, updates)]
    return [fill_lower_from_upper(block / X.shape[0]) for block in blocks]


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
    statistics.check_kind(kind)
    slices = layer_slices(net)
    size = slices[-1].stop
    if not backend.is_array(v):
        raise TypeError(f"fisher_vector_product: v must be an array of shape ({size},) or ({size}, m), "
                        f"got {type(v).__name__}")
    backend.check_same_backend(X=X, v=v)
    if v.ndim not in (1, 2) or v.shape[0] != size:
        raise ValueError(f"fisher_vector_product: v has shape {tuple(v.shape)}, expected ({size},) or ({size}, m)")
    matrix = v if v.ndim == 2 else v[:, None]
    result = None
    buffer = _RowBuffer(slices)
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        rows = buffer.rows(chunk)
        k, n, p = rows.shape
        products = rows @ matrix  # (K, n, m): J v
        if kind == "ggn":
            products = statistics.hessian_weighted(products, chunk.output_hessian)
        update = rows.reshape(k * n, p).T @ products.reshape(k * n, -1)
        result = update if result is None else result + update
    result /= X.shape[0]
    return result if v.ndim == 2 else result[:, 0]
