"""Shampoo, SOAP and the nearest Kronecker product: the Kronecker family beside K-FAC.

Every member approximates a layer's Fisher block F_ll (P_l, P_l), P_l = m·n, by
something built on two factors, an A-side (n, n) and a G-side (m, m), in the
A ⊗ G order of this project (docs/design.md: vec stacks columns, and the
per-example gradient of W̄ (m, n) = (D_out, D_in + 1) has vec(g āᵀ) = ā ⊗ g).

**Shampoo's statistics** (Gupta et al. 2018, Algorithm 1). With D_nk (m, n) the
gradient of W̄ for example n and cotangent k of :mod:`.statistics` (g_nk ā_nᵀ
for Linear; Σ_l g_nkl ā_nlᵀ summed over the L positions for Conv2d, what
:func:`.statistics.layer_gradients` gives),

    L = (1/N) Σ_{n,k} D_nk D_nkᵀ   (m, m)        R = (1/N) Σ_{n,k} D_nkᵀ D_nk   (n, n)

(for ``kind="ggn"`` with the loss Hessian between the cotangents, Σ_{k,j} H_kj
D_k D_jᵀ, as everywhere in this package). L and R are the two *partial traces*
of the block F_ll = (1/N) Σ vec(D) vec(D)ᵀ: seen as n × n blocks B_ij (m, m),
L = Σ_i B_ii and R_ij = tr(B_ij). So tr(R) = tr(L) = tr(F_ll).

**Against K-FAC's factors.** For a Linear layer D = g āᵀ, so D Dᵀ = ‖ā‖² g gᵀ and
Dᵀ D = ‖g‖² ā āᵀ: Shampoo's factors are K-FAC's A = (1/N) Σ ā āᵀ and
G = (1/N) Σ g gᵀ (Martens & Grosse 2015, eq. (1)) with every example weighted
by the other side's squared norm. For ONE example (N = 1, any kind) that is

    R = tr(G)·A = ‖g‖²·ā āᵀ,   L = tr(A)·G = ‖ā‖²·g gᵀ,
    R ⊗ L = tr(A) tr(G)·(A ⊗ G) = ‖vec D‖²·F_ll = tr(F_ll)·F_ll,

exact (``tests/test_kronecker_family.py``). For a convolution D is a sum over
positions, no longer an outer product, and the relation to KFC's Ω and Γ
does not hold even for one example.

**Powers, and what is compared with the Fisher.** Shampoo's step is
L^{-1/4} ∇W̄ R^{-1/4} = unvec((R^{-1/4} ⊗ L^{-1/4}) vec(∇W̄)). Read like Adagrad,
whose step is H^{-1/2}∇, Shampoo's estimate of the gradients' second moment H
is R^{1/2} ⊗ L^{1/2}; Morwani et al. 2024 show that its *square*,
R ⊗ L, is one step of the power iteration for the nearest Kronecker product
of H started from (I, I) (:func:`kronecker_power_iteration`), and normalised
by 1/tr(H) it is exact for one example. :func:`shampoo` builds
F̂_l = c_l·(R^p ⊗ L^p) for

    p = 1      "Shampoo²"   R ⊗ L           (Morwani et al. 2024's Shampoo²)
    p = 1/2    "Shampoo"    R^{1/2} ⊗ L^{1/2}  (Shampoo's own estimate of H)
    p = 1/4    "√Shampoo"   R^{1/4} ⊗ L^{1/4}  (the matrix whose inverse Shampoo applies)

(Vyas et al. 2024's "Shampoo with the 1/2 power", L^{-1/2} ∇W̄ R^{-1/2}, is
Adagrad on Shampoo²: (R ⊗ L)^{-1/2} up to a scalar), each with a per-layer
scalar c_l, because R^p ⊗ L^p does not have the Fisher's scale (R ⊗ L is
quadratic in F): ``scale=None`` (c = 1), ``"trace"``
(tr(c·R^p ⊗ L^p) = tr(F_ll), i.e. c = tr(F_ll)/(tr R^p · tr L^p); for p = 1
it is Morwani et al.'s 1/tr(H)) or ``"optimal"`` (the c minimising
‖F_ll − c·(R^p ⊗ L^p)‖_F, c = ⟨F_ll, R^p ⊗ L^p⟩/(‖R^p‖²‖L^p‖²), from a second
pass over the data or from given blocks). The optimally scaled error is
‖F_ll‖·√(1 − cos²), cos the cosine of F_ll and R^p ⊗ L^p, the similarity
Morwani et al. 2024 plot.

**SOAP** (Vyas et al. 2024) runs Adam in the eigenbasis of Shampoo's factors.
As a curvature model it is EKFAC (George et al. 2018, §3) with that basis:
Q = U_R ⊗ U_L, s = diag(Qᵀ F_ll Q) (:func:`.ekfac.ekfac_scalings` with the
eigenvectors of (R, L) in place of those of (A, G)), an :class:`.ekfac.EKFAC`
named "SOAP". Every R^p ⊗ L^p is diagonal in Q too, so SOAP's error is never
above any scaled Shampoo's, and tr(SOAP) = tr(F_ll).

**The nearest Kronecker product** of each exact block (Van Loan & Pitsianis
1993, :func:`.rearrangement.nearest_kronecker`) as a
:class:`.kfac_block_diagonal.KFACBlockDiagonal` named "nearest Kronecker": the
floor under every Kronecker product (K-FAC, every scaled Shampoo); SOAP, not
one, can go below it.

Matrix powers of the PSD factors come from :func:`.polar.matrix_power_psd`.
A fractional power of a singular factor (the softmax layer's L, whose rows
sum to 0; an R of fewer examples than inputs) turns the rounding of a zero
eigenvalue, ~1e-17 of the largest, into ~1e-17^p: R^{1/4} ⊗ L^{1/4} is only
good to about 1e-4 relative there (p = 1 is exact, and Shampoo itself adds
ε·I before the root).
"""

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.ekfac import EKFAC, ekfac_scalings
from minikfac.curvature.kfac_block_diagonal import KFACBlockDiagonal
from minikfac.curvature.kron import unvec, vec
from minikfac.curvature.linalg import check_square, psd_eigh
from minikfac.curvature.params import block_shape, layer_slices, parametrised_layers
from minikfac.curvature.polar import matrix_power_psd
from minikfac.curvature.rearrangement import nearest_kronecker, rearrange
from minikfac.curvature.statistics import hessian_weighted, layer_gradients

#: The powers p of :func:`shampoo` and the name of each F̂ = c·(R^p ⊗ L^p) (module docstring).
POWERS = {1.0: "Shampoo²", 0.5: "Shampoo", 0.25: "√Shampoo"}
#: The per-layer scalings c_l of :func:`shampoo`.
SCALES = (None, "trace", "optimal")


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #
def check_power(power, caller="shampoo"):
    """``power`` as one of the floats of :data:`POWERS` (1, 1/2, 1/4); ValueError otherwise."""
    allowed = ", ".join(f"{p:g} ({name})" for p, name in POWERS.items())
    if isinstance(power, bool) or not isinstance(power, (int, float)) or float(power) not in POWERS:
        raise ValueError(f"{caller}: power must be one of {allowed}; got {power!r}")
    return float(power)


def check_scale(scale, caller="shampoo"):
    """``scale`` as one of :data:`SCALES`; ValueError otherwise."""
    if not (scale is None or isinstance(scale, str)) or scale not in SCALES:
        raise ValueError(f"{caller}: scale must be one of None, 'trace', 'optimal'; got {scale!r}")
    return scale


def _check_pairs(pairs, caller):
    pairs = list(pairs)
    if not pairs:
        raise ValueError(f"{caller}: expected one (A-side, G-side) factor pair per layer, got none")
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{caller}: pair {i} must be (A-side (n, n), G-side (m, m)), got {type(pair).__name__}")
        check_square(f"the A-side factor of pair {i}", pair[0], caller)
        check_square(f"the G-side factor of pair {i}", pair[1], caller)
    return pairs


def _check_blocks(blocks, pairs, caller):
    blocks = list(blocks)
    if len(blocks) != len(pairs):
        raise ValueError(f"{caller}: got {len(blocks)} blocks for {len(pairs)} layers")
    for i, (block, (A, G)) in enumerate(zip(blocks, pairs)):
        size = A.shape[0] * G.shape[0]
        if not backend.is_array(block) or tuple(block.shape) != (size, size):
            got = tuple(block.shape) if backend.is_array(block) else type(block).__name__
            raise ValueError(f"{caller}: block {i} must be ({size}, {size}) for factors {tuple(A.shape)} and "
                             f"{tuple(G.shape)}, got {got}")
    return blocks


def _symmetric(M):
    return (M + M.T) / 2


def factor_shapes(net):
    """(n, m) of every parametrised layer: n = D_in + 1 (the A side; D_in = C_in·KH·KW for Conv2d), m = D_out."""
    return [(cols, rows) for rows, cols in map(block_shape, parametrised_layers(net))]


# --------------------------------------------------------------------------- #
# Shampoo's statistics
# --------------------------------------------------------------------------- #
def _gradient_matrices(stats):
    """D_nkᵀ (K, n, n_A, m) of a Conv2d layer's chunk: the per-example gradients of W̄, transposed.

    :func:`.statistics.layer_gradients` gives vec(D) = the C-order flattening of Dᵀ (n_A, m).
    """
    k, n = stats.grads.shape[:2]
    return layer_gradients(stats).reshape(k, n, stats.inputs.shape[-1], stats.grads.shape[-1])


def chunk_shampoo_sums(stats, hessian):
    """Σ_{n,k} D_nkᵀ D_nk (n_A, n_A) and Σ_{n,k} D_nk D_nkᵀ (m, m) of one chunk (H-weighted for "ggn").

    Linear: D = g āᵀ, so the sums are Σ ‖g‖² ā āᵀ and Σ ‖ā‖² g gᵀ, two weighted
    Gram matrices (no (m, n) matrix per example). Conv2d: the (m, n) matrices
    summed over positions, contracted whole.
    """
    xp = backend.get_array_module(stats.grads)
    if stats.inputs.ndim == 2:
        a, g = stats.inputs, stats.grads  # (n, n_A), (K, n, m)
        weighted = hessian_weighted(g, hessian)
        grad_squares = xp.sum(g * weighted, axis=(0, 2))  # (n,): Σ_k ‖g_nk‖² (gᵀ H g for "ggn")
        input_squares = xp.sum(a * a, axis=1)  # (n,): ‖ā_n‖²
        right = (a * grad_squares[:, None]).T @ a
        left = (g * input_squares[None, :, None]).reshape(-1, g.shape[-1]).T @ weighted.reshape(-1, g.shape[-1])
        return right, left
    transposed = _gradient_matrices(stats)  # (K, n, n_A, m) = D_nkᵀ
    weighted = hessian_weighted(transposed, hessian)
    right = xp.tensordot(transposed, weighted, axes=([0, 1, 3], [0, 1, 3]))  # Σ Dᵀ D
    left = xp.tensordot(transposed, weighted, axes=([0, 1, 2], [0, 1, 2]))  # Σ D Dᵀ
    return right, left


def shampoo_factors(net, loss_fn, X, y=None, kind="empirical", samples=1, seed=0, chunk_size=None):
    """Shampoo's factors (R, L) of every parametrised layer, in the A ⊗ G order (Gupta et al. 2018).

    Parameters
    ----------
    net, loss_fn : the network (Linear / Conv2d layers) and its loss.
    X : (N, ...) inputs; y : targets (needed for ``kind="empirical"``).
    kind : "empirical" (the data labels: what Shampoo accumulates), "true"
        (the exact expectation over the model's targets), "mc" (``samples``
        sampled targets, random ``seed``) or "ggn" (H-weighted); the
        cotangents of :mod:`.statistics`.
    chunk_size : examples per pass (:func:`.statistics.default_chunk_size`).

    Returns
    -------
    list of (R, L), one per layer: R = (1/N) Σ_{n,k} D_nkᵀ D_nk (n, n), the A side,
    and L = (1/N) Σ_{n,k} D_nk D_nkᵀ (m, m), the G side, with D_nk (m, n) the
    gradient of W̄ (summed over positions for Conv2d), so that R ⊗ L is
    Morwani et al. 2024's Shampoo² in the canonical order. Vectorised over
    the examples of each chunk. tr(R) = tr(L) = tr(F_ll); for one example of
    a Linear layer R = tr(G)·A and L = tr(A)·G with K-FAC's (A, G) (module
    docstring).
    """
    statistics.check_kind(kind)
    sums, total = None, None
    for chunk in statistics.chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        updates = [chunk_shampoo_sums(stats, chunk.output_hessian) for stats in chunk.layers]
        sums = updates if sums is None else [(R + dR, L + dL) for (R, L), (dR, dL) in zip(sums, updates)]
        total = chunk.stop
    return [(_symmetric(R) / total, _symmetric(L) / total) for R, L in sums]


def powered_factors(factors, power):
    """[(R^p, L^p)] of Shampoo's factors (:func:`.polar.matrix_power_psd`); p = 1 returns the factors themselves."""
    power = check_power(power, "powered_factors")
    pairs = _check_pairs(factors, "powered_factors")
    if power == 1.0:
        return [(R, L) for R, L in pairs]
    return [(_symmetric(matrix_power_psd(R, power)), _symmetric(matrix_power_psd(L, power))) for R, L in pairs]


# --------------------------------------------------------------------------- #
# Scales: ⟨F_ll, A ⊗ G⟩ from the blocks or from the data
# --------------------------------------------------------------------------- #
def kronecker_inner_product(block, A, G):
    """⟨B, A ⊗ G⟩_F = vec(A)ᵀ R(B) vec(G) without forming A ⊗ G (Van Loan & Pitsianis 1993).

    B : (n·m, n·m); A : (n, n); G : (m, m). Returns a 0-d array.
    """
    R = rearrange(block, A.shape[0], G.shape[0])
    return vec(A) @ (R @ vec(G))


def chunk_inner_products(stats, hessian, A, G):
    """Σ_{n,k} ⟨D_nk, G D_nk Aᵀ⟩ = Σ vec(D)ᵀ (A ⊗ G) vec(D) of one chunk (H-weighted for "ggn"), 0-d."""
    xp = backend.get_array_module(stats.grads)
    if stats.inputs.ndim == 2:  # D = g āᵀ: ⟨g āᵀ, G g āᵀ A⟩ = (gᵀ G g)(āᵀ A ā)
        a, g = stats.inputs, stats.grads
        grad_terms = xp.sum((g @ G) * hessian_weighted(g, hessian), axis=(0, 2))  # (n,)
        input_terms = xp.sum((a @ A) * a, axis=1)  # (n,)
        return xp.sum(grad_terms * input_terms)
    transposed = _gradient_matrices(stats)  # Dᵀ (K, n, n_A, m): ⟨D, G D A⟩ = ⟨Dᵀ, A Dᵀ G⟩ for symmetric A, G
    return xp.sum(transposed * (A @ hessian_weighted(transposed, hessian) @ G))


def kronecker_inner_products(net, loss_fn, X, pairs, y=None, kind="empirical", samples=1, seed=0, chunk_size=None):
    """⟨F_ll, A_l ⊗ G_l⟩ of every layer from one pass over the data, no block formed: list of 0-d arrays.

    pairs : [(A_l (n, n), G_l (m, m))] symmetric. ⟨F_ll, A ⊗ G⟩ = (1/N) Σ_{n,k}
    vec(D_nk)ᵀ (A ⊗ G) vec(D_nk) = (1/N) Σ ⟨D_nk, G D_nk A⟩ with the
    per-example gradients D_nk of :func:`shampoo_factors` (other parameters
    the same; for ``kind="mc"`` pass the same ``seed`` and ``chunk_size`` to
    see the same draws).
    """
    statistics.check_kind(kind)
    pairs = _check_pairs(pairs, "kronecker_inner_products")
    return statistics.mean_over_chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size, chunk_inner_products,
                                       [tuple(pair) for pair in pairs], "kronecker_inner_products")


def _squared_norm(M):
    return backend.get_array_module(M).sum(M * M)


def optimal_scales(pairs, inner_products):
    """c_l = ⟨F_ll, A ⊗ G⟩ / (‖A‖²‖G‖²), the scalar minimising ‖F_ll − c·(A ⊗ G)‖_F (a least-squares fit).

    pairs : [(A, G)]; inner_products : [⟨F_ll, A ⊗ G⟩] (:func:`kronecker_inner_products`
    or :func:`kronecker_inner_product` of the blocks). Returns 0-d arrays.
    """
    return [ip / (_squared_norm(A) * _squared_norm(G)) for (A, G), ip in zip(pairs, inner_products)]


def trace_scales(pairs, traces):
    """c_l = tr(F_ll) / (tr A · tr G): the scale at which c·(A ⊗ G) has the block's trace. 0-d arrays."""
    xp = backend.get_array_module(pairs[0][0])
    return [t / (xp.trace(A) * xp.trace(G)) for (A, G), t in zip(pairs, traces)]


def scaled_pairs(pairs, scales):
    """[(√c A, √c G)]: c·(A ⊗ G) with the scale split evenly between the two factors (c >= 0)."""
    xp = backend.get_array_module(pairs[0][0])
    return [(A * xp.sqrt(c), G * xp.sqrt(c)) for (A, G), c in zip(pairs, scales)]


# --------------------------------------------------------------------------- #
# The approximations
# --------------------------------------------------------------------------- #
def named(approximation, name):
    """``approximation`` with its ``name`` set (the comparison code labels its rows by name)."""
    approximation.name = name
    return approximation


def shampoo(net, loss_fn, X, y=None, power=1, kind="empirical", scale="optimal", blocks=None, samples=1, seed=0,
            chunk_size=None, factors=None):
    """Shampoo's curvature model c_l·(R_l^p ⊗ L_l^p) per layer, a :class:`KFACBlockDiagonal`.

    Parameters
    ----------
    net, loss_fn, X, y, kind, samples, seed, chunk_size : as in :func:`shampoo_factors`.
    power : p, 1 ("Shampoo²", Morwani et al. 2024), 1/2 ("Shampoo", the estimate
        whose inverse square root Shampoo applies, Gupta et al. 2018) or 1/4
        ("√Shampoo"); the name of the result (module docstring).
    scale : None (c = 1), "trace" (c = tr F_ll/(tr R^p tr L^p): the block's
        trace kept; for p = 1 Morwani et al.'s 1/tr F_ll) or "optimal" (the
        Frobenius-optimal c = ⟨F_ll, R^p ⊗ L^p⟩/(‖R^p‖²‖L^p‖²)).
    blocks : the exact blocks F_ll, if at hand (:func:`.exact.fisher_blocks` of
        the same kind); "optimal" then reads ⟨F_ll, ·⟩ off them, otherwise it
        takes a second pass over X (:func:`kronecker_inner_products`).
    factors : Shampoo's (R, L), if already computed (same X, kind, seed).

    Returns
    -------
    :class:`KFACBlockDiagonal` over [(√c R^p, √c L^p)] with ``name`` from
    :data:`POWERS`, in the canonical order of ``net``.
    """
    power, scale = check_power(power), check_scale(scale)
    statistics.check_kind(kind)
    if kind == "mc" and chunk_size is None:  # the scales' pass must see the factors' draws
        chunk_size = statistics.default_chunk_size(net, kind, X, samples)
    if factors is None:
        factors = shampoo_factors(net, loss_fn, X, y, kind, samples, seed, chunk_size)
    pairs = powered_factors(factors, power)
    if scale == "trace":
        xp = backend.get_array_module(pairs[0][0])
        pairs = scaled_pairs(pairs, trace_scales(pairs, [xp.trace(R) for R, _ in factors]))
    elif scale == "optimal":
        if blocks is None:
            products = kronecker_inner_products(net, loss_fn, X, pairs, y, kind, samples, seed, chunk_size)
        else:
            products = [kronecker_inner_product(B, A, G)
                        for B, (A, G) in zip(_check_blocks(blocks, pairs, "shampoo"), pairs)]
        pairs = scaled_pairs(pairs, optimal_scales(pairs, products))
    return named(KFACBlockDiagonal(pairs, layer_slices(net)), POWERS[power])


def soap(net, loss_fn, X, y=None, kind="empirical", samples=1, seed=0, chunk_size=None, factors=None):
    """SOAP's curvature model: EKFAC in the eigenbasis of Shampoo's (R, L) (Vyas et al. 2024; George et al. 2018).

    Parameters as in :func:`shampoo_factors`; ``factors`` : Shampoo's (R, L) if
    already computed. Returns an :class:`.ekfac.EKFAC` named "SOAP" with
    eigenbases (U_R (n, n), U_L (m, m)) and scalings s_l (m, n) =
    (1/N) Σ (U_Lᵀ D_nk U_R)², the per-example gradients rotated into Shampoo's
    basis (:func:`.ekfac.ekfac_scalings`): the best diagonal in that basis, so
    ‖F_ll − SOAP_l‖_F <= ‖F_ll − c·(R^p ⊗ L^p)‖_F for every p and c, and
    tr(SOAP_l) = tr(F_ll).
    """
    statistics.check_kind(kind)
    if chunk_size is None:
        chunk_size = statistics.default_chunk_size(net, kind, X, samples)
    if factors is None:
        factors = shampoo_factors(net, loss_fn, X, y, kind, samples, seed, chunk_size)
    eigenbases = [(psd_eigh(R)[1], psd_eigh(L)[1]) for R, L in _check_pairs(factors, "soap")]
    scalings = ekfac_scalings(net, loss_fn, X, eigenbases, y, kind, samples, seed, chunk_size)
    return named(EKFAC(eigenbases, scalings, layer_slices(net)), "SOAP")


def nearest_kronecker_approximation(blocks, shapes, slices=None):
    """The nearest Kronecker product of every block, a :class:`KFACBlockDiagonal` named "nearest Kronecker".

    blocks : [F_ll (n·m, n·m)] symmetric PSD (:func:`.exact.fisher_blocks`);
    shapes : [(n, m)] per layer (:func:`factor_shapes`); slices : as in
    :class:`KFACBlockDiagonal`. Each pair comes from
    :func:`.rearrangement.nearest_kronecker` (Van Loan & Pitsianis 1993),
    symmetrised against rounding; no Kronecker product is nearer to F_ll.
    """
    blocks, shapes = list(blocks), list(shapes)
    if not blocks or len(blocks) != len(shapes):
        raise ValueError(f"nearest_kronecker_approximation: need one (n, m) shape per block, got {len(shapes)} "
                         f"shapes for {len(blocks)} blocks")
    pairs = []
    for block, (n, m) in zip(blocks, shapes):
        A, G, _ = nearest_kronecker(block, n, m)
        pairs.append((_symmetric(A), _symmetric(G)))
    return named(KFACBlockDiagonal(pairs, slices), "nearest Kronecker")


# --------------------------------------------------------------------------- #
# The power-iteration view (Morwani et al. 2024)
# --------------------------------------------------------------------------- #
def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"kronecker_power_iteration: steps must be an int >= 0, got {steps!r}")
    return steps


def kronecker_power_iteration(block, shape, steps, start=None):
    """``steps`` rounds of power iteration for the nearest Kronecker product A ⊗ G of ``block``.

    block : B (n·m, n·m); shape : (n, m), the A side and the G side.
    start : (A₀ (n, n), G₀ (m, m)); default (I, I).

    Each round updates both factors from the previous pair (the alternating
    power iteration on the rearrangement R(B) of :func:`.rearrangement.rearrange`,
    R(A ⊗ G) = vec(A) vec(G)ᵀ):

        vec(A_t) ∝ R(B) vec(G_{t−1}),   vec(G_t) ∝ R(B)ᵀ vec(A_{t−1}),   i.e.
        (A_t)_ij = ⟨B_ij, G_{t−1}⟩,     G_t = Σ_ij (A_{t−1})_ij B_ij,

    each normalised to ‖·‖_F = 1. From (I, I) one round gives R(B) vec(I) = the
    partial traces, (R, L) of :func:`shampoo_factors` up to scale: Shampoo² is
    one step of this iteration (Morwani et al. 2024). Every second round
    is one step of the power method on R(B)R(B)ᵀ (and R(B)ᵀR(B)), so the pair
    converges to the top singular pair of R(B), the nearest Kronecker product,
    at the rate σ₂/σ₁ per round (unless the start is orthogonal to it).

    Returns (A, G): the directions after ``steps`` rounds, scaled so that
    A ⊗ G = c·(Â ⊗ Ĝ) with the Frobenius-optimal c, split as in
    :func:`.rearrangement.nearest_kronecker` (‖A‖_F = ‖G‖_F, tr(A) >= 0).
    """
    steps = _check_steps(steps)
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"kronecker_power_iteration: shape must be (n, m), got {shape!r}")
    n, m = shape
    R = rearrange(block, n, m)  # (n², m²), checks B's shape
    xp = backend.get_array_module(block)
    if start is None:
        A, G = xp.eye(n, dtype=block.dtype), xp.eye(m, dtype=block.dtype)
    else:
        A, G = _check_pairs([start], "kronecker_power_iteration")[0]
        if (A.shape[0], G.shape[0]) != (n, m):
            raise ValueError(f"kronecker_power_iteration: start must be ((n, n), (m, m)) = (({n}, {n}), ({m}, {m})), "
                             f"got ({tuple(A.shape)}, {tuple(G.shape)})")
    a, g = vec(A), vec(G)
    a, g = a / xp.sqrt(a @ a), g / xp.sqrt(g @ g)
    for _ in range(steps):
        a, g = R @ g, R.T @ a
        a, g = a / xp.sqrt(a @ a), g / xp.sqrt(g @ g)
    c = a @ (R @ g)  # the best multiple of â ĝᵀ: ⟨R(B), â ĝᵀ⟩ for unit â, ĝ
    scale = xp.sqrt(xp.abs(c))
    A, G = unvec(a * scale, n), unvec(g * scale * xp.where(c < 0, -1.0, 1.0).astype(block.dtype), m)
    sign = xp.where(xp.trace(A) < 0, -1.0, 1.0).astype(block.dtype)
    return A * sign, G * sign
