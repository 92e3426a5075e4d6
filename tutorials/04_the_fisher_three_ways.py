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
# - the true, Monte-Carlo and empirical Fisher and the generalised Gauss-Newton matrix (GGN) of a 39-parameter
#   net side by side: the empirical Fisher differs from the true one by 40% (Frobenius) and is
#   smaller (its trace is 0.55 of the true Fisher's at 97% training accuracy);
# - the Monte-Carlo Fisher's error falling like $1/\sqrt{k}$ (measured log-log slope −0.45, theory −0.5);
# - the GGN equal to the true Fisher to ~1e-16, and the Hessian of the KL divergence (finite
#   differences) equal to it to ~5e-8 (and 0.6 away from the empirical Fisher);
# - Kunstner et al.'s linear regression (their Fig. 1, redrawn as their code draws it: flows of
#   vector fields scaled by 1/3, 1 and 3): natural gradient is Newton's method, lands on the
#   optimum in one step and flows to it in straight lines, while the empirical-Fisher direction is
#   off by up to ~130° and its flow first walks *away* from the optimum (1.5 times as far).

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
# | `"ggn"` | $F_{\rm GGN} = \frac1N\sum_n J_n^\top H_n J_n$ | none: $J_n = \partial f(x_n)/\partial\theta$ is $(C, P)$, $H_n = \nabla^2_f \ell_n$ is $(C, C)$ |
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
# Side by side (one shared colour scale, clipped at the 98% quantile of the true Fisher's $|F_{ij}|$,
# so the largest entries all show in the darkest red or blue; the lines separate the two layers'
# blocks). Most entries are near zero (pale); the strongest, in saturated dark red and dark blue,
# form a cross of rows and columns at indices 12–17, the first layer's biases. The true Fisher and
# the GGN are the same picture; the Monte-Carlo Fisher with 4 samples per example is a noisy copy;
# the empirical Fisher is paler, its cross fainter. The net classifies 97% of its training points
# correctly, so most
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
# *natural parameter* of an exponential family: the log-probability has the form $\log p(y \mid f) =
# f^\top T(y) - \psi(f) + \text{const}$, linear in $f$ apart from a normaliser $\psi(f)$ that does not
# depend on $y$ (for softmax, $T(y) = e_y$, the one-hot label, and $\psi(f) = \log\sum_c e^{f_c}$).
# Then the Hessian of $\ell = -\log p$ w.r.t. $f$ is $\nabla^2 \psi(f)$, which does not depend on $y$,
# and it equals the output Fisher. For softmax, with $p = \operatorname{softmax}(f)$:
#
# $$\nabla_f \ell = p - e_y, \qquad \frac{\partial p_c}{\partial f_d} = p_c(\delta_{cd} - p_d)
#   \quad\Longrightarrow\quad H_n = \nabla_f^2\ell_n = \operatorname{diag}(p_n) - p_n p_n^\top ,$$
#
# and $\mathbb{E}_y[\nabla_f\ell\,\nabla_f\ell^\top] = \sum_y p_{ny}(p_n - e_y)(p_n - e_y)^\top =
# \operatorname{diag}(p_n) - p_n p_n^\top$ as well (Martens 2020, §9.2). By the chain rule
# $\nabla_\theta \ell = J_n^\top \nabla_f \ell$, so $F = \frac1N\sum_n J_n^\top
# \mathbb{E}_y[\nabla_f\ell\,\nabla_f\ell^\top] J_n = \frac1N\sum_n J_n^\top H_n J_n = F_{\rm GGN}$.
# minikfac computes the GGN along a separate path (output Jacobian and loss Hessian), so the
# agreement is a real check:

# %%
error_ggn = relative(F_ggn, F_true)
print(f"‖F_GGN − F‖ / ‖F‖ = {error_ggn:.1e}")

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
# Kunstner et al. 2019 (Fig. 1) use the simplest model there is: $y = \theta_0 + \theta_1 x +
# \varepsilon$, $\varepsilon \sim \mathcal N(0, 1)$, with $N = 1000$ points, $x \sim
# \mathrm{LogNormal}(0, 0.75)$ and true $\theta = (2, 2)$ (`mk.data.kunstner_linear_regression`; its
# $X$ has columns $(1, x)$). As a network this is `Linear(2, 1, bias=False)` with `MSELoss`
# ($\ell_n = \tfrac12 (\theta^\top x_n - y_n)^2$), and its canonical vector is $\theta = (\theta_0,
# \theta_1)$. Their loss also has a Gaussian prior $\theta \sim \mathcal N(0, \sigma_0^2 I)$ with
# $\sigma_0^2 = 0.1$, divided by $N$ like the data term (their `LinearRegression(prior_var=0.1)`):
#
# $$L(\theta) = \frac1N \sum_n \tfrac12 (\theta^\top x_n - y_n)^2 + \frac{\|\theta\|^2}{2\sigma_0^2 N},
#   \qquad \nabla L = \frac1N\sum_n r_n x_n + \frac{\theta}{\sigma_0^2 N}, \quad r_n = \theta^\top x_n - y_n .$$
#
# The likelihood's Fisher and the empirical Fisher are
#
# $$F = \frac1N\sum_n x_n x_n^\top \quad (\text{constant}), \qquad
#   F_{\rm emp}(\theta) = \frac1N \sum_n r_n^2\, x_n x_n^\top .$$
#
# Their three methods precondition $\nabla L$ (prior included) with
#
# - GD: nothing;
# - NGD: $F + I/(\sigma_0^2 N)$, the Fisher plus the prior's Hessian. That sum is $\nabla^2 L$ (their
#   code computes it as the Hessian of $L$), so NGD *is* Newton's method on $L$, prior and all
#   (the prior adds $0.01\,I$ here);
# - EF: $F_{\rm emp}$ alone, built from the per-example gradients of the data term; the prior
#   enters only through $\nabla L$.
#
# Both matrices get a damping of $10^{-8} I$ before the solve. The empirical Fisher weights each
# point by its squared residual: far from the optimum the residuals are large and uneven, and the
# matrix (hence the direction) is distorted. First, the library's matrices against the formulas:

# %%
Xr, yr = mk.data.kunstner_linear_regression(n=1000, seed=0)
N_reg = len(Xr)
reg = mk.nn.Sequential(mk.nn.Linear(2, 1, bias=False))
mse = mk.nn.MSELoss()
prior_variance = 0.1                                  # their prior_var
prior_hessian = np.eye(2) / (prior_variance * N_reg)  # ∇² of ‖θ‖² / (2 σ0² N): 0.01 I
damping = 1e-8 * np.eye(2)                            # added to both matrices, as in their code


def curvature_at(t):
    """∇L (prior included) (2,), the likelihood's Fisher (2, 2) and the empirical Fisher (2, 2) at θ = t."""
    t = np.asarray(t, dtype=np.float64)
    mk.curvature.assign(reg, t)
    reg.zero_grad()
    mse(reg(Xr), yr)
    reg.backward(mse.backward())
    gradient = mk.curvature.flatten(reg, "grad") + prior_hessian @ t
    return (gradient, mk.curvature.fisher(reg, mse, Xr, kind="true"),
            mk.curvature.fisher(reg, mse, Xr, y=yr, kind="empirical"))


start = np.array([2.0, 4.5])
gradient, F_reg, E_reg = curvature_at(start)
hessian_reg = F_reg + prior_hessian                   # = ∇²L, the same at every θ
theta_star = np.linalg.solve(hessian_reg, Xr.T @ yr[:, 0] / N_reg)  # the minimiser of L
theta_ls = np.linalg.lstsq(Xr, yr[:, 0], rcond=None)[0]            # without the prior
residuals = Xr @ start - yr[:, 0]
error_F_formula = relative(F_reg, Xr.T @ Xr / N_reg)
error_E_formula = relative(E_reg, (Xr * residuals[:, None] ** 2).T @ Xr / N_reg)
print(f"θ* = {np.round(theta_star, 4)} (without the prior {np.round(theta_ls, 4)}); at θ = {start}:")
print(f"  library F vs Xᵀ X / N: {error_F_formula:.1e};  library F_emp vs Σ r² x xᵀ / N: {error_E_formula:.1e}")
print(f"  F =\n{np.round(F_reg, 3)}\n  F_emp =\n{np.round(E_reg, 3)}")
print(f"eigenvalues of F: {np.round(np.linalg.eigvalsh(F_reg), 3)}; the prior adds {prior_hessian[0, 0]:.2f}")
_, F_other, E_star = curvature_at(theta_star)
print(f"F at another θ differs by {relative(F_other, F_reg):.1e}; at θ*, F_emp is within "
      f"{relative(E_star, F_reg):.0%} of F (the model is well specified: E[r²] = σ² = 1)")

# %% [markdown]
# Newton's method solves a quadratic in one step of size 1, so one NGD step from each of the four
# starting points of the figure lands on $\theta^*$:

# %%
starts = np.array([[2.0, 4.5], [1.0, 0.0], [4.5, 3.0], [-0.5, 3.0]])  # those of their figure
ngd_misses = []
for t0 in starts:
    g0, _, _ = curvature_at(t0)
    t1 = t0 - np.linalg.solve(hessian_reg + damping, g0)
    ngd_misses.append(float(np.linalg.norm(t1 - theta_star)))
    print(f"from {t0}: one NGD step lands at {np.round(t1, 6)}, distance to θ* {ngd_misses[-1]:.1e}")

# %% [markdown]
# ### How the figure is made: flows of scaled vector fields
#
# The factors $1/3$, $1$ and $3$ attached to GD, NGD and EF in the figure are not step sizes of a
# few discrete steps: they *scale the vector fields*,
#
# $$v_{\rm GD} = -\tfrac13 \nabla L, \qquad v_{\rm NGD} = -\big(F + I/(\sigma_0^2N) + 10^{-8}I\big)^{-1}\nabla L,
#   \qquad v_{\rm EF} = -3\,\big(F_{\rm emp} + 10^{-8} I\big)^{-1}\nabla L,$$
#
# and trace each flow $\dot\theta = v(\theta)$ with 50,000 points: 49,999 Euler steps
# $\theta \leftarrow \theta + 0.001\, v(\theta)$, i.e. steps of $0.001 \times$ the factor along the
# preconditioned direction, up to time $50$. Steps this small follow the continuous curve, and
# every path reaches the optimum; a factor only sets how fast a path is travelled (the flows of
# $v$ and $3v$ are the same curves). So the figure shows the *directions* each preconditioner
# gives everywhere, not how large a step it tolerates. (The slowest, GD, ends about 0.01 from
# $\theta^*$ at most, 0.0104 from $(-0.5, 3)$; NGD and EF end on it to 1e-12; all printed below.)
#
# We trace the same flows, all four starting points at once. $F_{\rm emp}(\theta)$ is a quadratic
# polynomial in $\theta$ — expand $r_n^2 = (x_n^\top\theta)^2 - 2 y_n x_n^\top\theta + y_n^2$ — so its
# coefficients (sums of $x_i x_j x_k x_l$, $y\, x_i x_j x_k$ and $y^2 x_i x_j$ over the data) are
# computed once and each step costs a few $2 \times 2$ operations. We check the polynomial against
# the library's $F_{\rm emp}$ first.

# %%
moment4 = np.einsum("ni,nj,nk,nl->ijkl", Xr, Xr, Xr, Xr) / N_reg
moment3 = np.einsum("n,ni,nj,nk->ijk", yr[:, 0], Xr, Xr, Xr) / N_reg
moment2 = np.einsum("n,ni,nj->ij", yr[:, 0] ** 2, Xr, Xr) / N_reg
b_reg = Xr.T @ yr[:, 0] / N_reg


def empirical_fishers(T):
    """F_emp at each row of T (S, 2): (S, 2, 2), from the polynomial's coefficients."""
    return np.einsum("ijkl,sk,sl->sij", moment4, T, T) - 2 * np.einsum("ijk,sk->sij", moment3, T) + moment2


def gradients(T):
    """∇L at each row of T (S, 2): (S, 2)."""
    return T @ hessian_reg.T - b_reg


check_points = np.array([[2.0, 4.5], [-1.0, 5.0], [theta_star[0], theta_star[1]]])
error_polynomial = max(relative(E, curvature_at(t)[2]) for E, t in zip(empirical_fishers(check_points), check_points))
error_gradient = max(float(np.abs(g - curvature_at(t)[0]).max()) for g, t in zip(gradients(check_points), check_points))
print(f"polynomial F_emp vs the library: {error_polynomial:.1e} (relative); "
      f"∇L by formula vs the library: {error_gradient:.1e} (absolute)")

factors = {"GD": 1 / 3, "NGD": 1.0, "EF": 3.0}


def field(method, T):
    """The scaled vector field v(θ) of `method` at each row of T (S, 2)."""
    g = gradients(T)
    if method == "GD":
        return -factors[method] * g
    matrix = hessian_reg if method == "NGD" else empirical_fishers(T)
    return -factors[method] * np.linalg.solve(matrix + damping, g[..., None])[..., 0]


POINTS, H_STEP = 50_000, 0.001
flows = {}
for method in factors:
    path = np.empty((POINTS, len(starts), 2))
    path[0] = starts
    for k in range(1, POINTS):
        path[k] = path[k - 1] + H_STEP * field(method, path[k - 1])
    flows[method] = path
distance = {m: np.linalg.norm(p - theta_star, axis=2) for m, p in flows.items()}          # (POINTS, 4)
length = {m: np.linalg.norm(np.diff(p, axis=0), axis=2).sum(axis=0) for m, p in flows.items()}
for method in factors:
    print(f"{method:3s} (factor {factors[method]:.2f}): distance to θ* at the end "
          f"{np.array2string(distance[method][-1], formatter={'float': '{:.1e}'.format})}; path length / straight distance "
          f"{np.array2string(length[method] / distance[method][0], precision=2)}")
# NGD's field is −(θ − θ*) (up to the 1e-8 damping): Euler follows the straight line θ* + 0.999^k (θ0 − θ*).
straight = theta_star + (1 - H_STEP) ** np.arange(POINTS)[:, None, None] * (starts - theta_star)
error_straight = float(np.abs(flows["NGD"] - straight).max())
print(f"NGD flow vs the straight line to θ*: max deviation {error_straight:.1e}")
away = distance["EF"].max(axis=0) / distance["EF"][0]  # farthest distance / starting distance, per start
for s in range(len(starts)):
    print(f"EF from {starts[s]}: distance to θ* {distance['EF'][0, s]:.2f} at the start, "
          f"{distance['EF'][:, s].max():.2f} at its farthest ({away[s]:.2f} times the start)")

# %% [markdown]
# The three fields on their grid (15 × 15 points on $[-1, 5]^2$, arrows of the scaled fields drawn
# to one scale), and at each grid point the angle between each direction and Newton's:


# %%
def angle(u, v):
    """Angles between the rows of u and v (S, 2), in degrees."""
    cosine = np.sum(u * v, axis=1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


grid = np.linspace(-1.0, 5.0, 15)
T0, T1 = np.meshgrid(grid, grid)
grid_points = np.stack([T0.ravel(), T1.ravel()], axis=1)
fields = {method: field(method, grid_points) for method in factors}
angles = {method: angle(fields[method], fields["NGD"]) for method in factors}
for method in factors:
    print(f"{method:3s}: angle to the Newton direction over the grid: median {np.median(angles[method]):5.1f}°, "
          f"max {np.max(angles[method]):5.1f}°")

fine = np.linspace(-1.0, 5.0, 61)
L0, L1 = np.meshgrid(fine, fine)
loss_grid = (np.mean(0.5 * (L0[..., None] * Xr[:, 0] + L1[..., None] * Xr[:, 1] - yr[:, 0]) ** 2, axis=-1)
             + (L0 ** 2 + L1 ** 2) / (2 * prior_variance * N_reg))
fig, axes = plt.subplots(1, 4, figsize=(17, 4.4))
axes[0].plot(Xr[:, 1], yr[:, 0], ".", markersize=2, alpha=0.4)
xs = np.linspace(0, 9, 10)
axes[0].plot(xs, theta_star[0] + theta_star[1] * xs, "k--", label=rf"$y = {theta_star[0]:.2f} + {theta_star[1]:.2f}\,x$")
axes[0].set(xlim=(-1, 10), ylim=(-2, 22), xlabel="x", ylabel="y", title=f"the data (N = {N_reg})")
axes[0].legend(loc="upper left")
titles = {"GD": r"GD: $-\frac{1}{3}\nabla L$", "NGD": r"NGD: $-(F + I/\sigma_0^2N)^{-1}\nabla L$",
          "EF": r"EF: $-3\,F_{\rm emp}^{-1}\nabla L$"}
for ax, method in zip(axes[1:], factors):
    ax.contour(L0, L1, loss_grid, levels=np.geomspace(loss_grid.min() * 1.05, loss_grid.max(), 10),
               colors="lightgray", linewidths=0.8)
    v = fields[method].reshape(T0.shape + (2,))
    ax.quiver(T0, T1, v[..., 0], v[..., 1], angles="xy", scale=30, color="gray", alpha=0.7, width=0.004)
    for s in range(len(starts)):
        ax.plot(flows[method][:, s, 0], flows[method][:, s, 1], linewidth=2.5)
        ax.plot(*flows[method][-1, s], "k*", markersize=10)
    ax.plot(starts[:, 0], starts[:, 1], "kh", markersize=7)
    ax.set(xlim=(-1, 5), ylim=(-1, 5), xlabel=r"$\theta_0$ (intercept)", ylabel=r"$\theta_1$ (slope)")
    ax.set_title(f"{titles[method]}\nmedian angle to Newton {np.median(angles[method]):.0f}°")
fig.suptitle("Kunstner et al. 2019, Fig. 1, redrawn: flows of the scaled vector fields (hexagon: start, star: end)",
             y=1.07)
plot.show(fig, "04_kunstner_vector_fields")

# %% [markdown]
# What to look at: in each panel, how the four paths get from their hexagons to the star. The
# gradient's flow crosses the elongated contours at right angles, bends, and approaches $\theta^*$
# along the contours' long axis (its paths are 2–24% longer than the straight line).
# Natural gradient points at the optimum from everywhere: its paths are straight lines. The
# empirical Fisher's field is tilted by the residual weights $r_n^2$ — by more than the plain
# gradient's in the median, and by more than 90° somewhere — and from $(2, 4.5)$ and $(1, 0)$ its
# flow first moves *away* from the optimum (1.4–1.5 times as far as at the start) before it
# swings back; those paths are 2.6–2.9 times longer than the straight line. Only near $\theta^*$,
# where $F_{\rm emp} \approx F$ (a well-specified model with many data points), does the EF
# direction approach Newton's, and all its paths end at $\theta^*$ all the same: the flows reach
# the optimum, what the figure shows is the route.
#
# > **What differs from their figure.** Same problem, prior, damping, starting points, factors,
# > flow steps and arrow grid as the authors' code. Our data come from `default_rng(0)`, theirs from
# > `np.random.seed(0)` (same distribution, other draws), so $\theta^* \approx (1.90, 2.06)$ and the
# > paths differ a little. We solve for $\theta^*$ directly, not by two conjugate-gradient Newton
# > steps, and draw 10 contour levels instead of 5. Their code names the factors `gammas`, the
# > paper's symbol for a step size, but uses them as field scales, as above.
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
assert error_polynomial < 1e-10 and error_gradient < 1e-10, "the flows' F_emp and ∇L match the library"
assert max(ngd_misses) < 1e-6, f"NGD = Newton on L (prior included) reaches θ* in one step: {ngd_misses}"
assert error_straight < 1e-6, f"the NGD flow is the straight line to θ*: {error_straight:.1e}"
assert np.all(distance["NGD"][-1] < 1e-9) and np.all(distance["EF"][-1] < 1e-9), "NGD and EF flows end at θ*"
assert np.all(distance["GD"][-1] < 0.05), f"the GD flows end near θ*: {distance['GD'][-1]}"
assert 0.009 < distance["GD"][-1].max() < 0.011 and np.argmax(distance["GD"][-1]) == 3, \
    f"the farthest GD flow ends about 0.01 from θ*, the one from (-0.5, 3): {distance['GD'][-1]}"
assert np.all(distance["GD"][-1] > distance["NGD"][-1]), "GD's slower flow is the one still short of θ*"
assert max(angles["NGD"]) < 1e-5, "NGD is Newton's direction at every grid point"
assert max(angles["EF"]) > 90, f"somewhere the EF direction is >90° off Newton's: {max(angles['EF']):.0f}°"
assert away[0] > 1.3 and away[1] > 1.3, f"the EF flows from (2, 4.5) and (1, 0) first move away: {away}"
assert length["EF"][0] > 2 * length["NGD"][0], "the EF path from (2, 4.5) is over twice as long as NGD's"
assert np.median(angles["EF"]) > np.median(angles["GD"]), "EF is more tilted than the gradient (median)"
assert relative(E_star, F_reg) < 0.3, "at the optimum of a well-specified model F_emp is close to F"

# %% [markdown]
# ## Summary
#
# - "The Fisher" is three matrices. The true Fisher takes the expectation over the *model's*
#   targets; the Monte-Carlo Fisher estimates it without bias (error ∝ $1/\sqrt{k}$); the empirical
#   Fisher plugs in the data labels and is a different matrix, not a noisy estimate.
# - For cross-entropy, MSE and Bernoulli losses the true Fisher equals the GGN $F_{\rm GGN} = J^\top H J$, and it
#   is the Hessian of the KL divergence between the model's predictions before and after a step.
# - On Kunstner et al.'s linear regression, natural gradient (the Fisher plus the prior's Hessian)
#   is Newton's method: one step to the optimum, and a straight flow to it. The empirical Fisher's
#   directions are distorted far from the optimum, and its flow detours. Their figure traces
#   flows of vector fields scaled by 1/3, 1 and 3, not discrete steps of those sizes. This is why
#   K-FAC builds its factors from sampled targets (tutorial 05), not from the labels.
#
# ## Try this
#
# 1. Evaluate the Fishers at the untrained net (skip the Adam loop): how far is the empirical
#    Fisher from the true one now?
# 2. Read the factors as step sizes instead: replace each flow by 40 discrete steps
#    $\theta \leftarrow \theta + v(\theta)$ (GD with $1/3$, NGD with $1$, EF with $3$). Which methods
#    still end at $\theta^*$?
# 3. Drop the prior (`prior_variance = np.inf`): how far does $\theta^*$ move, and does one NGD step
#    still land on it?
# 4. Make the regression misspecified — e.g. `yr = yr + 2 * Xr[:, 1:] ** 2` — and see what happens
#    to $F_{\rm emp}$ at the optimum and to the EF flows.
