"""Curvature approximations behind one interface, and the exact matrices they approximate.

Every approximation F̂ of the Fisher F (P, P) — K-FAC, its block-tridiagonal
variant, EKFAC, the diagonal, the exact blocks, F itself — is an
:class:`Approximation`:

==========================  ====================================================
``name``                    "K-FAC", "EKFAC", "diagonal", "exact", ...
``slices``, ``size``        layer blocks in the canonical order; P
``dtype``                   the dtype of its arrays
``to_dense()``              F̂ as a (P, P) array
``matvec(v)``               F̂ v for v (P,) or (P, m)
``solve(v, damping=0)``     (F̂ + λI)⁻¹ v (exact Tikhonov damping, λ = damping)
``inverse(damping=0)``      (F̂ + λI)⁻¹ as a dense (P, P) array
``trace()``                 tr(F̂), a 0-d array
``eigenvalues()``           the P eigenvalues of F̂, descending
``block(i)``                F̂'s diagonal block of layer i, (P_i, P_i)
==========================  ====================================================

so that comparison code never needs to know which one it holds. The base
class implements everything from ``to_dense()`` (eigendecomposition, cached);
subclasses replace what their structure makes cheap. Solves with
``damping=0`` on a singular F̂ raise ValueError (no silent pseudo-inverse):
"singular" means an eigenvalue below largest × P × eps, the tolerance of
``numpy.linalg.matrix_rank``.

The exact references: :class:`Exact` (the dense F of :func:`.exact.fisher`),
:class:`ExactBlockDiagonal` (its per-layer blocks, Martens & Grosse 2015,
§4.2's target) and :class:`ExactDiagonal` (diag F, the approximation
of Adam-like methods). Arrays stay on the backend they were given on.
"""

from minikfac import backend
from minikfac.curvature.exact import fisher, fisher_blocks, fisher_diagonal
from minikfac.curvature.linalg import (SymmetricEigen, check_damping, check_dense_size, check_invertible, check_square,
                                       is_zero)
from minikfac.curvature.params import layer_slices, slices_of

# --------------------------------------------------------------------------- #
# Checks shared by the approximations
# --------------------------------------------------------------------------- #
def check_slices(slices, sizes=None, caller="Approximation"):
    """``slices`` as a list of contiguous ``slice(start, stop)`` from 0; with ``sizes``, their lengths must match."""
    slices = list(slices)
    start = 0
    for i, s in enumerate(slices):
        if not isinstance(s, slice) or s.start != start or s.step not in (None, 1) or s.stop is None or s.stop <= start:
            raise ValueError(f"{caller}: slices must be contiguous slice(start, stop) from 0 with stop > start; "
                             f"slice {i} is {s!r}, expected one starting at {start}")
        start = s.stop
    if not slices:
        raise ValueError(f"{caller}: slices is empty; expected one slice per layer")
    if sizes is not None:
        got = [s.stop - s.start for s in slices]
        if got != list(sizes):
            raise ValueError(f"{caller}: slices have lengths {got} but the blocks have sizes {list(sizes)}")
    return slices


def descending(values):
    """``values`` (k,) sorted from largest to smallest."""
    xp = backend.get_array_module(values)
    return xp.sort(values)[::-1]


def block_diagonal(blocks, slices):
    """The dense (P, P) matrix with ``blocks[i]`` (P_i, P_i) at ``slices[i]`` and zeros elsewhere."""
    xp = backend.get_array_module(blocks[0])
    size = slices[-1].stop
    check_dense_size((size, size), blocks[0].dtype, "block_diagonal")
    dense = xp.zeros((size, size), dtype=blocks[0].dtype)
    for s, block in zip(slices, blocks):
        dense[s, s] = block
    return dense


# --------------------------------------------------------------------------- #
# The interface
# --------------------------------------------------------------------------- #
class Approximation:
    """Base class: an approximation F̂ (P, P) of the Fisher in the canonical parameter order.

    Subclasses set ``name`` and implement :meth:`to_dense`; every other
    method has a dense default here (O(P³), from a cached eigendecomposition
    of ``to_dense()``) that they override where their structure is cheaper.

    Attributes
    ----------
    slices : list of slice, the layer blocks (``layer_slices(net)``).
    size : P.
    dtype : the dtype of the approximation's arrays.
    """

    name = "approximation"

    def __init__(self, slices, dtype):
        self.slices = check_slices(slices, caller=type(self).__name__)
        self.size = self.slices[-1].stop
        self.dtype = dtype
        self._dense_eigen = None

    def __repr__(self):
        sizes = [s.stop - s.start for s in self.slices]
        return f"{type(self).__name__}(name={self.name!r}, P={self.size}, layers={sizes}, dtype={self.dtype})"

    # -- checks ----------------------------------------------------------- #
    def _check_vector(self, v, caller):
        """v must be (P,) or (P, m) (a vector or m columns)."""
        if not backend.is_array(v) or v.ndim not in (1, 2) or v.shape[0] != self.size:
            got = tuple(v.shape) if backend.is_array(v) else type(v).__name__
            raise ValueError(f"{self.name} {caller}: v must have shape ({self.size},) or ({self.size}, m), got {got}")
        return v

    def _check_layer(self, i):
        if not isinstance(i, int) or not 0 <= i < len(self.slices):
            raise ValueError(f"{self.name} block: layer index must be an int in [0, {len(self.slices)}), got {i!r}")
        return i

    def _blockwise(self, v, functions):
        """Apply ``functions[i]`` to each layer's part of v (P,) or (P, m); concatenate.

        Each function gets a stack (m, P_i) of vec-form rows (what the
        Kronecker helpers of :mod:`.kron` accept) and returns the same shape.
        """
        xp = backend.get_array_module(v)
        columns = v if v.ndim == 2 else v[:, None]
        parts = [function(columns[s].T).T for s, function in zip(self.slices, functions)]
        result = xp.concatenate(parts, axis=0)
        return result if v.ndim == 2 else result[:, 0]

    # -- the interface, dense defaults ------------------------------------- #
    def to_dense(self):
        """F̂ as a dense (P, P) array."""
        raise NotImplementedError(f"{type(self).__name__}.to_dense")

    def _eigen(self):
        if self._dense_eigen is None:
            self._dense_eigen = SymmetricEigen(self.to_dense())
        return self._dense_eigen

    def block(self, i):
        """The diagonal block of layer ``i``, (P_i, P_i)."""
        s = self.slices[self._check_layer(i)]
        return self.to_dense()[s, s]

    def matvec(self, v):
        """F̂ v for v (P,) or (P, m); returns v's shape."""
        return self.to_dense() @ self._check_vector(v, "matvec")

    def solve(self, v, damping=0.0):
        """(F̂ + λI)⁻¹ v, exact Tikhonov damping λ = ``damping``; v (P,) or (P, m)."""
        damping = check_damping(damping, f"{self.name} solve")
        return self._eigen().solve(self._check_vector(v, "solve"), damping, f"{self.name} solve")

    def inverse(self, damping=0.0):
        """Dense (F̂ + λI)⁻¹, (P, P)."""
        damping = check_damping(damping, f"{self.name} inverse")
        return self._eigen().inverse(damping, f"{self.name} inverse")

    def trace(self):
        """tr(F̂), a 0-d array."""
        dense = self.to_dense()
        return backend.get_array_module(dense).trace(dense)

    def eigenvalues(self):
        """The P eigenvalues of F̂, descending (negative rounding clipped to 0)."""
        return descending(self._eigen().values)


# --------------------------------------------------------------------------- #
# The exact references
# --------------------------------------------------------------------------- #
class Exact(Approximation):
    """The dense Fisher F (P, P) itself, wrapped in the common interface.

    F = (1/N) Σ_n Σ_k J_nkᵀ J_nk (Martens 2020, eq. (9) for the true Fisher;
    see :mod:`.fisher`). Solves use its eigendecomposition, computed once and
    cached: (F + λI)⁻¹ v = U diag(1/(w + λ)) Uᵀ v.

    Parameters
    ----------
    F : (P, P) symmetric PSD array.
    slices : layer slices (default: one block for everything).
    """

    name = "exact"

    def __init__(self, F, slices=None):
        check_square("F", F, "Exact")
        slices = [slice(0, F.shape[0])] if slices is None else slices
        super().__init__(check_slices(slices, caller="Exact"), F.dtype)
        if self.size != F.shape[0]:
            raise ValueError(f"Exact: F is {tuple(F.shape)} but the slices cover P = {self.size}")
        self.F = F

    @classmethod
    def from_net(cls, net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
        """F of ``net`` on X (:func:`.exact.fisher`, same parameters)."""
        return cls(fisher(net, loss_fn, X, y, kind, samples, seed, chunk_size), layer_slices(net))

    def to_dense(self):
        return self.F


class ExactDiagonal(Approximation):
    """diag(F) (P,): the diagonal approximation, F̂ = diag(F_11, ..., F_PP).

    Every method is elementwise: (F̂ + λI)⁻¹ v = v / (d + λ).

    Parameters
    ----------
    diagonal : (P,) array (:func:`.exact.fisher_diagonal`), entries >= 0.
    slices : layer slices (default: one block).
    """

    name = "diagonal"

    def __init__(self, diagonal, slices=None):
        if not backend.is_array(diagonal) or diagonal.ndim != 1:
            got = tuple(diagonal.shape) if backend.is_array(diagonal) else type(diagonal).__name__
            raise ValueError(f"ExactDiagonal: diagonal must be a (P,) array, got {got}")
        slices = [slice(0, diagonal.shape[0])] if slices is None else slices
        super().__init__(check_slices(slices, caller="ExactDiagonal"), diagonal.dtype)
        if self.size != diagonal.shape[0]:
            raise ValueError(f"ExactDiagonal: diagonal has {diagonal.shape[0]} entries but the slices cover "
                             f"P = {self.size}")
        self.diagonal = diagonal

    @classmethod
    def from_net(cls, net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
        """diag(F) of ``net`` (:func:`.exact.fisher_diagonal`, same parameters)."""
        return cls(fisher_diagonal(net, loss_fn, X, y, kind, samples, seed, chunk_size), layer_slices(net))

    def _scaled(self, v, values):
        return v / (values if v.ndim == 1 else values[:, None])

    def to_dense(self):
        check_dense_size((self.size, self.size), self.diagonal.dtype, "ExactDiagonal.to_dense")
        return backend.get_array_module(self.diagonal).diag(self.diagonal)

    def block(self, i):
        s = self.slices[self._check_layer(i)]
        return backend.get_array_module(self.diagonal).diag(self.diagonal[s])

    def eigenbasis(self, i):
        """Layer ``i``'s block as (None, None, values): diagonal in the identity basis (``None`` for U_A, U_G),
        values (P_i,) its diagonal — the form K-FAC's and EKFAC's ``eigenbasis`` give."""
        return None, None, self.diagonal[self.slices[self._check_layer(i)]]

    def matvec(self, v):
        v = self._check_vector(v, "matvec")
        return v * (self.diagonal if v.ndim == 1 else self.diagonal[:, None])

    def _damped(self, damping, caller):
        damping = check_damping(damping, caller)
        values = self.diagonal + damping
        if is_zero(damping):
            check_invertible(values, caller)
        return values

    def solve(self, v, damping=0.0):
        values = self._damped(damping, "diagonal solve")
        return self._scaled(self._check_vector(v, "solve"), values)

    def inverse(self, damping=0.0):
        values = self._damped(damping, "diagonal inverse")
        return backend.get_array_module(values).diag(1 / values)

    def trace(self):
        return backend.get_array_module(self.diagonal).sum(self.diagonal)

    def eigenvalues(self):
        return descending(self.diagonal)


class ExactBlockDiagonal(Approximation):
    """The exact per-layer blocks F_ll, zero between layers (the target of Martens & Grosse 2015, §4.2).

    Each block's eigendecomposition is computed once and cached; solves and
    the inverse go block by block.

    Parameters
    ----------
    blocks : list of (P_l, P_l) symmetric PSD arrays (:func:`.exact.fisher_blocks`).
    slices : layer slices (default: from the block sizes).
    """

    name = "block-diagonal"

    def __init__(self, blocks, slices=None):
        blocks = list(blocks)
        for i, block in enumerate(blocks):
            check_square(f"block {i}", block, "ExactBlockDiagonal")
        if not blocks:
            raise ValueError("ExactBlockDiagonal: blocks is empty; expected one (P_l, P_l) array per layer")
        sizes = [block.shape[0] for block in blocks]
        slices = slices_of(sizes) if slices is None else check_slices(slices, sizes, "ExactBlockDiagonal")
        super().__init__(slices, blocks[0].dtype)
        self.blocks = blocks
        self._block_eigen = [None] * len(blocks)

    @classmethod
    def from_net(cls, net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
        """The exact blocks of ``net`` (:func:`.exact.fisher_blocks`, same parameters)."""
        return cls(fisher_blocks(net, loss_fn, X, y, kind, samples, seed, chunk_size), layer_slices(net))

    def eigen(self, i):
        """The cached :class:`SymmetricEigen` of block ``i``."""
        if self._block_eigen[i] is None:
            self._block_eigen[i] = SymmetricEigen(self.blocks[i])
        return self._block_eigen[i]

    def to_dense(self):
        return block_diagonal(self.blocks, self.slices)

    def block(self, i):
        return self.blocks[self._check_layer(i)]

    def matvec(self, v):
        v = self._check_vector(v, "matvec")
        return self._blockwise(v, [lambda rows, b=b: rows @ b.T for b in self.blocks])

    def solve(self, v, damping=0.0):
        damping = check_damping(damping, "block-diagonal solve")
        v = self._check_vector(v, "solve")
        solvers = [lambda rows, i=i: self.eigen(i).solve(rows.T, damping, "block-diagonal solve").T
                   for i in range(len(self.blocks))]
        return self._blockwise(v, solvers)

    def inverse(self, damping=0.0):
        damping = check_damping(damping, "block-diagonal inverse")
        inverses = [self.eigen(i).inverse(damping, "block-diagonal inverse") for i in range(len(self.blocks))]
        return block_diagonal(inverses, self.slices)

    def trace(self):
        xp = backend.get_array_module(self.blocks[0])
        return sum(xp.trace(block) for block in self.blocks)

    def eigenvalues(self):
        xp = backend.get_array_module(self.blocks[0])
        return descending(xp.concatenate([self.eigen(i).values for i in range(len(self.blocks))]))
