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
# # 04. The Fisher three ways
#
# "Precondition with the Fisher" sounds like one recipe, but three different matrices go by that
# name: the true Fisher, the empirical Fisher and the Monte-Carlo Fisher. They can disagree badly,
# and only one of them is the curvature that natural gradient is about.
#
# **What you will see**
#
# - the true, Monte-Carlo and empirical Fisher and the Gauss-Newton matrix (GGN) of a 39-parameter
#   net side by side: the empirical Fisher differs from the true one by 40% (Frobenius) and is
#   smaller (its trace is 0.55 of the true Fisher's at 97% training accuracy);
# - the Monte-Carlo Fisher's error falling like $1/\sqrt{k}$ (measured log-log slope −0.45, theory −0.5);
# - the GGN equal to the true Fisher to ~1e-16, and the Hessian of the KL divergence (finite
#   differences) equal to it to ~5e-8 (and 0.6 away from the empirical Fisher);
# - Kunstner et al.'s linear regression: natural gradient is Newton's method and
#   lands on the optimum in one step, while the empirical-Fisher direction is off by up to ~130°
#   and its steps first walk *away* from the optimum.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import plot

mk.set_default_dtype("float64")  # exact-Fisher work: float64 everywhere
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)

# A tiny classifier on 60 points of three spiral arms: x (N, 2) -> logits (N, 3).
X, y = mk.data.spirals(n_per_class=20, classes=3, noise=0.2, seed=0)
net = mk.nn.Sequential(mk.nn.Linear(2, 6), mk.nn.Tanh(), mk.nn.Linear(6, 3))
loss_fn = mk.nn.CrossEntropyLoss()
P = mk.curvature.flatten(net).size
print(f"X {X.shape}, y {y.shape}, P = {P} parameters (layer sizes {mk.curvature.layer_sizes(net)})")

# Train a little (full batch, Adam), so that the model's predictions are not uniform.
opt = mk.optim.Adam(net.parameters(), lr=0.05)
for step in range(200):
    opt.zero_grad()
    loss = loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    opt.step()
accuracy = float(np.mean(np.argmax(net(X), axis=1) == y))
print(f"after 200 Adam steps: loss {float(loss):.3f}, training accuracy {accuracy:.0%}")

# %% [markdown]
# ## Four matrices from one formula
#
# Write $\ell_n(y) = -\log p(y \mid x_n, \theta)$ for the loss of example $n$ with target $y$. All
# four matrices are averages over the $N$ examples of $P \times P$ outer products of gradients
# (minikfac's normalisation, `docs/design.md`):
#
# | kind | matrix | the targets |
# |---|---|---|
# | `"true"` | $F = \frac1N\sum_n \mathbb{E}_{y\sim p(y\mid x_n)}[\nabla\ell_n(y)\nabla\ell_n(y)^\top]$ | every $y$, weighted by the model's probability (exact) |
# | `"mc"` | $\hat F_k = \frac1N\sum_n \frac1k\sum_{j=1}^k \nabla\ell_n(\tilde y_{nj})\nabla\ell_n(\tilde y_{nj})^\top$ | $k$ samples $\tilde y_{nj} \sim p(y\mid x_n)$ |
# | `"empirical"` | $F_{\rm emp} = \frac1N\sum_n \nabla\ell_n(y_n)\nabla\ell_n(y_n)^\top$ | the data labels $y_n$ |
# | `"ggn"` | $G = \frac1N\sum_n J_n^\top H_n J_n$ | none: $J_n = \partial f(x_n)/\partial\theta$ is $(C, P)$, $H_n = \nabla^2_f \ell_n$ is $(C, C)$ |
#
# The empirical Fisher uses the labels, so it knows nothing about what the *model* predicts; it is
# the uncentred covariance of the per-example gradients. `mk.curvature.fisher` computes each one
# as a dense $(P, P)$ array in the canonical parameter order (layer by layer, vec of $[W \mid b]$).

# %%
F_true = mk.curvature.fisher(net, loss_fn, X, kind="true")
F_ggn = mk.curvature.fisher(net, loss_fn, X, kind="ggn")
F_emp = mk.curvature.fisher(net, loss_fn, X, y=y, kind="empirical")
F_mc = mk.curvature.fisher(net, loss_fn, X, kind="mc", samples=4, seed=0)


def relative(A, B):
    """‖A − B‖_F / ‖B‖_F."""
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


print(f"shapes: {F_true.shape}; relative Frobenius distance to the true Fisher, and trace ratio:")
for name, matrix in [("GGN", F_ggn), ("Monte-Carlo, k = 4", F_mc), ("empirical", F_emp)]:
    print(f"  {name:20s} {relative(matrix, F_true):.2e}   tr / tr(F) = {np.trace(matrix) / np.trace(F_true):.3f}")
error_emp = relative(F_emp, F_true)
trace_ratio_emp = float(np.trace(F_emp) / np.trace(F_true))

# %% [markdown]
# Side by side (one shared colour scale; the lines separate the two layers' blocks; the bright
# rows and columns are the first layer's biases, indices 12–17). The true Fisher and the GGN are
# the same picture; the Monte-Carlo Fisher with 4 samples per example is a noisy copy; the
# empirical Fisher is paler. The net classifies 97% of its training points correctly, so most
# per-example gradients with the *true* label, $p_n - e_{y_n}$, are small; the true Fisher also
# counts the labels the model gives a little probability to, whose gradients are large.

# %%
edges = np.cumsum(mk.curvature.layer_sizes(net))[:-1] - 0.5
panels = [("true Fisher", F_true), ("GGN", F_ggn), ("Monte-Carlo, k = 4", F_mc), ("empirical Fisher", F_emp)]
vmax = np.quantile(np.abs(F_true), 0.98)
fig, axes = plt.subplots(1, 4, figsize=(15, 4))
for ax, (title, matrix) in zip(axes, panels):
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    for edge in edges:
        ax.axhline(edge, color="k", linewidth=0.6)
        ax.axvline(edge, color="k", linewidth=0.6)
    ax.set_title(f"{title}\n(rel. diff. to true: {relative(matrix, F_true):.2g})")
    ax.set_xlabel("parameter index")
axes[0].set_ylabel("parameter index")
fig.colorbar(image, ax=axes, shrink=0.8, label="entry")
plot.show(fig, "04_fisher_heatmaps")

# %% [markdown]
# ## The Monte-Carlo Fisher converges like $1/\sqrt{k}$
#
# $\hat F_k$ is an average of $k$ independent, unbiased estimates of $F$, so its variance falls like
# $1/k$ and its typical error $\|\hat F_k - F\|_F$ like $1/\sqrt{k}$: a slope of $-1/2$ on a log-log
# plot. We average the error over 10 seeds for each $k$ and fit the slope.

# %%
ks = np.array([1, 4, 16, 64, 256, 1024])
mc_errors = np.array([np.mean([relative(mk.curvature.fisher(net, loss_fn, X, kind="mc", samples=int(k), seed=s),
                                        F_true) for s in range(10)]) for k in ks])
slope, intercept = np.polyfit(np.log(ks), np.log(mc_errors), 1)
for k, e in zip(ks, mc_errors):
    print(f"k = {k:5d}: mean relative error {e:.4f}")
print(f"log-log slope {slope:.3f} (theory −0.5)")

fig, ax = plt.subplots(figsize=(5.5, 4))
ax.loglog(ks, mc_errors, "o-", label="Monte-Carlo Fisher (mean of 10 seeds)")
ax.loglog(ks, np.exp(intercept) * ks ** slope, "--", color="gray", label=f"fit: slope {slope:.2f}")
ax.axhline(error_emp, color="tab:red", linestyle=":", label="empirical Fisher (no k: it is biased)")
ax.set_xlabel("k, sampled targets per example")
ax.set_ylabel(r"$\|\hat F_k - F\|_F \,/\, \|F\|_F$")
ax.set_title("Monte-Carlo Fisher: error ~ 1/√k")
ax.legend()
plot.show(fig, "04_monte_carlo_error")

# %% [markdown]
# With one sample per example the Monte-Carlo Fisher is about as far from $F$ as the empirical
# Fisher (for a net that fits its data well, the labels look like one sample from the model). But
# the Monte-Carlo error keeps falling as $k$ grows, while nothing makes the empirical Fisher's error
# shrink: it is a different matrix, not a noisy estimate of $F$.
#
# ## The GGN is the true Fisher here
#
# For softmax cross-entropy (and for MSE and Bernoulli outputs) the network output $f$ is the
# *natural parameter* of an exponential family. Then the Hessian of $\ell$ w.r.t. $f$ does not
# depend on $y$ and equals the output Fisher: $H_n = \mathbb{E}_y[\nabla_f\ell\,\nabla_f\ell^\top] =
# \operatorname{diag}(p_n) - p_n p_n^\top$ (Martens 2020, §9.2). By the chain rule
# $\nabla_\theta \ell = J_n^\top \nabla_f \ell$, so $F = \frac1N\sum_n J_n^\top H_n J_n = G$.
# minikfac computes the GGN along a separate path (output Jacobian and loss Hessian), so the
# agreement is a real check:

# %%
error_ggn = relative(F_ggn, F_true)
print(f"‖GGN − F‖ / ‖F‖ = {error_ggn:.1e}")

# %% [markdown]
# ## The Fisher is the Hessian of the KL divergence
#
# Move the parameters by $\delta$ and compare the model's predictive distributions before and
# after, averaged over the inputs:
#
# $$D(\delta) = \frac1N \sum_n \mathrm{KL}\big(p_\theta(y\mid x_n)\,\big\|\,p_{\theta+\delta}(y\mid x_n)\big).$$
#
# $D(0) = 0$ is a minimum, so the gradient vanishes there and $D(\delta) \approx \tfrac12
# \delta^\top F \delta$: the Fisher is the Hessian of $D$ at $0$. This is why natural gradient is
# "steepest descent when distances are measured by how much the predictions change".
#
# `loss_fn.kl_divergence(out_p, out_q)` gives the KL between the loss's output distributions at two
# network outputs, per example (shape $(N,)$). First at the level of outputs: its Hessian in the
# second argument at equality is the output Fisher $H_n$.

# %%
out = net(X)
h = 1e-4
basis = np.eye(3) * h
H_fd = np.empty((X.shape[0], 3, 3))
for i in range(3):
    for j in range(3):
        H_fd[:, i, j] = (loss_fn.kl_divergence(out, out + basis[i] + basis[j])
                         - loss_fn.kl_divergence(out, out + basis[i] - basis[j])
                         - loss_fn.kl_divergence(out, out - basis[i] + basis[j])
                         + loss_fn.kl_divergence(out, out - basis[i] - basis[j])) / (4 * h * h)
error_output = float(np.abs(H_fd - loss_fn.output_hessian(out)).max())
print(f"KL at equal outputs: {float(np.abs(loss_fn.kl_divergence(out, out)).max()):.1e}; "
      f"max |finite-difference Hessian − diag(p) + p pᵀ| = {error_output:.1e}")

# %% [markdown]
# Now in parameter space: central differences of $D$ along every pair of coordinate directions,
# $\partial_i\partial_j D \approx [D(h e_i + h e_j) - D(h e_i - h e_j) - D(-h e_i + h e_j) +
# D(-h e_i - h e_j)] / 4h^2$. Only forward passes are used — no backward, no $J$, no $H$ — so this
# is an independent route to $F$ (780 entries, 3,120 forward passes of 60 examples).

# %%
theta = mk.curvature.flatten(net).copy()
reference = net(X)  # p_θ's outputs, fixed


def mean_kl(delta):
    mk.curvature.assign(net, theta + delta)
    return float(loss_fn.kl_divergence(reference, net(X)).mean())


basis = np.eye(P) * h
F_kl = np.empty((P, P))
for i in range(P):
    for j in range(i, P):
        F_kl[i, j] = F_kl[j, i] = (mean_kl(basis[i] + basis[j]) - mean_kl(basis[i] - basis[j])
                                   - mean_kl(basis[j] - basis[i]) + mean_kl(-basis[i] - basis[j])) / (4 * h * h)
mk.curvature.assign(net, theta)  # put the parameters back
error_kl = relative(F_kl, F_true)
print(f"‖Hessian of KL − F‖ / ‖F‖ = {error_kl:.1e}   (and to the empirical Fisher: {relative(F_kl, F_emp):.2f})")

# %% [markdown]
# ## Where the empirical Fisher goes wrong: Kunstner et al.'s linear regression
#
# Kunstner et al. 2019 (Fig. 1) use the simplest model there is: $y = \theta_0 +
# \theta_1 x + \varepsilon$, $\varepsilon \sim \mathcal N(0, 1)$, with $N = 1000$ points
# (`mk.data.kunstner_linear_regression`; its $X$ has columns $(1, x)$). As a network this is
# `Linear(2, 1, bias=False)` with `MSELoss` ($\ell_n = \tfrac12 (\theta^\top x_n - y_n)^2$), and
# its canonical vector is $\theta = (\theta_0, \theta_1)$. With residuals $r_n = \theta^\top x_n -
# y_n$, $\nabla \ell_n = r_n x_n$ and
#
# $$F = \frac1N\sum_n x_n x_n^\top = \nabla^2 L \quad (\text{constant}), \qquad
#   F_{\rm emp}(\theta) = \frac1N \sum_n r_n^2\, x_n x_n^\top .$$
#
# The true Fisher is the Hessian of the loss, so the natural gradient step $F^{-1}\nabla L$ *is*
# Newton's step and solves this quadratic in one step. The empirical Fisher weights each point by
# its squared residual: far from the optimum the residuals are large and uneven, and the matrix
# (hence the step) is distorted. Unlike the paper, we leave out their small Gaussian prior, so that
# NGD is exactly Newton. First, the library's matrices against the formulas:

# %%
Xr, yr = mk.data.kunstner_linear_regression(n=1000, seed=0)
reg = mk.nn.Sequential(mk.nn.Linear(2, 1, bias=False))
mse = mk.nn.MSELoss()
theta_star = np.linalg.lstsq(Xr, yr[:, 0], rcond=None)[0]  # the least-squares optimum


def curvature_at(t):
    """Gradient (2,), true Fisher (2, 2) and empirical Fisher (2, 2) of the regression at θ = t."""
    mk.curvature.assign(reg, np.asarray(t, dtype=np.float64))
    reg.zero_grad()
    mse(reg(Xr), yr)
    reg.backward(mse.backward())
    gradient = mk.curvature.flatten(reg, "grad").copy()
    return (gradient, mk.curvature.fisher(reg, mse, Xr, kind="true"),
            mk.curvature.fisher(reg, mse, Xr, y=yr, kind="empirical"))


start = np.array([2.0, 4.5])
gradient, F_reg, E_reg = curvature_at(start)
residuals = Xr @ start - yr[:, 0]
error_F_formula = relative(F_reg, Xr.T @ Xr / len(Xr))
error_E_formula = relative(E_reg, (Xr * residuals[:, None] ** 2).T @ Xr / len(Xr))
print(f"θ* = {np.round(theta_star, 4)}; at θ = {start}:")
print(f"  library F vs Xᵀ X / N: {error_F_formula:.1e};  library F_emp vs Σ r² x xᵀ / N: {error_E_formula:.1e}")
print(f"  F =\n{np.round(F_reg, 3)}\n  F_emp =\n{np.round(E_reg, 3)}")
_, F_other, E_star = curvature_at(theta_star)
print(f"F at another θ differs by {relative(F_other, F_reg):.1e}; at θ*, F_emp is within "
      f"{relative(E_star, F_reg):.0%} of F (the model is well specified: E[r²] = σ² = 1)")

# %% [markdown]
# Natural gradient from four starting points (those of the paper), step size 1: one step each.

# %%
starts = np.array([[2.0, 4.5], [1.0, 0.0], [4.5, 3.0], [-0.5, 3.0]])
ngd_misses = []
for t0 in starts:
    g0, F0, _ = curvature_at(t0)
    t1 = t0 - np.linalg.solve(F0, g0)
    ngd_misses.append(float(np.linalg.norm(t1 - theta_star)))
    print(f"from {t0}: one NGD step lands at {np.round(t1, 6)}, distance to θ* {ngd_misses[-1]:.1e}")

# %% [markdown]
# Now the three vector fields over the loss contours — the normalised directions $-\nabla L$,
# $-F^{-1}\nabla L$ and $-F_{\rm emp}^{-1}\nabla L$ on a grid — and 40 steps from each start:
# gradient descent with step size 1/3 (as in the paper; the largest stable one is $2/\lambda_{\max}(F)$,
# printed below), NGD and the empirical-Fisher method with step size 1. We also measure, at each
# grid point, the angle between each direction and Newton's.


# %%
def angle(u, v):
    """Angle between vectors u and v in degrees."""
    return float(np.degrees(np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))))


print(f"largest stable gradient-descent step 2 / λ_max(F) = {2 / np.linalg.eigvalsh(F_reg).max():.2f}")
grid = np.linspace(-1.0, 5.0, 17)
T0, T1 = np.meshgrid(grid, grid)
fields = {name: np.zeros(T0.shape + (2,)) for name in ("GD", "NGD", "EF")}
angles = {name: [] for name in fields}
for idx in np.ndindex(T0.shape):
    g_, F_, E_ = curvature_at([T0[idx], T1[idx]])
    newton = -np.linalg.solve(F_, g_)
    for name, direction in (("GD", -g_), ("NGD", newton), ("EF", -np.linalg.solve(E_, g_))):
        fields[name][idx] = direction / np.linalg.norm(direction)
        angles[name].append(angle(direction, newton))
for name in fields:
    print(f"{name:3s}: angle to the Newton direction over the grid: median {np.median(angles[name]):5.1f}°, "
          f"max {np.max(angles[name]):5.1f}°")


def run(method, t0, lr, steps=40):
    path = [np.array(t0, dtype=np.float64)]
    for _ in range(steps):
        g_, F_, E_ = curvature_at(path[-1])
        direction = {"GD": g_, "NGD": np.linalg.solve(F_, g_), "EF": np.linalg.solve(E_, g_)}[method]
        path.append(path[-1] - lr * direction)
    return np.array(path)


step_sizes = {"GD": 1 / 3, "NGD": 1.0, "EF": 1.0}
paths = {name: [run(name, t0, lr) for t0 in starts] for name, lr in step_sizes.items()}
ef_distances = np.linalg.norm(paths["EF"][0] - theta_star, axis=1)
print(f"EF from {starts[0]}: distance to θ* {ef_distances[0]:.2f} at the start, "
      f"{ef_distances.max():.2f} at its farthest (step {ef_distances.argmax()}), {ef_distances[-1]:.2f} after 40")

loss_grid = np.mean(0.5 * (T0[..., None] * Xr[:, 0] + T1[..., None] * Xr[:, 1] - yr[:, 0]) ** 2, axis=-1)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
titles = {"GD": "gradient descent (step 1/3)", "NGD": "natural gradient = Newton (step 1)",
          "EF": "empirical Fisher (step 1)"}
for ax, name in zip(axes, fields):
    ax.contour(T0, T1, loss_grid, levels=np.geomspace(loss_grid.min() * 1.01, loss_grid.max(), 14),
               colors="lightgray", linewidths=0.8)
    ax.quiver(T0, T1, fields[name][..., 0], fields[name][..., 1], color="gray", alpha=0.6, scale=30)
    for path in paths[name]:
        ax.plot(path[:, 0], path[:, 1], ".-", markersize=3, linewidth=1)
    ax.plot(*theta_star, "k*", markersize=12)
    ax.set_xlim(-1.2, 5.2)
    ax.set_ylim(-1.2, 5.2)
    ax.set_xlabel(r"$\theta_0$ (intercept)")
    ax.set_title(f"{titles[name]}\nmedian angle to Newton {np.median(angles[name]):.0f}°")
axes[0].set_ylabel(r"$\theta_1$ (slope)")
plot.show(fig, "04_kunstner_vector_fields")

# %% [markdown]
# Gradient descent points across the elongated contours (a median of about 35° off Newton's
# direction) and needs many small steps; natural gradient points at the optimum from everywhere.
# The empirical Fisher's direction is tilted by the residual weights $r_n^2$ — by more than the
# plain gradient's in the median, and by more than 90° somewhere — and its steps are short where
# the residuals are large ($F_{\rm emp}$ grows like $r^2$, so the step shrinks like $1/r$). From
# $(2, 4.5)$ the EF steps first move *away* from the optimum and after 40 steps are still farther
# from it than at the start. Only near $\theta^*$, where $F_{\rm emp} \approx F$ (a well-specified
# model with many data points), does the empirical-Fisher step approach Newton's.
#
# ## What we checked

# %%
assert error_ggn < 1e-12, f"the GGN must equal the true Fisher for cross-entropy, got {error_ggn:.1e}"
assert error_emp > 0.2, f"the empirical Fisher should differ visibly from the true one, got {error_emp:.2f}"
assert -0.65 < slope < -0.35, f"the Monte-Carlo error should fall like 1/sqrt(k), slope {slope:.2f}"
assert mc_errors[-1] < mc_errors[0] / 10, f"1024 samples should be >10x better than one: {mc_errors}"
assert mc_errors[-1] < error_emp / 10, "with 1024 samples the MC Fisher is >10x closer to F than the empirical one"
assert 0.2 < trace_ratio_emp < 0.9, f"the empirical Fisher is smaller than the true one here: {trace_ratio_emp:.2f}"
assert error_output < 1e-6, f"Hessian of the output KL = output Fisher, got {error_output:.1e}"
assert error_kl < 1e-6, f"finite-difference Hessian of the KL should reproduce F, got {error_kl:.1e}"
assert relative(F_kl, F_emp) > 0.2, "the KL Hessian is the true Fisher, not the empirical one"
assert error_F_formula < 1e-12 and error_E_formula < 1e-12, "library Fishers match the regression formulas"
assert relative(F_other, F_reg) < 1e-12, "the regression's true Fisher does not depend on θ"
assert max(ngd_misses) < 1e-10, f"NGD = Newton reaches the optimum in one step: {ngd_misses}"
assert max(angles["NGD"]) < 1e-5, "NGD is Newton's direction at every grid point"
assert max(angles["EF"]) > 90, f"somewhere the EF direction is >90° off Newton's: {max(angles['EF']):.0f}°"
assert ef_distances.max() > 1.3 * ef_distances[0], "EF steps from (2, 4.5) first move away from the optimum"
assert ef_distances[-1] > ef_distances[0], "after 40 EF steps from (2, 4.5) it is still farther than at the start"
assert np.median(angles["EF"]) > np.median(angles["GD"]), "EF is more tilted than the gradient (median)"
assert relative(E_star, F_reg) < 0.3, "at the optimum of a well-specified model F_emp is close to F"

# %% [markdown]
# ## Summary
#
# - "The Fisher" is three matrices. The true Fisher takes the expectation over the *model's*
#   targets; the Monte-Carlo Fisher estimates it without bias (error ∝ $1/\sqrt{k}$); the empirical
#   Fisher plugs in the data labels and is a different matrix, not a noisy estimate.
# - For cross-entropy, MSE and Bernoulli losses the true Fisher equals the GGN $J^\top H J$, and it
#   is the Hessian of the KL divergence between the model's predictions before and after a step.
# - On Kunstner et al.'s linear regression, natural gradient is Newton's method (one step to the
#   optimum); far from the optimum the empirical Fisher gives distorted directions. This is why
#   K-FAC builds its factors from sampled targets (tutorial 05), not from the labels.
#
# ## Try this
#
# 1. Evaluate the Fishers at the untrained net (skip the Adam loop): how far is the empirical
#    Fisher from the true one now?
# 2. Kunstner et al. used step size 3 for the empirical-Fisher method (with their prior). Try it
#    here: where do the trajectories end?
# 3. Make the regression misspecified — e.g. `yr = yr + 2 * Xr[:, 1:] ** 2` — and see what happens
#    to $F_{\rm emp}$ at the optimum and to the EF trajectories.
