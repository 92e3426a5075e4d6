"""Curvature: K-FAC's whole story as arrays-in, arrays-out mathematics.

Everything here reads what the layers cached: the inputs a of Linear and
Conv2d layers (forward) and the gradients g w.r.t. their outputs (backward).
Dense matrices are in the canonical parameter order of :mod:`.params`.
No clocks, logs, tables or files: measurements over these live in
:mod:`minikfac.studies`, jobs in :mod:`minikfac.jobs`.

===========================  ================================================================
:mod:`.params`               the canonical parameter vector, W̄ = [W | b], ā = [a; 1], slices
:mod:`.statistics`           the passes that fill the caches: cotangents of the
                             true / Monte-Carlo / empirical Fisher and the GGN
:mod:`.exact`                the exact Fisher family, dense or by blocks
:mod:`.kron`                 Kronecker algebra: A ⊗ G never formed
:mod:`.rearrangement`        the Frobenius-nearest A ⊗ G to a matrix
:mod:`.linalg`               symmetric PSD eigh, the singular test, damped inverses
:mod:`.damping`              π, exact and factored Tikhonov damping, the damped
                             solve in the factors' eigenbasis
:mod:`.factors`              A = E[ā āᵀ], G = E[g gᵀ] (KFC's positions), F̃'s blocks
:mod:`.running_average`      the running averages of A and G
:mod:`.quadratic_model`      α and μ, ρ, the Levenberg–Marquardt rule, KL-clipping
:mod:`.approximation`        one interface for every F̂; the exact references
:mod:`.kfac_block_diagonal`  K-FAC, diag(A_l ⊗ G_l)
:mod:`.kfac_tridiagonal`     K-FAC with a block-tridiagonal inverse
:mod:`.ekfac`                EKFAC, K-FAC's eigenbasis with refitted scalings
:mod:`.structures`           the structures the applications choose by name: "full",
                             "block", "kfac", "ekfac", "diag" -> an Approximation
:mod:`.shampoo`              Shampoo's factors (R, L), Shampoo² and Shampoo as K-FAC objects,
                             SOAP (EKFAC in their eigenbasis), the nearest Kronecker
                             product, the power iteration between them
===========================  ================================================================
"""

from minikfac.curvature import kron, shampoo, statistics
from minikfac.curvature.approximation import Approximation, Exact, ExactBlockDiagonal, ExactDiagonal
from minikfac.curvature.ekfac import EKFAC, ekfac_scalings
from minikfac.curvature.exact import fisher, fisher_blocks, fisher_diagonal, fisher_vector_product
from minikfac.curvature.factors import (
    grad_factor,
    input_factor,
    kfac_cross_factors,
    kfac_dense,
    kfac_dense_from_net,
    kfac_factors,
)
from minikfac.curvature.kfac_block_diagonal import KFACBlockDiagonal
from minikfac.curvature.kfac_tridiagonal import KFACTridiagonal
from minikfac.curvature.kron import (
    KroneckerFactors,
    kron_inverse,
    kron_matvec,
    kron_solve,
    kron_solve_factored,
    unvec,
    vec,
)
from minikfac.curvature.rearrangement import kronecker_spectrum, nearest_kronecker
from minikfac.curvature.params import (
    assign,
    augmented_matrix,
    flatten,
    homogeneous_inputs,
    layer_sizes,
    layer_slices,
    parametrised_layers,
    unflatten,
)
from minikfac.curvature.shampoo import (
    kronecker_power_iteration,
    nearest_kronecker_approximation,
    shampoo_factors,
    soap,
)
from minikfac.curvature.statistics import per_example_gradients
from minikfac.curvature.structures import STRUCTURES, approximate

__all__ = ["STRUCTURES", "approximate", "statistics", "kron", "shampoo", "shampoo_factors", "soap", "nearest_kronecker_approximation",
           "kronecker_power_iteration", "per_example_gradients", "fisher", "fisher_blocks", "fisher_diagonal",
           "fisher_vector_product", "KroneckerFactors", "kron_inverse", "kron_matvec", "kron_solve",
           "kron_solve_factored", "kronecker_spectrum", "nearest_kronecker", "vec", "unvec",
           "assign", "augmented_matrix", "flatten", "layer_sizes", "layer_slices",
           "parametrised_layers", "unflatten",
           "Approximation", "Exact", "ExactBlockDiagonal", "ExactDiagonal", "EKFAC", "ekfac_scalings",
           "homogeneous_inputs", "input_factor", "grad_factor",
           "kfac_cross_factors", "kfac_dense", "kfac_dense_from_net", "kfac_factors", "KFACBlockDiagonal",
           "KFACTridiagonal"]
