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
# # 00. Why the natural gradient?
#
# The rest of this course approximates one update, the natural gradient $F^{-1}\nabla L$, where $F$
# is the Fisher information matrix (defined at the start of Part 1). Before spending twelve tutorials
# on making it cheap, this one asks why anyone would want it. Two answers, each checked on numbers:
#
# 1. **It does not depend on how you write the model down.** Gradient descent does: rename the
#    parameter (a probability $p$ or its logit $\eta$) and the same learning rate follows a
#    different path. The natural gradient follows the same path in both: exactly in continuous
#    time, and for discrete steps of learning rate $\alpha$ the two paths differ by $O(\alpha)$ at any
#    fixed time (halve $\alpha$ and the gap halves).
# 2. **It is steepest descent measured in predictions, not in parameters.** Among all steps that
#    change the model's predictive distribution by a given KL divergence, $-F^{-1}\nabla L$ lowers
#    the loss the most (to first order). The reason: $\mathrm{KL}(p_\theta \,\|\, p_{\theta+\delta})
#    \approx \tfrac12 \delta^\top F \delta$.
#
# **What you will see**
#
# - a coin's bias fitted in two parametrisations: gradient descent's two runs end far apart
#   (0.42 apart at time 3 on the probability scale), the natural gradient's two runs agree to
#   1.2e-4 with learning rate 0.01, and their gap shrinks in proportion to the learning rate;
# - on a tiny softmax classifier, the KL divergence of a step against $\tfrac12\delta^\top F\delta$
#   (relative error falling like the step's length), and the natural-gradient step beating the
#   gradient step, and 200 random directions, at every KL budget tried.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import plot

mk.set_default_dtype("float64")
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Part 1: the same model, two parametrisations
#
# A coin lands heads with probability $p$. We saw $N = 20$ tosses with 16 heads, so $\hat p = 0.8$,
# and we fit $p$ by minimising the mean negative log-likelihood
#
# $$L(p) = -\hat p \log p - (1-\hat p)\log(1-p).$$
#
# **The Fisher information.** A model gives a distribution $p_\theta(y)$ over outcomes $y$ (here
# $y \in \{0, 1\}$, heads or tails). Its *score* is $\nabla_\theta \log p_\theta(y)$, and the Fisher
# information is the score's second moment when $y$ is drawn from the model itself:
#
# $$F = \mathbb{E}_{y\sim p_\theta}\big[\nabla_\theta \log p_\theta(y)\,\nabla_\theta \log p_\theta(y)^\top\big].$$
#
# (With inputs $x_n$, as in a network, $p_\theta(y \mid x_n)$ replaces $p_\theta(y)$ and $F$ is also
# averaged over the $x_n$.) The score has mean zero, $\mathbb{E}[\nabla\log p_\theta] = \sum_y
# p_\theta(y)\,\frac{\nabla p_\theta(y)}{p_\theta(y)} = \nabla\sum_y p_\theta(y) = \nabla 1 = 0$, so $F$ is its
# covariance. Differentiating $\sum_y p_\theta(y)\nabla\log p_\theta(y) = 0$ once more gives
# $\sum_y p_\theta(y)\,(\nabla\log p_\theta\,\nabla\log p_\theta^\top + \nabla^2\log p_\theta) = 0$: $F$ is
# also the expected Hessian $\mathbb{E}_{y\sim p_\theta}[-\nabla^2\log p_\theta(y)]$. Note that $y$ is
# drawn from the model, not taken from the data; this is the "true" Fisher, and tutorial 04 compares
# it with the "empirical" Fisher, which uses the observed labels instead.
#
# For the coin written with $p$: $\log p(y) = y\log p + (1-y)\log(1-p)$, whose derivative is $1/p$
# for heads ($y = 1$, probability $p$) and $-1/(1-p)$ for tails (probability $1-p$), so
#
# $$F_p = p\cdot\frac{1}{p^2} + (1-p)\cdot\frac{1}{(1-p)^2} = \frac1p + \frac1{1-p} = \frac{1}{p(1-p)}.$$
#
# Two ways to write the same model: the probability $p$ itself, or its logit $\eta = \log\frac{p}{1-p}$
# (so $p = \sigma(\eta)$; this is how a network's output layer writes it). The derivatives of $L$
# and the Fisher information in each:
#
# | parametrisation | $\partial L$ | Fisher $F$ | natural gradient $F^{-1}\partial L$ |
# |---|---|---|---|
# | $p$ | $\dfrac{p-\hat p}{p(1-p)}$ | $\dfrac{1}{p(1-p)}$ | $p - \hat p$ |
# | $\eta$ | $p - \hat p$ | $p(1-p)$ | $\dfrac{p-\hat p}{p(1-p)}$ |
#
# The rows are related by the chain rule, with $\frac{dp}{d\eta} = p(1-p)$: the gradient picks up
# one factor, $\partial_\eta L = \frac{dp}{d\eta}\,\partial_p L$, and the Fisher two,
# $F_\eta = \big(\frac{dp}{d\eta}\big)^2 F_p$ (it is an average of squared gradients). So
# $F_\eta^{-1}\partial_\eta L = \big(\frac{dp}{d\eta}\big)^{-1} F_p^{-1}\partial_p L$: the natural
# gradient transforms like a small change $d\eta = (\frac{dp}{d\eta})^{-1} dp$ of the parameter, and
# the plain gradient does not.
#
# In the logit parametrisation the model is a network: `Linear(1, 1, bias=False)` on the input
# $x = 1$ with `BCEWithLogitsLoss`, its one weight being $\eta$. We let the library compute
# $\partial_\eta L$ and $F_\eta$ and check the table.

# %%
flips = np.array([1.0] * 16 + [0.0] * 4)[:, None]   # 20 tosses, 16 heads: p̂ = 0.8
ones = np.ones((len(flips), 1))
p_hat = float(flips.mean())
coin = mk.nn.Sequential(mk.nn.Linear(1, 1, bias=False))
bce = mk.nn.BCEWithLogitsLoss()


def sigmoid(eta):
    return 1.0 / (1.0 + np.exp(-eta))


table_errors = []
for p in (0.1, 0.5, 0.9):
    eta = np.log(p / (1 - p))
    mk.curvature.assign(coin, np.array([eta]))
    coin.zero_grad()
    bce(coin(ones), flips)
    coin.backward(bce.backward())
    grad_eta = float(mk.curvature.flatten(coin, "grad")[0])
    fisher_eta = float(mk.curvature.fisher(coin, bce, ones, kind="true")[0, 0])
    dp_deta = p * (1 - p)
    grad_p, fisher_p = grad_eta / dp_deta, fisher_eta / dp_deta ** 2   # the chain rule, backwards
    table_errors += [abs(grad_eta - (p - p_hat)), abs(fisher_eta - p * (1 - p)),
                     abs(grad_p - (p - p_hat) / (p * (1 - p))), abs(fisher_p - 1 / (p * (1 - p)))]
    print(f"p = {p}: ∂_η L = {grad_eta:+.4f}, F_η = {fisher_eta:.4f};  ∂_p L = {grad_p:+.4f}, F_p = {fisher_p:.4f}")
table_error = max(table_errors)
print(f"largest difference to the table: {table_error:.1e}")

# %% [markdown]
# Now run each method in each parametrisation from $p_0 = 0.1$, with the same learning rate
# $\alpha$, and read every run on the probability scale ($p = \sigma(\eta)$ for the logit runs).
# We plot against "time" $t = k\alpha$ after $k$ steps, so that runs with different $\alpha$ can be
# compared. As $\alpha \to 0$ each run follows a flow, $\dot\theta = -\partial L$ or
# $\dot\theta = -F^{-1}\partial L$. Translated to $p$ with the chain rule:
#
# - GD in $p$: $\dot p = -\frac{p-\hat p}{p(1-p)}$; GD in $\eta$: $\dot p = \frac{dp}{d\eta}\dot\eta
#   = -p(1-p)\,(p-\hat p)$. Two different flows: near $p = 0.1$ the first is $1/(0.09)^2 \approx 120$
#   times faster than the second.
# - NGD in $p$: $\dot p = -(p-\hat p)$; NGD in $\eta$: $\dot p = p(1-p)\cdot\big(-\frac{p-\hat p}{p(1-p)}\big)
#   = -(p-\hat p)$. The same flow, whose solution is $p(t) = \hat p + (p_0 - \hat p)e^{-t}$.

# %%
P0, T_END = 0.1, 3.0


def run(method, parametrisation, lr, t_end=T_END, p0=P0):
    """p after each of round(t_end / lr) steps (and p0 first), for 'gd' or 'ngd' in 'p' or 'logit'."""
    steps = int(round(t_end / lr))
    theta = p0 if parametrisation == "p" else np.log(p0 / (1 - p0))
    path = [p0]
    for _ in range(steps):
        p = theta if parametrisation == "p" else sigmoid(theta)
        if parametrisation == "p":
            update = (p - p_hat) / (p * (1 - p)) if method == "gd" else p - p_hat
        else:
            update = p - p_hat if method == "gd" else (p - p_hat) / (p * (1 - p))
        theta = theta - lr * update
        path.append(theta if parametrisation == "p" else sigmoid(theta))
    return np.array(path)


LR = 0.01
runs = {(m, q): run(m, q, LR) for m in ("gd", "ngd") for q in ("p", "logit")}
times = LR * np.arange(len(runs["gd", "p"]))
flow = p_hat + (P0 - p_hat) * np.exp(-times)
gap_gd = abs(runs["gd", "p"][-1] - runs["gd", "logit"][-1])
gap_ngd = abs(runs["ngd", "p"][-1] - runs["ngd", "logit"][-1])
for (m, q), path in runs.items():
    print(f"{m.upper():3s} in {q:5s}: p at t = 1: {path[100]:.4f}, at t = 3: {path[-1]:.4f}")
print(f"at t = 3, gap between the two parametrisations: GD {gap_gd:.4f}, NGD {gap_ngd:.5f}; "
      f"exact NGD flow {flow[-1]:.4f}")

# %% [markdown]
# The natural gradient's two runs are not identical for a finite $\alpha$: a discrete step moves
# along a straight line in *its* parametrisation, and a straight line in $\eta$ is a curve in $p$.
# The difference per step is of order $\alpha^2$, so after the $T/\alpha$ steps that reach time $T$
# it is of order $\alpha$: at a fixed time the gap is $O(\alpha)$, a straight line of slope 1 on a
# log-log plot. Gradient descent's gap does not shrink at all: its two flows differ. We
# measure both gaps at $t = 3$ over a range of learning rates (GD in $p$ overshoots $p = 1$ for
# $\alpha$ above about 0.1 from this start, so we stay below).

# %%
learning_rates = np.array([0.05, 0.02, 0.01, 0.005, 0.002, 0.001])
gaps = {m: np.array([abs(run(m, "p", lr)[-1] - run(m, "logit", lr)[-1]) for lr in learning_rates])
        for m in ("gd", "ngd")}
ngd_slope = float(np.polyfit(np.log(learning_rates), np.log(gaps["ngd"]), 1)[0])
for lr, g_gd, g_ngd in zip(learning_rates, gaps["gd"], gaps["ngd"]):
    print(f"α = {lr:.3f}: gap at t = 3  GD {g_gd:.4f}   NGD {g_ngd:.2e}")
print(f"NGD gap ∝ α^{ngd_slope:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
styles = {("gd", "p"): ("tab:blue", "-"), ("gd", "logit"): ("tab:blue", "--"),
          ("ngd", "p"): ("tab:orange", "-"), ("ngd", "logit"): ("tab:orange", "--")}
for (m, q), path in runs.items():
    color, line = styles[m, q]
    axes[0].plot(times, path, color=color, linestyle=line, linewidth=2, label=f"{m.upper()} in {q}")
axes[0].plot(times, flow, "k:", label=r"NGD flow $\hat p + (p_0-\hat p)e^{-t}$")
axes[0].axhline(p_hat, color="gray", linewidth=0.6)
axes[0].set(xlabel=r"time $t = k\alpha$ (k steps of learning rate $\alpha$ = 0.01)", ylabel="p (probability of heads)",
            title="Fitting a coin: the same rule in two parametrisations")
axes[0].legend()
axes[1].loglog(learning_rates, gaps["gd"], "o-", color="tab:blue", label="GD: |p-run − logit-run|")
axes[1].loglog(learning_rates, gaps["ngd"], "s-", color="tab:orange",
               label=f"NGD: |p-run − logit-run| (slope {ngd_slope:.2f})")
axes[1].set(xlabel=r"learning rate $\alpha$", ylabel="gap between the two runs at t = 3",
            title="Parametrisation dependence vs learning rate")
axes[1].legend()
plot.show(fig, "00_reparametrisation")

# %% [markdown]
# What to look at: on the left, the two blue curves (gradient descent in $p$ and in $\eta$) part
# at once — in $p$ the coin's estimate reaches $\hat p$ within about one time unit, in $\eta$
# it has crawled from 0.1 to 0.38 by $t = 3$ — while the two orange curves (natural gradient)
# lie on top of each other and on the dotted exact flow. On the right, gradient descent's gap stays
# near 0.42 however small the learning rate, while the natural gradient's falls in proportion to it
# (the fitted slope printed above is close to 1: the gap at $t = 3$ is $O(\alpha)$).
#
# Gradient descent's behaviour is a property of the coordinates, not of the model. The natural
# gradient's is a property of the model: the Fisher converts the gradient (which measures how
# the loss changes per unit of *parameter*) into a change of the *distribution*. That is why it
# is worth approximating for networks, whose parametrisation is arbitrary (in a ReLU network,
# multiply one layer's weights and its bias by $c > 0$ and divide the next layer's weights by $c$:
# since $\mathrm{relu}(cz) = c\,\mathrm{relu}(z)$, the function is the same, gradient descent's steps
# are not).
#
# ## Part 2: steepest descent in distribution space
#
# Gradient descent is steepest descent when the size of a step is measured by its Euclidean
# length: among all $\delta$ with $\|\delta\| \le r$, the linear model $L(\theta) + \nabla L^\top
# \delta$ is smallest at $\delta = -r\,\nabla L / \|\nabla L\|$. Measure the step instead by how much
# it changes the model's predictions,
#
# $$D(\delta) = \frac1N\sum_n \mathrm{KL}\big(p_\theta(y\mid x_n)\,\big\|\,p_{\theta+\delta}(y\mid x_n)\big)
#   \approx \tfrac12\,\delta^\top F \delta ,$$
#
# The reason is a Taylor expansion of each KL term in $\delta$, with $y$ drawn from $p_\theta$:
#
# $$\mathrm{KL}(p_\theta\,\|\,p_{\theta+\delta}) = \mathbb{E}_{y\sim p_\theta}\big[\log p_\theta(y) -
#   \log p_{\theta+\delta}(y)\big] = -\delta^\top\,\mathbb{E}[\nabla\log p_\theta] - \tfrac12\,\delta^\top\,
#   \mathbb{E}[\nabla^2\log p_\theta]\,\delta + O(\|\delta\|^3) = \tfrac12\,\delta^\top F\delta + O(\|\delta\|^3).$$
#
# The first-order term vanishes because the score has mean zero, and the second-order term is
# $\mathbb{E}[-\nabla^2\log p_\theta] = F$, both shown in Part 1: $F$ is the Hessian of the KL
# divergence at $\delta = 0$ (tutorial 04 also checks this by finite differences).
# Minimising $\nabla L^\top\delta$ subject to $\tfrac12 \delta^\top F\delta \le \kappa$ with a Lagrange
# multiplier $\nu$ (not to be confused with the damping $\lambda$ of later tutorials):
# $\nabla L + \nu F\delta = 0$, so
#
# $$\delta^\star = -\frac1\nu F^{-1}\nabla L, \qquad \nu = \sqrt{\frac{\nabla L^\top F^{-1}
#   \nabla L}{2\kappa}}, \qquad \nabla L^\top\delta^\star = -\sqrt{2\kappa\; \nabla L^\top F^{-1}\nabla L}.$$
#
# The gradient direction scaled to the same budget gives $\nabla L^\top\delta = -\sqrt{2\kappa}\,
# \|\nabla L\|^2 / \sqrt{\nabla L^\top F \nabla L}$, which is never more (Cauchy–Schwarz in the inner
# product of $F$). We check the quadratic approximation and the claim on a tiny softmax classifier:
# `Linear(2, 3)` (9 parameters) at its random initialisation, on 60 points of three spiral arms
# moved off-centre (2 is added to the first coordinate). Inputs that are not centred couple each
# weight with its bias, a classic case in which the gradient's direction is a poor one.

# %%
X, y = mk.data.spirals(n_per_class=20, classes=3, noise=0.2, seed=0)
X = X + np.array([2.0, 0.0])                         # off-centre inputs
net = mk.nn.Sequential(mk.nn.Linear(2, 3))
loss_fn = mk.nn.CrossEntropyLoss()
theta0 = mk.curvature.flatten(net).copy()
P = theta0.size

net.zero_grad()
loss0 = float(loss_fn(net(X), y))
net.backward(loss_fn.backward())
grad = mk.curvature.flatten(net, "grad").copy()
F = mk.curvature.fisher(net, loss_fn, X, kind="true")
reference = net(X)                                   # p_θ's logits, fixed
eigenvalues = np.linalg.eigvalsh(F)
print(f"P = {P}, loss {loss0:.4f}, ‖∇L‖ = {np.linalg.norm(grad):.4f}")
print(f"eigenvalues of F: {np.array2string(eigenvalues, precision=2)}")


def loss_at(delta):
    mk.curvature.assign(net, theta0 + delta)
    return float(loss_fn(net(X), y))


def kl_at(delta):
    """D(δ): the mean KL from the predictions at θ to those at θ + δ."""
    mk.curvature.assign(net, theta0 + delta)
    return float(loss_fn.kl_divergence(reference, net(X)).mean())


# %% [markdown]
# Three of the eigenvalues are zero (to rounding): adding the same vector to the three classes'
# weights and biases changes no prediction, so $F$ is singular along those directions, and so is
# $D$. The loss does not change along them either, so $\nabla L$ lies in the range of $F$, and we use
# the pseudo-inverse $F^{+}$ (the natural gradient with no component along the invariant
# directions).
#
# **The quadratic approximation.** Along three random directions $u$, the KL of a step $\varepsilon u$
# against $\tfrac12\varepsilon^2 u^\top F u$, for $\varepsilon$ from $10^{-3}$ to $1$:

# %%
F_pinv = np.linalg.pinv(F, rcond=1e-10, hermitian=True)
range_residual = float(np.linalg.norm(grad - F @ (F_pinv @ grad)) / np.linalg.norm(grad))
print(f"‖∇L − F F⁺ ∇L‖ / ‖∇L‖ = {range_residual:.1e}  (the gradient lies in F's range)")

epsilons = np.geomspace(1e-3, 1.0, 13)
directions = rng.standard_normal((3, P))
directions /= np.linalg.norm(directions, axis=1, keepdims=True)
kl_true = np.array([[kl_at(e * u) for e in epsilons] for u in directions])
kl_quad = np.array([[0.5 * e ** 2 * u @ F @ u for e in epsilons] for u in directions])
kl_rel_error = np.abs(kl_true - kl_quad) / kl_true
kl_slopes = [float(np.polyfit(np.log(epsilons[:8]), np.log(r[:8]), 1)[0]) for r in kl_rel_error]
for i in range(3):
    print(f"direction {i}: relative error of ½ δᵀFδ at ε = 1e-3: {kl_rel_error[i, 0]:.1e}, at ε = 1: "
          f"{kl_rel_error[i, -1]:.2f}; log-log slope for small ε {kl_slopes[i]:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
for i in range(3):
    axes[0].loglog(epsilons, kl_true[i], "o", color=f"C{i}", label=f"KL, direction {i}")
    axes[0].loglog(epsilons, kl_quad[i], "-", color=f"C{i}", alpha=0.7,
                   label=rf"$\frac{{1}}{{2}}\varepsilon^2 u^\top F u$, direction {i}")
    axes[1].loglog(epsilons, kl_rel_error[i], "o-", color=f"C{i}", label=f"direction {i}")
axes[0].set(xlabel=r"step length $\varepsilon$ (step $\delta = \varepsilon u$, $\|u\| = 1$)",
            ylabel=r"$D(\delta)$, mean KL", title="KL of a step and its quadratic model")
axes[0].legend(fontsize=8, ncol=2)
axes[1].set(xlabel=r"step length $\varepsilon$", ylabel=r"$|D - \frac{1}{2}\delta^\top F\delta| \,/\, D$",
            title="Relative error of the quadratic model (∝ ε)")
axes[1].legend(fontsize=8)
plot.show(fig, "00_kl_quadratic")

# %% [markdown]
# What to look at: on the left the dots (the KL computed from the predictions) sit on the lines
# ($\tfrac12\delta^\top F\delta$) until the step length approaches 1; on the right the relative error
# falls in proportion to $\varepsilon$ (slope 1): the first neglected term of $D$ is cubic in
# $\delta$.
#
# **The steepest step.** For each KL budget $\kappa$ from $10^{-4}$ to $10^{-1}$ we scale the
# natural-gradient direction $-F^{+}\nabla L$, the gradient direction $-\nabla L$ and 200 random
# directions so that the *true* KL of the step, $D(\delta)$, equals $\kappa$ (by bisection on the
# scale: along a ray $D$ grows monotonically here, because the logits are linear in $\theta$ and the
# KL is convex in the logits), and compare the loss after each step.


# %%
def scaled_to_budget(direction, budget):
    """The step s·direction, s > 0, whose true KL D is `budget` (bisection on log s).

    The search starts from the quadratic model's scale sqrt(2 budget / dᵀFd), within a factor e³.
    """
    guess = 0.5 * np.log(2 * budget / (direction @ F @ direction))
    low, high = guess - 3.0, guess + 3.0
    for _ in range(32):
        middle = 0.5 * (low + high)
        if kl_at(np.exp(middle) * direction) < budget:
            low = middle
        else:
            high = middle
    return np.exp(0.5 * (low + high)) * direction


budgets = np.geomspace(1e-4, 1e-1, 7)
natural = -F_pinv @ grad
random_directions = rng.standard_normal((200, P))
random_directions *= np.sign(-(random_directions @ grad))[:, None]   # Gaussian directions, turned downhill
losses = {"NGD": [], "GD": [], "random": []}
budget_errors = []                                    # |D(δ) − κ| / κ of the NGD and GD steps
for budget in budgets:
    for name, direction in (("NGD", natural), ("GD", -grad)):
        step = scaled_to_budget(direction, budget)
        budget_errors.append(abs(kl_at(step) - budget) / budget)
        losses[name].append(loss_at(step))
    losses["random"].append([loss_at(scaled_to_budget(d, budget)) for d in random_directions])
mk.curvature.assign(net, theta0)                      # put the parameters back
losses = {name: np.array(value) for name, value in losses.items()}
predicted_ngd = loss0 - np.sqrt(2 * budgets * (grad @ F_pinv @ grad))   # the linear model of L along δ*
first_order_ratio = float(np.sqrt((grad @ F_pinv @ grad) * (grad @ F @ grad)) / (grad @ grad))
for i, budget in enumerate(budgets):
    print(f"κ = {budget:.0e}: loss after NGD {losses['NGD'][i]:.5f} (linear model {predicted_ngd[i]:.5f}), "
          f"GD {losses['GD'][i]:.5f}, best of 200 random {losses['random'][i].min():.5f}")
print(f"first-order decrease, NGD / GD = {first_order_ratio:.2f} (Cauchy–Schwarz: ≥ 1)")

fig, ax = plt.subplots(figsize=(7, 4.5))
for i, budget in enumerate(budgets):
    ax.semilogx(np.full(200, budget), loss0 - losses["random"][i], ".", color="lightgray",
                label="200 random directions" if i == 0 else None)
ax.semilogx(budgets, loss0 - losses["GD"], "o-", color="tab:blue", label=r"gradient direction $-\nabla L$")
ax.semilogx(budgets, loss0 - losses["random"].min(axis=1), "^--", color="tab:green", markersize=7,
            label="best of the 200 random directions")
ax.semilogx(budgets, loss0 - losses["NGD"], "s-", color="tab:orange", markerfacecolor="none", markersize=9,
            label=r"natural gradient $-F^{+}\nabla L$")
ax.semilogx(budgets, loss0 - predicted_ngd, "k:", label=r"$\sqrt{2\kappa\,\nabla L^\top F^{+}\nabla L}$")
ax.set_yscale("log")
ax.set(xlabel=r"KL budget $\kappa$ (every step scaled so that $D(\delta) = \kappa$)",
       ylabel=r"loss decrease $L(\theta) - L(\theta+\delta)$",
       title="Which direction buys the most decrease per unit of KL?")
ax.legend(fontsize=8)
plot.show(fig, "00_steepest_descent_in_kl")

# %% [markdown]
# What to look at: at every budget the orange squares (natural gradient) are above the blue
# circles (gradient), above the green triangles (the best of the 200 random directions, the top of
# the gray cloud) and so above the whole cloud, and they follow the
# dotted first-order prediction at small budgets (2% below it at $\kappa = 10^{-4}$; at large
# budgets the linear model of the loss overestimates every decrease). At small budgets the
# gradient's decrease is smaller by the first-order ratio printed above, about 1.8: it spends
# much of its KL budget on directions in which the predictions change a lot but the loss little.
# With these off-centre inputs it is so poor a direction that the best of 200 random directions
# beats it at every budget. (At the larger budgets a few random steps raise the loss; they fall
# off the logarithmic axis.)
#
# ## What we checked

# %%
assert table_error < 1e-12, f"the library's ∂_η L and F_η match the table, and the chain rule gives F_p: {table_error:.1e}"
assert gap_gd > 0.3, f"gradient descent in p and in the logit end far apart: {gap_gd:.3f}"
assert gap_ngd < 0.01 * gap_gd, f"the natural gradient's two runs agree: {gap_ngd:.2e} vs GD's {gap_gd:.3f}"
assert abs(runs["ngd", "p"][-1] - flow[-1]) < 0.01, "NGD follows the exact flow p̂ + (p0 − p̂)e^{-t}"
assert 0.8 < ngd_slope < 1.2, f"the NGD gap is first order in the learning rate: slope {ngd_slope:.2f}"
assert gaps["gd"].min() > 0.3, f"the GD gap does not vanish as α → 0: {gaps['gd']}"
assert range_residual < 1e-8, "the gradient lies in the range of the (singular) Fisher"
assert max(kl_rel_error[:, 0]) < 0.01, f"at ε = 1e-3, D = ½ δᵀFδ to 1%: {kl_rel_error[:, 0]}"
assert all(0.8 < s < 1.2 for s in kl_slopes), f"the quadratic model's relative error is ∝ ε: {kl_slopes}"
assert max(budget_errors) < 1e-6, f"the steps are scaled to their KL budget: {max(budget_errors):.1e}"
assert np.all(losses["NGD"] < losses["GD"]), f"NGD beats GD at every KL budget: {losses['NGD']} vs {losses['GD']}"
assert np.all(losses["NGD"] < losses["random"].min(axis=1)), "NGD beats 200 random directions at every budget"
assert first_order_ratio > 1.4, f"to first order NGD's decrease exceeds GD's by > 40%: {first_order_ratio:.2f}"
first_order_gap = abs(losses["NGD"] - predicted_ngd) / (loss0 - predicted_ngd)
assert first_order_gap[0] < 0.05 and first_order_gap[0] < first_order_gap[-1] / 10, \
    f"the NGD step's decrease approaches the first-order prediction as κ shrinks: {first_order_gap}"
assert np.all(losses["random"].min(axis=1) < losses["GD"]), "here even the best random direction beats GD"

# %% [markdown]
# ## Summary
#
# - Gradient descent depends on the parametrisation: on a coin, fitting $p$ or its logit with the
#   same rule gives paths that end 0.42 apart, however small the learning rate.
# - The natural gradient $F^{-1}\nabla L$ transforms like a change of parameter (the gradient picks up
#   one Jacobian factor, the Fisher two), so its continuous-time path is the same in every
#   parametrisation; with discrete steps of learning rate $\alpha$ the two paths differ by $O(\alpha)$
#   at a fixed time (measured slope close to 1).
# - $F = \mathbb{E}_{y\sim p_\theta}[\nabla\log p\,\nabla\log p^\top]$ is the Hessian of the KL divergence between the model's predictions before and after a step,
#   so $\tfrac12\delta^\top F\delta$ measures a step by how much it changes the predictions, and
#   $-F^{-1}\nabla L$ is the steepest descent direction under that measure: on a softmax classifier
#   it beats the gradient and 200 random directions at every KL budget.
# - For a network, $F$ is a $P \times P$ matrix; the rest of the course is about approximating it
#   (tutorial 04 says which matrix, tutorials 05–10 build K-FAC's Kronecker approximation).
#
# ## Try this
#
# 1. Start the coin from $p_0 = 0.5$ instead of $0.1$: how large is gradient descent's gap at
#    $t = 3$ now, and why is it smaller?
# 2. A third parametrisation: $\phi = \arcsin\sqrt{p}$ (so $p = \sin^2\phi$). Work out its Fisher
#    and check that natural gradient in $\phi$ follows the same flow. What is special about
#    gradient descent in $\phi$?
# 3. In Part 2, replace $F$ by the identity plus a tiny multiple of $F$ (say $I + 10^{-3}F$) as the
#    "metric". Which direction is now steepest, and which wins at a fixed KL budget?
