"""Kronecker algebra: everything K-FAC does with A ⊗ G without ever forming it.

Conventions (docs/design.md): ``vec`` stacks *columns*, so for X of shape (m, n)

    vec(X)[j·m + i] = X[i, j],        (A ⊗ G) vec(X) = vec(G X Aᵀ),

with A of shape (n, n) and G of shape (m, m) (Van Loan 2000, eq. (4); Martens &
Grosse 2015, §3). NumPy arrays are row-major, so vec(X) is written
``X.T.reshape(-1)`` here and nowhere else.

For a layer, A is the input factor (n = D_in, plus 1 with a bias), G the output
gradient factor (m = D_out) and X a matrix like ∇W̄ of shape (D_out, D_in + 1).
Every product and solve below goes through the two small factors: O(n³ + m³)
work instead of O(n³m³) for the (m·n, m·n) block (Van Loan 2000, §3).

The worked example of the blog article minikfac started from, “Kronecker分解(K-FAC):让自然梯度在深度学习中飞起来”
(February 2025), checked:

Examples:
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

References (in full in docs/references.md): Van Loan 2000; Martens & Grosse 2015.
"""

from typing import NamedTuple

from minikfac import backend
from minikfac.curvature import damping as damping_rules
from minikfac.curvature.linalg import (check_damping, check_dense_size, check_invertible, check_square,
                                       check_symmetric, inverse_from_eigen, is_zero, psd_eigh)


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
def _check_factors(A, G, caller):
    check_square("A", A, caller)
    check_square("G", G, caller)
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


def kron_eigenvalues(a_eigs, g_eigs):
    """Eigenvalues of A ⊗ G from the factors': all products a_j·g_i (Van Loan 2000, §2.2).

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
    size = U_A.shape[0] * U_G.shape[0]
    check_dense_size((size, size), U_A.dtype, "kron_eigenvectors")
    return backend.get_array_module(U_A, U_G).kron(U_A, U_G)


def kron_eigh(A, G):
    """Eigendecomposition of A ⊗ G through its factors: (values (m·n,), U_A (n, n), U_G (m, m)).

    A ⊗ G = (U_A ⊗ U_G) diag(values) (U_A ⊗ U_G)ᵀ with values ordered as in
    :func:`kron_eigenvalues`. A and G are symmetric PSD (see :func:`psd_eigh`).
    """
    _check_factors(A, G, "kron_eigh")
    a_eigs, U_A = psd_eigh(A)
    g_eigs, U_G = psd_eigh(G)
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
        """The cached :class:`KroneckerEigen` of A and G (computed once, :func:`psd_eigh`)."""
        if self._eigen is None:
            check_symmetric("A", self.A, "KroneckerFactors")
            check_symmetric("G", self.G, "KroneckerFactors")
            self._eigen = KroneckerEigen(*psd_eigh(self.A), *psd_eigh(self.G))
        return self._eigen

    def eigenvalues(self):
        """Eigenvalues of A ⊗ G, (m·n,), in the order of :func:`kron_eigenvalues`."""
        eigen = self.eigen()
        return kron_eigenvalues(eigen.a_eigs, eigen.g_eigs)

    def trace(self):
        """tr(A ⊗ G) = tr(A)·tr(G) (Van Loan 2000, §2.2), a 0-d array."""
        xp = backend.get_array_module(self.A)
        return xp.trace(self.A) * xp.trace(self.G)

    def to_dense(self):
        """The dense (m·n, m·n) matrix kron(A, G), for comparisons and small cases."""
        check_dense_size(self.shape, self.A.dtype, "KroneckerFactors.to_dense")
        return backend.get_array_module(self.A).kron(self.A, self.G)

    def matvec(self, X):
        """(A ⊗ G) vec(X) = vec(G X Aᵀ); X and result as in :func:`kron_matvec`."""
        return kron_matvec(self.A, self.G, X)

    def _solve(self, X, denominator, caller):
        eigen = self.eigen()
        backend.get_array_module(self.A, X)
        matrices, restore = _as_matrices(X, self.G.shape[0], self.A.shape[0], caller)
        return restore(damping_rules.eigenbasis_solve(eigen.U_A, eigen.U_G, matrices, denominator))

    def solve(self, X, damping=0.0):
        """Exact Tikhonov solve (A ⊗ G + λI)⁻¹ vec(X), λ = ``damping``.

        X: (m, n), (m·n,) or stacks; returns the same form. Through the
        eigendecompositions (Martens & Grosse 2015, §6.3, "exact" damping):

            (A ⊗ G + λI)⁻¹ vec(X) = vec(U_G [(U_Gᵀ X U_A) / (g aᵀ + λ)] U_Aᵀ),

        the division elementwise. With λ = 0, a singular A ⊗ G raises ValueError.
        """
        damping = check_damping(damping, "solve")
        eigen = self.eigen()
        denominator = damping_rules.exact_denominator(eigen.a_eigs, eigen.g_eigs, damping)
        if is_zero(damping):
            check_invertible(denominator, "solve", "A ⊗ G")
        return self._solve(X, denominator, "solve")

    def pi(self):
        """The cached trace-norm π of :func:`.damping.factored_pi` (a 0-d array)."""
        if self._pi is None:
            self._pi = damping_rules.factored_pi(self.A, self.G)
        return self._pi

    def solve_factored(self, X, damping, pi=None):
        """Factored Tikhonov solve (Martens & Grosse 2015, §6.3):

            ((A + π√λ I) ⊗ (G + (√λ/π) I))⁻¹ vec(X) = vec((G + (√λ/π) I)⁻¹ X (A + π√λ I)⁻¹),

        an approximation of (A ⊗ G + λI)⁻¹ vec(X) that keeps the Kronecker form.
        The damped factors' product is A ⊗ G + λI plus the cross terms
        (√λ/π) A ⊗ I + π√λ I ⊗ G; π balances them, and defaults to the
        trace-norm choice :meth:`pi`. X: (m, n), (m·n,) or stacks; returns X's form.
        With λ = 0 this is the exact solve (and a singular A ⊗ G raises ValueError).
        """
        damping = check_damping(damping, "solve_factored")
        eigen = self.eigen()
        if is_zero(damping):
            denominator = damping_rules.exact_denominator(eigen.a_eigs, eigen.g_eigs, 0)
            check_invertible(denominator, "solve_factored", "A ⊗ G")
        else:
            pi = self.pi() if pi is None else damping_rules.check_pi(pi)
            denominator = damping_rules.factored_denominator(eigen.a_eigs, eigen.g_eigs, damping, pi)
        return self._solve(X, denominator, "solve_factored")

    def inverse(self, damping=0.0):
        """Dense (A ⊗ G + λI)⁻¹, (m·n, m·n), built from the factors' eigenvectors.

        Forms an (m·n)² matrix: for comparisons, tests and small cases only.
        """
        damping = check_damping(damping, "inverse")
        eigen = self.eigen()
        values = self.eigenvalues() + damping
        if is_zero(damping):
            check_invertible(values, "inverse", "A ⊗ G")
        return inverse_from_eigen(values, kron_eigenvectors(eigen.U_A, eigen.U_G))


# --------------------------------------------------------------------------- #
# Function forms (each builds KroneckerFactors once; keep the object to reuse eigh)
# --------------------------------------------------------------------------- #
def kron_solve(A, G, X, damping=0.0):
    """(A ⊗ G + λI)⁻¹ vec(X) through the factors' eigendecompositions; see :meth:`KroneckerFactors.solve`.

    A: (n, n), G: (m, m), both symmetric PSD; X: (m, n), (m·n,) or stacks;
    returns X's form.
    """
    return KroneckerFactors(A, G).solve(X, damping)


def kron_solve_factored(A, G, X, damping, pi=None):
    """(G + (√λ/π) I)⁻¹ X (A + π√λ I)⁻¹, Martens & Grosse 2015, §6.3.

    A: (n, n), G: (m, m), both symmetric PSD; X: (m, n), (m·n,) or stacks;
    returns X's form. ``pi`` defaults to :func:`.damping.factored_pi`. See :meth:`KroneckerFactors.solve_factored`.
    """
    return KroneckerFactors(A, G).solve_factored(X, damping, pi)


def kron_inverse(A, G, damping=0.0):
    """Dense (A ⊗ G + λI)⁻¹, (m·n, m·n). Forms the big matrix: for comparisons and tests only.

    A: (n, n), G: (m, m), both symmetric PSD. With λ = 0 this is A⁻¹ ⊗ G⁻¹
    (Van Loan 2000, §2.2).
    """
    return KroneckerFactors(A, G).inverse(damping)
