"""Small dense linear algebra shared by every curvature object.

Symmetric positive semi-definite (PSD) matrices are everywhere in K-FAC: the
factors A and G, the exact Fisher and its blocks. Four operations on them are
needed again and again, and each has one home here:

- :func:`psd_eigh`, the eigendecomposition S = U diag(s) Uᵀ of a matrix that
  is PSD in exact arithmetic but not quite in floating point;
- :class:`SymmetricEigen`, the same, cached, with damped solves and inverses;
- :func:`check_invertible`, the test that refuses an undamped solve with a
  singular matrix instead of returning a silent pseudo-inverse;
- :func:`damped_inverse`, (S + shift·I)⁻¹ through a Cholesky factorisation.

And the two argument checks every solve starts with: :func:`check_square`
and :func:`check_damping`; and the memory guard every dense curvature matrix
passes before it is allocated, :func:`check_dense_size`.
"""

import math

import numpy as np
import scipy.linalg

from minikfac import backend, threads

#: The largest dense curvature matrix, in bytes, that a function here allocates (4 GiB). The exact
#: Fisher of P parameters takes 8·P² bytes in float64: 4 GiB is P ≈ 23,000. Raise it knowingly:
#: ``minikfac.curvature.linalg.MAX_DENSE_BYTES = 16 * 2**30``.
MAX_DENSE_BYTES = 4 * 2**30


def check_dense_size(shapes, dtype, caller):
    """ValueError, before anything is allocated, if dense arrays of ``shapes`` (one shape, or a list of
    them) in ``dtype`` would take more than :data:`MAX_DENSE_BYTES`; the message names both sizes."""
    shapes = [shapes] if shapes and isinstance(shapes[0], int) else list(shapes)
    total = sum(math.prod(int(d) for d in shape) for shape in shapes) * np.dtype(dtype).itemsize
    if total > MAX_DENSE_BYTES:
        what = " x ".join(map(str, shapes[0])) if len(shapes) == 1 else f"{len(shapes)} blocks"
        raise ValueError(f"{caller}: the dense result ({what}, {np.dtype(dtype).name}) would take "
                         f"{total / 2**30:.3g} GiB, above the limit of {MAX_DENSE_BYTES / 2**30:.3g} GiB "
                         "(minikfac.curvature.linalg.MAX_DENSE_BYTES); use fewer parameters, the factored "
                         "forms (matvec, solve, fisher_vector_product), or raise the limit knowingly")


def check_square(name, matrix, caller):
    """ValueError unless ``matrix`` is a square (k, k) backend array; ``name`` and ``caller`` go in the message."""
    if not backend.is_array(matrix) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        got = tuple(matrix.shape) if backend.is_array(matrix) else type(matrix).__name__
        raise ValueError(f"{caller}: {name} must be a square matrix (k, k), got {got}")


def check_symmetric(name, matrix, caller):
    """ValueError unless the square ``matrix`` is symmetric up to rounding (max |S − Sᵀ| <= √eps · max |S|).

    Solves through ``eigh`` read one triangle and would silently solve with
    another matrix. Reads one number back from the device.
    """
    xp = backend.get_array_module(matrix)
    largest = xp.max(xp.abs(matrix))
    asymmetry = xp.max(xp.abs(matrix - matrix.T))
    tolerance = largest * float(np.sqrt(np.finfo(matrix.dtype).eps))
    if bool(asymmetry > tolerance):
        raise ValueError(f"{caller}: {name} is not symmetric (max |{name} − {name}ᵀ| = {float(asymmetry):.3g}, "
                         f"above {float(tolerance):.3g}); the solve goes through its eigendecomposition, which "
                         "needs the symmetric PSD factors of K-FAC")


def check_damping(damping, caller):
    """A Python/NumPy number >= 0, or a 0-d backend array (a device array is taken as given: no sync)."""
    if isinstance(damping, bool):
        raise TypeError(f"{caller}: damping must be a number or a 0-d array, got {damping!r}")
    if backend.is_array(damping):
        if damping.ndim != 0:
            raise ValueError(f"{caller}: damping must be a scalar, got shape {tuple(damping.shape)}")
        if not isinstance(damping, np.ndarray):
            return damping
        damping = damping[()]
    try:
        damping = float(damping)
    except (TypeError, ValueError):
        raise TypeError(f"{caller}: damping must be a number or a 0-d array, got {damping!r}") from None
    if not damping >= 0 or damping == float("inf"):
        raise ValueError(f"{caller}: damping must be a finite number >= 0, got {damping!r}")
    return damping


def is_zero(damping):
    """True for a Python/NumPy zero (0-d arrays are taken as nonzero: checking would sync the device)."""
    return not backend.is_array(damping) and damping == 0


def check_invertible(eigenvalues, caller, matrix="the matrix"):
    """ValueError if the smallest of ``eigenvalues`` (any shape) is <= largest × size × eps.

    The tolerance is that of ``numpy.linalg.matrix_rank``. ``matrix`` names the
    matrix in the message ("A ⊗ G", say). Reads two numbers back from the
    device, so callers run it only for undamped solves.
    """
    xp = backend.get_array_module(eigenvalues)
    largest = xp.max(xp.abs(eigenvalues))
    tolerance = largest * eigenvalues.size * xp.finfo(eigenvalues.dtype).eps
    smallest = xp.min(eigenvalues)
    if bool(smallest <= tolerance):
        raise ValueError(f"{caller}: {matrix} is singular (smallest eigenvalue {float(smallest):.3g}, largest "
                         f"{float(largest):.3g}); pass damping > 0")


def psd_eigh(S):
    """Eigendecomposition S = U diag(s) Uᵀ of a symmetric PSD matrix.

    S: (k, k) -> (eigenvalues (k,) ascending, eigenvectors U (k, k), columns).

    S is symmetrised first, (S + Sᵀ)/2: ``eigh`` reads only one triangle, and a
    running average can be asymmetric by rounding. Eigenvalues below 0 are
    clipped to 0: K-FAC's factors and the Fisher are averages of outer
    products, PSD in exact arithmetic, but a rank-deficient one (fewer
    examples than features) comes out of ``eigh`` with eigenvalues like
    -1e-17. Left negative, they could make a damped eigenvalue a·g + λ vanish
    or change sign. Clipping moves S by rounding error only, so use this for
    PSD matrices, not indefinite ones.
    """
    check_square("S", S, "psd_eigh")
    xp = backend.get_array_module(S)
    with threads.for_matrix(S):
        eigenvalues, eigenvectors = xp.linalg.eigh((S + S.T) / 2)
    return xp.maximum(eigenvalues, 0), eigenvectors


class SymmetricEigen:
    """The cached :func:`psd_eigh` M = U diag(w) Uᵀ of a symmetric PSD matrix M (k, k).

    Attributes ``values`` (k,) and ``vectors`` (k, k).
    """

    def __init__(self, matrix):
        self.values, self.vectors = psd_eigh(matrix)

    def damped_values(self, damping, caller):
        """w + λ, (k,); with λ = 0 a singular M raises ValueError (:func:`check_invertible`)."""
        values = self.values + damping
        if is_zero(damping):
            check_invertible(values, caller)
        return values

    def solve(self, v, damping, caller="solve"):
        """(M + λI)⁻¹ v = U diag(1/(w + λ)) Uᵀ v for v (k,) or (k, m)."""
        values = self.damped_values(damping, caller)
        rotated = self.vectors.T @ v
        scaled = rotated / (values if v.ndim == 1 else values[:, None])
        return self.vectors @ scaled

    def inverse(self, damping, caller="inverse"):
        """(M + λI)⁻¹, (k, k)."""
        return inverse_from_eigen(self.damped_values(damping, caller), self.vectors)


def inverse_from_eigen(values, vectors):
    """U diag(1/w) Uᵀ, (k, k): the inverse of the symmetric matrix with eigenvalues ``values`` (k,) (damped
    already, nonzero) and orthonormal eigenvectors ``vectors`` (k, k), columns."""
    return (vectors / values[None, :]) @ vectors.T


def damped_inverse(S, shift):
    """(S + shift·I)⁻¹ of a symmetric PSD matrix S (k, k), through a Cholesky factorisation.

    shift : a number > 0 (or a 0-d array). Returns the (k, k) inverse, or None
    when S + shift·I is not finite or not positive definite in floating point
    (statistics of a batch that overflowed).

    A Cholesky factorisation and its inverse cost about k³ operations against
    about 9k³ for ``eigh`` (785×785 in float32: 8 ms against 70 ms here), which
    is why factored damping (:func:`.damping.factored_inverses`) goes this way.
    On NumPy it calls LAPACK's potrf/potri through SciPy, which also tells when
    S is not positive definite; on other backends it takes the backend's
    general ``linalg.inv`` (CuPy has no potri), which does not (a PSD S plus a
    shift is positive definite in exact arithmetic; only rounding could break
    that).
    """
    check_square("S", S, "damped_inverse")
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
