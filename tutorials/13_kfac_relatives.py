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
# # 13. K-FAC's relatives: Shampoo, SOAP and Muon
#
# K-FAC is one way to approximate a layer's curvature block by a Kronecker product of two small matrices.
# Shampoo (Gupta et al. 2018) is another, built from the same per-example gradients; SOAP (Vyas et al.
# 2024) relates to Shampoo as EKFAC (George et al. 2018) relates to K-FAC; and Muon (Jordan et al. 2024) is
# what is left of Shampoo when it sees a single gradient. This tutorial puts the four side by side on one
# small network, where the exact empirical Fisher block is at hand, and measures every claim.
#
# **What you will see**
#
# - Shampoo's factors $R = \frac1N\sum_n D_n^\top D_n$ and $L = \frac1N\sum_n D_n D_n^\top$ of the per-example
#   gradients $D_n = g_n \bar a_n^\top$: for one example $R \otimes L = \mathrm{tr}(F)\,F$ exactly, for 500
#   examples they are K-FAC's factors with every example re-weighted, and $R \otimes L / \mathrm{tr}(F)$ is
#   closer to the exact empirical block than K-FAC's $A \otimes G$ (relative errors 0.37 and 0.67 against
#   0.42 and 0.79 on the two layers);
# - the power-iteration view (Morwani et al. 2024): the nearest Kronecker product of a block is the top singular
#   pair of its rearrangement; one step of power iteration from the identity gives Shampoo's $R \otimes L$
#   ("Shampoo²"), a few more steps reach the nearest Kronecker product (0.355 and 0.612), and Shampoo's own
#   $R^{1/2} \otimes L^{1/2}$ is farther than its square (0.60 and 0.78);
# - EKFAC and SOAP: the same recipe — keep a Kronecker eigenbasis, refit the diagonal — in K-FAC's basis and in
#   Shampoo's; here SOAP's basis is the better one (0.36 and 0.61 against EKFAC's 0.42 and 0.72);
# - the polar factor $UV^\top$: Shampoo with one gradient and exponent $-1/4$ is exactly it, Newton–Schulz
#   computes it with matrix products, Muon's quintic puts the singular values in a band around 1 (0.68 to
#   1.2, not 1), the cubic converges to 1 but needs about 20 steps where the quintic needs 5; and Muon's step
#   is that map applied to the momentum.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import plot
from minikfac.curvature import polar, shampoo

mk.set_default_dtype("float64")  # exact-Fisher work is float64
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## The network, its per-example gradients and its exact blocks
#
# The same 64-20-10 tanh net on 8×8 digits as tutorial 05, trained for two epochs with Adam, and $N = 500$
# training images. For layer $l$ with $\bar W = [W \mid b]$ of shape $(m, n) = (D_{out}, D_{in}+1)$, example
# $n$ has the gradient $D_n = g_n \bar a_n^\top$ ($m \times n$), with $g_n$ the gradient of its loss with
# respect to the layer's output and $\bar a_n = [a_n; 1]$ its input (tutorial 05). The **empirical** Fisher
# block is the second moment of these gradients (tutorial 04),
#
# $$F = \frac1N \sum_n \operatorname{vec}(D_n)\operatorname{vec}(D_n)^\top
#     = \frac1N \sum_n (\bar a_n \bar a_n^\top) \otimes (g_n g_n^\top) \qquad (mn \times mn),$$
#
# and it is what Shampoo's statistics describe: Shampoo accumulates gradients as they come, with the labels
# of the data. Everything below is compared with this $F$ (the *true* Fisher would need labels drawn from the
# model; try it at the end).

# %%
data = mk.data.load("digits")
net = mk.nn.Sequential(mk.nn.Linear(64, 20), mk.nn.Tanh(), mk.nn.Linear(20, 10))
loss_fn = mk.nn.CrossEntropyLoss()
adam = mk.optim.Adam(net.parameters(), lr=0.01)
for epoch in range(2):
    order = rng.permutation(len(data.X_train))
    for start in range(0, len(order), 64):
        batch = order[start:start + 64]
        adam.zero_grad()
        loss_fn(net(data.X_train[batch]), data.y_train[batch])
        net.backward(loss_fn.backward())
        adam.step()
X, y = data.X_train[:500], data.y_train[:500]  # (500, 64), (500,)
layers = mk.curvature.parametrised_layers(net)
slices = mk.curvature.layer_slices(net)
shapes = shampoo.factor_shapes(net)  # [(n, m)] per layer: [(65, 20), (21, 10)]
rows = mk.curvature.per_example_gradients(net, loss_fn, X, y)  # (500, 1510), row n = vec of every D_n
D = [mk.curvature.unvec(rows[:, s], m) for s, (n, m) in zip(slices, shapes)]  # [(500, m, n)] per layer
F = mk.curvature.fisher_blocks(net, loss_fn, X, y, kind="empirical")  # [(mn, mn)]: (1300, 1300), (210, 210)
print("layers (n, m):", shapes, " blocks:", [block.shape for block in F])


def error(approximation, block):
    """‖F − F̂‖_F / ‖F‖_F."""
    return np.linalg.norm(block - approximation) / np.linalg.norm(block)


# %% [markdown]
# ## From K-FAC's factors to Shampoo's
#
# K-FAC keeps the two sides of $D_n = g_n \bar a_n^\top$ apart and averages each on its own (Martens & Grosse
# 2015): $A = \frac1N\sum_n \bar a_n \bar a_n^\top$ ($n \times n$), $G = \frac1N\sum_n g_n g_n^\top$ ($m \times m$).
# Shampoo (Gupta et al. 2018) never splits $D_n$; it multiplies it by its own transpose, on either side:
#
# $$R = \frac1N \sum_n D_n^\top D_n \ (n \times n), \qquad L = \frac1N \sum_n D_n D_n^\top \ (m \times m).$$
#
# For an outer product these are again outer products: $D_n^\top D_n = \bar a_n g_n^\top g_n \bar a_n^\top =
# \|g_n\|^2\, \bar a_n \bar a_n^\top$ and $D_n D_n^\top = \|\bar a_n\|^2\, g_n g_n^\top$. So Shampoo's $R$ is
# K-FAC's $A$ with example $n$ weighted by $\|g_n\|^2$, and $L$ is $G$ weighted by $\|\bar a_n\|^2$.
# (Shampoo proper accumulates mini-batch gradients over training steps, with $\varepsilon I$ added; the curvature
# view here, Morwani et al. 2024's, uses per-example gradients of one batch.)
#
# **One example.** With $N = 1$, $R = \|g\|^2 A$ and $L = \|\bar a\|^2 G$, and K-FAC's $A \otimes G$ *is* the
# block $F$ (tutorial 05). Hence
#
# $$R \otimes L = \|g\|^2 \|\bar a\|^2\, (A \otimes G) = \mathrm{tr}(F)\, F,$$
#
# since $\mathrm{tr}(F) = \mathrm{tr}(A)\,\mathrm{tr}(G) = \|\bar a\|^2 \|g\|^2$. Shampoo's product is exact up to
# a scalar. We check it on the first image, with the library's `shampoo.shampoo_factors` and `kfac_factors`.

# %%
one_shampoo = shampoo.shampoo_factors(net, loss_fn, X[:1], y[:1], kind="empirical")
one_kfac = mk.curvature.kfac_factors(net, loss_fn, X[:1], y[:1], kind="empirical")
one_gaps = []
for i, ((R1, L1), (A1, G1)) in enumerate(zip(one_shampoo, one_kfac)):
    F1 = np.outer(mk.curvature.vec(D[i][0]), mk.curvature.vec(D[i][0]))  # the block of the first example alone
    gaps = (np.abs(np.kron(R1, L1) - np.trace(F1) * F1).max() / np.abs(np.trace(F1) * F1).max(),
            np.abs(R1 - np.trace(G1) * A1).max() / np.abs(R1).max(),
            np.abs(L1 - np.trace(A1) * G1).max() / np.abs(L1).max())
    one_gaps.append(max(gaps))
    print(f"layer {i + 1}, one example: |R⊗L − tr(F)F|, |R − tr(G)A|, |L − tr(A)G| relative: "
          + ", ".join(f"{gap:.1e}" for gap in gaps))

# %% [markdown]
# **Many examples.** Averaging breaks the identity: $\frac1N\sum_n D_n^\top D_n \otimes \frac1N\sum_n D_n D_n^\top$
# mixes examples, as $A \otimes G$ does. But two facts survive. The traces agree,
# $\mathrm{tr}(R) = \mathrm{tr}(L) = \frac1N\sum_n \|D_n\|_F^2 = \mathrm{tr}(F)$, so $R \otimes L / \mathrm{tr}(F)$
# has the trace of $F$ — Morwani et al.'s normalisation, `scale="trace"` in `shampoo.shampoo`. And $R$ and $L$ are
# the two *partial traces* of $F$: seen as an $n \times n$ grid of $m \times m$ blocks $F_{ij}$, $L = \sum_i F_{ii}$ and
# $R_{ij} = \mathrm{tr}(F_{ij})$. We build $R$ and $L$ from the gradients by hand, check them against the library and
# against the partial traces, and measure the distance of each Kronecker model to $F$.

# %%
factors = shampoo.shampoo_factors(net, loss_fn, X, y, kind="empirical")  # [(R (n, n), L (m, m))]
factor_gaps = []
for i, ((R, L), (n, m)) in enumerate(zip(factors, shapes)):
    R_hand = np.mean(np.swapaxes(D[i], 1, 2) @ D[i], axis=0)  # (1/N) Σ D_nᵀ D_n
    L_hand = np.mean(D[i] @ np.swapaxes(D[i], 1, 2), axis=0)  # (1/N) Σ D_n D_nᵀ
    grid = F[i].reshape(n, m, n, m)  # grid[i, :, j, :] = F_ij, the (m, m) block (i, j)
    partial_R, partial_L = np.einsum("iaja->ij", grid), np.einsum("iaib->ab", grid)
    factor_gaps.append(max(np.abs(R - R_hand).max() / np.abs(R).max(), np.abs(L - L_hand).max() / np.abs(L).max(),
                           np.abs(R - partial_R).max() / np.abs(R).max(), np.abs(L - partial_L).max() / np.abs(L).max(),
                           abs(np.trace(R) / np.trace(F[i]) - 1), abs(np.trace(L) / np.trace(F[i]) - 1)))
print(f"largest relative gap (by hand, partial traces, traces): {max(factor_gaps):.1e}")

kfac = mk.curvature.KFACBlockDiagonal.from_net(net, loss_fn, X, y, kind="empirical")
shampoo2_trace = shampoo.shampoo(net, loss_fn, X, y, power=1, scale="trace", factors=factors)
shampoo2 = shampoo.shampoo(net, loss_fn, X, y, power=1, scale="optimal", blocks=F, factors=factors)
shampoo_half = shampoo.shampoo(net, loss_fn, X, y, power=0.5, scale="optimal", blocks=F, factors=factors)
nearest = shampoo.nearest_kronecker_approximation(F, shapes, slices)
models = {"K-FAC A⊗G": kfac, "Shampoo² R⊗L/tr F": shampoo2_trace, "Shampoo² R⊗L, best scale": shampoo2,
          "Shampoo R½⊗L½, best scale": shampoo_half, "nearest Kronecker": nearest}
errors = {name: [error(model.block(i), F[i]) for i in range(len(F))] for name, model in models.items()}
print(f"{'relative error ‖F − F̂‖/‖F‖':<30}" + "".join(f"{f'layer {i + 1}':>10}" for i in range(len(F))))
for name, values in errors.items():
    print(f"{name:<30}" + "".join(f"{v:>10.3f}" for v in values))

# %% [markdown]
# Reading the table: at $N = 500$ neither Kronecker product is the block, but Shampoo²'s is the closer one on both
# layers, and its trace normalisation is almost as good as the best scalar (0.366 against 0.366, 0.672 against
# 0.669). K-FAC's weighting is uniform; Shampoo's gives more weight to the examples with large gradients, which are
# the ones that dominate $F$. The row below Shampoo² is Shampoo's *own* estimate: its step
# $L^{-1/4}\,\nabla\bar W\,R^{-1/4} = \mathrm{unvec}\big((R^{1/4}\otimes L^{1/4})^{-1}\operatorname{vec}\nabla\bar W\big)$ is,
# read like Adagrad's $H^{-1/2}\nabla$, the inverse square root of $R^{1/2} \otimes L^{1/2}$. That estimate of $F$ is
# much farther than its square; this is Morwani et al.'s point, and the next section explains why the square is
# the natural one.
#
# ## The power-iteration view
#
# Van Loan & Pitsianis 1993 turn "the nearest Kronecker product" into "the best rank-one matrix": the rearrangement
# $\mathcal R$ reorders the entries of an $mn \times mn$ matrix into an $n^2 \times m^2$ one with
# $\mathcal R(A \otimes G) = \operatorname{vec}(A)\operatorname{vec}(G)^\top$ and the same Frobenius norm
# (tutorials 05 and 06). So the nearest $A \otimes G$ to $F$ comes from the top singular pair of $\mathcal R(F)$, and for the
# empirical block
#
# $$\mathcal R(F) = \frac1N \sum_n \operatorname{vec}(\bar a_n \bar a_n^\top)\,\operatorname{vec}(g_n g_n^\top)^\top .$$
#
# Power iteration finds a top singular pair by multiplying alternately by $\mathcal R(F)$ and $\mathcal R(F)^\top$.
# Applied to a $\operatorname{vec}(M)$, $M$ of size $m \times m$, the sum gives
# $\mathcal R(F)\operatorname{vec}(M) = \frac1N\sum_n (g_n^\top M g_n)\, \operatorname{vec}(\bar a_n \bar a_n^\top) =
# \operatorname{vec}\big(\frac1N\sum_n D_n^\top M D_n\big)$, and likewise
# $\mathcal R(F)^\top \operatorname{vec}(K) = \operatorname{vec}\big(\frac1N\sum_n D_n K D_n^\top\big)$. One step that
# starts from the identities $(I_n, I_m)$ therefore gives **exactly Shampoo's $R$ and $L$**: Shampoo² is one step of power
# iteration for the nearest Kronecker product (Morwani et al. 2024). K-FAC's factors are a different one-pass estimate
# of the same singular pair: $\operatorname{vec}(A)\operatorname{vec}(G)^\top$ multiplies the *means* of the two vectors in
# each term of $\mathcal R(F)$'s sum, which is exact when $\bar a_n \bar a_n^\top$ and $g_n g_n^\top$ are uncorrelated
# over the examples (then $\mathcal R(F)$ has rank one), and is not a power-iteration step at all.
#
# `shampoo.kronecker_power_iteration(block, (n, m), steps)` runs the iteration on the rearranged block and returns
# the pair after `steps` rounds with the best scalar. We follow its error for 0 to 12 rounds.

# %%
steps = list(range(13))
power_errors = []
for i, (n, m) in enumerate(shapes):
    curve = []
    for k in steps:
        A_k, G_k = shampoo.kronecker_power_iteration(F[i], (n, m), k)
        curve.append(error(np.kron(A_k, G_k), F[i]))
    power_errors.append(curve)
    print(f"layer {i + 1}: rounds 0, 1, 2, 3, 12 -> " + ", ".join(f"{curve[k]:.4f}" for k in (0, 1, 2, 3, 12))
          + f"; Shampoo² (best scale) {errors['Shampoo² R⊗L, best scale'][i]:.4f}, "
          f"nearest {errors['nearest Kronecker'][i]:.4f}, K-FAC {errors['K-FAC A⊗G'][i]:.4f}")
one_step_gap = max(abs(curve[1] - errors["Shampoo² R⊗L, best scale"][i]) for i, curve in enumerate(power_errors))
print(f"one round from (I, I) vs Shampoo² with its best scale: largest gap {one_step_gap:.1e}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
for i, ax in enumerate(axes):
    ax.plot(steps, power_errors[i], "o-", color="tab:blue", label="power iteration from (I, I)")
    ax.axhline(errors["nearest Kronecker"][i], color="black", linestyle="--", label="nearest Kronecker (the floor)")
    ax.axhline(errors["K-FAC A⊗G"][i], color="tab:red", linestyle=":", label="K-FAC A⊗G")
    ax.axhline(errors["Shampoo R½⊗L½, best scale"][i], color="tab:green", linestyle="-.",
               label="Shampoo R½⊗L½ (best scale)")
    ax.annotate("Shampoo² = round 1", (1, power_errors[i][1]), textcoords="offset points", xytext=(12, 12),
                arrowprops={"arrowstyle": "->"})
    ax.set_title(f"layer {i + 1}: block {shapes[i][0] * shapes[i][1]} × {shapes[i][0] * shapes[i][1]}")
    ax.set_xlabel("rounds of power iteration on the rearranged block")
    ax.set_ylabel("relative error ‖F − A⊗G‖ / ‖F‖")
axes[0].legend(fontsize=8)
fig.suptitle("Shampoo² is one round of power iteration for the nearest Kronecker product (empirical Fisher, N = 500)")
plot.show(fig, "13_power_iteration")

# %% [markdown]
# Look at round 1 in each panel: it sits on Shampoo²'s error, below K-FAC's dotted line, and the next two or three rounds
# close most of the remaining gap to the dashed floor. Round 0 is the identity, $I \otimes I$ with the best scalar, the
# worst Kronecker product of the lot. Shampoo's own $R^{1/2}\otimes L^{1/2}$ (dash-dotted) lies above K-FAC on layer 1.
#
# ## EKFAC and SOAP: one recipe, two bases
#
# EKFAC (George et al. 2018, tutorial 06 and exercise 9) keeps the eigenvectors of K-FAC's factors,
# $Q = U_A \otimes U_G$, and replaces the eigenvalues by the best diagonal in that basis,
# $s = \mathrm{diag}(Q^\top F Q) = \frac1N\sum_n (U_G^\top D_n U_A)^{\odot 2}$. SOAP (Vyas et al. 2024) runs Adam
# in the eigenbasis of Shampoo's factors, $Q = U_R \otimes U_L$; as a curvature model it is the same refit
# in the other basis (`shampoo.soap`). Two things hold for any basis $Q$ of this form:
#
# - the refit is never worse than a Kronecker product diagonal in the same basis: EKFAC ≤ K-FAC, and SOAP ≤
#   Shampoo at *every* power and scale (each $R^p \otimes L^p$ is diagonal in $U_R \otimes U_L$);
# - its trace is $\mathrm{tr}(F)$ ($Q$ is orthogonal, and $\sum s = \mathrm{tr}(Q^\top F Q)$).
#
# Which basis is better is not a theorem; we measure it. What differs from the optimizer SOAP: Vyas et al. keep running
# averages of the squared rotated *mini-batch* gradients over steps (Adam's second moment) and refresh the basis
# every few steps; the model here uses the per-example squares of one batch, as EKFAC does.

# %%
ekfac = mk.curvature.EKFAC.from_net(net, loss_fn, X, y, kind="empirical")
soap = shampoo.soap(net, loss_fn, X, y, kind="empirical", factors=factors)
for name, model in (("EKFAC (K-FAC's basis)", ekfac), ("SOAP (Shampoo's basis)", soap)):
    errors[name] = [error(model.block(i), F[i]) for i in range(len(F))]
trace_gaps = [abs(np.trace(model.block(i)) / np.trace(F[i]) - 1) for model in (ekfac, soap) for i in range(len(F))]
for name in ("K-FAC A⊗G", "EKFAC (K-FAC's basis)", "Shampoo² R⊗L, best scale", "SOAP (Shampoo's basis)",
             "nearest Kronecker"):
    print(f"{name:<30}" + "".join(f"{v:>10.3f}" for v in errors[name]))
print(f"largest relative gap between the refitted models' traces and tr(F): {max(trace_gaps):.1e}")

names = ["K-FAC A⊗G", "EKFAC (K-FAC's basis)", "Shampoo² R⊗L, best scale", "SOAP (Shampoo's basis)",
         "nearest Kronecker"]
colours = ["tab:red", "salmon", "tab:blue", "lightskyblue", "black"]
fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
width = 0.16
for i, (name, colour) in enumerate(zip(names, colours)):
    positions = np.arange(len(F)) + (i - 2) * width
    ax.bar(positions, errors[name], width, color=colour, label=name)
    for x, value in zip(positions, errors[name]):
        ax.text(x, value + 0.01, f"{value:.3f}", ha="center", fontsize=7)
ax.set_xticks(range(len(F)), [f"layer {i + 1} ({n}·{m} = {n * m} parameters)" for i, (n, m) in enumerate(shapes)])
ax.set_xlabel("layer of the 64-20-10 net")
ax.set_ylabel("relative error ‖F − F̂‖ / ‖F‖")
ax.set_ylim(0, 0.9)
ax.legend(fontsize=8, loc="upper left")
ax.set_title("Refitting the diagonal in a Kronecker eigenbasis: K-FAC → EKFAC and Shampoo² → SOAP")
plot.show(fig, "13_ekfac_soap")

# %% [markdown]
# Each light bar is below the dark bar of its own basis, as it must be. Across bases, Shampoo's wins here on both layers:
# SOAP is 0.05 and 0.11 below EKFAC. On layer 2 SOAP (0.605) is even below the black bar, the nearest Kronecker product
# (0.612): a Kronecker eigenbasis with a free diagonal is not a Kronecker product, so that floor does not bind it.
#
# ## The polar factor and Muon
#
# Now shrink Shampoo's statistics to a **single** gradient $G$ ($m \times n$, thin SVD $G = U \Sigma V^\top$):
# $L = GG^\top = U\Sigma^2U^\top$ and $R = G^\top G = V\Sigma^2V^\top$. With Shampoo's exponent $-1/4$ on both sides,
#
# $$L^{-1/4}\, G\, R^{-1/4} = U\Sigma^{-1/2}U^\top \, U\Sigma V^\top \, V\Sigma^{-1/2}V^\top = U V^\top,$$
#
# the **polar factor** of $G$: its singular vectors with every singular value set to 1, the nearest matrix with
# orthonormal rows or columns, and the steepest-descent direction when steps are measured in the spectral norm
# (Bernstein & Newhouse 2024 read Shampoo without its accumulation this way). In floating point $L$ and $R$ have
# zero eigenvalues (a $20 \times 65$ gradient has rank 20 at most), so $\varepsilon I$ is added; the result is
# $U\,\mathrm{diag}\big(\sigma/\sqrt{\sigma^2+\varepsilon}\big)V^\top$.
#
# We take the mean gradient of layer 1 over the 500 images (layer 2's would do badly: the softmax's gradient sums to
# zero over the 10 classes, so its $10 \times 21$ gradient has rank 9 and no unique polar factor).

# %%
G_mean = D[0].mean(axis=0)  # (20, 65), the gradient of W̄ of layer 1 for the mean loss
sigma = np.linalg.svd(G_mean, compute_uv=False)
print(f"layer 1's gradient {G_mean.shape}: singular values {sigma[0]:.3g} ... {sigma[-1]:.3g} "
      f"(condition number {sigma[0] / sigma[-1]:.0f}; layer 2's smallest: "
      f"{np.linalg.svd(D[1].mean(axis=0), compute_uv=False)[-1]:.1e})")
eps = 1e-12 * sigma[0] ** 2
one_gradient_shampoo = (polar.matrix_power_psd(G_mean @ G_mean.T, -0.25, eps) @ G_mean
                        @ polar.matrix_power_psd(G_mean.T @ G_mean, -0.25, eps))
UVt = polar.polar_factor(G_mean)
shampoo_gap = np.linalg.norm(one_gradient_shampoo - UVt) / np.linalg.norm(UVt)
print(f"‖L^(-1/4) G R^(-1/4) − U Vᵀ‖ / ‖U Vᵀ‖ = {shampoo_gap:.1e} (ε = 1e-12 σ₁²)")

# %% [markdown]
# ## Newton–Schulz: the polar factor from matrix products
#
# An SVD is slow on an accelerator. Muon (Jordan et al. 2024) computes the polar factor approximately with an odd
# matrix polynomial: after $X \leftarrow G/\|G\|_F$ (every singular value is then in $[0, 1]$), each step is
#
# $$X \leftarrow aX + (bA + cA^2)X, \qquad A = XX^\top,$$
#
# which maps every singular value $\sigma$ of $X$ to $p(\sigma) = a\sigma + b\sigma^3 + c\sigma^5$ and keeps the singular
# vectors (exercise 11). A tall $G$ is transposed first so that $A$ is the smaller Gram matrix.
#
# - The **cubic** $(a, b, c) = (1.5, -0.5, 0)$ is the classical Newton–Schulz iteration: 1 is an attracting fixed point,
#   so every singular value in $(0, \sqrt3)$ converges to 1 — quadratically near 1, but a small $\sigma$ only grows by
#   1.5× per step.
# - Muon's **quintic** $(3.4445, -4.7750, 2.0315)$ (`torch.optim.Muon`'s defaults) trades convergence for speed: its
#   slope at 0 is 3.4, so small singular values rise fast, and $p(1) = 0.70$ — it has no fixed point at 1 and leaves the
#   singular values oscillating in a band around it.
#
# The whole matrix iteration is the scalar map $\sigma \mapsto p^{k}(\sigma)$ on the normalised singular values. We draw the
# map, then run `polar.newton_schulz` on $G$ and read off its singular values.

# %%
quintic, cubic = polar.MUON_COEFFICIENTS, polar.CUBIC_COEFFICIENTS
band = polar.MUON_SINGULAR_VALUE_BAND


def scalar_map(x, coefficients, count):
    """p^count(x) for p(x) = a x + b x³ + c x⁵, elementwise."""
    a, b, c = coefficients
    for _ in range(count):
        x = a * x + b * x ** 3 + c * x ** 5
    return x


x = np.logspace(-4, 0, 801)
normalised = sigma / np.linalg.norm(G_mean)  # σ_i / ‖G‖_F, in (0, 1]
U, _, Vt = np.linalg.svd(G_mean, full_matrices=False)
ns_quintic = polar.newton_schulz(G_mean, 5, quintic)
ns_cubic = polar.newton_schulz(G_mean, 5, cubic)
vectors_gap = max(np.abs(ns_quintic - (U * scalar_map(normalised, quintic, 5)) @ Vt).max(),
                  np.abs(ns_cubic - (U * scalar_map(normalised, cubic, 5)) @ Vt).max())
quintic_values = np.linalg.svd(ns_quintic, compute_uv=False)
cubic_values = np.linalg.svd(ns_cubic, compute_uv=False)
iterations = list(range(0, 31))
distance = {name: [np.linalg.norm(polar.newton_schulz(G_mean, k, coefficients) - UVt) / np.linalg.norm(UVt)
                   for k in iterations] for name, coefficients in (("quintic", quintic), ("cubic", cubic))}
print(f"normalised singular values of G: {normalised.min():.2e} ... {normalised.max():.3f}")
print(f"after 5 quintic steps: singular values {quintic_values.min():.3f} ... {quintic_values.max():.3f} "
      f"(band {band}); after 5 cubic steps: {cubic_values.min():.3f} ... {cubic_values.max():.3f}")
print(f"Newton–Schulz = U p^5(Σ/‖G‖_F) Vᵀ: largest entry gap {vectors_gap:.1e}")
print("‖NS_k(G) − U Vᵀ‖ / ‖U Vᵀ‖ at k = 5, 10, 15, 20, 30: quintic "
      + ", ".join(f"{distance['quintic'][k]:.3f}" for k in (5, 10, 15, 20, 30)) + "; cubic "
      + ", ".join(f"{distance['cubic'][k]:.1e}" for k in (5, 10, 15, 20, 30)))

fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), layout="constrained")
ax = axes[0]
ax.axhspan(*band, color="tab:orange", alpha=0.15, label=f"Muon's band {band}")
ax.plot(x, scalar_map(x, quintic, 5), color="tab:orange", label="quintic, 5 steps")
ax.plot(x, scalar_map(x, cubic, 5), color="tab:blue", label="cubic, 5 steps")
ax.plot(x, scalar_map(x, cubic, 20), color="tab:blue", linestyle="--", label="cubic, 20 steps")
ax.plot(normalised, scalar_map(normalised, quintic, 5), "o", color="tab:orange", markersize=4,
        label="layer 1's gradient, quintic")
ax.plot(normalised, scalar_map(normalised, cubic, 5), "s", color="tab:blue", markersize=4,
        label="layer 1's gradient, cubic")
ax.set_xscale("log")
ax.set_xlabel("singular value of the input, σ / ‖G‖_F")
ax.set_ylabel("singular value after the iteration")
ax.set_title("What Newton–Schulz does to each singular value")
ax.legend(fontsize=8, loc="upper left")
ax = axes[1]
ax.plot(np.arange(1, len(sigma) + 1), quintic_values, "o-", color="tab:orange", label="quintic, 5 steps")
ax.plot(np.arange(1, len(sigma) + 1), cubic_values, "s-", color="tab:blue", label="cubic, 5 steps")
ax.axhline(1.0, color="black", linewidth=0.8, label="U Vᵀ (all 1)")
ax.set_xlabel("index i of the singular value (largest first)")
ax.set_ylabel("singular value i of NS(G)")
ax.set_title("Layer 1's gradient (20 × 65) after 5 steps")
ax.legend(fontsize=8)
ax = axes[2]
ax.semilogy(iterations, np.maximum(distance["quintic"], 1e-17), "o-", color="tab:orange", label="quintic")
ax.semilogy(iterations, np.maximum(distance["cubic"], 1e-17), "s-", color="tab:blue", label="cubic")
ax.set_xlabel("Newton–Schulz steps k")
ax.set_ylabel("‖NS_k(G) − U Vᵀ‖_F / ‖U Vᵀ‖_F")
ax.set_title("Distance to the polar factor")
ax.legend(fontsize=8)
fig.suptitle("Newton–Schulz on layer 1's gradient: the quintic is fast but lands in a band, the cubic converges")
plot.show(fig, "13_newton_schulz")

# %% [markdown]
# In the left panel, follow the orange curve: after five quintic steps every singular value above about
# $1.5 \cdot 10^{-3}$ of $\|G\|_F$ ends in the shaded band, while five cubic steps (solid blue) leave everything below
# about 0.3 short of 1; the markers are layer 1's own singular values and sit on the curves, because the matrix
# iteration is exactly the scalar map on the singular values. The middle panel shows them as a spectrum. The right
# panel is the price of the quintic: its distance to $UV^\top$ stops falling after a few steps and oscillates (the map
# sends the band into itself), whereas the cubic's is still 0.4 after 10 steps and reaches rounding level after 19,
# when its slowest singular value (0.0036 of $\|G\|_F$) has grown to 1.
#
# ## Muon's step
#
# Muon (Jordan et al. 2024; `mk.optim.Muon`, after `torch.optim.Muon`) keeps a momentum buffer $B$ per weight
# matrix and steps along its orthogonalised version: $B \leftarrow \mu B + (1-\mu)G$, then
# $W \leftarrow W - \eta\sqrt{\max(1, m/n)}\;\mathrm{NS}_5(B)$ (here without Nesterov's look-ahead and weight
# decay; biases are left to AdamW, so the matrix is $W$ without its bias column). A few steps on a copy of the
# net, then one step taken apart:

# %%
muon_net = mk.nn.Sequential(mk.nn.Linear(64, 20), mk.nn.Tanh(), mk.nn.Linear(20, 10))
mk.curvature.assign(muon_net, mk.curvature.flatten(net))
muon = mk.optim.Muon(muon_net.parameters(), lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=False)
params = list(muon_net.parameters())
weight = mk.curvature.parametrised_layers(muon_net)[0].weight  # (20, 64)
index = next(i for i, p in enumerate(params) if p is weight)
for step in range(6):
    batch = rng.choice(len(data.X_train), 64, replace=False)
    before = weight.data.copy()
    muon.zero_grad()
    loss_fn(muon_net(data.X_train[batch]), data.y_train[batch])
    muon_net.backward(loss_fn.backward())
    muon.step()
buffer = muon.state[index]["momentum_buffer"]  # (20, 64), after the last step
change = weight.data - before
rows_, cols_ = weight.data.shape
expected_change = -0.02 * np.sqrt(max(1.0, rows_ / cols_)) * polar.newton_schulz(buffer, 5, quintic)
step_gap = np.abs(change - expected_change).max() / np.abs(change).max()
direction = change / (-0.02)
direction_values = np.linalg.svd(direction, compute_uv=False)
buffer_polar = polar.polar_factor(buffer)
to_polar = np.linalg.norm(direction - buffer_polar) / np.linalg.norm(buffer_polar)
cosine = np.sum(direction * buffer_polar) / (np.linalg.norm(direction) * np.linalg.norm(buffer_polar))
print(f"ΔW = −η·NS₅(B) to {step_gap:.1e}; singular values of ΔW/η: {direction_values.min():.3f} ... "
      f"{direction_values.max():.3f}; distance to U Vᵀ of B {to_polar:.3f}, cosine {cosine:.3f}")

# %% [markdown]
# Muon's step is, to rounding, the quintic Newton–Schulz map of the momentum, and that is close to — but not — the polar
# factor of the momentum: its singular values sit in the band, and its cosine with $UV^\top$ is close to 1.
#
# ## What we checked
#
# The exact identities (one example; the partial traces; Shampoo² = one round of power iteration; the refit's trace; one
# gradient's Shampoo = $UV^\top$; Muon's step = $\mathrm{NS}_5$ of its momentum), the inequalities that must hold, and the
# measured orderings the text states for this net.

# %%
assert max(one_gaps) < 1e-10, f"one example: R⊗L = tr(F)F, R = tr(G)A, L = tr(A)G; gap {max(one_gaps):.1e}"
assert max(factor_gaps) < 1e-10, f"R, L by hand = library = partial traces, traces = tr(F); gap {max(factor_gaps):.1e}"
assert all(s < k for s, k in zip(errors["Shampoo² R⊗L/tr F"], errors["K-FAC A⊗G"])), \
    "at N = 500 Shampoo²'s R⊗L/tr(F) is closer to the empirical block than K-FAC's A⊗G on both layers"
assert all(t - o < 0.01 for t, o in zip(errors["Shampoo² R⊗L/tr F"], errors["Shampoo² R⊗L, best scale"])), \
    "the trace normalisation is within 0.01 of the best scalar"
assert all(h > s + 0.1 for h, s in zip(errors["Shampoo R½⊗L½, best scale"], errors["Shampoo² R⊗L, best scale"])), \
    "Shampoo's own R½⊗L½ is farther from F than its square"
assert one_step_gap < 1e-8, f"one round of power iteration from (I, I) is Shampoo² ({one_step_gap:.1e})"
for i, curve in enumerate(power_errors):
    floor = errors["nearest Kronecker"][i]
    assert abs(curve[-1] - floor) < 1e-6, f"layer {i + 1}: 12 rounds reach the nearest Kronecker product"
    assert all(later <= earlier + 1e-12 for earlier, later in zip(curve[1:], curve[2:])), \
        f"layer {i + 1}: the error falls round after round"
    assert all(floor <= value + 1e-12 for value in curve + [errors["K-FAC A⊗G"][i]]), "no Kronecker product beats the floor"
    assert curve[0] > errors["K-FAC A⊗G"][i], f"layer {i + 1}: round 0 (I⊗I) is the worst of the lot"
assert all(e <= k + 1e-12 for e, k in zip(errors["EKFAC (K-FAC's basis)"], errors["K-FAC A⊗G"])), "EKFAC ≤ K-FAC"
for name in ("Shampoo² R⊗L/tr F", "Shampoo² R⊗L, best scale", "Shampoo R½⊗L½, best scale"):
    assert all(s <= o + 1e-12 for s, o in zip(errors["SOAP (Shampoo's basis)"], errors[name])), f"SOAP ≤ {name}"
assert max(trace_gaps) < 1e-10, f"EKFAC's and SOAP's traces equal tr(F) ({max(trace_gaps):.1e})"
assert all(s < e - 0.04 for s, e in zip(errors["SOAP (Shampoo's basis)"], errors["EKFAC (K-FAC's basis)"])), \
    "on this net Shampoo's eigenbasis beats K-FAC's by about 0.05 or more on both layers"
assert errors["SOAP (Shampoo's basis)"][1] < errors["nearest Kronecker"][1], \
    "on layer 2 SOAP is below the nearest Kronecker product"
assert shampoo_gap < 1e-6, f"one gradient: L^(-1/4) G R^(-1/4) = U Vᵀ ({shampoo_gap:.1e})"
assert vectors_gap < 1e-10, "Newton–Schulz keeps the singular vectors and maps the singular values by p^k"
assert normalised.min() > 1.5e-3, "every normalised singular value of G is above 1.5e-3 (the text's threshold)"
assert band[0] <= quintic_values.min() and quintic_values.max() <= band[1], \
    f"5 quintic steps put the singular values in the band {band}: {quintic_values.min():.3f} ... {quintic_values.max():.3f}"
assert quintic_values.min() < 0.9 and quintic_values.max() > 1.05, "the quintic lands around 1, not at 1"
assert cubic_values.min() < 0.5, "5 cubic steps leave the small singular values far below 1"
assert min(distance["quintic"][5:]) > 0.05, "the quintic never converges to U Vᵀ"
assert distance["cubic"][5] > distance["quintic"][5], "after 5 steps the quintic is closer to U Vᵀ than the cubic"
assert distance["cubic"][15] > 1e-3 and distance["cubic"][20] < 1e-12, "the cubic reaches U Vᵀ, in about 20 steps"
assert step_gap < 1e-10, f"Muon's step is −η·NS₅(momentum) ({step_gap:.1e})"
assert band[0] <= direction_values.min() and direction_values.max() <= band[1], "Muon's step lies in the band"
assert 0.05 < to_polar < 0.5 and cosine > 0.95, "Muon's step is near the polar factor of the momentum, not at it"

# %% [markdown]
# ## Summary
#
# K-FAC, Shampoo and the nearest Kronecker product are three answers to one question — which $A \otimes G$ stands for a
# layer's block — built from the same per-example gradients. For one example Shampoo's $R \otimes L$ is the block times its
# trace; for many, $R$ and $L$ are the block's partial traces, one round of power iteration for the nearest Kronecker
# product, and here closer to the block than K-FAC's factors. Refitting the diagonal in a Kronecker eigenbasis turns
# K-FAC into EKFAC and Shampoo into SOAP; on this net Shampoo's basis is the better one. With a single gradient Shampoo's
# step is the polar factor $UV^\top$, which Muon approximates by five quintic Newton–Schulz steps of its momentum: fast,
# and deliberately not exact.
#
# **Sources, and what was checked.** The claims about the papers were checked against their abstracts and summaries,
# not their full texts: that the square of Shampoo's approximation is one step of power iteration for the optimal
# Kronecker product (Morwani et al. 2024, abstract; the start from the identity and the normalisation by the trace are
# derived and checked here, not read in their §3); that SOAP runs Adam in the eigenbasis of Shampoo's preconditioner
# (Vyas et al. 2024); that Shampoo without accumulation is steepest descent in the spectral norm, a projection onto
# semi-orthogonal matrices (Bernstein & Newhouse 2024, abstract and summary); Shampoo's exponent $-1/4$ on each side
# (Gupta et al. 2018, Algorithm 1, as secondary descriptions give it). Muon's definition and coefficients follow
# `torch.optim.Muon` as `minikfac.optim.muon` documents it; Jordan et al.'s own text (a blog post) could not be read here.
# Morwani et al. plot cosine similarities; the "best scale" errors here are the same measure,
# $\sqrt{1-\cos^2}$. torch runs Newton–Schulz in bfloat16; here it runs in float64.
#
# ## Try this
#
# - Start the power iteration from K-FAC's factors instead of the identities (`start=(A, G)` with
#   `mk.curvature.kfac_factors(..., kind="empirical")`): is one round from there closer than Shampoo²?
# - Use 8 examples instead of 500 (blocks, factors and K-FAC all on `X[:8]`): how do K-FAC, Shampoo² and the nearest
#   Kronecker product compare now?
# - Run `polar.newton_schulz` with Muon's coefficients for 10 or 50 steps instead of 5: do the singular values reach 1?
#   And what does `polar.newton_schulz(D[1].mean(axis=0), 5)` do with layer 2's rank-9 gradient?
# - Repeat the comparison with the true Fisher: `kind="true"` in `fisher_blocks`, `shampoo.shampoo_factors`,
#   `shampoo.shampoo`, `shampoo.soap`, `KFACBlockDiagonal.from_net` and `EKFAC.from_net`. Does the ordering survive, and
#   is Shampoo² still one round of power iteration?
