"""The Laplace approximation: a Gaussian posterior over a trained net's weights from its curvature.

    la = mk.laplace.Laplace(net, loss_fn, X, y, structure="kfac", prior_precision=1.0)
    la.optimize_prior_precision()          # δ that maximises the evidence (closed form in F̂'s eigenvalues)
    probs = la.predictive(X_test)          # (n, C): the linearised predictive, probit-approximated

=========================  ===================================================================
:mod:`.posterior`          :class:`Laplace`: Λ = N·F̂ + δI in the structures "full", "block",
                           "kfac", "ekfac", "diag", over all layers or the last one
:mod:`.evidence`           the log marginal likelihood, its derivative in δ, its maximiser
:mod:`.predictive`         the outputs' Jacobians, J Σ Jᵀ through F̂'s solve, probit and
                           Monte-Carlo class probabilities
=========================  ===================================================================

The curvature comes from :func:`minikfac.curvature.approximate`; nothing here
computes a Fisher of its own.
"""

from minikfac.curvature.structures import STRUCTURES
from minikfac.laplace.evidence import effective_parameters, log_marginal_likelihood, maximise_evidence
from minikfac.laplace.posterior import METHODS, SUBSETS, Laplace
from minikfac.laplace.predictive import functional_covariance, monte_carlo, output_jacobians, probit

__all__ = ["Laplace", "STRUCTURES", "SUBSETS", "METHODS", "log_marginal_likelihood", "effective_parameters",
           "maximise_evidence", "output_jacobians", "functional_covariance", "probit", "monte_carlo"]
