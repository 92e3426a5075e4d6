"""Exercise 7: Tikhonov damping, exact and factored with π.

Read first: tutorial 07 (cheap inversion), section "Damping: exact Tikhonov vs
factored"; tutorial 01, section "Inverse and eigenpairs come from the factors".

K-FAC's factors A (n, n) and G (m, m) are often (nearly) singular — a layer with
more inputs than the batch has examples gives a rank-deficient A — so the
natural-gradient step solves a *damped* system (Martens & Grosse 2015, §6.3),
either

    exact:     (A ⊗ G + λ I)⁻¹ vec(V)
    factored:  ((A + π√λ I) ⊗ (G + (√λ/π) I))⁻¹ vec(V)

The factored form keeps the Kronecker structure, so exercise 4 applies to it; it
is not the same matrix as the exact one (expand the product to see the extra
terms). π splits the damping between the factors according to their scale;
Martens & Grosse's trace-norm choice is

    π = sqrt( (tr(A) / n) / (tr(G) / m) ).

The exact form is no Kronecker product, but it can still be computed from the
factors alone, through their eigendecompositions A = U_A diag(a) U_Aᵀ and
G = U_G diag(g) U_Gᵀ (``np.linalg.eigh``).

Shapes: A (n, n) and G (m, m) symmetric positive semi-definite, V (m, n), λ > 0.
vec stacks columns (exercise 4). Use NumPy, not ``minikfac.curvature``; do not
form A ⊗ G (np.kron is fine to test your answers by hand). Check with
``minikfac check 7`` (``--hints 2`` for more help). The checker's A and G have
very different scales (π far from 1, so π and 1/π cannot be swapped unnoticed),
and some are singular.
"""

import numpy as np  # noqa: F401  (you will need it)


def trace_norm_pi(A, G):
    """π = sqrt((tr(A)/n) / (tr(G)/m)).

    Parameters
    ----------
    A : (n, n) array.  G : (m, m) array.

    Returns
    -------
    float.
    """
    raise NotImplementedError("Exercise 7.1: return π = sqrt((tr(A)/n) / (tr(G)/m))")


def damped_factors(A, G, damping):
    """The factored damping's two factors.

    Parameters
    ----------
    A : (n, n) array.  G : (m, m) array.  damping : λ > 0.

    Returns
    -------
    (A + π√λ I, G + (√λ/π) I) : arrays (n, n) and (m, m), π from 7.1.
    """
    raise NotImplementedError("Exercise 7.2: return (A + π√λ I, G + (√λ/π) I)")


def factored_damped_solve(A, G, V, damping):
    """((A + π√λ I) ⊗ (G + (√λ/π) I))⁻¹ vec(V), as an (m, n) matrix.

    Parameters
    ----------
    A : (n, n) array.  G : (m, m) array.  V : (m, n) array.  damping : λ > 0.

    Returns
    -------
    (m, n) array Y with ((A + π√λ I) ⊗ (G + (√λ/π) I)) vec(Y) = vec(V).
    """
    raise NotImplementedError("Exercise 7.3: return the factored-damping solve as an (m, n) matrix")


def exact_damped_solve(A, G, V, damping):
    """(A ⊗ G + λ I)⁻¹ vec(V), as an (m, n) matrix, without forming A ⊗ G.

    Parameters
    ----------
    A : (n, n) symmetric PSD array.  G : (m, m) symmetric PSD array.
    V : (m, n) array.  damping : λ > 0.

    Returns
    -------
    (m, n) array Y with (A ⊗ G + λ I) vec(Y) = vec(V).

    Check against ``np.linalg.solve(np.kron(A, G) + λ I, vec(V))`` on a small case.
    """
    raise NotImplementedError("Exercise 7.4: return the exact damped solve (A ⊗ G + λI)⁻¹ vec(V) as an (m, n) matrix")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("7", __file__))
