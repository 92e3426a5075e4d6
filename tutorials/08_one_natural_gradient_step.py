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
# # 08. One natural-gradient step, seven ways
#
# Every method in this project is a way to choose a direction $\Delta\theta = -\hat F^{-1}\nabla L$. Here we
# take a single step on a tiny net where the exact Fisher is affordable, and ask of each direction: how close
# is it to the exact natural gradient, and how much loss does it buy?
#
# **What you will see**
#
# - seven methods (eight directions) from one batch: exact natural gradient $(F + \lambda I)^{-1}\nabla L$,
#   exact block-diagonal, K-FAC (with exact and with factored damping), block-tridiagonal K-FAC, EKFAC, the
#   diagonal Fisher, and the plain gradient — and their cosines with the exact one (K-FAC ≈ 0.64,
#   gradient ≈ 0.30);
# - the loss along each direction (a line search over the distance moved: a grid, then Brent's method to pin
#   the best distance), on the batch and on held-out data: every curvature direction beats the gradient, all
#   but the diagonal by far, and the ranking of the K-FAC variants, resolved far below their gaps;
# - a surprise: at this damping ($\lambda = 10^{-3}$) the *exact* natural gradient buys **less** than every
#   other Fisher-block direction (the exact block-diagonal one, K-FAC and its variants); with ten times more
#   damping it overtakes K-FAC, but the exact block-diagonal direction still beats it.

# %%
import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize_scalar

import minikfac as mk
from minikfac import models, plot, training

mk.set_default_dtype("float64")
mk.nn.init.manual_seed(0)

# %% [markdown]
# ## A tiny net, partially trained
#
# A 64-16-16-10 tanh MLP on the 8×8 digits, two epochs of Adam: about 83% test accuracy, so the loss still
# has somewhere to go. $P = 65·16 + 17·16 + 17·10 = 1482$, so $F$ is a 1482 × 1482 matrix. The step is
# computed on one batch of $N = 256$ training images; the held-out data are the 359 test images.

# %%
data = mk.data.load("digits")
net = models.mlp(64, 10, hidden=(16, 16), activation="tanh")
loss_fn = mk.nn.CrossEntropyLoss()
optimizer = mk.optim.Adam(net.parameters(), lr=3e-3)
training.train(net, loss_fn, optimizer, mk.data.DataLoader(data.X_train, data.y_train, 32, seed=0), 2,
               progress=False, log=None)
rows = np.random.default_rng(0).choice(len(data.y_train), 256, replace=False)
X, y = data.X_train[rows], data.y_train[rows]  # the batch: (256, 64), (256,)
X_held, y_held = data.X_test, data.y_test  # (359, 64), (359,)
theta = mk.curvature.flatten(net).copy()  # (P,) in the canonical order
slices = mk.curvature.layer_slices(net)
print(f"P = {theta.size}, layers {mk.curvature.layer_sizes(net)}, "
      f"test accuracy {100 * training.evaluate(net, loss_fn, X_held, y_held)['accuracy']:.1f}%")

# %% [markdown]
# ## The gradient and the exact Fisher of the batch
#
# $\nabla L$ (P,) is the mean gradient over the batch; $F$ (P, P) the true Fisher of the same 256 images
# (labels drawn from the model, every class weighted by its probability).

# %%
net.zero_grad()  # training left the last batch's gradients in .grad; backward accumulates
loss = loss_fn(net(X), y)
net.backward(loss_fn.backward())
gradient = mk.curvature.flatten(net, "grad").copy()  # (P,)
F = mk.curvature.fisher(net, loss_fn, X, kind="true")  # (P, P)
eigenvalues = np.linalg.eigvalsh(F)
print(f"loss {float(loss):.4f}; F: eigenvalues from {eigenvalues[0]:.1e} to {eigenvalues[-1]:.2f}, "
      f"{np.sum(eigenvalues < 1e-3)} of the {eigenvalues.size} below 1e-3")

# %% [markdown]
# ## Seven methods, eight directions
#
# Each approximation $\hat F$ is an object with `.solve(v, damping)` $= (\hat F + \lambda I)^{-1} v$ (exact
# Tikhonov damping). K-FAC can also damp its factors, $(A + \pi\sqrt\lambda I) \otimes (G + \frac{\sqrt\lambda}{\pi} I)$
# (tutorial 07), which is the only damping the block-tridiagonal model supports (`factored=True`). We use
# $\lambda = 10^{-3}$, the default of `minikfac compare`.
#
# | direction | $\hat F$ | cost to solve |
# |---|---|---|
# | exact | $F$ | $O(P^3)$ |
# | block-diagonal | $\mathrm{diag}(F_{11}, \dots, F_{LL})$ | $O(\sum_l P_l^3)$ |
# | K-FAC | $\mathrm{diag}(A_l \otimes G_l)$ | $O(\sum_l n_l^3 + m_l^3)$ |
# | K-FAC tridiagonal | inverse block-tridiagonal (Martens & Grosse 2015, §4.3) | about twice K-FAC |
# | EKFAC | $(U_A \otimes U_G)\,\mathrm{diag}(s)\,(U_A \otimes U_G)^\top$ | K-FAC + one pass for $s$ |
# | diagonal | $\mathrm{diag}(F)$ | $O(P)$ |
# | gradient | $I$ | nothing |

# %%
damping = 1e-3
kfac = mk.curvature.KFACBlockDiagonal.from_net(net, loss_fn, X, kind="true")


def directions(damping):
    """name -> the step direction (P,) (F̂ + λI)⁻¹ ∇L of each approximation, from the same batch."""
    return {
        "exact": mk.curvature.Exact(F, slices).solve(gradient, damping),
        "block-diagonal": mk.curvature.ExactBlockDiagonal([F[s, s] for s in slices], slices).solve(gradient, damping),
        "K-FAC": kfac.solve(gradient, damping),
        "K-FAC, factored damping": kfac.solve(gradient, damping, factored=True),
        "K-FAC tridiagonal (factored)": mk.curvature.KFACTridiagonal.from_net(net, loss_fn, X).solve(
            gradient, damping, factored=True),
        "EKFAC": mk.curvature.EKFAC.from_net(net, loss_fn, X).solve(gradient, damping),
        "diagonal": mk.curvature.ExactDiagonal(np.diag(F).copy(), slices).solve(gradient, damping),
        "gradient": gradient,
    }


def cosine(u, v):
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


steps = directions(damping)
cosines = {name: cosine(step, steps["exact"]) for name, step in steps.items()}
for name, value in cosines.items():
    print(f"{name:>30}: cosine with the exact natural gradient {value:.3f}")

# %% [markdown]
# The ordering follows how much of $F$ each keeps: the exact blocks beat their Kronecker approximations,
# which beat the diagonal, which is only slightly better than the raw gradient. Between K-FAC and EKFAC, and
# K-FAC and its tridiagonal version, the differences are small on this net.
#
# ## What each direction buys: a line search
#
# A direction is only half a step; the length matters too, and each method sets it differently (K-FAC by a
# quadratic model, SGD by a learning rate). To compare *directions* fairly we give each the best length:
# we move a distance $r$ along the unit direction, $\theta(r) = \theta - r\, d/\|d\|$, for $r$ on a
# logarithmic grid, and record the loss on the batch and on the held-out images. `mk.curvature.assign`
# writes a parameter vector into the net.
#
# The grid has 10 points per decade: neighbours differ by a factor $10^{0.1} \approx 1.26$, too coarse to rank
# directions whose best losses differ in the third decimal. So the grid only *brackets* each minimum; Brent's
# method (`scipy.optimize.minimize_scalar`, bounded to the grid minimum's two neighbours) then finds the best
# $r$ to $10^{-6}$. The length is chosen on the batch, then judged on held-out data.

# %%
distances = np.logspace(-2, 1.5, 36)  # from 0.01 to 31.6 in parameter space


def loss_at(vector, X, y):
    mk.curvature.assign(net, vector)
    return float(loss_fn(net(X), y))


def line_search(step):
    """(batch losses, held-out losses) at theta - r * step/|step| for every r in ``distances``."""
    unit = step / np.linalg.norm(step)
    batch = [loss_at(theta - r * unit, X, y) for r in distances]
    held = [loss_at(theta - r * unit, X_held, y_held) for r in distances]
    return np.array(batch), np.array(held)


def best_distance(step, batch):
    """Refine the grid's best r on the batch: Brent's method between its two neighbours on the grid.

    Returns r, the batch loss there, the held-out loss there, the grid's best batch loss, and how much the
    batch loss changes when r moves by 1e-4 of itself (an upper bound on what the refined r's error costs)."""
    unit = step / np.linalg.norm(step)
    k = int(np.argmin(batch))
    bracket = (distances[max(k - 1, 0)], distances[min(k + 1, len(distances) - 1)])
    found = minimize_scalar(lambda r: loss_at(theta - r * unit, X, y), bounds=bracket, method="bounded",
                            options={"xatol": 1e-6})
    r = float(found.x)
    wobble = max(abs(loss_at(theta - r * (1 + s) * unit, X, y) - found.fun) for s in (-1e-4, 1e-4))
    return {"r": r, "batch": float(found.fun), "held": loss_at(theta - r * unit, X_held, y_held),
            "grid batch": float(batch[k]), "grid r": float(distances[k]), "resolution": wobble}


start_batch, start_held = loss_at(theta, X, y), loss_at(theta, X_held, y_held)
curves = {name: line_search(step) for name, step in steps.items()}
results = {name: best_distance(steps[name], batch) for name, (batch, _) in curves.items()}
mk.curvature.assign(net, theta)  # put the trained parameters back
print(f"start: batch loss {start_batch:.4f}, held-out loss {start_held:.4f}")
print(f"{'direction':>30} {'cosine':>7} {'grid r':>7} {'grid loss':>10} {'best r':>8} {'batch loss':>11} "
      f"{'held-out at that r':>19}")
for name, res in results.items():
    print(f"{name:>30} {cosines[name]:7.3f} {res['grid r']:7.3f} {res['grid batch']:10.4f} {res['r']:8.4f} "
          f"{res['batch']:11.5f} {res['held']:19.5f}")
grid_resolution = max(res["grid batch"] - res["batch"] for res in results.values())
resolution = max(res["resolution"] for res in results.values())
print(f"the grid alone overstates a best batch loss by up to {grid_resolution:.4f}; after refinement a change of r "
      f"by 1e-4 of itself moves it by at most {resolution:.1e}")
ranking = ["block-diagonal", "K-FAC tridiagonal (factored)", "K-FAC", "EKFAC", "K-FAC, factored damping", "exact"]
pair_gaps = {(better, worse): results[worse]["batch"] - results[better]["batch"]
             for better, worse in zip(ranking, ranking[1:])}
closest_pair, closest_gap = min(pair_gaps.items(), key=lambda item: item[1])
print(f"closest neighbours in that ranking: {closest_pair[0]} and {closest_pair[1]}, {closest_gap:.5f} apart: "
      f"{closest_gap / grid_resolution:.1f} times the grid's error, {closest_gap / resolution:.1e} times the "
      f"refined search's")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained", sharey=True)
for ax, which, start, title in ((axes[0], 0, start_batch, "on the batch (N = 256)"),
                                (axes[1], 1, start_held, f"on held-out data ({len(y_held)} test images)")):
    for name, curve in curves.items():
        style = "--" if name == "gradient" else "-"
        line, = ax.semilogx(distances, curve[which], style, linewidth=2.2 if name == "exact" else 1.3, label=name)
        ax.plot(results[name]["r"], results[name]["batch" if which == 0 else "held"], "o", color=line.get_color(),
                markersize=4)
    ax.axhline(start, color="gray", linewidth=0.8, linestyle=":")
    ax.set_xlabel("distance moved along the direction, $r = \\|\\Delta\\theta\\|$ (parameter units)")
    ax.set_title(f"Loss after one step, λ = {damping:g}, {title}")
    ax.set_ylim(0.2, 1.6)
    ax.grid(True, alpha=0.3)
axes[0].set_ylabel("cross-entropy loss")
axes[1].legend(fontsize=8)
plot.show(fig, "08_loss_along_directions")

# %% [markdown]
# Each curve is the loss along one direction; the dot on it is the refined best distance (chosen on the batch,
# so on the right panel the dot need not sit at the curve's lowest point). Every curvature direction buys more
# than the gradient — the diagonal only a little, all the others much more: the gradient's best step stops at
# $r ≈ 0.23$ (beyond it the loss shoots up), while the directions built from Fisher blocks travel 4.8 to 6.7
# units downhill. And the exact natural gradient is **not** the winner: every other Fisher-block direction
# reaches a lower loss, on the batch and on held-out data. With the refined search the ranking on the batch is
#
# block-diagonal (0.274) < K-FAC tridiagonal (0.289) < K-FAC (0.325) < EKFAC (0.330) < K-FAC with factored
# damping (0.338) < exact (0.506),
#
# and the held-out losses at those distances come in the same order. The closest pair, K-FAC and EKFAC, is
# 0.004 apart: less than twice what the grid alone can be off by (0.002), but about a million times what the
# refined search can be off by (the ratios are printed above). This is one batch and one network: a ranking of directions so close (K-FAC,
# EKFAC, factored damping) can change with the batch, while the large gaps (block-diagonal and tridiagonal ahead,
# exact behind) are what the rest of this tutorial explains.
#
# Why? $\delta = -(F + \lambda I)^{-1}\nabla L$ is the minimiser of the quadratic model
# $\nabla L^\top\delta + \frac12\delta^\top (F + \lambda I)\delta$. With $\lambda = 10^{-3}$ most
# eigenvalues of $F$ (1100 of 1482) are below $\lambda$, and the exact step leans hard on those
# low-curvature directions, where (plausibly) the batch says little and the loss is far from its quadratic
# model. The approximations do not reproduce those tiny eigenvalues (K-FAC's are products $a_j g_i$ of the
# factors' eigenvalues), which may act like extra damping. If that reading is right, more damping should
# make the exact step better — the next cell checks that:

# %%
compared = ("exact", "block-diagonal", "K-FAC")
print(f"{'λ':>7} {'cos K-FAC':>10} {'cos gradient':>13}   " + "  ".join(f"{name + ': batch / held-out':>31}"
                                                                     for name in compared))
by_damping = {}
for lam in (1e-4, 1e-3, 1e-2):
    steps_lam = directions(lam)
    found = {name: best_distance(steps_lam[name], line_search(steps_lam[name])[0]) for name in compared}
    by_damping[lam] = {name: res["batch"] for name, res in found.items()}
    by_damping[lam].update({(name, "held"): res["held"] for name, res in found.items()})
    print(f"{lam:7g} {cosine(steps_lam['K-FAC'], steps_lam['exact']):10.3f} "
          f"{cosine(gradient, steps_lam['exact']):13.3f}   "
          + "  ".join(f"{found[name]['batch']:22.4f} / {found[name]['held']:.4f}" for name in compared))
mk.curvature.assign(net, theta)

# %% [markdown]
# More damping does make the exact step better, and with $\lambda = 10^{-2}$ it overtakes K-FAC, on the batch
# and on held-out data. It is still not the best direction: the exact block-diagonal one stays ahead of it at
# every damping tried. And all cosines rise (the damped matrices all move toward $\lambda I$, so every
# direction moves toward the gradient). The
# lesson is not that exact curvature is bad, but that *damping is part of the method*: "the natural
# gradient" of a singular or ill-conditioned Fisher is only defined once $\lambda$ is chosen, and K-FAC's
# optimizer adapts its $\lambda$ during training for this reason.
#
# ## What we checked

# %%
assert abs(cosines["exact"] - 1) < 1e-12, "the exact natural gradient has cosine 1 with itself"
assert cosines["K-FAC"] > cosines["gradient"] + 0.2, \
    f"K-FAC should point much closer to the natural gradient than the gradient: {cosines}"
assert cosines["block-diagonal"] > cosines["K-FAC"] > cosines["diagonal"] > cosines["gradient"], \
    f"expected the ordering block-diagonal > K-FAC > diagonal > gradient, got {cosines}"
assert cosines["K-FAC tridiagonal (factored)"] > cosines["K-FAC, factored damping"], \
    "with the same (factored) damping, the tridiagonal model should point closer to the exact step"
assert all(results[name]["batch"] < results["gradient"]["batch"] - 0.02 for name in results if name != "gradient"), \
    "every curvature direction should buy more (batch loss) than the plain gradient"
gradient_gain = start_batch - results["gradient"]["batch"]
assert all(start_batch - results[name]["batch"] > 3 * gradient_gain for name in results
           if name not in ("gradient", "diagonal")), "each Fisher-block direction buys over 3× the gradient's decrease"
assert all(results[name]["held"] < results["gradient"]["held"] for name in results if name != "gradient"), \
    "...and its batch-chosen step should also lower the held-out loss more"
assert results["K-FAC"]["batch"] < results["exact"]["batch"] and results["K-FAC"]["held"] < results["exact"]["held"], \
    "at λ = 1e-3, K-FAC's direction buys more than the exact natural gradient's (the text says so)"
margin = max(1e3 * resolution, 1e-3)  # far above the refined search's resolution
for better, worse in zip(ranking, ranking[1:]):
    assert results[better]["batch"] < results[worse]["batch"] - margin, \
        f"batch ranking: {better} ({results[better]['batch']:.5f}) before {worse} ({results[worse]['batch']:.5f})"
    assert results[better]["held"] < results[worse]["held"] - margin, \
        f"held-out ranking: {better} ({results[better]['held']:.5f}) before {worse} ({results[worse]['held']:.5f})"
assert resolution < 1e-6 and grid_resolution > 1e-3, "the refinement resolves what the grid cannot"
assert by_damping[1e-2]["exact"] < by_damping[1e-3]["exact"] < by_damping[1e-4]["exact"], \
    "more damping should make the exact step's line search better here"
assert by_damping[1e-2]["exact"] < by_damping[1e-2]["K-FAC"] and \
    by_damping[1e-2]["exact", "held"] < by_damping[1e-2]["K-FAC", "held"], \
    "at λ = 1e-2 the exact step beats K-FAC's, on the batch and held out"
assert all(by_damping[lam]["block-diagonal"] < by_damping[lam]["exact"] and
           by_damping[lam]["block-diagonal", "held"] < by_damping[lam]["exact", "held"] for lam in by_damping), \
    "at every damping tried the exact block-diagonal direction beats the exact natural gradient"

# %% [markdown]
# ## Summary
#
# From one batch, eight directions: the closer an approximation keeps to $F$ the closer its step is to
# the exact natural gradient (cosines 1 > 0.76 > 0.64 > 0.34 > 0.30), and every direction built from Fisher
# blocks buys several times the gradient's loss decrease (the diagonal, under twice). But closeness to the
# exact step is not the same as progress:
# at small damping the exact natural gradient is a worse direction than K-FAC's; with ten times more damping
# it overtakes K-FAC, but the exact block-diagonal direction still beats it. Cheaper directions can buy as
# much — here, more.
#
# ## Try this
#
# - Use the empirical Fisher (`kind="empirical"`, `y=y`) for $F$ and K-FAC: do the cosines and the losses
#   change?
# - Train for 10 epochs first: is the ordering the same near a minimum?
# - Replace the line search by K-FAC's own rule, the quadratic model's minimiser along the descent direction
#   $d = -\text{step}$: $\alpha^* = -\nabla L^\top d / (d^\top (F + \lambda I) d)$, a distance
#   $r = \alpha^* \|d\|$. How far from the best $r$ is it?
