"""Kronecker algebra: everything K-FAC does with A ⊗ G without ever forming it.

Conventions (DESIGN.md): ``vec`` stacks *columns*, so for X of shape (m, n)

    vec(X)[j·m + i] = X[i, j],        (A ⊗ G) vec(X) = vec(G X Aᵀ),

with A of shape (n, n) and G of shape (m, m) (Van Loan 2000, eq. (4); Martens &
Grosse 2015, section 3). NumPy arrays are row-major, so vec(X) is written
``X.T.reshape(-1)`` here and nowhere else.

For a layer, A is the input factor (n = D_in, plus 1 with a bias), G the output
gradient factor (m = D_out) and X a matrix like ∇W̄ of shape (D_out, D_in + 1).
Every product and solve below goes through the two small factors: O(n³ + m³)
work instead of O(n³m³) for the (m·n, m·n) block (Van Loan 2000, section 3).

The worked example of the article the project started from, checked:

>>> import numpy as np
>>> A = np.array([[1, 2], [3, 4]])
>>> G = np.array([[0, 1], [1, 0]])
>>> np.kron(A, G)
array([[0, 1, 0, 2],
       [1, 0, 2, 0],
       [0, 3, 0, 4],
       [3, 0, 4, 0]])
>>> X = np.array([[1, 2], [3, 4]])          # (m, n) = (2, 2)
>>> np.kron(A, G) @ vec(X)                  # the dense way: (m·n, m·n) @ (m·n,)
array([11,  5, 25, 11])
>>> kron_matvec(A, G, X)                    # G X Aᵀ, A ⊗ G never formed
array([[11, 25],
       [ 5, 11]])
>>> np.array_equal(vec(kron_matvec(A, G, X)), np.kron(A, G) @ vec(X))
True

References: C. F. Van Loan, "The ubiquitous Kronecker product", J. Comput.
Appl. Math. 123 (2000); C. F. Van Loan & N. Pitsianis, "Approximation with
Kronecker products" (1993); J. Martens & R. Grosse, "Optimizing neural networks
with Kronecker-factored approximate curvature", ICML 2015.
"""

import numbers
from typing import NamedTuple

import scipy.linalg

from minikfac import backend, threads


def vec(matrix):
    """Column-stacking vec: (m, n) -> (m·n,), ``vec(X)[j·m + i] = X[i, j]``.

    Works on stacks too: (..., m, n) -> (..., m·n).
    """
    xp = backend.get_array_module(matrix)
    if matrix.ndim < 2:
        raise ValueError(f"vec: expected a matrix of shape (m, n), got shape {tuple(matrix.shape)}")
    lead = tuple(matrix.shape[:-2])
    return xp.reshape(xp.swapaxes(matrix, -1, -2), lead + (-1,))


def unvec(vector, rows):
    """Inverse of :func:`vec`: (..., m·n) -> (..., m, n) with m = ``rows``."""
    xp = backend.get_array_module(vector)
    size = vector.shape[-1] if vector.ndim else 0
    if vector.ndim < 1 or rows < 1 or size % rows:
        raise ValueError(f"unvec: a vector of length {size} cannot be split into columns of {rows} rows")
    lead = tuple(vector.shape[:-1])
    return xp.swapaxes(xp.reshape(vector, lead + (size // rows, rows)), -1, -2)


# --------------------------------------------------------------------------- #
# Checking arguments
# --------------------------------------------------------------------------- #
def _check_square(name, matrix, caller):
    if not backend.is_array(matrix) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        got = tuple(matrix.shape) if backend.is_array(matrix) else type(matrix).__name__
        raise ValueError(f"{caller}: {name} must be a square matrix (k, k), got {got}")


def _check_factors(A, G, caller):
    _check_square("A", A, caller)
    _check_square("G", G, caller)
    backend.check_same_backend(A=A, G=G)


def _as_matrices(X, m, n, caller):
    """X as a stack of (m, n) matrices, and a function that restores X's own form.

    Accepts (..., m, n) (matrix form) or (..., m·n) (vec form).
    """
    if not backend.is_array(X) or X.ndim < 1:
        got = tuple(X.shape) if backend.is_array(X) else type(X).__name__
        raise ValueError(f"{caller}: X must have shape (..., {m}, {n}) or (..., {m * n}), got {got}")
    if X.ndim >= 2 and tuple(X.shape[-2:]) == (m, n):
        return X, lambda Y: Y
    if X.shape[-1] == m * n:
        return unvec(X, m), vec
    raise ValueError(f"{caller}: X must have shape (..., {m}, {n}) or (..., {m * n}) to match "
                     f"A ({n}, {n}) and G ({m}, {m}), got {tuple(X.shape)}")


def check_damping(damping, caller):
    """A Python/NumPy number >= 0, or a 0-d backend array (taken as given: no sync)."""
    if backend.is_array(damping):
        if damping.ndim != 0:
            raise ValueError(f"{caller}: damping must be a scalar, got shape {tuple(damping.shape)}")
        return damping
    try:
        damping = float(damping)
    except (TypeError, ValueError):
        raise TypeError(f"{caller}: damping must be a number or a 0-d array, got {damping!r}") from None
    if not damping >= 0 or damping == float("inf"):
        raise ValueError(f"{caller}: damping must be a finite number >= 0, got {damping!r}")
    return damping


def _check_pi(pi):
    """A Python/NumPy number > 0, or a 0-d backend array (taken as given: no sync)."""
    if backend.is_array(pi) and pi.ndim == 0:
        return pi
    if backend.is_array(pi) or not isinstance(pi, numbers.Real) or not 0 < pi < float("inf"):
        raise ValueError(f"solve_factored: pi must be a finite number > 0 or a 0-d array, got {pi!r}")
    return pi


def _is_zero(damping):
    return not backend.is_array(damping) and damping == 0


def _check_invertible(denominator, caller):
    """Refuse a singular A ⊗ G (undamped): its eigenvalues are the entries of ``denominator``.

    "Zero" uses the tolerance of ``numpy.linalg.matrix_rank``: largest × size × eps.
    This reads one number back from the device, so it runs only when damping = 0.
    """
    xp = backend.get_array_module(denominator)
    largest = xp.max(xp.abs(denominator))
    tolerance = largest * denominator.size * xp.finfo(denominator.dtype).eps
    if bool(xp.min(denominator) <= tolerance):
        raise ValueError(f"{caller}: A ⊗ G is singular (smallest eigenvalue {float(xp.min(denominator)):.3g}, "
                         f"largest {float(largest):.3g}); pass damping > 0")


# --------------------------------------------------------------------------- #
# Products and eigendecompositions
# --------------------------------------------------------------------------- #
def kron_matvec(A, G, X):
    """(A ⊗ G) vec(X) = vec(G X Aᵀ) without forming A ⊗ G (Van Loan 2000, eq. (4)).

    A: (n, n); G: (m, m); X: (m, n), (m·n,), or stacks (..., m, n) / (..., m·n).
    Returns the product in X's form and shape. Costs O(m·n·(m + n)), not O(m²n²).
    """
    _check_factors(A, G, "kron_matvec")
    backend.get_array_module(A, X)  # a clear error if X is on another backend
    matrices, restore = _as_matrices(X, G.shape[0], A.shape[0], "kron_matvec")
    return restore(G @ matrices @ A.T)


def eigh_factor(S):
    """Eigendecomposition S = U diag(s) Uᵀ of a symmetric PSD factor (A or G).

    S: (k, k) -> (eigenvalues (k,) ascending, eigenvectors U (k, k), columns).

    S is symmetrised first, (S + Sᵀ)/2: ``eigh`` reads only one triangle, and a
    running average can be asymmetric by rounding. Eigenvalues below 0 are
    clipped to 0: the factors are averages of outer products, PSD in exact
    arithmetic, but a rank-deficient one (fewer examples than features) comes
    out of ``eigh`` with eigenvalues like -1e-17. Left negative, they could make
    a damped eigenvalue a·g + λ vanish or change sign. Clipping moves S by
    rounding error only, so use this for PSD factors, not indefinite matrices.
    """
    _check_square("S", S, "eigh_factor")
    xp = backend.get_array_module(S)
    with threads.for_matrix(S):
        eigenvalues, eigenvectors = xp.linalg.eigh((S + S.T) / 2)
    return xp.maximum(eigenvalues, 0), eigenvectors


def damped_inverse(S, shift):
    """(S + shift·I)⁻¹ of a symmetric PSD factor S (k, k), through a Cholesky factorisation.

    shift : a number > 0 (or a 0-d array). Returns the (k, k) inverse, or None
    when S + shift·I is not finite or not positive definite in floating point
    (statistics of a batch that overflowed).

    A Cholesky factorisation and its inverse cost about k³ operations against
    about 9k³ for ``eigh`` (785×785 in float32: 8 ms against 70 ms here), which
    is why factored damping (:func:`factored_inverses`) goes this way. On NumPy
    it calls LAPACK's potrf/potri through SciPy, which also tells when S is not
    positive definite; on other backends it takes the backend's general
    ``linalg.inv`` (CuPy has no potri), which does not (a PSD S plus a shift is
    positive definite in exact arithmetic; only rounding could break that).
    """
    _check_square("S", S, "damped_inverse")
    xp = backend.get_array_module(S)
    # Cholesky reads one triangle, so S need not be symmetrised; the shift goes on the diagonal only.
    damped = S.copy()
    diagonal = xp.arange(S.shape[0])
    damped[diagonal, diagonal] += shift
    if not bool(xp.isfinite(xp.sum(damped))):  # LAPACK would not notice a NaN (a sum shows NaN and ±inf)
        return None
    with threads.for_matrix(S):
        if backend.backend_of(S) != "numpy":
            return xp.linalg.inv(damped)
        potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (damped,))
        factor, info = potrf(damped, lower=True)
        if info != 0:
            return None
        inverse, info = potri(factor, lower=True)
    if info != 0:
        return None
    lower = xp.tril(inverse)  # potri fills one triangle
    return lower + xp.tril(lower, -1).T


def factored_inverses(A, G, damping):
    """((A + π√λ I)⁻¹, (G + (√λ/π) I)⁻¹): factored Tikhonov damping (Martens & Grosse 2015, section 6.3).

    A: (n, n), G: (m, m), symmetric PSD; damping λ > 0 (a Python number).
    π = sqrt((tr A / n) / (tr G / m)) is the trace-norm choice of
    :func:`factored_pi`, with a zero trace taken as the smallest positive
    number (a layer whose inputs or gradients are all zero still gets a finite
    π and an inverse). The preconditioned gradient of the layer is then
    (G + (√λ/π) I)⁻¹ ∇W̄ (A + π√λ I)⁻¹. Returns (A_inverse, G_inverse), or
    None when either factor is not finite (see :func:`damped_inverse`).
    """
    _check_factors(A, G, "factored_inverses")
    xp = backend.get_array_module(A)
    tiny = xp.finfo(A.dtype).tiny
    mean_a = xp.maximum(xp.trace(A) / A.shape[0], tiny)
    mean_g = xp.maximum(xp.trace(G) / G.shape[0], tiny)
    pi, root = xp.sqrt(mean_a / mean_g), damping ** 0.5
    A_inverse = damped_inverse(A, pi * root)
    G_inverse = None if A_inverse is None else damped_inverse(G, root / pi)
    return None if G_inverse is None else (A_inverse, G_inverse)


def kron_eigenvalues(a_eigs, g_eigs):
    """Eigenvalues of A ⊗ G from the factors': all products a_j·g_i (Van Loan 2000, section 2.2).

    a_eigs: (n,); g_eigs: (m,). Returns (m·n,) = vec(g aᵀ), i.e. entry
    j·m + i is a_j·g_i, the eigenvalue of the eigenvector kron(U_A[:, j], U_G[:, i])
    (the column j·m + i of :func:`kron_eigenvectors`). Not sorted.
    """
    return vec(g_eigs[:, None] * a_eigs[None, :])


def kron_eigenvectors(U_A, U_G):
    """Dense eigenvectors of A ⊗ G: kron(U_A, U_G), (m·n, m·n). For tests and small cases.

    Column j·m + i is kron(U_A[:, j], U_G[:, i]) = vec(U_G[:, i] U_A[:, j]ᵀ), and
    (A ⊗ G) vec(u_g u_aᵀ) = vec(G u_g u_aᵀ Aᵀ) = a_j g_i vec(u_g u_aᵀ).
    """
    return backend.get_array_module(U_A, U_G).kron(U_A, U_G)


def kron_eigh(A, G):
    """Eigendecomposition of A ⊗ G through its factors: (values (m·n,), U_A (n, n), U_G (m, m)).

    A ⊗ G = (U_A ⊗ U_G) diag(values) (U_A ⊗ U_G)ᵀ with values ordered as in
    :func:`kron_eigenvalues`. A and G are symmetric PSD (see :func:`eigh_factor`).
    """
    _check_factors(A, G, "kron_eigh")
    a_eigs, U_A = eigh_factor(A)
    g_eigs, U_G = eigh_factor(G)
    return kron_eigenvalues(a_eigs, g_eigs), U_A, U_G


class KroneckerEigen(NamedTuple):
    """The factors' eigendecompositions: A = U_A diag(a_eigs) U_Aᵀ, G = U_G diag(g_eigs) U_Gᵀ."""

    a_eigs: object  # (n,)
    U_A: object  # (n, n)
    g_eigs: object  # (m,)
    U_G: object  # (m, m)


# --------------------------------------------------------------------------- #
# A ⊗ G kept as its factors
# --------------------------------------------------------------------------- #
class KroneckerFactors:
    """The matrix A ⊗ G, (m·n, m·n), kept as its factors A (n, n) and G (m, m).

    A and G are symmetric PSD (K-FAC's A = E[ā āᵀ] and G = E[g gᵀ]; Martens &
    Grosse 2015, eq. (1)). Their eigendecompositions are computed on the first
    solve and cached, so that repeated solves with new right-hand sides or new
    damping cost two (m, n) matrix products each side and no ``eigh``. Do not
    modify A or G in place after a solve: make a new object instead.
    """

    def __init__(self, A, G):
        _check_factors(A, G, "KroneckerFactors")
        self.A = A
        self.G = G
        self._eigen = None
        self._pi = None

    @property
    def shape(self):
        """(m·n, m·n), the shape of the matrix A ⊗ G."""
        size = self.A.shape[0] * self.G.shape[0]
        return (size, size)

    def __repr__(self):
        return f"KroneckerFactors(A: {tuple(self.A.shape)}, G: {tuple(self.G.shape)})"

    def eigen(self):
        """The cached :class:`KroneckerEigen` of A and G (computed once, :func:`eigh_factor`)."""
        if self._eigen is None:
            self._eigen = KroneckerEigen(*eigh_factor(self.A), *eigh_factor(self.G))
        return self._eigen

    def eigenvalues(self):
        """Eigenvalues of A ⊗ G, (m·n,), in the order of :func:`kron_eigenvalues`."""
        eigen = self.eigen()
        return kron_eigenvalues(eigen.a_eigs, eigen.g_eigs)

    def trace(self):
        """tr(A ⊗ G) = tr(A)·tr(G) (Van Loan 2000, section 2.2), a 0-d array."""
        xp = backend.get_array_module(self.A)
        return xp.trace(self.A) * xp.trace(self.G)

    def to_dense(self):
        """The dense (m·n, m·n) matrix kron(A, G), for comparisons and small cases."""
        return backend.get_array_module(self.A).kron(self.A, self.G)

    def matvec(self, X):
        """(A ⊗ G) vec(X) = vec(G X Aᵀ); X and result as in :func:`kron_matvec`."""
        return kron_matvec(self.A, self.G, X)

    def _solve(self, X, denominator, caller):
        # (U_A ⊗ U_G) diag(1/d) (U_A ⊗ U_G)ᵀ vec(X) = vec(U_G [(U_Gᵀ X U_A) / D] U_Aᵀ), vec(D) = d.
        eigen = self.eigen()
        backend.get_array_module(self.A, X)
        matrices, restore = _as_matrices(X, self.G.shape[0], self.A.shape[0], caller)
        rotated = eigen.U_G.T @ matrices @ eigen.U_A
        return restore(eigen.U_G @ (rotated / denominator) @ eigen.U_A.T)

    def solve(self, X, damping=0.0):
        """Exact Tikhonov solve (A ⊗ G + λI)⁻¹ vec(X), λ = ``damping``.

        X: (m, n), (m·n,) or stacks; returns the same form. Through the
        eigendecompositions (Martens & Grosse 2015, section 6.3, "exact" damping):

            (A ⊗ G + λI)⁻¹ vec(X) = vec(U_G [(U_Gᵀ X U_A) / (g aᵀ + λ)] U_Aᵀ),

        the division elementwise. With λ = 0, a singular A ⊗ G raises ValueError.
        """
        damping = check_damping(damping, "solve")
        eigen = self.eigen()
        denominator = eigen.g_eigs[:, None] * eigen.a_eigs[None, :] + damping
        if _is_zero(damping):
            _check_invertible(denominator, "solve")
        return self._solve(X, denominator, "solve")

    def pi(self):
        """The cached trace-norm π of :func:`factored_pi` (a 0-d array)."""
        if self._pi is None:
            self._pi = factored_pi(self.A, self.G)
        return self._pi

    def solve_factored(self, X, damping, pi=None):
        """Factored Tikhonov solve (Martens & Grosse 2015, section 6.3):

            ((A + π√λ I) ⊗ (G + (√λ/π) I))⁻¹ vec(X) = vec((G + (√λ/π) I)⁻¹ X (A + π√λ I)⁻¹),

        an approximation of (A ⊗ G + λI)⁻¹ vec(X) that keeps the Kronecker form.
        The damped factors' product is A ⊗ G + λI plus the cross terms
        (√λ/π) A ⊗ I + π√λ I ⊗ G; π balances them, and defaults to the
        trace-norm choice :meth:`pi`. X: (m, n), (m·n,) or stacks; returns X's form.
        With λ = 0 this is the exact solve (and a singular A ⊗ G raises ValueError).
        """
        damping = check_damping(damping, "solve_factored")
        eigen = self.eigen()
        if _is_zero(damping):
            denominator = eigen.g_eigs[:, None] * eigen.a_eigs[None, :]
            _check_invertible(denominator, "solve_factored")
        else:
            pi = self.pi() if pi is None else _check_pi(pi)
            root = damping ** 0.5
            denominator = (eigen.g_eigs + root / pi)[:, None] * (eigen.a_eigs + pi * root)[None, :]
        return self._solve(X, denominator, "solve_factored")

    def inverse(self, damping=0.0):
        """Dense (A ⊗ G + λI)⁻¹, (m·n, m·n), built from the factors' eigenvectors.

        Forms an (m·n)² matrix: for comparisons, tests and small cases only.
        """
        damping = check_damping(damping, "inverse")
        eigen = self.eigen()
        values = self.eigenvalues() + damping
        if _is_zero(damping):
            _check_invertible(values, "inverse")
        U = kron_eigenvectors(eigen.U_A, eigen.U_G)
        return (U / values[None, :]) @ U.T


# --------------------------------------------------------------------------- #
# Function forms (each builds KroneckerFactors once; keep the object to reuse eigh)
# --------------------------------------------------------------------------- #
def kron_solve(A, G, X, damping=0.0):
    """(A ⊗ G + λI)⁻¹ vec(X) through the factors' eigendecompositions; see :meth:`KroneckerFactors.solve`.

    A: (n, n), G: (m, m), both symmetric PSD; X: (m, n), (m·n,) or stacks;
    returns X's form.
    """
    return KroneckerFactors(A, G).solve(X, damping)


def factored_pi(A, G):
    """Trace-norm π = sqrt((tr(A)/n) / (tr(G)/m)) (Martens & Grosse 2015, section 6.3).

    A: (n, n); G: (m, m). Returns a 0-d array. π balances the damping between
    the factors so that both get the same share relative to their mean
    eigenvalue. Raises ValueError unless both traces are positive (this reads
    one number back from the device).
    """
    _check_factors(A, G, "factored_pi")
    xp = backend.get_array_module(A)
    mean_a = xp.trace(A) / A.shape[0]
    mean_g = xp.trace(G) / G.shape[0]
    if not bool((mean_a > 0) & (mean_g > 0)):
        raise ValueError(f"factored_pi: tr(A) and tr(G) must be positive, got mean eigenvalues "
                         f"{float(mean_a):.3g} (A) and {float(mean_g):.3g} (G)")
    return xp.sqrt(mean_a / mean_g)


def kron_solve_factored(A, G, X, damping, pi=None):
    """(G + (√λ/π) I)⁻¹ X (A + π√λ I)⁻¹, Martens & Grosse 2015, section 6.3.

    A: (n, n), G: (m, m), both symmetric PSD; X: (m, n), (m·n,) or stacks;
    returns X's form. ``pi`` defaults to :func:`factored_pi`. See :meth:`KroneckerFactors.solve_factored`.
    """
    return KroneckerFactors(A, G).solve_factored(X, damping, pi)


def kron_inverse(A, G, damping=0.0):
    """Dense (A ⊗ G + λI)⁻¹, (m·n, m·n). Forms the big matrix: for comparisons and tests only.

    A: (n, n), G: (m, m), both symmetric PSD. With λ = 0 this is A⁻¹ ⊗ G⁻¹
    (Van Loan 2000, section 2.2).
    """
    return KroneckerFactors(A, G).inverse(damping)


# --------------------------------------------------------------------------- #
# Nearest Kronecker product (Van Loan & Pitsianis 1993)
# --------------------------------------------------------------------------- #
def _pair(size, name, caller):
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if len(shape) != 2 or not all(isinstance(k, int) and k >= 1 for k in shape):
        raise ValueError(f"{caller}: {name} must be a positive int or a pair (rows, cols), got {size!r}")
    return shape


def rearrange(B, n, m):
    """Van Loan–Pitsianis rearrangement R(B), with R(A ⊗ G) = vec(A) vec(G)ᵀ.

    B: (n·m, n·m) seen as n × n blocks B_ij of shape (m, m) (the block (i, j) of
    kron(A, G) is A[i, j]·G). Row j·n + i of R(B) is vec(B_ij)ᵀ, blocks in
    column-stacking order like vec(A). Returns (n², m²). n and m may be pairs
    (rows, cols) for rectangular factors. R only permutes entries, so
    ‖R(B)‖_F = ‖B‖_F (Van Loan & Pitsianis 1993, section 2; Van Loan 2000, section 3).
    """
    (n1, n2), (m1, m2) = _pair(n, "n", "rearrange"), _pair(m, "m", "rearrange")
    if not backend.is_array(B) or tuple(B.shape) != (n1 * m1, n2 * m2):
        got = tuple(B.shape) if backend.is_array(B) else type(B).__name__
        raise ValueError(f"rearrange: B must have shape ({n1 * m1}, {n2 * m2}) for A ({n1}, {n2}) "
                         f"and G ({m1}, {m2}), got {got}")
    xp = backend.get_array_module(B)
    blocks = xp.reshape(B, (n1, m1, n2, m2))  # blocks[i, k, j, l] = B_ij[k, l]
    return xp.reshape(xp.transpose(blocks, (2, 0, 3, 1)), (n2 * n1, m2 * m1))


def nearest_kronecker(B, shape_A, shape_G):
    """The Frobenius-nearest Kronecker product A ⊗ G to B (Van Loan & Pitsianis 1993).

    B: (n·m, n·m); shape_A: n or (n, n); shape_G: m or (m, m) (pairs may be
    rectangular). Returns (A, G, singular_values): ‖B − A ⊗ G‖_F is minimal
    because ‖B − A ⊗ G‖_F = ‖R(B) − vec(A) vec(G)ᵀ‖_F (:func:`rearrange`) and
    the best rank-1 matrix is the top singular pair σ₁ u₁ v₁ᵀ of R(B)
    (Eckart–Young). singular_values are all of R(B)'s, descending.

    The scale is split evenly (‖A‖_F = ‖G‖_F = √σ₁) and the sign chosen so
    that tr(A) >= 0; for a symmetric PSD B, A and G then come out symmetric PSD
    (Van Loan & Pitsianis 1993, section 5), up to rounding.
    """
    shape_A = _pair(shape_A, "shape_A", "nearest_kronecker")
    shape_G = _pair(shape_G, "shape_G", "nearest_kronecker")
    R = rearrange(B, shape_A, shape_G)
    xp = backend.get_array_module(B)
    U, singular_values, Vt = xp.linalg.svd(R, full_matrices=False)
    scale = xp.sqrt(singular_values[0])
    A = unvec(U[:, 0] * scale, shape_A[0])
    G = unvec(Vt[0, :] * scale, shape_G[0])
    sign = xp.where(xp.trace(A) < 0, -1.0, 1.0).astype(B.dtype)  # u₁, v₁ are defined up to a joint sign
    return A * sign, G * sign, singular_values


def kronecker_spectrum(B, shape_A, shape_G):
    """How Kronecker-shaped B is: the normalised singular values σ_k / ‖σ‖ of R(B), descending.

    B, shape_A, shape_G as in :func:`nearest_kronecker`. Returns (min(n², m²),)
    for square factors; [1, 0, 0, ...] exactly when B is a Kronecker product.
    Since ‖R(B)‖_F = ‖B‖_F and the best rank-1 error is the remaining σ's,

        σ₁² / Σ σ_k² = 1 − (‖B − A ⊗ G‖_F / ‖B‖_F)²

    with A ⊗ G the nearest Kronecker product (Van Loan & Pitsianis 1993). B = 0 gives NaN.
    """
    xp = backend.get_array_module(B)
    singular_values = xp.linalg.svd(rearrange(B, shape_A, shape_G), compute_uv=False)
    return singular_values / xp.sqrt(xp.sum(singular_values ** 2))
