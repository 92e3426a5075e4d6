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
# factors: $O(m^3 + n^3)$ work instead of $O((mn)^3)$. We count the arithmetic, time it, then look at the
# price of damping.
#
# **What you will see**
#
# - the floating-point operations (flops) to solve $(A \otimes G)\,\mathrm{vec}(\Delta) = \mathrm{vec}(\nabla W)$
#   densely and through the factors, for square layers of width $w$ (block size $w^2$): log-log slopes 6 and 3,
#   over 2,000 times fewer flops at $w = 45$ (a 2025 × 2025 block), and the two answers agreeing to rounding
#   error (~1e-15);
# - the measured times next to the counts, with fitted slopes (the factored solve is much faster at $w = 45$,
#   by a factor that is printed; timings depend on the machine and its load, so they are shown, not checked);
# - exact Tikhonov damping $(A \otimes G + \lambda I)^{-1}$ against Martens & Grosse's *factored* damping
#   $(A + \pi\sqrt\lambda I)^{-1} \otimes (G + \tfrac{\sqrt\lambda}{\pi} I)^{-1}$ on a real layer: the extra
#   terms the second adds, the gap between the two steps as $\lambda$ varies (a quarter to two thirds of the
#   step for $\lambda$ from 1e-6 to 100; they meet only when $\lambda$ is far below the factors' smallest
#   eigenvalue products), why the gap peaks at 0.9 near $\lambda = 3 \cdot 10^{-9}$ (seven pixels that are
#   lit in at most four of the 500 images), and what $\pi$ does and does not minimise.

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
# ## Counting, then timing
#
# The arithmetic can be counted from the shapes alone, without a clock. A flop is one addition or
# multiplication of two floats.
#
# - **dense**: LU of the $N \times N$ block, $N = w^2$, costs $\tfrac23 N^3$ flops, and the two triangular solves
#   $2N^2$;
# - **factored**: two $w \times w$ symmetric eigendecompositions with their eigenvectors, about $9w^3$ flops
#   each (the usual count for LAPACK's symmetric eigensolver: $\tfrac43 w^3$ to reduce to tridiagonal form, the
#   rest to accumulate the eigenvectors), and four $w \times w$ matrix products, $2w^3$ each; the division by
#   $g a^\top$ is $w^2$.
#
# These counts are what the $O(\cdot)$ claims are about, and they do not change with the machine's load.

# %%
def dense_solve_flops(w):
    """LU of the (w², w²) block plus the two triangular solves: (2/3)N³ + 2N², N = w²."""
    N = w * w
    return 2 / 3 * N**3 + 2 * N**2


def factored_solve_flops(w):
    """Two w × w eigendecompositions (≈ 9w³ each), four w × w products (2w³ each), one division (w²)."""
    return 2 * 9 * w**3 + 4 * 2 * w**3 + w**2


count_widths = np.array([8, 11, 16, 23, 32, 45, 64, 90, 128, 181, 256, 362, 512])
dense_flops = np.array([dense_solve_flops(w) for w in count_widths])
factored_flops = np.array([factored_solve_flops(w) for w in count_widths])
count_slope_dense = np.polyfit(np.log(count_widths[3:6]), np.log(dense_flops[3:6]), 1)[0]  # w = 23, 32, 45
count_slope_factored = np.polyfit(np.log(count_widths[3:6]), np.log(factored_flops[3:6]), 1)[0]
flop_ratio = {int(w): d / f for w, d, f in zip(count_widths, dense_flops, factored_flops)}
crossover = next(w for w in range(1, 64) if dense_solve_flops(w) > factored_solve_flops(w))  # smallest such w
print(f"flops at w = 45: dense {dense_flops[5]:.2e}, factored {factored_flops[5]:.2e} (ratio {flop_ratio[45]:.0f}); "
      f"at w = 512 the dense solve would need {dense_solve_flops(512):.1e}")
print(f"count slopes on w = 23..45: dense {count_slope_dense:.2f}, factored {count_slope_factored:.2f}; "
      f"the dense solve needs more flops from w = {crossover} on")

# %% [markdown]
# Now the clock. Timing is noisy (other programs share the machine), so each time is the **best of 3** runs:
# the minimum is the least disturbed measurement. The dense solve stops at $w = 45$ (a 2025 × 2025 block, by far
# the slowest solve timed here); the factored one goes on to $w = 512$ (a 262,144-parameter layer, whose dense block would
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
# three largest widths of its series. The dotted and dashed lines are the flop counts, scaled to pass through
# the last measured point: where a curve follows its line, time is arithmetic.

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
shown = count_widths <= 90  # the dense count, drawn a little past the last dense measurement
ax.loglog(count_widths[shown], dense_flops[shown] * dense_seconds[-1] / dense_flops[5], ":", color="gray",
          linewidth=0.8, label="dense flop count (≈ $\\frac{2}{3}w^6$), scaled")
ax.loglog(count_widths, factored_flops * factored_seconds[-1] / factored_flops[-1], "--", color="gray",
          linewidth=0.8, label="factored flop count (≈ $26w^3$), scaled")
ax.set_ylim(1e-6, 1)
ax.set_xlabel("layer width $w$ (block size $w^2 \\times w^2$)")
ax.set_ylabel("time (s, best of 3)")
ax.set_title("Solving with a layer's Fisher block, float64, one thread")
ax.legend(fontsize=8)
ax.grid(True, which="both", alpha=0.3)
plot.show(fig, "07_inversion_time")

# %% [markdown]
# Look at where each measured curve leaves its count line. The measured dense slope is usually a little under 6
# (at these sizes LU is not yet fully compute-bound), the factored one under 3 (matrix products and `eigh` at a
# few hundred rows are still partly overhead, so the small widths sit above the line). The counts say the dense
# solve needs more flops from $w = 4$ on; measured, the factored solve wins only from $w \approx 16$, because
# each of its calls carries a fixed cost of some microseconds. The blog article's complexity claim holds:
# *per block*, the factored inverse is cheaper by a factor that grows like $w^3$ — in flops exactly, in seconds
# on this machine as printed (the seconds change with the machine and its load, so the checks below use the
# counts). (It is not the whole story of K-FAC's cost: the factors must also be estimated, an
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
#   shorter step there. $A$'s exact zeros do not matter — the gradient has no component there (printed: a
#   pixel that is 0 in every image gives 0 in every $\bar a$ *and* in every gradient column) — but its smallest
#   non-zero eigenvalues are tiny, and the two steps meet only around $\lambda = 10^{-14}$ on the left, far
#   below even the smallest product $a_j g_i \approx 2 \cdot 10^{-9}$ (the next section says why: the cross term
#   must also be small next to $a_j g_i$, which asks $\pi\sqrt\lambda \ll a_j$). Factored damping is better thought of
#   as a *different* regulariser than as a close approximation of Tikhonov's; Martens & Grosse adapt its strength
#   ($\gamma$ in their notation) on its own terms.
# - The trace-norm $\pi$ minimises the trace of the extra terms (exactly, by the formula) and on this layer
#   it is also close to the best $\pi$ for the step ($\pi = 1$ is worse at most $\lambda$ from 1e-6 to 100,
#   not all, and better at much smaller $\lambda$). On the output layer the best $\pi$ for the step is
#   different (about a third of the trace-norm one): the trace argument bounds the extra terms, it does not
#   promise the smallest step error.
#
# ## Why the gap peaks near λ = 3·10⁻⁹
#
# The left panel is not monotone: the gap grows from 0.04 at $\lambda = 10^{-14}$ to about 0.9 near
# $\lambda = 3 \cdot 10^{-9}$, then falls to 0.5 at $10^{-6}$. Both damped steps are sums over the eigendirections
# $(j, i)$ of $A \otimes G$, and the directions are orthogonal, so the gap splits exactly into groups of
# directions. One group decides the peak: the directions of $A$'s **tiny but non-zero** eigenvalues. They come
# from seven pixels lit in only a handful of the 500 images (at the border of the digit box), whose mean squares
# are tiny. The cell below selects the 8 eigenvalues of $A$ between $10^{-12}$ and $10^{-3}$ (printed): six lie
# between $6 \cdot 10^{-6}$ and $5.2 \cdot 10^{-5}$, and two are larger, $2.9 \cdot 10^{-4}$ and $4.2 \cdot 10^{-4}$.
#
# - The gradient hardly points there (its share is printed: a quarter of a percent of its norm), but the exact
#   step divides by $a_j g_i + \lambda$, down to $2 \cdot 10^{-9}$, so for small $\lambda$ these few directions
#   carry almost all of the exact step.
# - In them the factored divisor is $a_j g_i + \lambda + \pi\sqrt\lambda\, g_i + a_j\sqrt\lambda/\pi$. Next to
#   $a_j g_i$ the third term is $\pi\sqrt\lambda / a_j$ times as large: it matters as soon as $\pi\sqrt\lambda$
#   reaches $a_j$, i.e. from $\lambda \approx (a_j/\pi)^2 \approx 4 \cdot 10^{-12}$ — far below $a_j g_i$. From
#   there on the factored step is much shorter than the exact one in these directions: the gap within them
#   climbs towards 1.
# - Once $\lambda$ passes their products $a_j g_i$ (about $10^{-8}$ to $10^{-7}$), the exact step is damped there
#   too, and its weight moves to the well-conditioned directions. For $\lambda$ from about $10^{-8}$ to $10^{-6}$
#   the two dampings are closer there (a gap of 0.1 to 0.4, printed below), and the total gap falls with the
#   rare directions' share. For larger $\lambda$ the extra terms grow in every direction, and the gap outside the
#   rare directions rises again (to about 0.64 at $\lambda = 10^{-3}$): from there on it is the whole-step gap.
#
# The peak sits between the two: where $\pi\sqrt\lambda$ already exceeds the rare pixels' $a_j$, while $\lambda$
# is still below their products $a_j g_i$, so that they still carry the exact step.

# %%
g_eigs, U_G = np.linalg.eigh(G)
components = U_G.T @ gradient @ U_A  # (m, n): entry (i, j) is the gradient along eigendirection (j, i)
rare = (a_eigs > 1e-12) & (a_eigs < 1e-3)  # A's tiny but non-zero eigenvalues, (n,) mask
in_rare = np.broadcast_to(rare, components.shape)  # (m, n)
pixel_mean_square = (X**2).mean(axis=0)  # (64,): the diagonal of A's pixel block
rare_pixels = np.flatnonzero((pixel_mean_square > 0) & (pixel_mean_square < 1e-4))
print(f"{rare.sum()} eigenvalues of A in (1e-12, 1e-3): {', '.join(f'{v:.1e}' for v in a_eigs[rare])}")
print(f"pixels with 0 < mean square < 1e-4: {rare_pixels.tolist()}, lit in "
      f"{(X[:, rare_pixels] != 0).sum(axis=0).tolist()} of the {len(X)} images")
print(f"the gradient's share (norm) along those directions: "
      f"{np.linalg.norm(components[in_rare]) / np.linalg.norm(components):.4f}")


def split_gap(lam):
    """(share of the exact step's squared norm in the rare directions, gap there, gap elsewhere, total gap)."""
    exact = components / (np.outer(g_eigs, a_eigs) + lam)  # (m, n), the exact step in the eigenbasis
    factored = components / np.outer(g_eigs + np.sqrt(lam) / pi, a_eigs + pi * np.sqrt(lam))
    difference = exact - factored
    share = np.sum(exact[in_rare] ** 2) / np.sum(exact**2)
    return (share, np.linalg.norm(difference[in_rare]) / np.linalg.norm(exact[in_rare]),
            np.linalg.norm(difference[~in_rare]) / np.linalg.norm(exact[~in_rare]),
            np.linalg.norm(difference) / np.linalg.norm(exact))


splits = np.array([split_gap(la) for la in lams])  # (33, 4)
share_rare, gap_rare, gap_rest, gap_total = splits.T
peak = int(np.argmax(errors_trace_pi))
onset = (a_eigs[rare].min() / pi) ** 2  # π√λ reaches the smallest rare a_j
handover = lams[np.argmax(share_rare < 0.5)]  # the first λ of the grid where the rare directions carry under half
print(f"the split reproduces the curve: max difference {np.max(np.abs(gap_total - errors_trace_pi)):.1e}")
print(f"peak: gap {errors_trace_pi[peak]:.3f} at λ = {lams[peak]:.1e}; there the rare directions carry "
      f"{share_rare[peak]:.3f} of the exact step, the gap within them is {gap_rare[peak]:.3f}, elsewhere "
      f"{gap_rest[peak]:.3f}")
print(f"π√λ reaches the smallest rare a_j at λ = (a_j/π)² = {onset:.1e}; the rare share falls below 1/2 at "
      f"λ = {handover:.1e}")
middle = (lams >= 0.99e-8) & (lams <= 1.01e-6)  # λ from 1e-8 to 1e-6
at_1e3 = int(np.argmin(np.abs(np.log(lams / 1e-3))))
print(f"gap outside the rare directions: {gap_rest[middle].min():.2f} to {gap_rest[middle].max():.2f} for λ in "
      f"[1e-8, 1e-6], {gap_rest[at_1e3]:.2f} at λ = {lams[at_1e3]:.0e}, largest {gap_rest.max():.2f} "
      f"(at λ = {lams[np.argmax(gap_rest)]:.0e})")

fig, ax = plt.subplots(figsize=(7.5, 5.2), layout="constrained")
ax.semilogx(lams, errors_trace_pi, "o-", color="black", label="gap, whole step (left panel above)")
ax.semilogx(lams, gap_rare, "s--", color="tab:red", label="gap within the rare-pixel directions")
ax.semilogx(lams, gap_rest, "^--", color="tab:blue", label="gap within all other directions")
ax.semilogx(lams, share_rare, ":", color="tab:purple", linewidth=2,
            label="share of the exact step's ‖·‖² in the rare-pixel directions")
ax.axvline(onset, color="gray", linewidth=0.8)
ax.text(onset, 1.02, " π√λ = smallest rare $a_j$", fontsize=8, color="gray")
ax.axvline(handover, color="gray", linewidth=0.8, linestyle="--")
ax.text(handover, 1.02, " share < 1/2", fontsize=8, color="gray")
ax.set_ylim(0, 1.1)
ax.set_xlabel("damping λ")
ax.set_ylabel("relative gap ‖factored − exact‖ / ‖exact‖, or share")
ax.set_title("Layer 1: where the gap between the damped steps comes from")
fig.legend(fontsize=8, loc="outside lower center", ncols=2)
ax.grid(True, alpha=0.3)
plot.show(fig, "07_gap_peak")

# %% [markdown]
# In the figure, follow the red and purple curves. Left of the first grey line the rare directions carry the
# step (purple ≈ 1) and both dampings agree in them (red ≈ 0). Between the lines the red curve climbs to about
# 0.9 while purple stays near 1: the whole-step gap (black) follows red up to its peak. Right of the dashed line
# the exact step has moved to the other directions, and the black curve drops towards the blue one.
#
# ## What we checked

# %%
assert agreement < 1e-10 and max(differences) < 1e-10, \
    f"the factored and dense solves must agree to 1e-10: {agreement:.1e}, {max(differences):.1e}"
assert abs(count_slope_dense - 6) < 0.1 and abs(count_slope_factored - 3) < 0.1, \
    f"flop counts grow like w⁶ and w³: slopes {count_slope_dense:.2f}, {count_slope_factored:.2f}"
assert flop_ratio[45] > 1000, f"at w = 45 the dense solve needs over 1000× the flops: {flop_ratio[45]:.0f}×"
assert 6 < flop_ratio[45] / flop_ratio[23] < 8, "the flop ratio grows like w³: (45/23)³ ≈ 7.5"
assert crossover == 4, f"in flops the factored solve is cheaper from w = 4 on (the text says so), not {crossover}"
assert identity_gap < 1e-12, "the factored matrix must be A⊗G + λI plus exactly the two extra terms"
assert abs(best_trace_pi / pi - 1) < 0.12, "the trace of the extra terms must be smallest at the trace-norm π"
assert min(np.array(errors_trace_pi)[large_lams]) > 0.2, \
    "for λ ≥ 1e-6, factored and exact damping give clearly different steps on this layer"
assert null_share < 1e-10, "the gradient has no component where A has zero eigenvalues"
assert errors_trace_pi[0] < 0.25 * min(np.array(errors_trace_pi)[large_lams]), \
    "far below the smallest products a_j g_i (λ = 1e-14), the two damped steps come together"
assert np.max(np.abs(gap_total - errors_trace_pi)) < 1e-6, "the split in eigendirections reproduces the gap"
assert onset < lams[peak] < handover, \
    f"the peak ({lams[peak]:.0e}) lies between (a_j/π)² ({onset:.0e}) and the hand-over of the exact step ({handover:.0e})"
assert rare.sum() == 8 and np.sum(a_eigs[rare] < 1e-4) == 6 and a_eigs[rare].min() > 5e-6 \
    and np.all(a_eigs[rare][6:] > 2e-4), f"8 small eigenvalues, six from 6e-6 to 5.2e-5, two above 2e-4: {a_eigs[rare]}"
assert 0.05 < gap_rest[middle].min() and gap_rest[middle].max() < 0.45 and gap_rest[at_1e3] > 0.55, \
    f"outside the rare directions the gap is 0.1-0.4 for λ in [1e-8, 1e-6] and larger at 1e-3: {gap_rest}"
assert share_rare[peak] > 0.9 and gap_rare[peak] > 0.85 and gap_rest[peak] < 0.15, \
    "at the peak the rare-pixel directions carry the exact step and the factored step misses them"
assert len(rare_pixels) >= 4 and (X[:, rare_pixels] != 0).sum(axis=0).max() <= 5, \
    "the tiny eigenvalues come from pixels lit in at most five of the images"
assert sweep[0][20] < 1.1 * min(sweep[0]), "layer 1: the trace-norm π should be near the best π for the step"
assert sweep[1][20] > 1.05 * min(sweep[1]), "layer 2: some other π gives a smaller step error (the text says so)"

# %% [markdown]
# ## Summary
#
# Solving with a Kronecker-factored block costs $O(m^3 + n^3)$: counted, about $26w^3$ flops against
# $\tfrac23 w^6$ for the dense solve, over 2,000 times fewer at $w = 45$; measured, the times grow with log-log
# slopes under 3 and a little under 6, and the factored solve was much faster at $w = 45$ (by the factor
# printed above; timings vary with the machine and its load). Exact Tikhonov
# damping keeps that cost through the eigenbases; factored damping adds the terms
# $\pi\sqrt\lambda\,(I \otimes G) + \tfrac{\sqrt\lambda}{\pi}(A \otimes I)$ and gives a noticeably different
# step — up to 90% of it near $\lambda = 3 \cdot 10^{-9}$ on our layer, where a few rarely lit pixels carry the
# exact step and the cross term $\pi\sqrt\lambda$ already exceeds their eigenvalues $a_j$. The trace-norm $\pi$
# makes those extra terms smallest in trace, which is not the same as making the step closest to Tikhonov's.
#
# ## Try this
#
# - Replace `kron_solve` in the timing loop by two Cholesky factorisations (`np.linalg.cholesky(A)`,
#   `np.linalg.cholesky(G)`): what slope and what constant do you get?
# - Add $10^{-3} I$ to $A$ before the damping section: at which $\lambda$ do the two damped steps now meet, and
#   how does that compare with the new smallest product $a_j g_i$?
# - Repeat the π sweep at $\lambda = 1$ and $\lambda = 10^{-5}$: does the best π move?
