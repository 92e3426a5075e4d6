"""Block-diagonal K-FAC: one Kronecker product A_l ⊗ G_l per layer (Martens & Grosse 2015, §4.2).

    F̂ = diag(A_1 ⊗ G_1, ..., A_ℓ ⊗ G_ℓ)          (P, P)

Nothing of size P_l × P_l is ever formed outside ``to_dense``/``inverse``:
products, solves, eigenvalues and the trace all go through the factors'
eigendecompositions (cached in :class:`.kron.KroneckerFactors`), and the
damped solves, exact or factored with π, are those of :mod:`.damping`.

For one layer's gradient ∇W̄ (D_out, D_in + 1) the natural gradient is
G⁻¹ ∇W̄ A⁻¹ (:meth:`KFACBlockDiagonal.precondition`), which K-FAC's optimizer applies.
"""

from minikfac import backend
from minikfac.curvature.approximation import Approximation, block_diagonal, check_slices, descending
from minikfac.curvature.damping import factored_inverse_dense, layer_pis
from minikfac.curvature.factors import kfac_factors
from minikfac.curvature.kron import KroneckerFactors, kron_eigenvalues
from minikfac.curvature.linalg import check_damping, is_zero
from minikfac.curvature.params import layer_slices, slices_of


def _check_factor_pairs(factors, caller):
    pairs = list(factors)
    if not pairs:
        raise ValueError(f"{caller}: factors is empty; expected one (A, G) pair per layer")
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{caller}: factors[{i}] must be a pair (A, G), got {type(pair).__name__}")
    return pairs


class KFACBlockDiagonal(Approximation):
    """Block-diagonal K-FAC, F̂ = diag(A_l ⊗ G_l) (Martens & Grosse 2015, §4.2, eq. (1)).

    Parameters
    ----------
    factors : list of (A, G), one per layer: A (n_l, n_l) = (D_in + 1)² and
        G (m_l, m_l) = D_out², symmetric PSD (:func:`.factors.kfac_factors`).
    slices : layer slices (default: from the factor sizes, P_l = n_l·m_l).

    Attributes
    ----------
    factors : list of :class:`.kron.KroneckerFactors` (eigendecompositions
        cached on first use; do not change A or G in place afterwards).
    """

    name = "K-FAC"

    def __init__(self, factors, slices=None):
        pairs = _check_factor_pairs(factors, "KFACBlockDiagonal")
        self.factors = [KroneckerFactors(A, G) for A, G in pairs]
        sizes = [kf.shape[0] for kf in self.factors]
        slices = slices_of(sizes) if slices is None else check_slices(slices, sizes, "KFACBlockDiagonal")
        super().__init__(slices, pairs[0][0].dtype)

    @classmethod
    def from_net(cls, net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
        """K-FAC of ``net`` on X: :func:`.factors.kfac_factors` (same parameters) wrapped."""
        return cls(kfac_factors(net, loss_fn, X, y, kind, samples, seed, chunk_size), layer_slices(net))

    # -- products and spectra ---------------------------------------------- #
    def block(self, i):
        """kron(A_i, G_i), (P_i, P_i)."""
        return self.factors[self._check_layer(i)].to_dense()

    def to_dense(self):
        return block_diagonal([kf.to_dense() for kf in self.factors], self.slices)

    def matvec(self, v):
        """F̂ v: per layer vec(G X Aᵀ) with vec(X) = v_l; v (P,) or (P, m)."""
        v = self._check_vector(v, "matvec")
        return self._blockwise(v, [kf.matvec for kf in self.factors])

    def trace(self):
        """Σ_l tr(A_l)·tr(G_l), a 0-d array."""
        return sum(kf.trace() for kf in self.factors)

    def eigenvalues(self):
        """All products a_j·g_i of the factors' eigenvalues, (P,), descending."""
        xp = backend.get_array_module(self.factors[0].A)
        return descending(xp.concatenate([kf.eigenvalues() for kf in self.factors]))

    def eigenbasis(self, i):
        """Layer ``i``'s block as (U_A, U_G, values): A_i ⊗ G_i = (U_A ⊗ U_G) diag(values) (U_A ⊗ U_G)ᵀ.

        values (P_i,) are the products a_j·g_i in the order of :func:`.kron.kron_eigenvalues`.
        """
        eigen = self.factors[self._check_layer(i)].eigen()
        return eigen.U_A, eigen.U_G, kron_eigenvalues(eigen.a_eigs, eigen.g_eigs)

    # -- solves ------------------------------------------------------------ #
    def _solvers(self, damping, factored, pi, caller):
        damping = check_damping(damping, caller)
        if not factored:
            return [lambda X, kf=kf: kf.solve(X, damping) for kf in self.factors]
        pis = layer_pis(pi, len(self.factors), caller)
        return [lambda X, kf=kf, p=p: kf.solve_factored(X, damping, p) for kf, p in zip(self.factors, pis)]

    def solve(self, v, damping=0.0, factored=False, pi=None):
        """(F̂ + λI)⁻¹ v, or with ``factored=True`` the factored-Tikhonov solve of Martens & Grosse 2015, §6.3.

        v : (P,) or (P, m). damping : λ >= 0. pi : for ``factored`` only —
        None (each layer's trace-norm π), a number, or one per layer.
        With λ = 0 both are the exact F̂⁻¹ v (singular factors raise ValueError).
        """
        v = self._check_vector(v, "solve")
        return self._blockwise(v, self._solvers(damping, factored, pi, "K-FAC solve"))

    def precondition(self, gradients, damping=0.0, factored=False, pi=None):
        """The natural gradient G_l⁻¹ ∇W̄_l A_l⁻¹ of each layer (damped as in :meth:`solve`).

        gradients : list of (D_out, D_in + 1) matrices, e.g. ``unflatten(net,
        flatten(net, "grad"))``. Returns a list of the same shapes; equals
        ``unflatten(net, solve(flatten(net, "grad"), ...))``.
        """
        gradients = list(gradients)
        if len(gradients) != len(self.factors):
            raise ValueError(f"K-FAC precondition: got {len(gradients)} gradients for {len(self.factors)} layers")
        for i, (grad, kf) in enumerate(zip(gradients, self.factors)):
            expected = (kf.G.shape[0], kf.A.shape[0])
            if not backend.is_array(grad) or tuple(grad.shape) != expected:
                got = tuple(grad.shape) if backend.is_array(grad) else type(grad).__name__
                raise ValueError(f"K-FAC precondition: gradient {i} has shape {got}, expected {expected} "
                                 "(D_out, D_in + 1)")
        solvers = self._solvers(damping, factored, pi, "K-FAC precondition")
        return [solve(grad) for solve, grad in zip(solvers, gradients)]

    def inverse(self, damping=0.0, factored=False, pi=None):
        """Dense (F̂ + λI)⁻¹ (or the factored-damping inverse), (P, P); small nets only."""
        damping = check_damping(damping, "K-FAC inverse")
        if not factored or is_zero(damping):
            return block_diagonal([kf.inverse(damping) for kf in self.factors], self.slices)
        pis = layer_pis(pi, len(self.factors), "K-FAC inverse")
        return block_diagonal([factored_inverse_dense(*kf.eigen(), damping, kf.pi() if p is None else p)
                               for kf, p in zip(self.factors, pis)], self.slices)
