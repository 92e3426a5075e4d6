"""Block-tridiagonal K-FAC: the inverse of F̃ as a chain of layers (Martens & Grosse 2015, §4.3).

Martens & Grosse observe that F̃⁻¹ (not F̃) is close to block-tridiagonal,
and pick the F̂ whose inverse is *exactly* block-tridiagonal and which agrees
with F̃ = [A_ij ⊗ G_ij] on the diagonal and first off-diagonal blocks. It is
the covariance of a directed Gaussian graphical model over the layers'
gradient blocks w_1, ..., w_ℓ, each depending only on the next one:

    w_i = Ψ_{i,i+1} w_{i+1} + ε_i,    ε_i ~ N(0, Σ_{i|i+1}),    w_ℓ ~ N(0, Σ_ℓ),

    Ψ_{i,i+1}  = F̃_{i,i+1} F̃_{i+1,i+1}⁻¹ = Ψ^A ⊗ Ψ^G,
                 Ψ^A = A_{i,i+1} A_{i+1,i+1}⁻¹,  Ψ^G = G_{i,i+1} G_{i+1,i+1}⁻¹,
    Σ_{i|i+1} = F̃_ii − Ψ F̃_{i+1,i+1} Ψᵀ = A_ii ⊗ G_ii − (Ψ^A A_{i+1,i}) ⊗ (Ψ^G G_{i+1,i}),
    Σ_ℓ        = A_ℓℓ ⊗ G_ℓℓ.

Then F̂⁻¹ = Ξᵀ Λ Ξ, with Ξ unit upper block-bidiagonal (−Ψ_{i,i+1} in block
(i, i+1)) and Λ = diag(Σ_{1|2}⁻¹, ..., Σ_{ℓ-1|ℓ}⁻¹, Σ_ℓ⁻¹), and F̂'s blocks are
F̂_ij = Ψ_{i,i+1} ⋯ Ψ_{j-1,j} F̃_jj for i <= j.

Σ_{i|i+1} is a *difference* of two Kronecker products. It is inverted without
forming it (Martens & Grosse 2015, App. B) by diagonalising both terms at once: with
A^{-1/2} C A^{-1/2} = E1 S1 E1ᵀ, B^{-1/2} D B^{-1/2} = E2 S2 E2ᵀ,
K1 = A^{-1/2} E1 and K2 = B^{-1/2} E2 (so K1ᵀ A K1 = I, K1ᵀ C K1 = S1):

    (A ⊗ B − C ⊗ D)⁻¹ = (K1 ⊗ K2) (I ⊗ I − S1 ⊗ S2)⁻¹ (K1 ⊗ K2)ᵀ,

a diagonal in a Kronecker basis. So F̂⁻¹ v and F̂ v are a few Kronecker
matvecs per layer, O(Σ_l (n_l³ + m_l³)) to set up.

Damping (Martens & Grosse 2015, §6.3 applied to this model): the GGM is built from the
diagonal blocks' *damped* factors A_ii + π_i√λ I and G_ii + (√λ/π_i) I,
everywhere they appear (Ψ, Σ_{i|i+1}, Σ_ℓ), with the cross factors
A_{i,i+1}, G_{i,i+1} left undamped. That is ``factored=True``. Exact Tikhonov,
(F̂ + λI)⁻¹, has no such form (F̂ + λI is not the covariance of a chain with
Kronecker-factored blocks), so ``solve(v, damping > 0)`` without
``factored=True`` raises ValueError; ``inverse(damping)`` computes it densely
(O(P³), for comparisons on small nets).
"""

from typing import NamedTuple

from minikfac import backend
from minikfac.curvature.approximation import Approximation, check_slices
from minikfac.curvature.damping import eigenbasis_solve, factored_pi, factored_shifts, layer_pis
from minikfac.curvature.factors import kfac_cross_factors
from minikfac.curvature.kron import KroneckerFactors, unvec, vec
from minikfac.curvature.linalg import SymmetricEigen, check_damping, check_dense_size, check_invertible, is_zero
from minikfac.curvature.params import layer_slices, slices_of


class Conditional(NamedTuple):
    """Layer i < ℓ of the chain: Ψ_{i,i+1} = psi_A ⊗ psi_G and Σ_{i|i+1} = A ⊗ G − C ⊗ D.

    psi_A (n_i, n_{i+1}), psi_G (m_i, m_{i+1}); A, C (n_i, n_i); G, D (m_i, m_i);
    K1 (n_i, n_i), K2 (m_i, m_i) and ``denominator`` (m_i, n_i) = 1 − s2 s1ᵀ
    give Σ_{i|i+1}⁻¹ vec(X) = vec(K2 [(K2ᵀ X K1) / denominator] K1ᵀ) (Martens & Grosse 2015, App. B).
    """

    psi_A: object
    psi_G: object
    A: object
    G: object
    C: object
    D: object
    K1: object
    K2: object
    denominator: object


class ChainModel(NamedTuple):
    """The Gaussian graphical model for one damping: ``conditionals`` (ℓ − 1) and Σ_ℓ = ``last``."""

    conditionals: list
    last: KroneckerFactors
    A: list  # the (damped) diagonal factors A_ii used throughout
    G: list


def _inverse_root(eigen, caller):
    """R with R Rᵀ = M⁻¹ from M's :class:`SymmetricEigen`: U diag(w^{-1/2})."""
    check_invertible(eigen.values, caller)
    return eigen.vectors / backend.get_array_module(eigen.values).sqrt(eigen.values)[None, :]


def _simultaneous_basis(M, C, caller):
    """K and s with Kᵀ M K = I and Kᵀ C K = diag(s) (Martens & Grosse 2015, App. B), M positive definite, C PSD."""
    root = _inverse_root(SymmetricEigen(M), caller)
    inner = SymmetricEigen(root.T @ C @ root)
    return root @ inner.vectors, inner.values


class KFACTridiagonal(Approximation):
    """Block-tridiagonal-inverse K-FAC (Martens & Grosse 2015, §4.3 and App. B).

    Parameters
    ----------
    cross_factors : dict {(i, j): (A_ij, G_ij)} containing every (i, i) and
        (i, i + 1) (:func:`.factors.kfac_cross_factors`, ``pairs="tridiagonal"``);
        A_ij (n_i, n_j), G_ij (m_i, m_j). Other pairs are ignored.
    slices : layer slices (default: from the diagonal factors).

    Methods take ``damping`` (λ) and, for the model's damping, ``pi``: see
    the module docstring. ``to_dense(damping, pi)``, ``matvec`` and
    ``ggm_factors`` describe the model built with factored damping λ (λ = 0:
    the undamped model, which needs every A_ii and G_ii invertible).
    """

    name = "K-FAC tridiagonal"

    def __init__(self, cross_factors, slices=None):
        count = 1 + max((i for i, _ in cross_factors), default=-1)
        needed = [(i, j) for i in range(count) for j in (i, i + 1) if j < count]
        missing = [key for key in needed if key not in cross_factors]
        if count == 0 or missing:
            raise ValueError(f"KFACTridiagonal: cross_factors must contain (i, i) and (i, i + 1) for every layer; "
                             f"missing {missing or 'all'}")
        self.diagonal = [cross_factors[(i, i)] for i in range(count)]
        self.off_diagonal = [cross_factors[(i, i + 1)] for i in range(count - 1)]
        for i, ((A, G), (A_next, G_next)) in enumerate(zip(self.diagonal, self.diagonal[1:])):
            A_cross, G_cross = self.off_diagonal[i]
            expected = ((A.shape[0], A_next.shape[0]), (G.shape[0], G_next.shape[0]))
            if (tuple(A_cross.shape), tuple(G_cross.shape)) != expected:
                raise ValueError(f"KFACTridiagonal: pair ({i}, {i + 1}) has A {tuple(A_cross.shape)} and G "
                                 f"{tuple(G_cross.shape)}, expected {expected[0]} and {expected[1]}")
        sizes = [A.shape[0] * G.shape[0] for A, G in self.diagonal]
        slices = slices_of(sizes) if slices is None else check_slices(slices, sizes, "KFACTridiagonal")
        super().__init__(slices, self.diagonal[0][0].dtype)
        self._models = {}

    @classmethod
    def from_net(cls, net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
        """The model of ``net`` (Linear layers only): :func:`.factors.kfac_cross_factors` with pairs="tridiagonal"."""
        cross = kfac_cross_factors(net, loss_fn, X, y, kind, samples, seed, chunk_size, pairs="tridiagonal")
        return cls(cross, layer_slices(net))

    # -- the model ---------------------------------------------------------- #
    def _damped_diagonal(self, damping, pi):
        """The diagonal factors with factored damping: (A_ii + π√λ I, G_ii + (√λ/π) I) per layer."""
        if is_zero(damping):
            return [A for A, _ in self.diagonal], [G for _, G in self.diagonal]
        xp = backend.get_array_module(self.diagonal[0][0])
        damped_A, damped_G = [], []
        for (A, G), p in zip(self.diagonal, layer_pis(pi, len(self.diagonal), "KFACTridiagonal")):
            shift_a, shift_g = factored_shifts(damping, factored_pi(A, G) if p is None else p)
            damped_A.append(A + shift_a * xp.eye(A.shape[0], dtype=A.dtype))
            damped_G.append(G + shift_g * xp.eye(G.shape[0], dtype=G.dtype))
        return damped_A, damped_G

    def model(self, damping=0.0, pi=None):
        """The :class:`ChainModel` for factored damping λ (cached per (λ, π), read on the host)."""
        damping = check_damping(damping, "KFACTridiagonal")
        pis = layer_pis(pi, len(self.diagonal), "KFACTridiagonal")
        key = (float(damping), tuple(None if p is None else float(p) for p in pis))
        if key not in self._models:
            self._models[key] = self._build(damping, pi)
        return self._models[key]

    def _build(self, damping, pi):
        A, G = self._damped_diagonal(damping, pi)
        conditionals = []
        for i, (A_cross, G_cross) in enumerate(self.off_diagonal):
            caller = f"KFACTridiagonal: a diagonal factor of layer {i} or {i + 1} (damp with factored=True)"
            psi_A = A_cross @ SymmetricEigen(A[i + 1]).inverse(0.0, caller)
            psi_G = G_cross @ SymmetricEigen(G[i + 1]).inverse(0.0, caller)
            C, D = psi_A @ A_cross.T, psi_G @ G_cross.T  # symmetric PSD up to rounding
            C, D = (C + C.T) / 2, (D + D.T) / 2
            K1, s1 = _simultaneous_basis(A[i], C, caller)
            K2, s2 = _simultaneous_basis(G[i], D, caller)
            denominator = 1 - s2[:, None] * s1[None, :]
            check_invertible(denominator, f"KFACTridiagonal: Σ_{{{i}|{i + 1}}}")
            conditionals.append(Conditional(psi_A, psi_G, A[i], G[i], C, D, K1, K2, denominator))
        last = KroneckerFactors(A[-1], G[-1])
        check_invertible(last.eigenvalues(), "KFACTridiagonal: Σ_ℓ = A_ℓℓ ⊗ G_ℓℓ (damp with factored=True)")
        return ChainModel(conditionals, last, A, G)

    # -- vectors as per-layer matrices ------------------------------------- #
    def _matrices(self, v):
        """v (P,) or (P, k) -> list of (k, m_i, n_i) stacks."""
        columns = v if v.ndim == 2 else v[:, None]
        return [unvec(columns[s].T, G.shape[0]) for s, (_, G) in zip(self.slices, self.diagonal)]

    def _vector(self, matrices, like):
        xp = backend.get_array_module(like)
        result = xp.concatenate([vec(X) for X in matrices], axis=1).T
        return result if like.ndim == 2 else result[:, 0]

    # -- F̂⁻¹ = Ξᵀ Λ Ξ and F̂ = Ξ⁻¹ Λ⁻¹ Ξ⁻ᵀ, by Kronecker matvecs ---------------- #
    def _apply_inverse(self, model, X):
        last = len(X) - 1
        # u = Ξ v: u_i = v_i − Ψ_{i,i+1} v_{i+1}.
        u = [X[i] - c.psi_G @ X[i + 1] @ c.psi_A.T for i, c in enumerate(model.conditionals)] + [X[last]]
        # w = Λ u.
        w = [eigenbasis_solve(c.K1, c.K2, u[i], c.denominator) for i, c in enumerate(model.conditionals)]
        w.append(model.last.solve(u[last]))
        # x = Ξᵀ w: x_1 = w_1, x_{i+1} = w_{i+1} − Ψ_{i,i+1}ᵀ w_i.
        return [w[0]] + [w[i + 1] - c.psi_G.T @ w[i] @ c.psi_A for i, c in enumerate(model.conditionals)]

    def _apply(self, model, X):
        last = len(X) - 1
        # y = Ξ⁻ᵀ v: forward substitution, y_{i+1} = v_{i+1} + Ψ_{i,i+1}ᵀ y_i.
        y = [X[0]]
        for i, c in enumerate(model.conditionals):
            y.append(X[i + 1] + c.psi_G.T @ y[i] @ c.psi_A)
        # z = Λ⁻¹ y: Σ_{i|i+1} y_i = G y Aᵀ − D y Cᵀ.
        z = [c.G @ y[i] @ c.A.T - c.D @ y[i] @ c.C.T for i, c in enumerate(model.conditionals)]
        z.append(model.last.matvec(y[last]))
        # x = Ξ⁻¹ z: back substitution, x_i = z_i + Ψ_{i,i+1} x_{i+1}.
        x = [None] * len(X)
        x[last] = z[last]
        for i in reversed(range(last)):
            c = model.conditionals[i]
            x[i] = z[i] + c.psi_G @ x[i + 1] @ c.psi_A.T
        return x

    def matvec(self, v, damping=0.0, pi=None):
        """F̂ v = Ξ⁻¹ Λ⁻¹ Ξ⁻ᵀ v for v (P,) or (P, m), of the model with factored damping λ."""
        v = self._check_vector(v, "matvec")
        return self._vector(self._apply(self.model(damping, pi), self._matrices(v)), v)

    def solve(self, v, damping=0.0, factored=False, pi=None):
        """F̂⁻¹ v = Ξᵀ Λ Ξ v (λ = 0) or the model with factored damping λ (``factored=True``).

        v : (P,) or (P, m). Exact Tikhonov (F̂ + λI)⁻¹ v with λ > 0 is not
        Kronecker-factorable here and raises ValueError (see the module docstring).
        """
        damping = check_damping(damping, "K-FAC tridiagonal solve")
        if not factored and not is_zero(damping):
            raise ValueError("K-FAC tridiagonal solve: exact Tikhonov damping (F̂ + λI)⁻¹ has no Kronecker-factored "
                             "form for the block-tridiagonal model; pass factored=True (Martens & Grosse 2015, §6.3: "
                             "damped diagonal factors) or use inverse(damping) (dense, small nets)")
        v = self._check_vector(v, "solve")
        return self._vector(self._apply_inverse(self.model(damping, pi), self._matrices(v)), v)

    # -- dense forms ---------------------------------------------------------- #
    def to_dense(self, damping=0.0, pi=None):
        """F̂ (P, P): blocks F̂_ij = kron((Ψ^A_i ⋯ Ψ^A_{j-1}) A_jj, (Ψ^G_i ⋯ Ψ^G_{j-1}) G_jj), i <= j."""
        model = self.model(damping, pi)
        xp = backend.get_array_module(model.A[0])
        check_dense_size((self.size, self.size), self.dtype, "KFACTridiagonal.to_dense")
        dense = xp.zeros((self.size, self.size), dtype=self.dtype)
        for i, rows in enumerate(self.slices):
            chain_A = xp.eye(model.A[i].shape[0], dtype=self.dtype)
            chain_G = xp.eye(model.G[i].shape[0], dtype=self.dtype)
            for j in range(i, len(self.slices)):
                if j > i:
                    chain_A = chain_A @ model.conditionals[j - 1].psi_A
                    chain_G = chain_G @ model.conditionals[j - 1].psi_G
                block = xp.kron(chain_A @ model.A[j], chain_G @ model.G[j])
                dense[rows, self.slices[j]] = block
                if j > i:
                    dense[self.slices[j], rows] = block.T
        return dense

    def ggm_factors(self, damping=0.0, pi=None):
        """(Ξ, Λ), both dense (P, P), with F̂⁻¹ = Ξᵀ Λ Ξ (Martens & Grosse 2015, §4.3)."""
        model = self.model(damping, pi)
        xp = backend.get_array_module(model.A[0])
        check_dense_size([(self.size, self.size)] * 2, self.dtype, "KFACTridiagonal.ggm_factors")
        xi = xp.eye(self.size, dtype=self.dtype)
        lam = xp.zeros((self.size, self.size), dtype=self.dtype)
        for i, c in enumerate(model.conditionals):
            rows = self.slices[i]
            xi[rows, self.slices[i + 1]] = -xp.kron(c.psi_A, c.psi_G)
            basis = xp.kron(c.K1, c.K2)  # column j·m + i is kron(K1[:, j], K2[:, i]), like vec(denominator)
            lam[rows, rows] = (basis / vec(c.denominator)[None, :]) @ basis.T
        lam[self.slices[-1], self.slices[-1]] = model.last.inverse()
        return xi, lam

    def inverse(self, damping=0.0, factored=False, pi=None):
        """Dense F̂⁻¹ = Ξᵀ Λ Ξ (of the damped model if ``factored``), or exact Tikhonov (F̂ + λI)⁻¹ densely."""
        damping = check_damping(damping, "K-FAC tridiagonal inverse")
        if not factored and not is_zero(damping):
            return super().inverse(damping)
        xi, lam = self.ggm_factors(damping, pi)
        return xi.T @ lam @ xi

    def block(self, i):
        """F̂_ii = F̃_ii = kron(A_ii, G_ii) (the model keeps the diagonal blocks)."""
        A, G = self.diagonal[self._check_layer(i)]
        return backend.get_array_module(A).kron(A, G)

    def trace(self):
        """Σ_i tr(A_ii)·tr(G_ii) (the diagonal blocks are F̃'s), a 0-d array."""
        xp = backend.get_array_module(self.diagonal[0][0])
        return sum(xp.trace(A) * xp.trace(G) for A, G in self.diagonal)
