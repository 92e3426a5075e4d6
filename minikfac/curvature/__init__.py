"""Curvature: Kronecker algebra, the exact Fisher family, K-FAC and its rivals.

Everything here reads what the layers cached: the inputs a of Linear and
Conv2d layers (forward) and the gradients g w.r.t. their outputs (backward).
Dense matrices are in the canonical parameter order of :mod:`.params`.
"""

from minikfac.curvature import backprop, kfc, kron
from minikfac.curvature.approx import Approximation, Exact, ExactBlockDiagonal, ExactDiagonal
from minikfac.curvature.backprop import per_example_gradients
from minikfac.curvature.compare import Comparison, compare, mc_fisher_errors
from minikfac.curvature.diagonality import diagonal_kron_error, diagonal_kron_solve, off_diagonal_mass
from minikfac.curvature.figure_data import FigureMatrices, figure_matrices
from minikfac.curvature.ekfac import EKFAC, ekfac_scalings
from minikfac.curvature.fisher import fisher, fisher_blocks, fisher_diagonal, fisher_vector_product
from minikfac.curvature.kfac import kfac_cross_factors, kfac_dense, kfac_dense_from_net, kfac_factors
from minikfac.curvature.kfac_approx import KFAC
from minikfac.curvature.kron import (
    KroneckerFactors,
    kron_inverse,
    kron_matvec,
    kron_solve,
    kron_solve_factored,
    kronecker_spectrum,
    nearest_kronecker,
    unvec,
    vec,
)
from minikfac.curvature.params import (
    assign,
    augmented_matrix,
    flatten,
    layer_sizes,
    layer_slices,
    parametrised_layers,
    unflatten,
)
from minikfac.curvature.tridiagonal import KFACTridiagonal

__all__ = ["backprop", "kfc", "kron", "per_example_gradients", "fisher", "fisher_blocks", "fisher_diagonal",
           "fisher_vector_product", "KroneckerFactors", "kron_inverse", "kron_matvec", "kron_solve",
           "kron_solve_factored", "kronecker_spectrum", "nearest_kronecker", "vec", "unvec",
           "assign", "augmented_matrix", "flatten", "layer_sizes", "layer_slices",
           "parametrised_layers", "unflatten",
           "Approximation", "Exact", "ExactBlockDiagonal", "ExactDiagonal", "EKFAC", "ekfac_scalings",
           "Comparison", "compare", "FigureMatrices", "figure_matrices", "mc_fisher_errors",
           "diagonal_kron_error", "diagonal_kron_solve", "off_diagonal_mass",
           "kfac_cross_factors", "kfac_dense", "kfac_dense_from_net", "kfac_factors", "KFAC", "KFACTridiagonal"]
