"""Exercise 11: the polar factor, Newton–Schulz, and Shampoo with one gradient.

Read first: tutorial 13 (K-FAC's relatives), sections "The polar factor and
Muon", "Newton–Schulz: the polar factor from matrix products" and "Muon's
step"; exercise 7 (functions of symmetric matrices through their
eigendecompositions) helps with 11.4. The papers: Gupta et al. 2018 (Shampoo),
Jordan et al. 2024 (Muon), Bernstein & Newhouse 2024.

Every real matrix M (m, n) has a thin singular value decomposition
M = U Σ Vᵀ, with U (m, r) and V (n, r) orthonormal columns, Σ = diag(σ_1, ..., σ_r)
and r = min(m, n). Its *polar factor* keeps the singular vectors and sets every
singular value to 1. Muon (Jordan et al. 2024) updates a weight matrix in the
direction of the polar factor of its momentum, but never computes an SVD: it
runs a few steps of a Newton–Schulz iteration, an odd matrix polynomial that
pushes every singular value towards 1 using matrix products only.

Conventions, as in ``minikfac.curvature.polar`` and ``torch.optim.Muon``:

- Newton–Schulz coefficients (a, b, c) define p(σ) = a·σ + b·σ³ + c·σ⁵; one step
  maps every singular value σ of X to p(σ) and keeps the singular vectors. Muon's
  coefficients are (3.4445, −4.7750, 2.0315); the classical cubic ones are
  (1.5, −0.5, 0).
- The iteration works on the *wide* orientation: a tall M (m > n) is transposed
  first and the result transposed back, so that the Gram matrix it forms is the
  smaller one, (min(m, n), min(m, n)).
- Before the first step the iteration divides by the Frobenius norm ‖X‖_F (which
  bounds every singular value by 1 without an SVD), floored at eps:
  X / max(‖X‖_F, eps).
- Shampoo's statistics of one gradient G (m, n) are L = G Gᵀ (m, m) and
  R = Gᵀ G (n, n); ε I is added to each before taking powers.

Use NumPy only (not ``minikfac.curvature``). Check with ``minikfac check 11``
(``--hints 2`` for more help). The checker uses wide, tall and square matrices,
a single row, matrices with norms from 10⁻² to 10², and a zero matrix.
"""

import numpy as np  # noqa: F401  (you will need it)


def polar_factor(M):
    """The polar factor of M, from its SVD.

    Parameters
    ----------
    M : (m, n) array of full rank min(m, n).

    Returns
    -------
    (m, n) array: M's singular vectors with every singular value replaced by 1.
    """
    raise NotImplementedError("Exercise 11.1: return the polar factor of M (m, n), shape (m, n)")


def newton_schulz_step(X, coefficients):
    """One Newton–Schulz step, with matrix products only (no SVD).

    Parameters
    ----------
    X : (m, n) array with ‖X‖_F = 1 (already normalised), wide, tall or square.
    coefficients : (a, b, c), three floats.

    Returns
    -------
    (m, n) array with the singular vectors of X and the singular values
    a·σ + b·σ³ + c·σ⁵, σ those of X.
    """
    raise NotImplementedError("Exercise 11.2: return one Newton–Schulz step of X (m, n), shape (m, n)")


def newton_schulz(M, steps, coefficients, eps):
    """Muon's Newton–Schulz iteration.

    Parameters
    ----------
    M : (m, n) array, any scale (zero included).
    steps : int >= 0, how many steps of 11.2.
    coefficients : (a, b, c), three floats.
    eps : float > 0, the floor of the norm.

    Returns
    -------
    (m, n) array: M in the wide orientation, divided by max(‖M‖_F, eps), after
    ``steps`` Newton–Schulz steps, in M's orientation again.
    """
    raise NotImplementedError("Exercise 11.3: return the Newton–Schulz iterate of M (m, n) after `steps` steps, "
                              "shape (m, n)")


def shampoo_one_gradient(G, eps):
    """Shampoo's update direction for a single gradient, L^{-1/4} G R^{-1/4}.

    Parameters
    ----------
    G : (m, n) array, one gradient.
    eps : float > 0, added to L and R: L = G Gᵀ + εI (m, m), R = Gᵀ G + εI (n, n).

    Returns
    -------
    (m, n) array L^{-1/4} G R^{-1/4}, the powers of the symmetric positive
    definite L and R taken through their eigendecompositions.
    """
    raise NotImplementedError("Exercise 11.4: return L^{-1/4} G R^{-1/4} for one gradient G (m, n), shape (m, n)")


if __name__ == "__main__":
    from minikfac import exercises

    raise SystemExit(exercises.run("11", __file__))
