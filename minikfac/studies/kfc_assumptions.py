"""KFC's assumptions one at a time, and how correlated the output derivatives of a convolution are.

Grosse & Martens 2016, *A Kronecker-factored approximate Fisher matrix for
convolution layers* (KFC). A Conv2d layer applies one weight matrix W̄
(D_out, D_in + 1), D_in = C_in·KH·KW, at L = OH·OW output positions; with the
im2col patches ā_nl (bias coordinate 1 appended) and the output derivatives
g_nkl of cotangent k (see :mod:`minikfac.curvature.statistics`), the per-example gradient is a
*sum over positions*, Σ_l g_nkl ā_nlᵀ (their eq. (5)). Its exact Fisher block is

    F     = (1/N) Σ_n Σ_k Σ_l Σ_l' (ā_nl ā_nl'ᵀ) ⊗ (g_nkl g_nkl'ᵀ)                          "exact"

KFC reaches a single Kronecker product through three assumptions (Grosse & Martens
2016, §3). We apply them one after the other, so that each one's share of
the error can be measured:

1. SUD, spatially uncorrelated derivatives: derivatives at different positions
   are uncorrelated, so the terms l ≠ l' go:

       F_sud = (1/N) Σ_n Σ_l (ā_nl ā_nlᵀ) ⊗ Γ_nl,     Γ_nl = Σ_k g_nkl g_nklᵀ              "sud"

2. SH, spatial homogeneity: the derivatives' second moments are the same at
   every position, so Γ_nl is replaced by its mean over positions (here within
   each example):

       F_sh  = (1/N) Σ_n Ω_n ⊗ Γ̄_n,   Ω_n = Σ_l ā_nl ā_nlᵀ,   Γ̄_n = (1/L) Σ_l Γ_nl          "sh"

3. IAD, independent activations and derivatives: the expectation over examples
   of the Kronecker product becomes the product of the expectations:

       F_kfc = [(1/N) Σ_n Ω_n] ⊗ [(1/N) Σ_n Γ̄_n] = A ⊗ G                                  "kfc"

   which is :func:`minikfac.curvature.factors.kfac_factors`' (A, G) (A sums over positions, G
   averages over them: the paper's Ω and Γ).

With one example (N = 1) step 3 changes nothing (F_sh = F_kfc exactly), so the
error at N = 1 is the spatial assumptions' alone. With one position (L = 1: a
1×1 output, or a Linear layer) steps 1 and 2 change nothing, and only IAD, the
assumption of K-FAC for fully connected layers, is left. The order of the steps
is a choice; the total error F − F_kfc is not.

The derivatives' spatial correlation (what SUD assumes away) is measured by
:func:`output_gradient_maps` and :func:`spatial_autocorrelation` (pooled over
examples and positions) or :func:`correlation_within_examples` (over the
model's targets, for each image and pair of positions), and its
weight in the Fisher block by :func:`blocks_within_radius` (the exact block
keeping only the position pairs up to a distance R: R = 0 is SUD). Every dense
block is in the canonical order (vec(W̄), column-stacking: entry i·D_out + o
is ā_i g_o), so ``kron(A, G)`` lines up with it.
"""

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.factors import chunk_factor_sums, normalise_factor_sums
from minikfac.curvature.params import parametrised_layers
from minikfac.nn.conv import Conv2d

STAGES = ("exact", "sud", "sh", "kfc")
#: kinds whose G is a plain sum of outer products of cotangent gradients (not "ggn", which is H-weighted).
KINDS = ("true", "mc", "empirical")
#: numbers of the per-position outer products held at once (bounds memory for big L·D_in²).
BLOCK_NUMBERS = 4 * 2**20


def _positions_view(stats):
    """ā (n, L, D_in + 1) and g (K, n, L, D_out) of a layer; a Linear layer has L = 1."""
    a, g = stats.inputs, stats.grads
    if a.ndim == 2:
        a, g = a[:, None, :], g[:, :, None, :]
    return a, g


def _to_kron_layout(products, d_in, d_out):
    """(D_in², D_out²) with entries M[(i, j), (o, p)] -> the (P_l, P_l) block B[(i, o), (j, p)].

    B[i·D_out + o, j·D_out + p] = M[i·D_in + j, o·D_out + p]: the layout of kron(Ω, Γ).
    """
    return products.reshape(d_in, d_in, d_out, d_out).transpose(0, 2, 1, 3).reshape(d_in * d_out, d_in * d_out)


def _pair_sum(a_1, a_2, g_1, g_2):
    """Σ over examples and position pairs (l, l') of (ā_l ā_l'ᵀ) ⊗ (Σ_k g_kl g_kl'ᵀ): a (P_l, P_l) block.

    a_1, a_2 : (n, M, D_in + 1), the patches at M positions l and at their
    partners l'; g_1, g_2 : (K, n, M, D_out) likewise. The sum is one product
    of the flattened outer products, (D_in², rows) @ (rows, D_out²), taken in
    blocks of rows so that the (rows, D_in²) array stays small.
    """
    xp = backend.get_array_module(a_1)
    d_in, d_out = a_1.shape[-1], g_1.shape[-1]
    rows_a1, rows_a2 = a_1.reshape(-1, d_in), a_2.reshape(-1, d_in)
    gamma = xp.einsum("kxo,kxp->xop", g_1.reshape(g_1.shape[0], -1, d_out),
                      g_2.reshape(g_2.shape[0], -1, d_out)).reshape(-1, d_out * d_out)
    step = max(1, BLOCK_NUMBERS // (d_in * d_in))
    total = xp.zeros((d_in * d_in, d_out * d_out), dtype=a_1.dtype)
    for start in range(0, rows_a1.shape[0], step):
        block = slice(start, start + step)
        outer = (rows_a1[block, :, None] * rows_a2[block, None, :]).reshape(-1, d_in * d_in)
        total += outer.T @ gamma[block]
    return _to_kron_layout(total, d_in, d_out)


def _stage_sums(a, g):
    """Unnormalised sums of the first three stages for one chunk: {"exact", "sud", "sh"}.

    a : (n, L, D_in + 1); g : (K, n, L, D_out). Each is a (P_l, P_l) sum over
    the chunk's examples; the last stage, A ⊗ G, comes from
    :func:`minikfac.curvature.factors.chunk_factor_sums` (the same sums as :func:`minikfac.curvature.factors.kfac_factors`).
    """
    xp = backend.get_array_module(a)
    n, positions, d_in = a.shape
    k, d_out = g.shape[0], g.shape[-1]
    # exact: the per-example, per-cotangent rows Σ_l ā_nl ⊗ g_nkl (a batched product over positions)
    rows = xp.matmul(xp.swapaxes(a, 1, 2)[None], g).reshape(k * n, d_in * d_out)
    sums = {"exact": rows.T @ rows}
    if positions == 1:  # one position (Linear, or a 1×1 output): SUD and SH change nothing
        sums["sud"] = sums["sh"] = sums["exact"]
        return sums
    sums["sud"] = _pair_sum(a, a, g, g)
    # SH: Ω_n = Σ_l ā_nl ā_nlᵀ and Γ̄_n = (1/L) Σ_l Σ_k g_nkl g_nklᵀ, flattened to (n, D²) rows
    omega_n = xp.einsum("nli,nlj->nij", a, a).reshape(n, d_in * d_in)
    gamma_n = xp.einsum("knlo,knlp->nop", g, g).reshape(n, d_out * d_out) / positions
    sums["sh"] = _to_kron_layout(omega_n.T @ gamma_n, d_in, d_out)
    return sums


def kfc_stages(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """The Fisher block of every parametrised layer after each of KFC's assumptions (module docstring).

    Parameters
    ----------
    net : Module whose parametrised layers are Linear / Conv2d.
    loss_fn : CrossEntropyLoss, MSELoss or BCEWithLogitsLoss.
    X : (N, ...) inputs; y : targets (for ``kind="empirical"``).
    kind : "true" (exact expectation over the model's targets), "mc" (sampled
        targets) or "empirical" (the data labels); "ggn" is refused (its G is
        H-weighted; for our losses it equals "true" anyway).
    chunk_size : examples per pass (default: :func:`minikfac.curvature.statistics.default_chunk_size`).

    Returns
    -------
    list, one dict per layer in network order, {"exact", "sud", "sh", "kfc"}:
    dense (P_l, P_l) arrays, P_l = (D_in + 1)·D_out, in the canonical order,
    on X's backend. "exact" equals :func:`minikfac.curvature.exact.fisher_blocks`, "kfc" equals
    kron(A, G) of :func:`minikfac.curvature.factors.kfac_factors`. Memory: four P_l² blocks per layer.
    """
    statistics.check_kind(kind, KINDS)
    totals = factor_totals = None
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        sums = [_stage_sums(*_positions_view(stats)) for stats in chunk.layers]
        totals = sums if totals is None else [{key: t[key] + s[key] for key in t} for t, s in zip(totals, sums)]
        # the last stage is K-FAC's own (A, G), summed exactly as kfac_factors sums them
        factors = chunk_factor_sums(chunk)
        factor_totals = factors if factor_totals is None else [
            (A + dA, G + dG) for (A, G), (dA, dG) in zip(factor_totals, factors)]
        last = chunk
    xp = backend.get_array_module(X)
    count = X.shape[0]
    stages = []
    for t, (A, G) in zip(totals, normalise_factor_sums(factor_totals, count, last)):
        block = {name: t[name] / count for name in ("exact", "sud", "sh")}
        block["kfc"] = xp.kron(A, G)
        stages.append(block)
    return stages


def stage_errors(stages):
    """Relative Frobenius errors of each stage to the exact block, and of each assumption's step.

    stages : one layer's dict from :func:`kfc_stages`. Returns a dict of floats:
    "sud", "sh", "kfc": ‖F_stage − F‖/‖F‖ (cumulative: "kfc" is KFC's whole
    error), and "step_sud", "step_sh", "step_iad": ‖F_after − F_before‖/‖F‖ of
    each assumption alone (they do not add up: the differences are not orthogonal).
    """
    xp = backend.get_array_module(stages["exact"])
    exact = stages["exact"]
    norm = xp.linalg.norm(exact)

    def rel(x, y):
        return float(backend.to_numpy(xp.linalg.norm(x - y) / norm))
    return {"sud": rel(stages["sud"], exact), "sh": rel(stages["sh"], exact), "kfc": rel(stages["kfc"], exact),
            "step_sud": rel(stages["sud"], exact), "step_sh": rel(stages["sh"], stages["sud"]),
            "step_iad": rel(stages["kfc"], stages["sh"])}


def output_gradient_maps(net, loss_fn, X, layer, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """The derivatives g = ∂(s_nkᵀ f)/∂(conv output) of one Conv2d layer as maps: (K, N, C_out, OH, OW).

    layer : index of the layer among ``parametrised_layers(net)`` (it must be
    a Conv2d). Cotangents s_nk as in :mod:`minikfac.curvature.statistics` ("true": K = D_out
    columns of the output-Fisher square root, so Σ_k g g is the exact
    E_y[g gᵀ]; "empirical": K = 1, the data labels; "mc": sampled targets).
    For "true" and "mc" the derivatives have mean zero under the model
    (E_y[∇_f ℓ] = 0), so their second moments are covariances.
    """
    statistics.check_kind(kind, KINDS)
    layers = parametrised_layers(net)
    if not (isinstance(layer, int) and 0 <= layer < len(layers)) or not isinstance(layers[layer], Conv2d):
        convs = [i for i, module in enumerate(layers) if isinstance(module, Conv2d)]
        raise ValueError(f"output_gradient_maps: layer must be the index of a Conv2d among the parametrised "
                         f"layers, one of {convs}, got {layer!r}")
    module = layers[layer]
    maps = []
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        g = chunk.layers[layer].grads  # (K, n, L, C_out)
        _, _, oh, ow = module.output_shape(module.cache_input_shape)
        k, n = g.shape[:2]
        xp = backend.get_array_module(g)
        maps.append(xp.moveaxis(g.reshape(k, n, oh, ow, g.shape[-1]), -1, 2))
    return backend.get_array_module(maps[0]).concatenate(maps, axis=1)


def spatial_autocorrelation(maps, max_offset=None):
    """Correlation of maps with themselves shifted by (dy, dx): a (2·D_y + 1, 2·D_x + 1) array.

    maps : (..., C, H, W); every leading index (cotangents, examples) is one
        sample of C channel maps.
    max_offset : largest |dy|, |dx| (default: H − 1 and W − 1, all overlaps).

    Entry [D_y + dy, D_x + dx] is, over all samples, channels and positions t
    where both t and t + δ lie in the map,

        r(δ) = Σ v_t v_{t+δ} / sqrt(Σ v_t² · Σ v_{t+δ}²),

    the cosine between the map and its shifted copy on their overlap (a
    correlation coefficient when the values have mean zero, as the true
    Fisher's derivatives do). r(0) = 1 and r(δ) = r(−δ). SUD (Grosse & Martens
    2016, §3) assumes r(δ) = 0 — and, beyond this same-channel
    measure, zero cross-channel correlations — for every δ ≠ 0.
    """
    xp = backend.get_array_module(maps)
    if maps.ndim < 3:
        raise ValueError(f"spatial_autocorrelation: maps must be (..., C, H, W), got shape {tuple(maps.shape)}")
    height, width = maps.shape[-2:]
    v = maps.reshape((-1, height, width))
    max_y, max_x = (height - 1, width - 1) if max_offset is None else (min(max_offset, height - 1),
                                                                         min(max_offset, width - 1))
    result = xp.zeros((2 * max_y + 1, 2 * max_x + 1), dtype=v.dtype)
    for dy in range(-max_y, max_y + 1):
        for dx in range(-max_x, max_x + 1):
            here = v[:, max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
            there = v[:, max(0, dy):height - max(0, -dy), max(0, dx):width - max(0, -dx)]
            denominator = xp.sqrt(xp.sum(here * here) * xp.sum(there * there))
            result[max_y + dy, max_x + dx] = xp.sum(here * there) / xp.maximum(denominator, xp.finfo(v.dtype).tiny)
    return result


def correlation_within_examples(maps, offset):
    """Correlation over the cotangents (the model's targets y) of each derivative and its shifted partner.

    maps : (K, N, C, H, W) from :func:`output_gradient_maps`; offset : (dy, dx).
    Returns (N, C, M) with, for example n, channel c and each of the M
    positions t where t + δ lies in the map,

        r_nct = Σ_k g_nkct g_nkc,t+δ / sqrt(Σ_k g_nkct² · Σ_k g_nkc,t+δ²),

    for the true Fisher's cotangents the exact correlation over y ~ p(y|x_n)
    of the two derivatives of one image (NaN where either is zero for every k,
    e.g. behind a ReLU or off a max-pooling window's maximum). Pooling over
    examples and positions instead (:func:`spatial_autocorrelation`) averages
    these correlations, whose signs vary, towards zero.
    """
    xp = backend.get_array_module(maps)
    if maps.ndim != 5:
        raise ValueError(f"correlation_within_examples: maps must be (K, N, C, H, W), got shape {tuple(maps.shape)}")
    dy, dx = offset
    height, width = maps.shape[-2:]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"correlation_within_examples: offset {offset} does not fit in a {height}×{width} map")
    here = maps[..., max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
    there = maps[..., max(0, dy):height - max(0, -dy), max(0, dx):width - max(0, -dx)]
    k, n, c = maps.shape[:3]
    here, there = here.reshape(k, n, c, -1), there.reshape(k, n, c, -1)
    denominator = xp.sqrt(xp.sum(here * here, axis=0) * xp.sum(there * there, axis=0))
    zero = denominator <= xp.finfo(maps.dtype).tiny
    return xp.where(zero, xp.nan, xp.sum(here * there, axis=0) / xp.where(zero, 1.0, denominator))


def _shifted(x, dy, dx, grid):
    """Positions l and l + (dy, dx) that both lie in the (OH, OW) grid: two (..., M, D) views of x (..., L, D)."""
    oh, ow = grid
    maps = x.reshape(x.shape[:-2] + (oh, ow, x.shape[-1]))
    here = maps[..., max(0, -dy):oh - max(0, dy), max(0, -dx):ow - max(0, dx), :]
    there = maps[..., max(0, dy):oh - max(0, -dy), max(0, dx):ow - max(0, -dx), :]
    return (here.reshape(x.shape[:-2] + (-1, x.shape[-1])), there.reshape(x.shape[:-2] + (-1, x.shape[-1])))


def _ring(distances, grid):
    """Offsets (dy, dx) with max(|dy|, |dx|) in ``distances`` that fit in the (OH, OW) grid."""
    return [(dy, dx) for r in distances for dy in range(-r, r + 1) for dx in range(-r, r + 1)
            if max(abs(dy), abs(dx)) == r and abs(dy) < grid[0] and abs(dx) < grid[1]]


def blocks_within_radius(net, loss_fn, X, radii, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """The exact block with only the position pairs up to a distance: how far the correlations that matter reach.

    For each R in ``radii`` and each layer,

        F_R = (1/N) Σ_n Σ_{l, l' : ‖l − l'‖_∞ ≤ R} (ā_nl ā_nl'ᵀ) ⊗ Γ_n,ll',   Γ_n,ll' = Σ_k g_nkl g_nkl'ᵀ,

    with ‖l − l'‖_∞ the larger of the row and column distances of two output
    positions. F_0 is the SUD stage of :func:`kfc_stages`; once R reaches
    max(OH, OW) − 1 every pair is in and F_R is the exact block. Between the
    two, ‖F_R − F‖/‖F‖ says how much of SUD's error comes from derivatives
    correlated over distances larger than R. A Linear layer (L = 1) gives
    the exact block for every R.

    Parameters as in :func:`kfc_stages`; radii : iterable of ints >= 0.
    Returns {R: [block per layer]}, each (P_l, P_l) in the canonical order.
    Cost: every offset δ with ‖δ‖_∞ ≤ max(radii) is one product with
    D_in²·D_out² work per overlapping position: up to L² position pairs per example.
    """
    statistics.check_kind(kind, KINDS)
    radii = sorted(set(radii))
    if not radii or any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in radii):
        raise ValueError(f"blocks_within_radius: radii must be ints >= 0, got {radii!r}")
    layers = parametrised_layers(net)
    totals = None
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        sums = []
        for module, stats in zip(layers, chunk.layers):
            a, g = _positions_view(stats)
            grid = module.output_shape(module.cache_input_shape)[2:] if isinstance(module, Conv2d) else (1, 1)
            by_radius, running, done = [], None, -1
            for radius in radii:
                for dy, dx in _ring(range(done + 1, radius + 1), grid):
                    a_1, a_2 = _shifted(a, dy, dx, grid)
                    g_1, g_2 = _shifted(g, dy, dx, grid)
                    term = _pair_sum(a_1, a_2, g_1, g_2)
                    running = term if running is None else running + term  # new array: earlier radii keep theirs
                done = radius
                by_radius.append(running)
            sums.append(by_radius)
        totals = sums if totals is None else [[t + s for t, s in zip(tl, sl)] for tl, sl in zip(totals, sums)]
    count = X.shape[0]
    return {radius: [layer_sums[i] / count for layer_sums in totals] for i, radius in enumerate(radii)}
