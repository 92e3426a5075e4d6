"""Studies: measurements over the curvature of :mod:`minikfac.curvature`.

How far each approximation is from the exact Fisher, the data of Martens &
Grosse 2015's Figs. 2 and 3, how diagonal the factors are, how well KFC's
assumptions hold on real conv layers, and the curvature at work: the Laplace
posterior's calibration, influence functions finding flipped labels, and
curvature penalties against forgetting. These may time and log what they do;
the mathematics they measure lives in ``curvature/``.

============================  ============================================================
:mod:`.approximation_errors`  :func:`compare`: errors, cosines, spectra, Monte-Carlo noise
:mod:`.kronecker_family`      Shampoo², Shampoo, SOAP, K-FAC against the nearest Kronecker product
:mod:`.monte_carlo`           the Monte-Carlo Fisher's error against the number of samples
:mod:`.figure_data`           the matrices behind Figs. 2 and 3
:mod:`.diagonality`           off-diagonal mass of A and G, the diagonal K-FAC
:mod:`.kfc_assumptions`       KFC's three assumptions, measured stage by stage
:mod:`.calibration`           NLL, expected calibration error, reliability, OOD AUROC
:mod:`.laplace_digits`        the Laplace posterior on digits: every structure, all or last layer
:mod:`.mislabelled`           flipped labels found by self-influence or by the loss
:mod:`.permuted_digits`       permuted-digits tasks in sequence, with curvature penalties
============================  ============================================================
"""

from minikfac.studies import calibration, kfc_assumptions, laplace_digits, mislabelled, permuted_digits
from minikfac.studies.approximation_errors import Comparison, compare, format_table
from minikfac.studies.kronecker_family import KroneckerDistances, kronecker_distances
from minikfac.studies.monte_carlo import mc_fisher_errors
from minikfac.studies.diagonality import diagonal_kron_error, diagonal_kron_solve, off_diagonal_mass
from minikfac.studies.figure_data import FigureMatrices, figure_matrices

__all__ = ["Comparison", "compare", "format_table", "KroneckerDistances", "kronecker_distances", "mc_fisher_errors", "diagonal_kron_error",
           "diagonal_kron_solve", "off_diagonal_mass", "FigureMatrices", "figure_matrices", "kfc_assumptions",
           "calibration", "laplace_digits", "mislabelled", "permuted_digits"]
