"""Exercises 9 and 10: EKFAC's eigenvalue correction, and KFC's factors of a convolution.

Exercise 9 follows George et al. 2018, §3, as :mod:`minikfac.curvature.ekfac`
computes it: the eigenbases of A and G (:func:`~minikfac.curvature.linalg.psd_eigh`),
the per-example gradients in the Kronecker eigenbasis
(:func:`~minikfac.curvature.kron.kron_eigenvectors`), the corrected diagonal s
(:func:`~minikfac.curvature.ekfac.chunk_scaling_sums`) and the damped solve of
:class:`~minikfac.curvature.ekfac.EKFAC`. Exercise 10 follows Grosse & Martens
2016 with the library's convention (:mod:`minikfac.curvature.factors`): A (Ω)
sums over the output positions, G (Γ) averages over them. Shapes are chosen
non-square wherever a transpose would otherwise go unnoticed.
"""

import numpy as np

from minikfac import curvature, nn
from minikfac.curvature import ekfac, kron, statistics
from minikfac.curvature.params import parametrised_layers as params_of
from minikfac.curvature.damping import exact_denominator
from minikfac.curvature.linalg import psd_eigh
from minikfac.exercises.checks_curvature import LINEAR_SHAPES, factor_list
from minikfac.exercises.checks_layers import two_sizes
from minikfac.exercises.feedback import arrays, as_host_array, compare_arrays
from minikfac.exercises.spec import Case, Exercise, Part
from minikfac.nn import conv


# --------------------------------------------------------------------------- #
# Exercise 9: EKFAC's eigenvalue correction (George et al. 2018)
# --------------------------------------------------------------------------- #
def _layer_settings(rng):
    """(label, a_bar (N, n), g (N, m)): per-example inputs (the 1 of the bias last) and output gradients.

    Random sizes with n ≠ m, a batch smaller than n (a singular A with repeated zero eigenvalues) and one example.
    """
    settings = []
    for i, examples in enumerate((int(rng.integers(8, 14)), int(rng.integers(8, 14)), 2, 1)):
        d_in, d_out = two_sizes(rng, 2, 5)
        bias = i != 1
        a = rng.standard_normal((examples, d_in)) * rng.uniform(0.5, 2.0, size=d_in)
        a_bar = np.concatenate([a, np.ones((examples, 1))], axis=1) if bias else a
        g = rng.standard_normal((examples, d_out)) * rng.uniform(0.1, 1.0, size=d_out)
        n = a_bar.shape[1]
        label = f"N={examples}, n={n} ({'with' if bias else 'no'} bias), m={d_out}"
        settings.append((label, a_bar, g))
    return settings


def _factors(a_bar, g):
    """K-FAC's A (n, n) and G (m, m) of one Linear layer, from ā (N, n) and the per-example g (N, m)."""
    return curvature.input_factor(a_bar, False), curvature.grad_factor(g[None])


def _eigenbases(a_bar, g):
    A, G = _factors(a_bar, g)
    return psd_eigh(A)[1], psd_eigh(G)[1]


def _per_example_gradients(a_bar, g):
    """D_n = g_n ā_nᵀ (N, m, n), through the library's canonical rows vec(g ā ᵀ)."""
    rows = statistics.layer_gradients(statistics.LayerStatistics(None, a_bar, g[None]))[0]  # (N, n·m)
    return kron.unvec(rows, g.shape[1])


def _projected(D, U_A, U_G):
    """Qᵀ vec(D_n) with Q = U_A ⊗ U_G, as (N, m, n) matrices."""
    return kron.unvec(kron.vec(D) @ kron.kron_eigenvectors(U_A, U_G), U_G.shape[0])


def _check_basis(name, matrix_name, U, M):
    """None if the columns of U (k, k) are orthonormal eigenvectors of M, else a message."""
    k = M.shape[0]
    message = compare_arrays(np.zeros((k, k)), U, name, f"({k}, {k}), the shape of {matrix_name}")
    if message and "wrong values" not in message:  # a type or shape error
        return message
    U = as_host_array(U)
    message = compare_arrays(np.eye(k), U.T @ U, f"{name}ᵀ {name}", f"({k}, {k})")
    if message:
        return (message + f"\nthe columns of {name} are not orthonormal (np.linalg.eig does not make them so for a "
                f"repeated eigenvalue; the routine for symmetric matrices does)")
    rotated = U.T @ M @ U
    if compare_arrays(np.diag(np.diag(rotated)), rotated) is None:
        return None
    message = compare_arrays(np.diag(np.diag(rotated)), rotated, f"{name}ᵀ {matrix_name} {name}", "diagonal")
    message += f"\n{name}ᵀ {matrix_name} {name} is not diagonal: the columns of {name} are not eigenvectors of {matrix_name}"
    flipped = U @ M @ U.T
    if compare_arrays(np.diag(np.diag(flipped)), flipped) is None:
        message += f"; the rows of your {name} are (eigenvectors are the columns of what eigh returns)"
    return message


def compare_eigenbases(expected, got):
    """``expected`` is (A, G); ``got`` must be (U_A, U_G), orthogonal, with U_Aᵀ A U_A and U_Gᵀ G U_G diagonal.

    Any eigenbasis passes: the order of the eigenvalues and the signs (or, for a
    repeated eigenvalue, the basis of its eigenspace) are free.
    """
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        kind = f"a {type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
        return f"expected a tuple of 2 (U_A, U_G), got {kind}"
    messages = [_check_basis("U_A", "A", got[0], expected[0]), _check_basis("U_G", "G", got[1], expected[1])]
    return "\n".join(m for m in messages if m) or None


def eigenbases_cases(rng):
    """9.1: args (A (n, n), G (m, m)); ``expected`` is (A, G) itself, for :func:`compare_eigenbases`."""
    cases = []
    for label, a_bar, g in _layer_settings(rng):
        A, G = _factors(a_bar, g)
        cases.append(Case(label, (A, G), (A, G), compare_eigenbases))
    return cases


def project_cases(rng):
    """9.2: args (D (N, m, n), U_A (n, n), U_G (m, m)); expected Qᵀ vec(D_n) as (N, m, n)."""
    cases = []
    for label, a_bar, g in _layer_settings(rng):
        U_A, U_G = _eigenbases(a_bar, g)
        D = _per_example_gradients(a_bar, g)
        mistakes = {"U_G D_n U_Aᵀ (rotated out of the eigenbasis, not into it)": U_G @ D @ U_A.T,
                    "U_Gᵀ D_n U_Aᵀ (U_A transposed)": U_G.T @ D @ U_A.T}
        cases.append(Case(label, (D.copy(), U_A, U_G), _projected(D, U_A, U_G), arrays("(N, m, n)"),
                          mistakes=mistakes))
    return cases


def scalings_cases(rng):
    """9.3: args (ā (N, n), g (N, m), U_A, U_G); expected EKFAC's s (m, n) from ``chunk_scaling_sums``."""
    cases = []
    for label, a_bar, g in _layer_settings(rng):
        examples = len(a_bar)
        U_A, U_G = _eigenbases(a_bar, g)
        stats = statistics.LayerStatistics(None, a_bar, g[None])
        expected = ekfac.chunk_scaling_sums(stats, None, U_A, U_G) / examples
        A, G = _factors(a_bar, g)
        kfac_eigenvalues = exact_denominator(np.diag(U_A.T @ A @ U_A), np.diag(U_G.T @ G @ U_G), 0.0)
        mistakes = {"the square of the mean projected gradient, not the mean of the squares":
                    np.mean(_projected(_per_example_gradients(a_bar, g), U_A, U_G), axis=0) ** 2,
                    "K-FAC's eigenvalues g_i·a_j, not the corrected ones": kfac_eigenvalues}
        cases.append(Case(label, (a_bar.copy(), g.copy(), U_A, U_G), expected, arrays("(m, n)", {"N": examples}),
                          mistakes=mistakes))
    return cases


def ekfac_solve_cases(rng):
    """9.4: args (V (m, n), U_A, U_G, s (m, n), λ); expected (F̂ + λI)⁻¹ vec(V) as (m, n), by ``EKFAC.solve``."""
    cases = []
    for label, a_bar, g in _layer_settings(rng):
        U_A, U_G = _eigenbases(a_bar, g)
        s = ekfac.chunk_scaling_sums(statistics.LayerStatistics(None, a_bar, g[None]), None, U_A, U_G) / len(a_bar)
        m, n = s.shape
        V = rng.standard_normal((m, n))
        damping = float(10 ** rng.uniform(-3, -1))
        block = ekfac.EKFAC([(U_A, U_G)], [s])
        expected = kron.unvec(block.solve(kron.vec(V), damping), m)
        rotated = U_G.T @ V @ U_A
        mistakes = {"(F̂ + λI) vec(V): multiplied by s + λ, not divided":
                    kron.unvec(block.matvec(kron.vec(V)), m) + damping * V,
                    "(U_Gᵀ V U_A) / (s + λ), left in the eigenbasis (not rotated back)": rotated / (s + damping),
                    "V rotated the wrong way: U_Gᵀ [(U_G V U_Aᵀ) / (s + λ)] U_A":
                    U_G.T @ ((U_G @ V @ U_A.T) / (s + damping)) @ U_A}
        label += f", λ = {damping:.3g}"
        cases.append(Case(label, (V, U_A, U_G, s, damping), expected, arrays("(m, n), the shape of V"),
                          mistakes=mistakes))
    return cases


EKFAC_CORRECTION = Exercise(
    9, "09_ekfac_correction", "EKFAC: K-FAC's eigenbasis with corrected eigenvalues",
    "the Kronecker eigenbasis U_A ⊗ U_G; per-example gradients in it; the corrected diagonal s; the damped solve",
    "06 exact Fisher vs K-FAC", 35,
    [Part("9.1", "eigenbases", "(U_A, U_G): orthonormal eigenvectors of A (n, n) and of G (m, m), as the columns of "
          "two orthogonal matrices", eigenbases_cases,
          ("A and G are symmetric positive semi-definite: use the eigendecomposition made for symmetric matrices, "
           "which returns orthonormal eigenvectors as columns (tutorial 06, on EKFAC; George et al. 2018, §3).",
           "U_A = np.linalg.eigh(A)[1] and U_G = np.linalg.eigh(G)[1], so that A = U_A diag(a) U_Aᵀ; the columns "
           "of U_A ⊗ U_G are then the eigenvectors of A ⊗ G.")),
     Part("9.2", "project_gradients", "the coordinates Qᵀ vec(D_n) of every per-example gradient D_n (m, n) in the "
          "Kronecker eigenbasis Q = U_A ⊗ U_G, as an (N, m, n) array", project_cases,
          ("Qᵀ vec(D) is a product with a Kronecker matrix: turn it into products with the small factors, as in "
           "exercise 4.3 (a Kronecker product transposes factor by factor).",
           "Qᵀ vec(D_n) = (U_Aᵀ ⊗ U_Gᵀ) vec(D_n) = vec(U_Gᵀ D_n U_A): U_G.T @ D @ U_A, broadcast over n.")),
     Part("9.3", "corrected_scalings", "EKFAC's corrected eigenvalues s (m, n): the second moment, over the examples, "
          "of each coordinate of the per-example gradient g_n ā_nᵀ in the eigenbasis", scalings_cases,
          ("Project every per-example gradient (9.2), then average each coordinate's *square* over the examples "
           "(not the square of the average). For a Linear layer the projected gradient is an outer product, which "
           "saves forming D_n (George et al. 2018, §3).",
           "s = (1/N) Σ_n (U_Gᵀ g_n ā_nᵀ U_A)², squared entrywise; as U_Gᵀ g ā ᵀ U_A = (U_Gᵀ g)(U_Aᵀ ā)ᵀ, "
           "s = ((g @ U_G)**2).T @ ((a_bar @ U_A)**2) / N.")),
     Part("9.4", "ekfac_solve", "(F̂ + λI)⁻¹ vec(V) as an (m, n) matrix, for EKFAC's block "
          "F̂ = Q diag(vec(s)) Qᵀ, Q = U_A ⊗ U_G", ekfac_solve_cases,
          ("In the eigenbasis Q, F̂ + λI is diagonal. Rotate V into the basis (9.2), divide there, rotate back: "
           "the three steps of the exact damped solve of exercise 7.4, with other eigenvalues.",
           "U_G [(U_Gᵀ V U_A) / (s + λ)] U_Aᵀ, the division entrywise."))],
    forbidden=("minikfac.curvature",),
)


# --------------------------------------------------------------------------- #
# Exercise 10: KFC's factors of a convolution (Grosse & Martens 2016)
# --------------------------------------------------------------------------- #
def _conv_settings(rng):
    """(label, x shape, C_out, kernel, stride, padding, bias): random, no bias, one example, one position."""
    settings = []
    for i in range(3):
        n, c_in, c_out = int(rng.integers(2, 5)) if i != 2 else 1, int(rng.integers(1, 3)), int(rng.integers(2, 4))
        kernel = two_sizes(rng, 1, 3)
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
        h, w = int(rng.integers(kernel[0] + 1, 7)), int(rng.integers(kernel[1] + 1, 7))
        settings.append(((n, c_in, h, w), c_out, kernel, stride, padding, i != 1))
    settings.append(((3, 2, 2, 3), 2, (2, 3), (1, 1), (0, 0), True))  # one output position: L = 1
    labelled = []
    for shape, c_out, kernel, stride, padding, bias in settings:
        oh = conv.output_size(shape[2], kernel[0], stride[0], padding[0])
        ow = conv.output_size(shape[3], kernel[1], stride[1], padding[1])
        label = (f"x {shape}, C_out={c_out}, kernel {kernel}, stride {stride}, padding {padding}, L={oh * ow}, "
                 f"{'with' if bias else 'no'} bias")
        labelled.append((label, shape, c_out, kernel, stride, padding, bias))
    return labelled


def _positions_last(grads):
    """(N, C_out, OH, OW) -> (N, L, C_out), the rows in the order of the patches (l = oh·OW + ow)."""
    n, c_out = grads.shape[:2]
    return np.moveaxis(grads, 1, -1).reshape(n, -1, c_out)


def conv_input_factor_cases(rng):
    """10.1: args (patches (N, L, D), bias); expected KFC's A (D + 1, D + 1) by ``input_factor``."""
    cases = []
    for label, shape, _, kernel, stride, padding, bias in _conv_settings(rng):
        patches = np.ascontiguousarray(conv.im2col(rng.standard_normal(shape), kernel, stride, padding))
        examples, positions = patches.shape[:2]
        expected = curvature.input_factor(patches, bias)
        mistakes = {}
        if bias:
            order = [len(expected) - 1] + list(range(len(expected) - 1))
            mistakes["A with the 1 of ā first (the bias is the last column of W̄ = [W | b])"] = \
                expected[np.ix_(order, order)]
        cases.append(Case(label, (patches, bias), expected,
                          arrays("(D + 1, D + 1), D = C_in·KH·KW, or (D, D) without bias",
                                 {"L": positions, "N": examples}), mistakes=mistakes))
    return cases


def conv_grad_factor_cases(rng):
    """10.2: args (grads (N, C_out, OH, OW),); expected KFC's G (C_out, C_out) by ``grad_factor``."""
    cases = []
    for label, shape, c_out, kernel, stride, padding, _ in _conv_settings(rng):
        oh = conv.output_size(shape[2], kernel[0], stride[0], padding[0])
        ow = conv.output_size(shape[3], kernel[1], stride[1], padding[1])
        grads = rng.standard_normal((shape[0], c_out, oh, ow))
        examples, positions = shape[0], oh * ow
        expected = curvature.grad_factor(_positions_last(grads)[None])
        rows = grads.reshape(-1, c_out)  # the channel axis not moved last: rows that mix channels and positions
        mistakes = {"the (N, C_out, OH, OW) gradients reshaped straight to rows of C_out numbers (the channel axis "
                    "must be moved last first)": rows.T @ rows / (examples * positions)}
        cases.append(Case(label, (grads,), expected, arrays("(C_out, C_out)", {"L": positions, "N": examples}),
                          mistakes=mistakes))
    return cases


def conv_net(rng, shape, c_out, kernel, stride, padding, bias, classes):
    """Conv2d, Tanh, Flatten, Linear(..., classes): a tiny CNN for inputs of ``shape`` (N, C_in, H, W)."""
    layer = nn.Conv2d(shape[1], c_out, kernel, stride=stride, padding=padding, bias=bias, rng=rng)
    features = int(np.prod(layer.output_shape(shape)[1:]))
    return nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(features, classes, bias=True, rng=rng))


#: The shapes of a Conv2d layer's A and G, in symbols.
CONV_SHAPES = ("(D + 1, D + 1), D = C_in·KH·KW, or (D, D) without bias", "(C_out, C_out)")


def kfc_factors_cases(rng):
    """10.3: args (net,) after a backward; expected [(A, G)] per layer by ``kfac_factors`` (empirical)."""
    cases = []
    for label, shape, c_out, kernel, stride, padding, bias in _conv_settings(rng):
        classes = int(rng.integers(2, 5))
        net, loss_fn = conv_net(rng, shape, c_out, kernel, stride, padding, bias, classes), nn.CrossEntropyLoss()
        X, y = rng.standard_normal(shape), rng.integers(0, classes, size=shape[0])
        expected = curvature.kfac_factors(net, loss_fn, X, y, kind="empirical")
        loss_fn(net(X), y)
        net.backward(loss_fn.backward())
        _, _, oh, ow = params_of(net)[0].output_shape(shape)
        known = {"N": shape[0], "L": oh * ow}
        cases.append(Case(label + f", then Tanh, Flatten, Linear(…, {classes})", (net,), expected,
                          factor_list(known, "Conv2d or Linear layer", [CONV_SHAPES, LINEAR_SHAPES])))
    return cases


KFC_FACTORS = Exercise(
    10, "10_kfc_factors", "KFC: the Kronecker factors of a convolution",
    "A from the im2col patches, summed over positions; G from the output gradients, averaged over positions",
    "10 convolutions with KFC", 30,
    [Part("10.1", "conv_input_factor", "KFC's A (D + 1, D + 1) — (D, D) without bias — from a Conv2d layer's patches "
          "(N, L, D): ā ā ᵀ summed over the L positions and averaged over the N examples", conv_input_factor_cases,
          ("Every position's patch is one input of the shared weight, with a 1 for the bias appended at every "
           "position. Treat the N·L patches as rows, and mind which count you divide by (tutorial 10, 'A "
           "convolution is a matrix product over patches').",
           "a_bar = np.concatenate([patches, np.ones((N, L, 1))], axis=2).reshape(N·L, -1); "
           "A = a_bar.T @ a_bar / N (divided by N, not N·L).")),
     Part("10.2", "conv_grad_factor", "KFC's G (C_out, C_out) from the per-example output gradients "
          "(N, C_out, OH, OW): g gᵀ averaged over the N examples and the L = OH·OW positions", conv_grad_factor_cases,
          ("At each position the gradient is a vector over the C_out channels. Collect those N·L vectors as rows "
           "— the channel axis must be last before a reshape — and average their outer products (tutorial 10).",
           "g = np.moveaxis(grads, 1, -1).reshape(N·L, C_out); G = g.T @ g / (N·L).")),
     Part("10.3", "kfc_factors_from_caches", "[(A, G) for every Conv2d and Linear layer of the net, in order], read "
          "from its caches after the backward of the mean loss", kfc_factors_cases,
          ("A Conv2d layer caches its patches, a Linear layer its inputs; both cache the gradient of the *mean* "
           "loss, as in exercise 6.2. Use 10.1 and 10.2 for the Conv2d layer and exercise 6's factors for the "
           "Linear one.",
           "Conv2d: (conv_input_factor(m.cache_input, m.bias is not None), conv_grad_factor(N · "
           "m.cache_grad_output)); Linear: exercise 6.1 and 6.2 on m.cache_input and m.cache_grad_output."))],
    forbidden=("minikfac.curvature",),
)
