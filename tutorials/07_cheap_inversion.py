# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07. Cheap inversion, measured
#
# K-FAC's promise is that a layer's $(mn) \times (mn)$ Fisher block is inverted through its two small
# factors: $O(m^3 + n^3)$ work instead of $O((mn)^3)$. We time it, then look at the price of damping.
#
# **What you will see**
#
# - the time to solve $(A \otimes G)\,\mathrm{vec}(\Delta) = \mathrm{vec}(\nabla W)$ densely and through the
#   factors, for square layers of width $w$ (block size $w^2$), on a log-log plot with fitted slopes
#   (theory: 6 and 3), and the two answers agreeing to rounding error (~1e-15);
# - the speed-up at the largest dense size (a few hundred times at $w = 45$, a 2025 × 2025 block);
# - exact Tikhonov damping $(A \otimes G + \lambda I)^{-1}$ against Martens & Grosse's *factored* damping
#   $(A + \pi\sqrt\lambda I)^{-1} \otimes (G + \tfrac{\sqrt\lambda}{\pi} I)^{-1}$ on a real layer: the extra
#   terms the second adds, the gap between the two steps as $\lambda$ varies (a quarter to two thirds of the
#   step for $\lambda$ from 1e-6 to 100; they meet only when $\lambda$ is far below the factors' smallest
#   eigenvalue products), and what $\pi$ does and does not minimise.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import models, plot, training

mk.set_default_dtype("float64")
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Two ways to solve with a Kronecker product
#
# For a layer with $W$ of shape $(m, n)$, $A$ is $(n, n)$, $G$ is $(m, m)$ and the block $A \otimes G$ is
# $(mn, mn)$. With column-stacking vec,
#
# $$(A \otimes G)^{-1}\mathrm{vec}(X) = (A^{-1} \otimes G^{-1})\,\mathrm{vec}(X) = \mathrm{vec}(G^{-1} X A^{-1}).$$
#
# - **dense**: form the $(mn, mn)$ matrix and call `np.linalg.solve` (an LU factorisation, $\tfrac23 (mn)^3$
#   flops);
# - **factored**: `mk.curvature.kron_solve(A, G, X)` eigendecomposes $A = U_A\,\mathrm{diag}(a)\,U_A^\top$ and
#   $G = U_G\,\mathrm{diag}(g)\,U_G^\top$ (which is what lets it add damping later) and applies
#   $U_G[(U_G^\top X U_A) / (g a^\top)]U_A^\top$, the division entry by entry by the $(m, n)$ matrix of eigenvalue
#   products $g_i a_j$: $O(m^3 + n^3)$.
#
# The factors are random symmetric positive definite matrices, like damped K-FAC factors. First, the two
# give the same answer:

# %%
def random_factor(width):
    """A symmetric positive definite (width, width) matrix, eigenvalues around 0.5 to 4."""
    M = rng.standard_normal((width, width))
    return M @ M.T / width + 0.5 * np.eye(width)


A, G, X = random_factor(23), random_factor(23), rng.standard_normal((23, 23))  # (n, n), (m, m), (m, n)
dense_step = np.linalg.solve(np.kron(A, G), mk.curvature.vec(X))  # (529,)
factored_step = mk.curvature.vec(mk.curvature.kron_solve(A, G, X))
agreement = np.linalg.norm(dense_step - factored_step) / np.linalg.norm(dense_step)
print(f"relative difference, w = 23 (529 × 529 block): {agreement:.1e}")

# %% [markdown]
# ## Timing
#
# Timing is noisy (other programs share the machine), so each time is the **best of 3** runs: the minimum
# is the least disturbed measurement. The dense solve stops at $w = 45$ (a 2025 × 2025 block, about
# 0.1 s); the factored one goes on to $w = 512$ (a 262,144-parameter layer, whose dense block would
# take 550 GB). Forming `np.kron(A, G)` is not timed.

# %%
def best_of(function, repeats=3):
    """The smallest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


dense_widths = [8, 11, 16, 23, 32, 45]
factored_widths = dense_widths + [64, 90, 128, 181, 256, 362, 512]
dense_seconds, factored_seconds, differences = [], [], []
for w in factored_widths:
    A, G, X = random_factor(w), random_factor(w), rng.standard_normal((w, w))
    factored_seconds.append(best_of(lambda: mk.curvature.kron_solve(A, G, X)))
    if w in dense_widths:
        block, rhs = np.kron(A, G), mk.curvature.vec(X)  # (w², w²), (w²,)
        dense_seconds.append(best_of(lambda: np.linalg.solve(block, rhs)))
        step = mk.curvature.vec(mk.curvature.kron_solve(A, G, X))
        differences.append(np.linalg.norm(np.linalg.solve(block, rhs) - step) / np.linalg.norm(step))
print(f"largest relative difference between the dense and factored solves: {max(differences):.1e}")
print(f"{'w':>4} {'block':>7} {'dense (s)':>10} {'factored (s)':>13} {'speed-up':>9}")
for i, w in enumerate(factored_widths):
    dense = f"{dense_seconds[i]:10.2e}" if i < len(dense_seconds) else f"{'—':>10}"
    ratio = f"{dense_seconds[i] / factored_seconds[i]:8.1f}×" if i < len(dense_seconds) else ""
    print(f"{w:4d} {w * w:7d} {dense} {factored_seconds[i]:13.2e} {ratio:>9}")
speedup = dense_seconds[-1] / factored_seconds[len(dense_widths) - 1]

# %% [markdown]
# **Slopes.** If time $\approx c\,w^k$ then $\log t = \log c + k \log w$: the slope on log-log axes is the
# exponent. Small sizes measure Python and call overhead, not arithmetic, so each slope is fitted on the
# three largest widths of its series.

# %%
def loglog_slope(widths, seconds, points=3):
    """The least-squares slope of log(seconds) against log(widths) over the last ``points`` entries."""
    return np.polyfit(np.log(widths[-points:]), np.log(seconds[-points:]), 1)[0]


dense_slope = loglog_slope(dense_widths, dense_seconds)
factored_slope = loglog_slope(factored_widths, factored_seconds)
print(f"dense slope {dense_slope:.2f} (theory 6), factored slope {factored_slope:.2f} (theory 3); "
      f"speed-up at w = {dense_widths[-1]}: {speedup:.0f}×")

fig, ax = plt.subplots(figsize=(6.8, 4.6))
ax.loglog(dense_widths, dense_seconds, "o-", label=f"dense solve of $A \\otimes G$ (slope {dense_slope:.1f})")
ax.loglog(factored_widths, factored_seconds, "s-", label=f"through $A$ and $G$ (slope {factored_slope:.1f})")
for k, style in ((6, ":"), (3, "--")):
    anchor = dense_seconds[-1] if k == 6 else factored_seconds[-1]
    at = dense_widths[-1] if k == 6 else factored_widths[-1]
    guide = anchor * (np.array(factored_widths[:9 if k == 6 else None]) / at) ** k
    ax.loglog(factored_widths[:9 if k == 6 else None], guide, style, color="gray", linewidth=0.8,
              label=f"$\\propto w^{k}$")
ax.set_ylim(1e-6, 1)
ax.set_xlabel("layer width $w$ (block size $w^2 \\times w^2$)")
ax.set_ylabel("seconds (best of 3)")
ax.set_title("Solving with a layer's Fisher block, float64, one thread")
ax.legend(fontsize=8)
ax.grid(True, which="both", alpha=0.3)
plot.show(fig, "07_inversion_time")

# %% [markdown]
# The measured dense slope is usually a little under 6 (at these sizes LU is not yet fully compute-bound), the
# factored one under 3 (matrix products and `eigh` at a few hundred rows are still partly overhead). The
# blog article's complexity claim holds: *per block*, the factored inverse is cheaper by a factor that grows
# like $w^3$. (It is not the whole story of K-FAC's cost: the factors must also be estimated, an
# $O(N(m^2 + n^2))$ job per layer.)
#
# ## Damping: exact Tikhonov vs factored
#
# A Fisher block is often singular (fewer examples than parameters, pixels that are always 0, a softmax
# output), so K-FAC adds damping. The "exact" Tikhonov step is $(A \otimes G + \lambda I)^{-1}\mathrm{vec}(\nabla W)$.
# It is still cheap, through the eigenbases: $A \otimes G + \lambda I = (U_A \otimes U_G)\,\mathrm{diag}(a_j g_i +
# \lambda)\,(U_A \otimes U_G)^\top$ (`kron_solve(..., damping=λ)`). But a running K-FAC re-estimates $A$ and
# $G$ often, and the eigendecompositions are what costs; K-FAC damps each factor instead (Martens & Grosse 2015, §6.3):
#
# $$(A + \pi\sqrt\lambda\, I) \otimes (G + \tfrac{\sqrt\lambda}{\pi} I)
#   = A \otimes G + \lambda I
#   + \underbrace{\pi\sqrt\lambda\,(I \otimes G) + \tfrac{\sqrt\lambda}{\pi}(A \otimes I)}_{\text{extra terms}},$$
#
# whose inverse is the Kronecker product of two damped factor inverses (Cholesky suffices). We use a real
# layer: the first layer (64 pixels + bias → 32 tanh units) of a net trained for two epochs on the 8×8
# digits; $A$ (65, 65) is singular (border pixels are always 0), $G$ is (32, 32).

# %%
data = mk.data.load("digits")  # X_train (1438, 64), y_train (1438,)
net = models.mlp(64, 10, hidden=(32,), activation="tanh")
loss_fn = mk.nn.CrossEntropyLoss()
optimizer = mk.optim.Adam(net.parameters(), lr=3e-3)
training.train(net, loss_fn, optimizer, mk.data.DataLoader(data.X_train, data.y_train, 32, seed=0), 2,
               progress=False, log=None)
X, y = data.X_train[:500], data.y_train[:500]
factors = mk.curvature.kfac_factors(net, loss_fn, X, kind="true")  # [(A (65,65), G (32,32)), (A (33,33), G (10,10))]
net.zero_grad()  # training left the last batch's gradients in .grad; backward accumulates
loss = loss_fn(net(X), y)
net.backward(loss_fn.backward())
gradients = mk.curvature.unflatten(net, mk.curvature.flatten(net, "grad"))  # [(32, 65), (10, 33)]
A, G = factors[0]
gradient = gradients[0]
n, m = A.shape[0], G.shape[0]
pi = float(mk.curvature.damping.factored_pi(A, G))
print(f"A: {A.shape}, eigenvalues {np.linalg.eigvalsh(A)[0]:.1e} .. {np.linalg.eigvalsh(A)[-1]:.2f}; "
      f"G: {G.shape}, eigenvalues {np.linalg.eigvalsh(G)[0]:.1e} .. {np.linalg.eigvalsh(G)[-1]:.3f}")
mean_a, mean_g = np.trace(A) / n, np.trace(G) / m
print(f"tr(A)/n = {mean_a:.3f}, tr(G)/m = {mean_g:.4f} (ratio {mean_a / mean_g:.1f}), so π = {pi:.2f}")

# %% [markdown]
# First the algebra, on the dense matrices (2080 × 2080, small enough): the factored matrix minus the
# exactly damped one is exactly the two extra terms.

# %%
lam = 1e-3
I_n, I_m = np.eye(n), np.eye(m)
factored_matrix = np.kron(A + pi * np.sqrt(lam) * I_n, G + np.sqrt(lam) / pi * I_m)
extra = pi * np.sqrt(lam) * np.kron(I_n, G) + np.sqrt(lam) / pi * np.kron(A, I_m)
identity_gap = np.abs(factored_matrix - (np.kron(A, G) + lam * np.eye(n * m)) - extra).max()
print(f"max |factored − (A⊗G + λI) − extra terms| = {identity_gap:.1e}")

# %% [markdown]
# **Why this π.** The extra terms are positive semi-definite; their size, measured by the trace, is
#
# $$\mathrm{tr}\Big(\pi\sqrt\lambda\,(I_n \otimes G) + \tfrac{\sqrt\lambda}{\pi}(A \otimes I_m)\Big)
#   = \sqrt\lambda\,\Big(\pi\, n\, \mathrm{tr}(G) + \frac{m\,\mathrm{tr}(A)}{\pi}\Big),$$
#
# which is smallest where its derivative in $\pi$ vanishes: $\pi^2 = \dfrac{m\,\mathrm{tr}(A)}{n\,\mathrm{tr}(G)}
# = \dfrac{\mathrm{tr}(A)/n}{\mathrm{tr}(G)/m}$ — Martens & Grosse's trace-norm $\pi$ (`mk.curvature.damping.factored_pi`). With
# $\pi = 1$ the damping would ignore that $A$'s mean eigenvalue here is about 8× $G$'s (the ratio printed
# above). This is a statement
# about a *bound* on the extra terms; whether it also minimises the error of the *step* we measure next.

# %%
pis = pi * np.logspace(-2, 2, 41)  # π / π_trace from 0.01 to 100
extra_trace = np.sqrt(lam) * (pis * n * np.trace(G) + m * np.trace(A) / pis)
best_trace_pi = pis[np.argmin(extra_trace)]
print(f"the trace of the extra terms is smallest at π = {best_trace_pi:.2f} (trace-norm π = {pi:.2f})")


def step_error(A, G, gradient, lam, pi):
    """‖factored step − exact Tikhonov step‖ / ‖exact step‖ for one layer."""
    exact = mk.curvature.kron_solve(A, G, gradient, damping=lam)  # (m, n)
    factored = mk.curvature.kron_solve_factored(A, G, gradient, lam, pi=pi)
    return np.linalg.norm(factored - exact) / np.linalg.norm(exact)


lams = np.logspace(-14, 2, 33)  # λ from 1e-14 to 100, half a decade apart
errors_trace_pi = [step_error(A, G, gradient, la, pi) for la in lams]
errors_pi_one = [step_error(A, G, gradient, la, 1.0) for la in lams]
sweep = {i: [step_error(*factors[i], gradients[i], lam, p * float(mk.curvature.damping.factored_pi(*factors[i])) / pi)
             for p in pis] for i in range(2)}
for i in range(2):
    ratio = pis[int(np.argmin(sweep[i]))] / pi
    print(f"layer {i + 1}, λ = {lam:g}: step error at trace-norm π {sweep[i][20]:.3f}; "
          f"smallest over π {min(sweep[i]):.3f}, at {ratio:.2f} × trace-norm π")
print("step error vs λ (trace-norm π): "
      + ", ".join(f"λ={la:g}: {e:.2f}" for la, e in zip(lams[::4], errors_trace_pi[::4])))
a_eigs, U_A = np.linalg.eigh(A)
g_eigs = np.linalg.eigvalsh(G)
null_A = U_A[:, a_eigs < 1e-12]  # directions with a_j = 0 (pixels that are 0 in every image, and their mixtures)
null_share = np.linalg.norm(gradient @ null_A) / np.linalg.norm(gradient)
smallest_product = g_eigs[0] * a_eigs[a_eigs >= 1e-12][0]
large_lams = lams >= 1e-6
print(f"A has {null_A.shape[1]} zero eigenvalues; the gradient's share in that null space: {null_share:.1e}")
print(f"smallest non-zero product a_j g_i: {smallest_product:.1e}; step error for λ ≥ 1e-6: "
      f"{min(np.array(errors_trace_pi)[large_lams]):.2f} .. {max(np.array(errors_trace_pi)[large_lams]):.2f}, "
      f"at λ = {lams[0]:g}: {errors_trace_pi[0]:.3f}")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 4.6), layout="constrained")
left.semilogx(lams, errors_trace_pi, "o-", label=f"trace-norm π = {pi:.2f}")
left.semilogx(lams, errors_pi_one, "s-", label="π = 1")
left.set_xlabel("damping λ")
left.set_ylabel("‖factored step − exact step‖ / ‖exact step‖")
left.set_title("Layer 1 (W̄: 32 × 65): factored vs exact Tikhonov damping")
left.set_ylim(0, None)
left.legend()
left.grid(True, alpha=0.3)
for i in range(2):
    right.semilogx(pis / pi, sweep[i], label=f"step error, layer {i + 1}")
right.axvline(1.0, color="black", linewidth=0.8, label="trace-norm π")
twin = right.twinx()
twin.semilogx(pis / pi, extra_trace / extra_trace.min(), "--", color="gray", label="trace of extra terms, layer 1")
twin.set_ylim(0.9, 4)
twin.set_ylabel("trace of the extra terms ÷ its minimum")
right.set_xlabel("π / trace-norm π")
right.set_ylabel("relative step error")
right.set_ylim(0, 1.2)
right.set_title(f"Choosing π, λ = {lam:g}")
right.legend(fontsize=8, loc="upper left")
twin.legend(fontsize=8, loc="upper right")
right.grid(True, alpha=0.3)
plot.show(fig, "07_factored_damping")

# %% [markdown]
# What the numbers say:
#
# - The two damped steps are **not** close at any damping one would use: they differ by a quarter to two thirds
#   of the exact step's norm for every $\lambda$ from 1e-6 to 100. In an eigendirection $(j, i)$ of $A \otimes G$
#   the exact step divides by $a_j g_i + \lambda$, the factored one by
#   $(a_j + \pi\sqrt\lambda)(g_i + \sqrt\lambda/\pi) = a_j g_i + \lambda + \pi\sqrt\lambda\, g_i + a_j\sqrt\lambda/\pi$:
#   wherever $a_j g_i$ is small next to $\lambda$, the cross terms make the factored divisor much larger (a much
#   shorter step there). $A$'s exact zeros do not matter — the gradient has no component there (printed: a
#   pixel that is 0 in every image gives 0 in every $\bar a$ *and* in every gradient column) — but its smallest
#   non-zero eigenvalues are tiny, so the two steps meet only when $\lambda$ falls far below the products
#   $a_j g_i \approx 10^{-9}$, around $\lambda = 10^{-14}$ on the left. Factored damping is better thought of
#   as a *different* regulariser than as a close approximation of Tikhonov's; Martens & Grosse adapt its strength
#   ($\gamma$ in their notation) on its own terms.
# - The trace-norm $\pi$ minimises the trace of the extra terms (exactly, by the formula) and on this layer
#   it is also close to the best $\pi$ for the step ($\pi = 1$ is worse at most $\lambda$ from 1e-6 to 100,
#   not all, and better at much smaller $\lambda$). On the output layer the best $\pi$ for the step is
#   different (about a third of the trace-norm one): the trace argument bounds the extra terms, it does not
#   promise the smallest step error.
#
# ## What we checked

# %%
assert agreement < 1e-10 and max(differences) < 1e-10, \
    f"the factored and dense solves must agree to 1e-10: {agreement:.1e}, {max(differences):.1e}"
assert speedup > 20, f"the factored solve should be much faster at w = 45, got {speedup:.1f}×"
assert dense_slope > factored_slope + 1.5, \
    f"the dense cost should grow much faster: slopes {dense_slope:.2f} vs {factored_slope:.2f}"
assert dense_slope > 4, f"the dense slope should be near 6 (LU of a w²-sized matrix), got {dense_slope:.2f}"
assert identity_gap < 1e-12, "the factored matrix must be A⊗G + λI plus exactly the two extra terms"
assert abs(best_trace_pi / pi - 1) < 0.12, "the trace of the extra terms must be smallest at the trace-norm π"
assert min(np.array(errors_trace_pi)[large_lams]) > 0.2, \
    "for λ ≥ 1e-6, factored and exact damping give clearly different steps on this layer"
assert null_share < 1e-10, "the gradient has no component where A has zero eigenvalues"
assert errors_trace_pi[0] < 0.25 * min(np.array(errors_trace_pi)[large_lams]), \
    "far below the smallest products a_j g_i (λ = 1e-14), the two damped steps come together"
assert sweep[0][20] < 1.1 * min(sweep[0]), "layer 1: the trace-norm π should be near the best π for the step"
assert sweep[1][20] > 1.05 * min(sweep[1]), "layer 2: some other π gives a smaller step error (the text says so)"

# %% [markdown]
# ## Summary
#
# Solving with a Kronecker-factored block costs $O(m^3 + n^3)$ and, measured, grows with a log-log slope under 3
# (timings are noisy) against a little under 6 for the dense solve; it is hundreds of times faster already
# at $w = 45$. Exact Tikhonov
# damping keeps that cost through the eigenbases; factored damping adds the terms
# $\pi\sqrt\lambda\,(I \otimes G) + \tfrac{\sqrt\lambda}{\pi}(A \otimes I)$ and gives a noticeably different
# step; the trace-norm $\pi$ makes those extra terms smallest in trace, which is not the same as making the
# step closest to Tikhonov's.
#
# ## Try this
#
# - Replace `kron_solve` in the timing loop by two Cholesky factorisations (`np.linalg.cholesky(A)`,
#   `np.linalg.cholesky(G)`): what slope and what constant do you get?
# - Add $10^{-3} I$ to $A$ before the damping section: at which $\lambda$ do the two damped steps now meet, and
#   how does that compare with the new smallest product $a_j g_i$?
# - Repeat the π sweep at $\lambda = 1$ and $\lambda = 10^{-5}$: does the best π move?
