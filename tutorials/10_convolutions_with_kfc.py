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
# # 10. Convolutions with KFC
#
# A convolution applies one weight matrix at every output position, so its gradient is a *sum over
# positions* and K-FAC's argument for fully connected layers does not carry over as it is. Grosse &
# Martens 2016 add two spatial assumptions and get a Kronecker product again (KFC); we measure
# what each assumption costs on a small CNN on real images, then train with it.
#
# **What you will see**
#
# - the factors of a conv layer: A from the im2col patches (with the homogeneous 1), *summed* over
#   the L positions, G from the output derivatives, *averaged* over them;
# - KFC's block against the exact Fisher block of each conv layer of a tiny CNN on 16×16 MNIST
#   (float64), with the error split into the three assumptions — IAD, SH and SUD;
# - with one example IAD is exact (its share is 0 to 1e-15), yet KFC's error is already ≈ 0.9:
#   the spatial assumptions, mostly SUD (spatially uncorrelated derivatives), cause it;
# - the spatial autocorrelation of the output derivatives: ≈ 0 when pooled over examples, as SUD
#   wants, but ≈ 0.45 in size *within* one example; and the first conv layer's exact block needs
#   position pairs up to distance ≈ 10 (of 15) before the error falls below 15%;
# - a short training run of a CNN with K-FAC (KFC for its conv layers) against Adam.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import models, plot, training
from minikfac.studies import kfc_assumptions

mk.set_default_dtype("float64")  # exact-Fisher work in float64
mnist16 = mk.data.load("mnist16", flat=False)  # images (N, 1, 16, 16) in [0, 1]
print(mnist16)

mk.nn.init.manual_seed(0)
net = models.cnn((1, 16, 16), 10, channels=(4, 8))  # Conv(1→4) ReLU Pool Conv(4→8) ReLU Pool Linear(128→10)
loss_fn = mk.nn.CrossEntropyLoss()
print(net)
print("parameters per layer:", mk.curvature.layer_sizes(net))

# A Fisher at random initial weights is atypical: train one epoch of Adam first (about 70% test accuracy).
adam = mk.optim.Adam(net.parameters(), lr=3e-3)
for X, y in mk.data.DataLoader(mnist16.X_train, mnist16.y_train, 64, seed=0):
    training.train_step(net, loss_fn, adam, X, y)
print("after one epoch:", training.evaluate(net, loss_fn, mnist16.X_test, mnist16.y_test))

# %% [markdown]
# ## A convolution is a matrix product over patches
#
# A Conv2d layer with weights $(C_\text{out}, C_\text{in}, K_H, K_W)$ cuts each input into
# $L = O_H O_W$ patches (im2col), one per output position $l$, each with
# $D_\text{in} = C_\text{in} K_H K_W$ numbers, and applies the same matrix
# $\bar W = [W \mid b]$ of shape $(C_\text{out}, D_\text{in} + 1)$ to every patch:
# $s_l = \bar W \bar a_l$ with $\bar a_l = [a_l; 1]$. The gradient of one example's loss is a sum
# over positions, and so (vec stacks columns) is its vector:
#
# $$\nabla_{\bar W} \ell_n = \sum_l g_{nl}\, \bar a_{nl}^\top, \qquad
#   \operatorname{vec}(\nabla_{\bar W} \ell_n) = \sum_l \bar a_{nl} \otimes g_{nl} .$$
#
# The exact Fisher block therefore holds every *pair* of positions:
#
# $$F = \frac1N \sum_n \mathbb E_{y}\Big[\sum_{l}\sum_{l'} (\bar a_{nl}\bar a_{nl'}^\top) \otimes (g_{nl} g_{nl'}^\top)\Big].$$
#
# KFC keeps a single Kronecker product $A \otimes G$ with (Grosse & Martens 2016, their Ω and Γ)
#
# $$A = \frac1N\sum_n \sum_l \bar a_{nl}\bar a_{nl}^\top \quad(\text{a sum over positions}), \qquad
#   G = \frac1{NL}\sum_n \sum_l \mathbb E_y[g_{nl} g_{nl}^\top] \quad(\text{a mean over positions}).$$
#
# Only the product is fixed by the theory; a factor L could move from A to G. minikfac keeps the
# paper's convention, and the layer caches exactly what A needs: its patches.

# %%
X4 = mnist16.X_train[:4]
net(X4)
conv1, conv2 = net[0], net[3]
for name, conv in (("conv 1", conv1), ("conv 2", conv2)):
    print(f"{name}: input {conv.cache_input_shape} -> patches cache_input {conv.cache_input.shape} = (N, L, D_in)")
net.clear_cache()

factors = mk.curvature.kfac_factors(net, loss_fn, X4)  # "true" Fisher: every class weighted by its probability
positions = [16 * 16, 8 * 8]
g_traces = []
for layer, ((A, G), L) in enumerate(zip(factors, positions)):
    g = kfc_assumptions.output_gradient_maps(net, loss_fn, X4, layer)  # (K, N, C_out, O_H, O_W): g for every cotangent
    g_traces.append((np.trace(G), np.sum(g**2) / (len(X4) * L)))
    print(f"A {A.shape}, G {G.shape}; A's corner (the homogeneous coordinate) = {A[-1, -1]:.1f} = L; "
          f"tr G = {g_traces[-1][0]:.3e} = Σ‖g‖² / (N·L) = {g_traces[-1][1]:.3e}")

# %% [markdown]
# The corner of $A$ is $\frac1N\sum_n\sum_l 1\cdot 1 = L$: A sums over the 256 (or 64) positions,
# while the trace of $G$ is the mean of $\|g\|^2$ over examples *and* positions.
#
# ## Three assumptions, one at a time
#
# KFC gets from $F$ to $A\otimes G$ by three assumptions (Grosse & Martens 2016, §3).
# `mk.studies.kfc_assumptions.kfc_stages` applies them in turn and returns the dense block after each step:
#
# 1. **SUD**, spatially uncorrelated derivatives: $\mathbb E[g_l g_{l'}^\top] = 0$ for $l\neq l'$;
#    the pairs of different positions go:
#    $F_\text{sud} = \frac1N\sum_n\sum_l (\bar a_{nl}\bar a_{nl}^\top)\otimes \Gamma_{nl}$,
#    $\Gamma_{nl} = \mathbb E_y[g_{nl}g_{nl}^\top]$.
# 2. **SH**, spatial homogeneity: the derivatives' second moments are the same at every position;
#    $\Gamma_{nl}$ becomes its mean over positions $\bar\Gamma_n$:
#    $F_\text{sh} = \frac1N\sum_n \Omega_n \otimes \bar\Gamma_n$ with $\Omega_n = \sum_l \bar a_{nl}\bar a_{nl}^\top$.
# 3. **IAD**, independent activations and derivatives — K-FAC's own assumption: the mean of the
#    Kronecker products becomes the Kronecker product of the means,
#    $F_\text{kfc} = \big[\frac1N\sum_n\Omega_n\big]\otimes\big[\frac1N\sum_n\bar\Gamma_n\big] = A\otimes G$.
#
# With **one example** step 3 changes nothing, so the error at N = 1 is the spatial assumptions'
# alone. The Linear layer has one "position", so steps 1 and 2 change nothing there.

# %%
singles = [kfc_assumptions.kfc_stages(net, loss_fn, mnist16.X_train[i:i + 1]) for i in range(10)]
single_errors = [[kfc_assumptions.stage_errors(stages[layer]) for stages in singles] for layer in range(3)]
names = ["conv 1", "conv 2", "linear"]
print("N = 1, mean over 10 single examples of ‖F_stage − F‖/‖F‖ (cumulative) and of each step alone")
print(f"{'layer':<8}{'SUD':>8}{'+SH':>8}{'+IAD=KFC':>10}{'step SUD':>10}{'step SH':>9}{'step IAD':>10}")
for name, errors in zip(names, single_errors):
    mean = {key: np.mean([e[key] for e in errors]) for key in errors[0]}
    print(f"{name:<8}{mean['sud']:>8.3f}{mean['sh']:>8.3f}{mean['kfc']:>10.3f}{mean['step_sud']:>10.3f}"
          f"{mean['step_sh']:>9.3f}{max(e['step_iad'] for e in errors):>10.1e}")

# %% [markdown]
# The IAD column is the *largest* value over the 10 examples: zero up to rounding, as it must be.
# Yet KFC misses the exact block of one example by ≈ 90% in both conv layers, and SUD alone
# accounts for most of it. For the Linear layer KFC is K-FAC, exact for one example.
#
# Now a batch of N = 500: the exact blocks come from `mk.curvature.fisher_blocks` (the same
# function every Fisher comparison of minikfac uses), and IAD gets its share.

# %%
X500 = mnist16.X_train[:500]
exact_blocks = mk.curvature.fisher_blocks(net, loss_fn, X500)
stages = kfc_assumptions.kfc_stages(net, loss_fn, X500)
agreement = max(float(np.max(np.abs(s["exact"] - F)) / np.max(np.abs(F))) for s, F in zip(stages, exact_blocks))
print(f"kfc_stages' exact block vs fisher_blocks: largest relative difference {agreement:.1e}")
batch_errors = [kfc_assumptions.stage_errors(s) for s in stages]
print(f"{'layer':<8}{'SUD':>8}{'+SH':>8}{'+IAD=KFC':>10}{'step SUD':>10}{'step SH':>9}{'step IAD':>10}")
for name, e in zip(names, batch_errors):
    print(f"{name:<8}{e['sud']:>8.3f}{e['sh']:>8.3f}{e['kfc']:>10.3f}{e['step_sud']:>10.3f}{e['step_sh']:>9.3f}"
          f"{e['step_iad']:>10.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
width = 0.25
for ax, errors, title in ((axes[0], [{k: np.mean([e[k] for e in errs]) for k in errs[0]} for errs in single_errors],
                           "one example (N = 1), mean of 10"),
                          (axes[1], batch_errors, "a batch (N = 500)")):
    x = np.arange(3)
    for offset, (key, label) in zip((-width, 0, width), (("step_sud", "SUD alone"), ("step_sh", "SH alone"),
                                                          ("step_iad", "IAD alone"))):
        ax.bar(x + offset, [e[key] for e in errors], width, label=label)
    ax.plot(x, [e["kfc"] for e in errors], "k*", ms=12, label="KFC's whole error")
    ax.set_xticks(x, names)
    ax.set(title=title, xlabel="layer")
axes[0].set_ylabel("‖F_after − F_before‖ / ‖F‖")
axes[0].legend()
fig.suptitle("KFC's error on each layer, split into its assumptions (tiny CNN, 16×16 MNIST, float64)")
plot.show(fig, "10_kfc_error_sources")

# %% [markdown]
# On a batch, IAD costs a few percent in the conv layers (the Linear layer's whole error, IAD, is
# larger); SUD still dominates. The steps are not orthogonal, so their lengths do not add up to the
# whole error (the star), but the picture is clear: **dropping the pairs of different positions is
# what makes KFC inexact here**.
#
# ## How uncorrelated are the derivatives?
#
# SUD is a statement about correlations, so measure them. `kfc_assumptions.output_gradient_maps` returns the
# derivatives $g$ of a conv layer as maps $(K, N, C_\text{out}, O_H, O_W)$, one per cotangent $k$
# (for the true Fisher: the $K$ = 10 columns of the output Fisher's square root, so that
# $\sum_k g g^\top = \mathbb E_y[g g^\top]$, and $\mathbb E_y[g] = 0$: second moments are covariances).
# `kfc_assumptions.spatial_autocorrelation` correlates a map with itself shifted by $\delta = (d_y, d_x)$:
#
# $$r(\delta) = \frac{\sum g_t\, g_{t+\delta}}{\sqrt{\sum g_t^2 \sum g_{t+\delta}^2}},$$
#
# summed over samples, channels and positions $t$: pooled over **all examples** and positions, the
# statistic SUD is about. `kfc_assumptions.correlation_within_examples` keeps one image, one channel and one pair
# of positions and sums over $k$ only: the correlation over the model's targets $y$ for that image,
# the one the Fisher block of that example feels.

# %%
maps = [kfc_assumptions.output_gradient_maps(net, loss_fn, mnist16.X_train[:100], layer) for layer in (0, 1)]
print("derivative maps:", [m.shape for m in maps])
pooled = [kfc_assumptions.spatial_autocorrelation(m) for m in maps]  # (2·O_H − 1, 2·O_W − 1), centre = offset 0
# mean |r| within examples at the offsets (0, d_x), d_x = 1 .. O_W − 1 (NaN: a derivative that is always 0)
per_example = [np.array([np.nanmean(np.abs(kfc_assumptions.correlation_within_examples(m, (0, dx))))
                         for dx in range(1, m.shape[-1])]) for m in maps]
for name, r, p in zip(names, pooled, per_example):
    centre = r.shape[0] // 2
    off = np.delete(r.ravel(), r.size // 2)
    print(f"{name}: pooled |r(δ)| over all δ ≠ 0: mean {np.abs(off).mean():.3f}, max {np.abs(off).max():.3f}; "
          f"r(0, 1) = {r[centre, centre + 1]:+.3f}; within one example: mean |r(0, d_x)| = {p.min():.2f}..{p.max():.2f}")

# %% [markdown]
# Pooled over examples the derivatives are nearly uncorrelated at every offset, just as SUD assumes
# (the few larger values sit at the largest offsets, where only a handful of border positions overlap).
# Within one example they are not: two positions' derivatives are driven by the same 10-dimensional
# output error, with a correlation of size ≈ 0.45 whose sign changes from example to example and
# from place to place — which is why it averages out when pooled. But the Fisher block does not
# average $g_l g_{l'}^\top$ on its own: it averages $(\bar a_l \bar a_{l'}^\top)\otimes(g_l g_{l'}^\top)$,
# per example, and the patches of one image are far from independent of its derivatives.
#
# How far do the pairs that matter reach? `kfc_assumptions.blocks_within_radius` rebuilds the exact block
# keeping only the pairs with $\max(|d_y|, |d_x|) \le R$: $R = 0$ is SUD, and the full radius
# ($O_H - 1$) is the exact block.

# %%
X50 = mnist16.X_train[:50]
radii = list(range(16))
within = kfc_assumptions.blocks_within_radius(net, loss_fn, X50, radii)
stages50 = kfc_assumptions.kfc_stages(net, loss_fn, X50)
exact50 = [s["exact"] for s in stages50]
radius0_is_sud = max(float(np.max(np.abs(within[0][layer] - stages50[layer]["sud"])) / np.max(np.abs(exact50[layer])))
                     for layer in (0, 1))
print(f"R = 0 against kfc_stages' SUD block: largest relative difference {radius0_is_sud:.1e}")
radius_errors = [[float(np.linalg.norm(within[R][layer] - exact50[layer]) / np.linalg.norm(exact50[layer]))
                  for R in radii] for layer in (0, 1)]
below = [int(np.argmax(np.array(errors) < 0.15)) for errors in radius_errors]  # first R with error < 15%
for name, errors, R in zip(names, radius_errors, below):
    print(f"{name}: error with pairs up to R = 0, 1, 2, 4, 8: " + ", ".join(f"{errors[R]:.2f}" for R in (0, 1, 2, 4, 8))
          + f"; below 15% from R = {R}")

fig, axes = plt.subplots(1, 3, figsize=(14, 4))
centre = pooled[0].shape[0] // 2
image = axes[0].imshow(pooled[0], cmap="RdBu_r", vmin=-0.5, vmax=0.5,
                       extent=(-centre - 0.5, centre + 0.5, centre + 0.5, -centre - 0.5))
fig.colorbar(image, ax=axes[0], shrink=0.85, label="correlation r(δ)")
axes[0].set(xlabel="d_x", ylabel="d_y", title="conv 1: r(δ) pooled over 100 examples\n(1 at δ = 0, ≈ 0 elsewhere)")
for layer, colour in ((0, "tab:blue"), (1, "tab:orange")):
    side = maps[layer].shape[-1]
    dx = np.arange(1, side)
    axes[1].plot(dx, per_example[layer], "o-", color=colour,
                 label=f"{names[layer]}: within one example, mean |r|")
    axes[1].plot(dx, np.abs(pooled[layer][side - 1, side:]), "s--", color=colour,
                 label=f"{names[layer]}: pooled over examples, |r|")
    axes[2].plot(radii[:side], radius_errors[layer][:side], "o-", color=colour, label=names[layer])
axes[1].set(xlabel="horizontal offset d_x (d_y = 0)", ylabel="|r|", ylim=(0, 1),
            title="Correlation of derivatives across positions")
axes[1].legend(fontsize=8)
axes[2].axhline(0.15, color="gray", ls=":", lw=1)
axes[2].set(xlabel="R: pairs with max(|d_y|, |d_x|) ≤ R kept", ylabel="‖F_R − F‖ / ‖F‖",
            title="Exact block from nearby position pairs only\n(R = 0 is SUD; N = 50)")
axes[2].legend()
fig.tight_layout()
plot.show(fig, "10_derivative_correlation")

# %% [markdown]
# The correlations that matter are **long-range**: in the first conv layer (a 16×16 map) the block
# needs pairs up to distance about 10 before its error falls below 15%; in the second (8×8) up to 5.
# Each pair contributes little, but there are $L^2$ pairs against $L$ positions, and the bias
# coordinate alone puts a 1 in every $\bar a_l\bar a_{l'}^\top$. SUD, the assumption that looks best
# on the pooled correlations, is the one that costs most in the block. (KFC is still *useful*:
# what an optimizer needs is a preconditioner that captures the coarse scale of the curvature
# cheaply, and a Kronecker product of two small matrices is inverted through its factors, tutorial 07.)
#
# ## Training a CNN with K-FAC
#
# `mk.optim.KFAC` uses these factors for every Conv2d layer (and K-FAC's for the Linear one),
# estimated with targets sampled from the model and averaged over steps. We train `models.cnn` with its defaults — Conv(1→16) and Conv(16→32), 3×3, P = 9,930 — on
# 16×16 MNIST for 3 epochs at batch 128, against Adam at two learning rates, in float32, from the
# same initial weights and batches. The training loss is measured on 1,000 training images with the
# clock stopped.

# %%
mk.set_default_dtype("float32")
data32 = mk.data.load("mnist16", flat=False, dtype="float32")
subset = np.random.default_rng(0).choice(len(data32.X_train), 1000, replace=False)
X_sub, y_sub = data32.X_train[subset], data32.y_train[subset]


def train_cnn(make_optimizer, epochs=3, every=4):
    mk.nn.init.manual_seed(0)
    cnn = models.cnn((1, 16, 16), 10)
    cnn_loss = mk.nn.CrossEntropyLoss()
    opt = make_optimizer(cnn, cnn_loss)
    loader = mk.data.DataLoader(data32.X_train, data32.y_train, 128, seed=0, drop_last=True)
    record = {"step": [0], "seconds": [0.0], "loss": [training.evaluate(cnn, cnn_loss, X_sub, y_sub)["loss"]]}
    step, clock, total = 0, 0.0, epochs * len(loader)
    for _ in range(epochs):
        for X, y in loader:
            start = time.perf_counter()
            training.train_step(cnn, cnn_loss, opt, X, y)  # the loop of tutorial 09: K-FAC gets step(X, y)
            clock += time.perf_counter() - start
            step += 1
            if step % every == 0 or step == total:
                record["step"].append(step)
                record["seconds"].append(clock)
                record["loss"].append(training.evaluate(cnn, cnn_loss, X_sub, y_sub)["loss"])
    record = {key: np.array(value) for key, value in record.items()}
    record["test_accuracy"] = training.evaluate(cnn, cnn_loss, data32.X_test, data32.y_test)["accuracy"]
    record["ms_per_step"] = 1e3 * clock / step
    record["parameters"] = training.num_parameters(cnn)
    return record


cnn_runs = {"K-FAC": train_cnn(lambda cnn, cnn_loss: mk.optim.KFAC(cnn, cnn_loss))}
for lr in (3e-3, 1e-2):
    cnn_runs[f"Adam lr {lr:g}"] = train_cnn(lambda cnn, cnn_loss, lr=lr: mk.optim.Adam(cnn.parameters(), lr=lr))
print("parameters:", cnn_runs["K-FAC"]["parameters"])
for name, run in cnn_runs.items():
    print(f"{name:<14} final training loss {run['loss'][-1]:.4f}, test accuracy {100 * run['test_accuracy']:.1f}%, "
          f"{run['ms_per_step']:.1f} ms per step")

fig, (ax_steps, ax_seconds) = plt.subplots(1, 2, figsize=(11, 4))
for (name, run), colour in zip(cnn_runs.items(), ("tab:green", "tab:orange", "tab:red")):
    ax_steps.semilogy(run["step"], run["loss"], color=colour, label=name)
    ax_seconds.semilogy(run["seconds"], run["loss"], color=colour, label=name)
ax_steps.set(xlabel="iteration", ylabel="training loss (1,000 training images)", title="Per iteration")
ax_seconds.set(xlabel="seconds of training", ylabel="training loss (1,000 training images)", title="Per second")
for ax in (ax_steps, ax_seconds):
    ax.legend()
fig.suptitle("CNN on 16×16 MNIST, batch 128, 3 epochs: K-FAC (KFC for the conv layers) vs Adam")
plot.show(fig, "10_cnn_training")

best_adam = min((n for n in cnn_runs if n.startswith("Adam")), key=lambda n: cnn_runs[n]["loss"][-1])
adam_final = cnn_runs[best_adam]["loss"][-1]
kfac_run = cnn_runs["K-FAC"]
kfac_reach = int(kfac_run["step"][np.flatnonzero(kfac_run["loss"] <= adam_final)[0]])
kfac_reach_seconds = kfac_run["seconds"][kfac_run["step"] == kfac_reach][0]
print(f"K-FAC reaches {best_adam}'s final loss {adam_final:.4f} at step {kfac_reach} of {kfac_run['step'][-1]}, "
      f"after {kfac_reach_seconds:.2f} s (Adam: {cnn_runs[best_adam]['seconds'][-1]:.2f} s for all its steps; "
      f"K-FAC takes {kfac_reach_seconds / cnn_runs[best_adam]['seconds'][-1]:.1f}× as long); "
      f"a K-FAC step costs {kfac_run['ms_per_step'] / cnn_runs[best_adam]['ms_per_step']:.1f} Adam steps")

# %% [markdown]
# Compare the green curve with the red one in each panel: the left panel counts iterations, the right one
# seconds on this machine (those depend on the machine and its load).
#
# Despite the inexact conv blocks, K-FAC trains this CNN in fewer iterations than Adam at either
# learning rate: it reaches the best Adam's final loss in less than half the steps and ends at about
# a fifth of it. Per second the order can flip: a K-FAC step costs several Adam steps here (its statistics, the
# inverses of A up to 513×513, the quadratic model and its guard; the ratio is printed above), so on
# a CPU it may reach Adam's final loss later than Adam does. The printed seconds say which it was on
# your machine; we do not check them, since a busy machine changes them.
#
# ## What we checked

# %%
assert all(abs(A[-1, -1] - L) < 1e-9 for (A, _), L in zip(factors, positions)), "A sums over the L positions"
assert all(abs(t - mean) <= 1e-10 * mean for t, mean in g_traces), "G averages over the L positions"
assert agreement < 1e-10, "kfc_stages' exact block is fisher_blocks' exact conv-layer block"
assert max(e["step_iad"] for errors in single_errors for e in errors) < 1e-12, "with one example IAD is exact"
assert max(e["kfc"] for e in single_errors[2]) < 1e-10, "one example: K-FAC is exact for the Linear layer"
assert min(e["kfc"] for errors in single_errors[:2] for e in errors) > 0.5, \
    "one example: the spatial assumptions alone leave KFC's conv blocks more than 50% off"
for layer in (0, 1):
    e = batch_errors[layer]
    assert e["step_sud"] > max(e["step_sh"], e["step_iad"]), f"{names[layer]}: SUD is the largest step"
    assert e["step_iad"] < 0.1, f"{names[layer]}: IAD costs under 10% on a batch of 500"
    off = np.delete(pooled[layer].ravel(), pooled[layer].size // 2)
    assert np.abs(off).mean() < 0.05, f"{names[layer]}: pooled over examples the derivatives are nearly uncorrelated"
    assert per_example[layer].min() > 0.3, f"{names[layer]}: within one example they are correlated"
    side = maps[layer].shape[-1]
    assert radius_errors[layer][side - 1] < 1e-10, "keeping every pair gives back the exact block"
    assert radius_errors[layer][1] > 0.5, "neighbouring pairs alone are far from enough"
assert radius0_is_sud < 1e-10, "keeping only the pairs at distance 0 is SUD"
assert below[0] >= 8, "conv 1 needs pairs at distance 8 or more to get within 15% of the exact block"
assert kfac_run["loss"][-1] < adam_final, "K-FAC ends with a lower training loss than the best Adam"
assert kfac_reach <= 0.7 * kfac_run["step"][-1], "K-FAC reaches Adam's final loss with 30% of the steps to spare"
assert kfac_run["loss"][-1] < 0.6 * adam_final, "K-FAC's final training loss is well below Adam's"
assert kfac_run["test_accuracy"] >= 0.95, "K-FAC's CNN reaches 95% test accuracy in 3 epochs"

# %% [markdown]
# ## Summary
#
# - For a conv layer the per-example gradient sums over positions, and the exact Fisher block holds
#   every pair of positions. KFC reduces it to $A\otimes G$ with A summed and G averaged over positions.
# - With one example IAD is exact, so the conv layers' error there (≈ 0.9 here) is spatial; on a
#   batch, IAD adds a few percent and SUD still dominates.
# - Pooled over examples, output derivatives are nearly uncorrelated across positions; within one
#   example they are strongly correlated, and the exact block needs long-range pairs. The
#   assumption that looks safest on the pooled statistic costs most.
# - As a preconditioner KFC still works: K-FAC trained the CNN in fewer iterations than Adam and to
#   a lower loss; in seconds, on a CPU, its dearer step costs it much of that lead.
#
# ## Try this
#
# 1. Measure the stages at the random initial weights (skip the epoch of Adam): which assumption
#    changes most?
# 2. Replace `models.cnn(..., channels=(4, 8))` by a net without pooling (build it from
#    `mk.nn.Conv2d`, `mk.nn.ReLU`, `mk.nn.Flatten`, `mk.nn.Linear`) and compare the SUD step.
# 3. Compute the stages and the maps with `kind="empirical"` and `y=` the labels (the empirical
#    Fisher, one cotangent per example): what does "correlated within one example" mean then?
