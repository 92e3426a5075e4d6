"""Matrix functions of the Kronecker-factored optimizers: polar factors and PSD matrix powers.

Three operations, each with one home here, arrays in and arrays out on any
backend (:mod:`minikfac.backend`):

- :func:`polar_factor`, the orthogonal polar factor U Vᵀ of M = U Σ Vᵀ, through
  the SVD: the exact answer that Muon approximates and that one-step Shampoo
  computes;
- :func:`newton_schulz`, the iteration Muon runs in its place (Jordan et al.
  2024, as ``torch.optim.Muon`` defines it): cheap matrix products instead of an
  SVD, and with Muon's quintic coefficients deliberately *not* convergent to
  U Vᵀ;
- :func:`matrix_power_psd`, (M + εI)^p of a symmetric PSD matrix through its
  eigendecomposition (:func:`.linalg.psd_eigh`): Shampoo's inverse roots
  L^{-1/4}, R^{-1/4} (Gupta et al. 2018).

Why they belong together: for a single gradient G, Shampoo's statistics are
L = G Gᵀ and R = Gᵀ G, and L^{-1/4} G R^{-1/4} = U Σ^{-1/2} Σ Σ^{-1/2} Vᵀ = U Vᵀ,
the polar factor (Bernstein & Newhouse 2024, "Old optimizer, new norm"). Muon
takes that direction at every step and approximates it by Newton–Schulz.
"""

import numpy as np

from minikfac import backend, threads
from minikfac.curvature.linalg import check_square, psd_eigh

#: Muon's quintic Newton–Schulz coefficients (a, b, c) (Jordan et al. 2024; ``torch.optim.Muon``'s
#: ``DEFAULT_A``, ``DEFAULT_B``, ``DEFAULT_C``): chosen for the largest slope at 0, not for convergence.
MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

#: The classical cubic Newton–Schulz coefficients: X ← 1.5 X − 0.5 X Xᵀ X converges (quadratically,
#: once every singular value of the normalised input is in (0, √3)) to the polar factor U Vᵀ.
CUBIC_COEFFICIENTS = (1.5, -0.5, 0.0)

#: The band in which the singular values of :func:`newton_schulz` land with :data:`MUON_COEFFICIENTS`
#: and 5 steps, for every input singular value σ with σ/‖M‖_F >= 2e-3 (computed on the scalar map:
#: each step sends σ to p(σ) = aσ + bσ³ + cσ⁵, and p⁵ maps [2e-3, 1] into [0.682, 1.203]; a σ/‖M‖_F
#: of 1e-3 comes out at 0.47). The torch docstring says "S'_ii ~ Uniform(0.5, 1.5)".
MUON_SINGULAR_VALUE_BAND = (0.68, 1.21)


def _check_matrix(name, M, caller):
    if not backend.is_array(M) or M.ndim != 2:
        got = tuple(M.shape) if backend.is_array(M) else type(M).__name__
        raise ValueError(f"{caller}: {name} must be a matrix (m, n), got {got}")


def polar_factor(M):
    """The orthogonal polar factor U Vᵀ of M = U Σ Vᵀ (thin SVD).

    M: (m, n) -> (m, n). With r = min(m, n), the result has r singular values
    equal to 1 (its columns are orthonormal when m >= n, its rows when m < n):
    the nearest semi-orthogonal matrix to M in Frobenius norm (Higham 1986),
    and the steepest-descent direction under the spectral norm (Bernstein &
    Newhouse 2024). For a rank-deficient M the directions of its zero singular
    values are whatever the SVD returns: the factor is unique only for full
    rank.
    """
    _check_matrix("M", M, "polar_factor")
    xp = backend.get_array_module(M)
    with threads.for_matrix(M if M.shape[0] <= M.shape[1] else M.T):
        u, _, vt = xp.linalg.svd(M, full_matrices=False)
    return u @ vt


def newton_schulz(M, steps=5, coefficients=MUON_COEFFICIENTS, eps=1e-7):
    """Approximate orthogonalisation of M by Newton–Schulz, as ``torch.optim.Muon`` defines it.

    M: (m, n) -> (m, n). The steps, from torch's ``_zeropower_via_newtonschulz``
    (after Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/):

    1. X = M, transposed when m > n (so that A = X Xᵀ is the smaller Gram matrix);
    2. X ← X / max(‖X‖_F, eps): every singular value is now <= 1;
    3. ``steps`` times: A = X Xᵀ, X ← a X + (b A + c A²) X, i.e. each singular
       value σ goes to p(σ) = aσ + bσ³ + cσ⁵ and the singular vectors stay;
    4. transposed back.

    coefficients : (a, b, c). Muon's quintic :data:`MUON_COEFFICIENTS` maximise
    the slope at 0 and do *not* converge to U Vᵀ: the singular values land in
    :data:`MUON_SINGULAR_VALUE_BAND` (about [0.7, 1.2]). The cubic
    :data:`CUBIC_COEFFICIENTS` (1.5, −0.5, 0) converge to :func:`polar_factor`
    for a full-rank M, given enough steps (about log₂ of the condition number
    plus 5).
    eps : the floor of the norm (torch clamps ‖X‖_F at eps; Jordan's reference
    adds it, ‖X‖_F + eps). Torch computes in bfloat16; this runs in M's dtype.
    """
    _check_matrix("M", M, "newton_schulz")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps < 100:
        raise ValueError(f"newton_schulz: steps must be an integer in [0, 100), got {steps!r}")
    if len(coefficients) != 3:
        raise ValueError(f"newton_schulz: coefficients must be three numbers (a, b, c), got {coefficients!r}")
    if not float(eps) > 0:
        raise ValueError(f"newton_schulz: eps must be > 0, got {eps!r}")
    a, b, c = (float(x) for x in coefficients)
    xp = backend.get_array_module(M)
    transposed = M.shape[0] > M.shape[1]
    X = M.T if transposed else M
    X = X / xp.maximum(xp.linalg.norm(X), eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if transposed else X


def matrix_power_psd(M, power, eps=0.0):
    """(M + eps·I)^power of a symmetric PSD matrix M, through its eigendecomposition.

    M: (k, k), power: a real number (−1/4 for Shampoo's inverse fourth root),
    eps: a number >= 0 added to the diagonal first -> (k, k), symmetric.

    M = Q diag(w) Qᵀ (:func:`.linalg.psd_eigh`, which clips rounding-negative
    eigenvalues to 0), then Q diag((w + eps)^power) Qᵀ. A negative power of a
    singular M + eps·I (eps = 0 and a zero eigenvalue) raises ValueError rather
    than returning inf: pass eps > 0.
    """
    check_square("M", M, "matrix_power_psd")
    power = float(power)
    eps = float(eps)
    if not eps >= 0 or eps == float("inf"):
        raise ValueError(f"matrix_power_psd: eps must be a finite number >= 0, got {eps!r}")
    xp = backend.get_array_module(M)
    values, vectors = psd_eigh(M)
    values = values + eps
    if power < 0 and bool(xp.min(values) <= 0):
        raise ValueError(f"matrix_power_psd: M + eps·I is singular (smallest eigenvalue "
                         f"{float(xp.min(values)):.3g}) and power {power} < 0; pass eps > 0")
    return (vectors * values[None, :] ** power) @ vectors.T
