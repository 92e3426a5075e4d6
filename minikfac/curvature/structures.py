"""The curvature structures the applications choose from, by name.

The Laplace approximation (:mod:`minikfac.laplace`), influence functions
(:mod:`minikfac.influence`) and the continual-learning penalties
(:mod:`minikfac.continual`) all need "the GGN of this net on this data, in
structure S", and all of them then only call the common
:class:`~.approximation.Approximation` interface (``matvec``, ``solve``,
``eigenvalues``, ``to_dense``). This module is the one place where a name
becomes such an object:

==========  ===========================================  =========================================
structure   F̂                                            memory (P parameters, layer l: n_l × m_l)
==========  ===========================================  =========================================
"full"      the exact F (P, P)                           P² (refused above ``MAX_DENSE_BYTES``)
"block"     the exact per-layer blocks F_ll              Σ_l P_l² (refused likewise)
"kfac"      A_l ⊗ G_l (Martens & Grosse 2015)            Σ_l n_l² + m_l²
"ekfac"     K-FAC's eigenbasis, refitted scalings        Σ_l n_l² + m_l² + P_l
            (George et al. 2018)
"diag"      the exact diagonal of F                      P
==========  ===========================================  =========================================

``kind`` picks the matrix as everywhere in :mod:`minikfac.curvature`; the
applications default to ``"ggn"``, the Hessian's positive semi-definite
stand-in (for the losses of :mod:`minikfac.nn.likelihoods` it equals the true
Fisher, Martens 2020, §9.2).
"""

from minikfac.curvature.approximation import Exact, ExactBlockDiagonal, ExactDiagonal
from minikfac.curvature.ekfac import EKFAC
from minikfac.curvature.kfac_block_diagonal import KFACBlockDiagonal

#: structure name -> the Approximation class built for it.
STRUCTURES = {"full": Exact, "block": ExactBlockDiagonal, "kfac": KFACBlockDiagonal, "ekfac": EKFAC,
              "diag": ExactDiagonal}


def check_structure(structure, caller, allowed=tuple(STRUCTURES)):
    """Raise ValueError unless ``structure`` is one of ``allowed``; return it."""
    if not isinstance(structure, str) or structure not in allowed:
        raise ValueError(f"{caller}: structure must be one of {', '.join(map(repr, allowed))}, got {structure!r}")
    return structure


def approximate(net, loss_fn, X, structure, y=None, kind="ggn", samples=1, seed=0, chunk_size=None):
    """F̂ of ``net`` on the inputs X (N, ...) in ``structure``: an :class:`~.approximation.Approximation`.

    Parameters
    ----------
    net, loss_fn : the network and its loss (which knows the output distribution).
    X : (N, ...) inputs; y : their targets, needed for ``kind="empirical"`` only.
    structure : "full", "block", "kfac", "ekfac" or "diag" (module docstring).
    kind, samples, seed, chunk_size : as in :func:`minikfac.curvature.fisher`.

    F̂ is the mean over the N examples, like every matrix of this package
    (a sum over the data is N·F̂). "full" and "block" check their size before
    allocating and raise ValueError naming it (:func:`.linalg.check_dense_size`).
    """
    cls = STRUCTURES[check_structure(structure, "approximate")]
    return cls.from_net(net, loss_fn, X, y=y, kind=kind, samples=samples, seed=seed, chunk_size=chunk_size)
