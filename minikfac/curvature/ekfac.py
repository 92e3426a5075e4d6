"""EKFAC: K-FAC's eigenbasis with re-estimated eigenvalues (George et al. 2018).

K-FAC's block A ⊗ G = Q diag(vec(g aᵀ)) Qᵀ with Q = U_A ⊗ U_G (the factors'
eigenvectors) is diagonal in the Kronecker-factored eigenbasis Q, with the
eigenvalues a_j·g_i that the Kronecker product imposes. EKFAC keeps Q and
replaces the eigenvalues by the second moments of the per-example gradients
in that basis (George et al. 2018, §3, the re-estimated scaling s*):

    s = (1/N) Σ_n Σ_k (U_Gᵀ D_nk U_A)²          (m, n), elementwise square,

with D_nk = g_nk ā_nᵀ (Linear) or Σ_l g_nkl ā_nlᵀ (Conv2d) the per-example
gradient of W̄ (:func:`.statistics.layer_gradients`). Then s = diag(Qᵀ F_l Q),
the best diagonal in the basis Q: ‖F_l − Q diag(s) Qᵀ‖_F <= ‖F_l − A ⊗ G‖_F
(K-FAC is *some* diagonal in the same basis), and tr(Q diag(s) Qᵀ) = Σ s =
tr(F_l) exactly (Q is orthogonal). For a Linear layer the rotated gradient is
an outer product, (U_Gᵀ g)(U_Aᵀ ā)ᵀ, so s = (1/N) Σ_n (Σ_k (U_Gᵀ g_nk)²) ((U_Aᵀ ā_n)²)ᵀ
costs two small products per example; a convolution sums over positions
first and needs the (m, n) matrix per example (chunked).

For ``kind="ggn"``, s = diag(Qᵀ (1/N) Σ_n J_nᵀ H_n J_n Q) with the same
formulas and H weighting the cotangents.
"""

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.approximation import Approximation, block_diagonal, check_slices, descending
from minikfac.curvature.factors import kfac_factors
from minikfac.curvature.statistics import hessian_weighted
from minikfac.curvature.kron import kron_eigenvectors, unvec, vec
from minikfac.curvature.linalg import check_damping, check_invertible, is_zero, psd_eigh
from minikfac.curvature.params import layer_slices, slices_of


def _rotated_gradients(stats, U_A, U_G):
    """U_Gᵀ D_nk U_A for every cotangent and example of a Conv2d layer: (K, n, m, n_A)."""
    xp = backend.get_array_module(stats.inputs)
    rotated_inputs = stats.inputs @ U_A  # (n, L, n_A)
    rotated_grads = stats.grads @ U_G  # (K, n, L, m)
    return xp.matmul(xp.swapaxes(rotated_grads, -1, -2), rotated_inputs[None])


def chunk_scaling_sums(stats, hessian, U_A, U_G):
    """Σ_{n,k} of the squared rotated gradients of one chunk (H-weighted for "ggn"): (m, n_A).

    Divided by the chunk's examples this is EKFAC's s for that chunk; the
    K-FAC optimizer averages it over steps as it does A and G."""
    xp = backend.get_array_module(stats.inputs)
    if stats.inputs.ndim == 2:  # Linear: the rotated gradient is the outer product (U_Gᵀ g)(U_Aᵀ ā)ᵀ
        rotated_grads = stats.grads @ U_G  # (K, n, m)
        weighted = hessian_weighted(rotated_grads, hessian)
        grad_squares = xp.sum(rotated_grads * weighted, axis=0)  # (n, m)
        input_squares = (stats.inputs @ U_A) ** 2  # (n, n_A)
        return grad_squares.T @ input_squares
    rotated = _rotated_gradients(stats, U_A, U_G)
    return xp.sum(rotated * hessian_weighted(rotated, hessian), axis=(0, 1))


def ekfac_scalings(net, loss_fn, X, eigenbases, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """The re-estimated eigenvalues s_l (m_l, n_l) of every layer in the bases ``eigenbases``.

    Parameters
    ----------
    eigenbases : list of (U_A (n_l, n_l), U_G (m_l, m_l)), orthogonal, one per layer.
    Other parameters as in :func:`.factors.kfac_factors`; for ``kind="mc"``
    pass the same ``seed`` and ``chunk_size`` as for the factors to reuse the draws.

    Returns
    -------
    list of (m_l, n_l) arrays, s_l[i, j] = (1/N) Σ_{n,k} (u_G,iᵀ D_nk u_A,j)²,
    the eigenvalue of the eigenvector kron(U_A[:, j], U_G[:, i]) (George et al. 2018).
    """
    statistics.check_kind(kind)
    return statistics.mean_over_chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size, chunk_scaling_sums,
                                       [tuple(pair) for pair in eigenbases], "ekfac_scalings")


class EKFAC(Approximation):
    """Eigenvalue-corrected K-FAC (George et al. 2018): F̂_l = (U_A ⊗ U_G) diag(vec(s_l)) (U_A ⊗ U_G)ᵀ.

    Parameters
    ----------
    eigenbases : list of (U_A (n_l, n_l), U_G (m_l, m_l)), the eigenvectors of
        K-FAC's factors A_l and G_l.
    scalings : list of (m_l, n_l) arrays s_l >= 0 (:func:`ekfac_scalings`).
    slices : layer slices (default: from the sizes, P_l = n_l·m_l).

    Solves are diagonal in the eigenbasis:
    (F̂_l + λI)⁻¹ vec(X) = vec(U_G [(U_Gᵀ X U_A) / (s_l + λ)] U_Aᵀ).
    """

    name = "EKFAC"

    def __init__(self, eigenbases, scalings, slices=None):
        self.eigenbases, self.scalings = list(eigenbases), list(scalings)
        if not self.eigenbases or len(self.eigenbases) != len(self.scalings):
            raise ValueError(f"EKFAC: need one eigenbasis and one scaling per layer, got {len(self.eigenbases)} "
                             f"and {len(self.scalings)}")
        for i, ((U_A, U_G), s) in enumerate(zip(self.eigenbases, self.scalings)):
            if tuple(s.shape) != (U_G.shape[0], U_A.shape[0]):
                raise ValueError(f"EKFAC: scaling {i} has shape {tuple(s.shape)}, expected "
                                 f"{(U_G.shape[0], U_A.shape[0])} (m, n) from U_A {tuple(U_A.shape)} "
                                 f"and U_G {tuple(U_G.shape)}")
        sizes = [s.size for s in self.scalings]
        slices = slices_of(sizes) if slices is None else check_slices(slices, sizes, "EKFAC")
        super().__init__(slices, self.scalings[0].dtype)

    @classmethod
    def from_net(cls, net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
        """EKFAC of ``net``: K-FAC's factors, their eigenvectors, then one more pass for s (same draws)."""
        if chunk_size is None:  # one chunking for both passes: MC's draws must be the same
            chunk_size = (statistics.statistics_chunk_size(net, statistics.check_kind(kind), X, samples)
                          or statistics.default_chunk_size(net, kind, X, samples))
        factors = kfac_factors(net, loss_fn, X, y, kind, samples, seed, chunk_size)
        eigenbases = [(psd_eigh(A)[1], psd_eigh(G)[1]) for A, G in factors]
        scalings = ekfac_scalings(net, loss_fn, X, eigenbases, y, kind, samples, seed, chunk_size)
        return cls(eigenbases, scalings, layer_slices(net))

    def _layer_dense(self, i, values):
        U_A, U_G = self.eigenbases[i]
        basis = kron_eigenvectors(U_A, U_G)  # column j·m + i pairs with vec(s)[j·m + i] = s[i, j]
        return (basis * vec(values)[None, :]) @ basis.T

    def _diagonal_in_basis(self, scale_of):
        """Functions X -> vec(U_G [(U_Gᵀ X U_A) · d_l] U_Aᵀ) on (k, P_l) stacks, d_l = scale_of(l)."""
        def apply(rows, i):
            U_A, U_G = self.eigenbases[i]
            X = unvec(rows, U_G.shape[0])  # (k, m, n)
            return vec(U_G @ ((U_G.T @ X @ U_A) * scale_of(i)) @ U_A.T)
        return [lambda rows, i=i: apply(rows, i) for i in range(len(self.scalings))]

    def _damped(self, damping, caller):
        damping = check_damping(damping, caller)
        values = [s + damping for s in self.scalings]
        if is_zero(damping):
            for s in values:
                check_invertible(s, caller)
        return values

    def block(self, i):
        return self._layer_dense(self._check_layer(i), self.scalings[i])

    def eigenbasis(self, i):
        """Layer ``i``'s block as (U_A, U_G, values): F̂_i = (U_A ⊗ U_G) diag(values) (U_A ⊗ U_G)ᵀ, values = vec(s_i)."""
        U_A, U_G = self.eigenbases[self._check_layer(i)]
        return U_A, U_G, vec(self.scalings[i])

    def to_dense(self):
        return block_diagonal([self._layer_dense(i, s) for i, s in enumerate(self.scalings)], self.slices)

    def matvec(self, v):
        v = self._check_vector(v, "matvec")
        return self._blockwise(v, self._diagonal_in_basis(lambda i: self.scalings[i]))

    def solve(self, v, damping=0.0):
        v = self._check_vector(v, "solve")
        values = self._damped(damping, "EKFAC solve")
        return self._blockwise(v, self._diagonal_in_basis(lambda i: 1 / values[i]))

    def inverse(self, damping=0.0):
        values = self._damped(damping, "EKFAC inverse")
        return block_diagonal([self._layer_dense(i, 1 / s) for i, s in enumerate(values)], self.slices)

    def trace(self):
        """Σ_l Σ s_l, which equals the exact blocks' trace (George et al. 2018)."""
        xp = backend.get_array_module(self.scalings[0])
        return sum(xp.sum(s) for s in self.scalings)

    def eigenvalues(self):
        xp = backend.get_array_module(self.scalings[0])
        return descending(xp.concatenate([vec(s) for s in self.scalings]))
