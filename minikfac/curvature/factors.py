"""K-FAC's Kronecker factors A and G, from one pass of the layers' own caches.

For a layer with homogeneous input ā (a with a 1 appended when there is a
bias) and output gradients g, the per-example gradient of W̄ = [W | b] is
g āᵀ, so its Fisher block is (Martens & Grosse 2015, eq. (1) and §3)

    F_ll = (1/N) Σ_n Σ_k (ā_n ā_nᵀ) ⊗ (g_nk g_nkᵀ)
         ≈ [(1/N) Σ_n ā_n ā_nᵀ] ⊗ [(1/N) Σ_{n,k} g_nk g_nkᵀ] = A ⊗ G.

The only approximation is the expectation of a Kronecker product replaced by
the Kronecker product of expectations. It is exact for one example (N = 1)
and for deep *linear* networks with MSE, where g does not depend on the
input (the expand setting of Eschenhagen et al. 2023; Dangel et al. 2025).

The cotangents k = 1..K are those of :mod:`.statistics`: the columns of the
output-Fisher square root (``kind="true"``, exact expectation over the
model's targets), sampled targets (``"mc"``), the data labels
(``"empirical"``), or the output Jacobian with the loss Hessian H_n
(``"ggn"``: G = (1/N) Σ_n J_sᵀ H_n J_s with J_s = ∂f/∂s the Jacobian of the
network output w.r.t. the layer's output). A never depends on the kind.

Convolutions (KFC; Grosse & Martens 2016): a Conv2d layer's per-example
gradient is Σ_l g_l ā_lᵀ over the L = OH·OW output positions. KFC assumes
spatially uncorrelated, homogeneous statistics and gets

    Ω = A = (1/N) Σ_n Σ_l ā_nl ā_nlᵀ            (a *sum* over positions)
    Γ = G = (1/(N·L)) Σ_n Σ_k Σ_l g_nkl g_nklᵀ   (a *mean* over positions)

Only the product A ⊗ G is fixed by the theory (a factor L can move between
the two); we keep the convention of the paper's Ω and Γ. With one position
(L = 1, a 1×1 output) and one example the block is exact.

The cross factors A_ij = (1/N) Σ ā_i ā_jᵀ and G_ij = (1/N) Σ g_i g_jᵀ give
every block of Martens & Grosse's F̃ (§3, Fig. 2): F̃_ij = A_ij ⊗ G_ij.
"""

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.statistics import hessian_weighted
from minikfac.curvature.linalg import check_dense_size
from minikfac.curvature.params import has_bias, layer_slices, parametrised_layers, slices_of
from minikfac.nn.conv import Conv2d, columns_of

PAIRS = ("all", "tridiagonal")


def outer_product_sum(left, right):
    """Σ of left rightᵀ over every leading axis (cotangents, examples, positions): (D_left, D_right).

    left: (..., D_left) and right: (..., D_right) with the same leading shape.
    One matrix product of the rows stacked: BLAS does the sum.
    """
    return left.reshape(-1, left.shape[-1]).T @ right.reshape(-1, right.shape[-1])


def _positions(stats):
    """L, the output positions of a Conv2d layer (1 for Linear)."""
    inputs = stats.inputs if stats.raw is None else stats.raw
    return inputs.shape[1] if inputs.ndim == 3 else 1


def input_factor(a, bias):
    """K-FAC's input factor A = (1/N) Σ_n ā_n ā_nᵀ (Martens & Grosse 2015, eq. (1)).

    a : (N, D_in), a Linear layer's input (its ``cache_input``), or (N, L,
        D_in), a Conv2d layer's patches; then A sums over the L positions,
        KFC's Ω (Grosse & Martens 2016, §3.1).
    bias : whether the layer has a bias (ā = [a; 1], :func:`.params.homogeneous_inputs`).

    Returns (D_in + 1, D_in + 1), or (D_in, D_in) without bias.
    """
    return input_factor_sum(a, bias) / a.shape[0]


def grad_factor(grads, hessian=None):
    """K-FAC's gradient factor G = (1/N) Σ_n Σ_k g_nk g_nkᵀ (Martens & Grosse 2015, eq. (1)).

    grads : g = ∂(s_nkᵀ f)/∂s, the gradient w.r.t. the layer's output for each
        cotangent s_nk of :mod:`.statistics`: (K, N, D_out) for Linear, or
        (K, N, L, D_out) for Conv2d; then G is the mean over the L positions
        too, KFC's Γ = (1/(N·L)) Σ_n Σ_k Σ_l g gᵀ (Grosse & Martens 2016, §3.1).
    hessian : (N, K, K) for the GGN (G = (1/N) Σ_n J_sᵀ H_n J_s), else None.

    Returns (D_out, D_out). With the one cotangent of the empirical Fisher, g_n
    is ∂ℓ_n/∂s — N times what the backward of the *mean* loss leaves in
    ``cache_grad_output``.
    """
    positions = grads.shape[2] if grads.ndim == 4 else 1
    return outer_product_sum(grads, hessian_weighted(grads, hessian)) / (grads.shape[1] * positions)


def input_factor_sum(a, bias):
    """Σ ā āᵀ over the rows of ``a`` (examples, and positions for a Conv2d), (D_in + 1, D_in + 1).

    a : (n, D_in) or (n, L, D_in), without the 1 of the bias; bias : bool.
    Formed without ā: with X the rows of a,

        Σ ā āᵀ = [[XᵀX, Xᵀ1], [1ᵀX, R]]      (R rows; without a bias just XᵀX),

    and X read through a view: a Conv2d's patches as the columns matrix they
    are stored as (:func:`minikfac.nn.conv.columns_of`), so a product of one
    matrix with its own transpose, which BLAS does in half the work (syrk).
    """
    xp = backend.get_array_module(a)
    columns = columns_of(a) if a.ndim == 3 else a.T  # (D_in, R), a view
    gram = columns @ columns.T
    if not bias:
        return gram
    rows = columns.shape[1]
    sums = columns @ xp.ones(rows, dtype=a.dtype)  # Xᵀ1 as a product: faster than a sum over long rows
    out = xp.empty((gram.shape[0] + 1,) * 2, dtype=gram.dtype)
    out[:-1, :-1] = gram
    out[:-1, -1] = sums
    out[-1, :-1] = sums
    out[-1, -1] = rows
    return out


def layer_input_factor_sum(stats):
    """:func:`input_factor_sum` of a :class:`.statistics.LayerStatistics` (its raw input, its layer's bias)."""
    return input_factor_sum(stats.raw, has_bias(stats.layer))


def kfac_factors(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """The Kronecker factors (A, G) of every parametrised layer (Martens & Grosse 2015, eq. (1)).

    Parameters
    ----------
    net : Module whose parametrised layers are Linear / Conv2d.
    loss_fn : CrossEntropyLoss, MSELoss or BCEWithLogitsLoss.
    X : (N, ...) inputs; y : targets (needed for ``kind="empirical"``).
    kind : "true" (exact expectation over the model's targets), "mc"
        (``samples`` sampled targets per example, random ``seed``),
        "empirical" (the data labels) or "ggn" (G = (1/N) Σ_n J_sᵀ H_n J_s).
    chunk_size : examples per pass (default: see :func:`statistics.default_chunk_size`).

    Returns
    -------
    list of (A, G), one per layer in network order: A (D_in + 1, D_in + 1) —
    (D_in, D_in) without bias; D_in = C_in·KH·KW for Conv2d — and G
    (D_out, D_out), on X's backend and dtype, so that the layer's block is
    kron(A, G) in the canonical order. Linear: A = (1/N) Σ ā āᵀ,
    G = (1/N) Σ_{n,k} g gᵀ. Conv2d (KFC; Grosse & Martens 2016, Ω and Γ):
    A sums over the L positions, G averages over them (module docstring).
    """
    statistics.check_kind(kind)
    if chunk_size is None:
        chunk_size = statistics.statistics_chunk_size(net, kind, X, samples)
    sums, last = None, None
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        updates = chunk_factor_sums(chunk)
        sums = updates if sums is None else [(A + dA, G + dG) for (A, G), (dA, dG) in zip(sums, updates)]
        last = chunk
    return normalise_factor_sums(sums, last.stop, last)


def chunk_factor_sums(chunk):
    """The unnormalised sums (Σ ā āᵀ, Σ g gᵀ) of one :class:`.statistics.Chunk`, one pair per layer.

    Σ runs over the chunk's examples, cotangents and (Conv2d) positions; for
    ``kind="ggn"`` the G sum is H-weighted. Shapes as in :func:`kfac_factors`.
    :func:`kfac_factors` adds it up over all chunks, and the KFC study
    (:mod:`minikfac.studies.kfc_assumptions`) reads it stage by stage. The
    optimizer's running averages take the same sums through
    :func:`layer_input_factor_sum` and the rows of g (:mod:`.running_average`).
    """
    return [(layer_input_factor_sum(s), outer_product_sum(s.grads, hessian_weighted(s.grads, chunk.output_hessian)))
            for s in chunk.layers]


def factor_counts(examples, chunk):
    """What the factor sums over ``examples`` examples are divided by: [(N, N·L), ...] per layer.

    A = Σ ā āᵀ / N and G = Σ g gᵀ / (N·L) (module docstring; L = 1 for Linear).
    ``chunk`` is any chunk of the pass (it tells each layer's number of positions L).
    """
    return [(examples, examples * _positions(s)) for s in chunk.layers]


def normalise_factor_sums(sums, examples, chunk):
    """(A, G) from :func:`chunk_factor_sums` over ``examples`` examples: A = Σ/N, G = Σ/(N·L) (new arrays)."""
    return [(A / a, G / g) for (A, G), (a, g) in zip(sums, factor_counts(examples, chunk))]


def _check_pairs(pairs, count):
    """The (i, j), i <= j, asked for by ``pairs`` ("all" or "tridiagonal") for ``count`` layers."""
    if pairs == "all":
        return [(i, j) for i in range(count) for j in range(i, count)]
    if pairs == "tridiagonal":
        return [(i, j) for i in range(count) for j in (i, i + 1) if j < count]
    raise ValueError(f"pairs must be one of {', '.join(map(repr, PAIRS))}; got {pairs!r}")


def kfac_cross_factors(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None, pairs="all"):
    """The factors of F̃'s blocks, F̃_ij = A_ij ⊗ G_ij (Martens & Grosse 2015, §3).

    A_ij = (1/N) Σ_n ā_i ā_jᵀ is (D_in,i + 1, D_in,j + 1) and G_ij =
    (1/N) Σ_{n,k} g_i g_jᵀ is (D_out,i, D_out,j) (for ``kind="ggn"``,
    (1/N) Σ_n J_iᵀ H_n J_j). Parameters as in :func:`kfac_factors`, plus

    pairs : "all" (every i <= j, for the full F̃ of Fig. 2) or "tridiagonal"
        (j ∈ {i, i + 1}, all that the block-tridiagonal inverse of Martens & Grosse 2015, §4.3
        needs).

    Returns
    -------
    dict {(i, j): (A_ij, G_ij)} for i <= j, diagonal included; (i, i) equals
    :func:`kfac_factors`' (A, G). Linear layers only: a Conv2d layer raises
    ValueError (KFC defines no cross-layer factors).
    """
    statistics.check_kind(kind)
    layers = parametrised_layers(net)
    for index, layer in enumerate(layers):
        if isinstance(layer, Conv2d):
            raise ValueError(f"kfac_cross_factors: layer {index} is {layer!r}; cross-layer factors are defined "
                             "for Linear layers only (Martens & Grosse 2015, §3)")
    wanted = _check_pairs(pairs, len(layers))
    sums, total = None, None
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        stats = chunk.layers
        grads = [s.grads for s in stats]
        weighted = [hessian_weighted(g, chunk.output_hessian) for g in grads]
        updates = {(i, j): (layer_input_factor_sum(stats[i]) if i == j
                            else outer_product_sum(stats[i].inputs, stats[j].inputs),
                            outer_product_sum(grads[i], weighted[j]))
                   for i, j in wanted}
        if sums is None:
            sums = updates
        else:
            sums = {key: (A + updates[key][0], G + updates[key][1]) for key, (A, G) in sums.items()}
        total = chunk.stop
    return {key: (A / total, G / total) for key, (A, G) in sums.items()}


def _slices_of(cross_factors):
    """Layer slices from the diagonal pairs (i, i): sizes (D_in,i + 1)·D_out,i."""
    count = 1 + max(i for i, _ in cross_factors)
    missing = [i for i in range(count) if (i, i) not in cross_factors]
    if missing:
        raise ValueError(f"kfac_dense: cross_factors has no diagonal pair ({missing[0]}, {missing[0]}); pass slices=")
    return slices_of(cross_factors[(i, i)][0].shape[0] * cross_factors[(i, i)][1].shape[0] for i in range(count))


def kfac_dense(cross_factors, slices=None):
    """The dense F̃ (P, P) with blocks kron(A_ij, G_ij) (Martens & Grosse 2015, §3, Fig. 2).

    Parameters
    ----------
    cross_factors : dict {(i, j): (A_ij, G_ij)} with i <= j, as made by
        :func:`kfac_cross_factors`. Blocks below the diagonal are the
        transposes kron(A_ij, G_ij)ᵀ = kron(A_ji, G_ji); pairs that are missing
        are zero blocks (so ``pairs="tridiagonal"`` gives the block-tridiagonal
        part of F̃, and the (i, i) pairs alone the block-diagonal K-FAC).
    slices : the layer slices in the canonical order (``layer_slices(net)``);
        by default taken from the diagonal pairs.

    Returns
    -------
    (P, P) array on the factors' backend and dtype.
    """
    if not cross_factors:
        raise ValueError("kfac_dense: cross_factors is empty")
    slices = _slices_of(cross_factors) if slices is None else list(slices)
    first = next(iter(cross_factors.values()))[0]
    xp = backend.get_array_module(first)
    size = slices[-1].stop
    check_dense_size((size, size), first.dtype, "kfac_dense")
    dense = xp.zeros((size, size), dtype=first.dtype)
    for (i, j), (A, G) in cross_factors.items():
        if not 0 <= i <= j < len(slices):
            raise ValueError(f"kfac_dense: pair ({i}, {j}) must satisfy 0 <= i <= j < {len(slices)} (layers)")
        rows, cols = slices[i], slices[j]
        shape = (A.shape[0] * G.shape[0], A.shape[1] * G.shape[1])
        if shape != (rows.stop - rows.start, cols.stop - cols.start):
            raise ValueError(f"kfac_dense: pair ({i}, {j}) has A {tuple(A.shape)} and G {tuple(G.shape)}, "
                             f"whose Kronecker product is {shape}, but the slices give "
                             f"({rows.stop - rows.start}, {cols.stop - cols.start})")
        block = xp.kron(A, G)
        dense[rows, cols] = block
        if i != j:
            dense[cols, rows] = block.T
    return dense


def kfac_dense_from_net(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None, pairs="all"):
    """F̃ of ``net`` in one call: :func:`kfac_dense` of :func:`kfac_cross_factors` (Linear nets only)."""
    cross = kfac_cross_factors(net, loss_fn, X, y, kind, samples, seed, chunk_size, pairs)
    return kfac_dense(cross, layer_slices(net))
