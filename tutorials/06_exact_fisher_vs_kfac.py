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
# # 06. Exact Fisher vs K-FAC, on Martens & Grosse's network
#
# K-FAC replaces the Fisher by Kronecker products and drops what lies between layers. How much is lost?
# We redraw Figs. 2 and 3 of Martens & Grosse 2015 on their own network and put numbers on the pictures.
#
# **What you will see**
#
# - the exact Fisher $F$ (7,030 × 7,030) of a partially trained 256-20-20-20-20-20-10 tanh net on 16×16
#   MNIST, next to K-FAC's $\tilde F$ with blocks $A_{ij} \otimes G_{ij}$ (middle four layers, heat maps);
# - the error table of `mk.studies.compare`: K-FAC's relative error (about 0.78), split into the
#   cross-layer blocks it drops (0.64) and the independence assumption inside each block (0.44), which add
#   in quadrature (0.64² + 0.44² ≈ 0.78²); EKFAC below K-FAC on every layer; the block-tridiagonal model,
#   which keeps the blocks next to the diagonal, below both on the whole $F$ (0.63);
# - $\tilde F^{-1}$: not sparse, but its blocks fade fast away from the diagonal (Martens & Grosse 2015, Fig. 3), which is
#   why a block-*tridiagonal* inverse approximates it better than a block-diagonal one (error 0.12 vs 0.29);
#   the damped *exact* inverse, though, is not nearly tridiagonal on this net.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import models, plot, training

mk.set_default_dtype("float64")  # exact-Fisher work is float64
mk.nn.init.manual_seed(0)

# %% [markdown]
# ## The network, partially trained
#
# Martens & Grosse drew their figure for a net "partially trained" on 16×16 MNIST: at initialisation the
# Fisher is featureless, after convergence it is tiny. Three epochs of Adam (batch 16, lr 3e-3, what
# `minikfac compare` does) on the 4,000 training images bring it to roughly 88% test accuracy.
#
# Parameters per layer: $(D_{in}+1)\,D_{out}$ in the order vec$([W \mid b])$, i.e.
# $257·20 = 5140$, then $21·20 = 420$ four times, then $21·10 = 210$: $P = 7030$.

# %%
data = mk.data.load("mnist16")  # X (4000, 256) in [0, 1], y (4000,)
net = models.martens_grosse(256, 10)
loss_fn = mk.nn.CrossEntropyLoss()
optimizer = mk.optim.Adam(net.parameters(), lr=3e-3)
loader = mk.data.DataLoader(data.X_train, data.y_train, 16, seed=0)
training.train(net, loss_fn, optimizer, loader, epochs=3, progress=False, log=None)
test = training.evaluate(net, loss_fn, data.X_test, data.y_test)
sizes = mk.curvature.layer_sizes(net)
print(f"P = {sum(sizes):,} parameters, per layer {sizes}; test accuracy {100 * test['accuracy']:.1f}%")

# %% [markdown]
# ## The exact Fisher
#
# The true Fisher of $N$ examples averages, over the data, the expectation over labels drawn from the model:
#
# $$F = \frac1N \sum_{n} \mathbb E_{y \sim p(y|x_n)}\big[\nabla \ell_n \nabla \ell_n^\top\big]
#     = \frac1N \sum_n \sum_{c} p_{nc}\, \nabla \ell_{nc} \nabla \ell_{nc}^\top .$$
#
# minikfac computes it exactly (every class, weighted by its probability). The CLI uses $N = 1000$; we use
# $N = 300$ training images to stay fast — $F$ is then singular (rank $\le N(C-1) = 2700 < P$), which is
# why inverses below are damped or taken on the middle layers only.

# %%
rows = np.random.default_rng(0).choice(len(data.y_train), 300, replace=False)
X, y = data.X_train[rows], data.y_train[rows]  # (300, 256), (300,)
F = mk.curvature.fisher(net, loss_fn, X, kind="true")  # (7030, 7030)
print(f"F: {F.shape}, tr(F) = {np.trace(F):.3f}")

# %% [markdown]
# ## Fig. 2: $F$ against K-FAC's $\tilde F$
#
# K-FAC's $\tilde F$ approximates *every* block of $F$, between layers too, by a Kronecker product
# (Martens & Grosse 2015, §3): with $\bar a_i$ the input of layer $i$ (with a 1 appended) and $g_i$ the gradient of its
# output,
#
# $$F_{ij} = \mathbb E\big[(\bar a_i \bar a_j^\top) \otimes (g_i g_j^\top)\big]
#   \;\approx\; \mathbb E[\bar a_i \bar a_j^\top] \otimes \mathbb E[g_i g_j^\top] = A_{ij} \otimes G_{ij}
#   = \tilde F_{ij}.$$
#
# `figure_matrices` cuts the middle four layers (2-5, 4 × 420 parameters) out of $F$ and builds $\tilde F$
# on them from `kfac_cross_factors`. We draw absolute values, white at the 98% quantile of $|F|$.

# %%
mats = mk.studies.figure_matrices(net, loss_fn, X, F)  # layers 1..4 (0-based), (1680, 1680) each
F_mid, F_tilde, edges = mats.fisher, mats.approximation, mats.boundaries
white = np.quantile(np.abs(F_mid), 0.98)
fig, axes = plt.subplots(1, 3, figsize=(17, 5.3), layout="constrained")
for ax, image, title in zip(axes, (F_mid, F_tilde, F_mid - F_tilde),
                            ("exact $|F|$", r"K-FAC $|\tilde F|$ (all $A_{ij} \otimes G_{ij}$)",
                             r"error $|F - \tilde F|$")):
    shown = ax.imshow(np.abs(image), cmap="gray", vmin=0, vmax=white)
    for edge in edges[1:-1]:
        ax.axhline(edge - 0.5, color="tab:red", linewidth=0.6)
        ax.axvline(edge - 0.5, color="tab:red", linewidth=0.6)
    ax.set_title(title)
    ax.set_xlabel("parameter index (layers 2-5)")
    fig.colorbar(shown, ax=ax, fraction=0.046, label="|entry| (white: 98% quantile of |F| and above)")
axes[0].set_ylabel("parameter index (layers 2-5)")
fig.suptitle("Martens & Grosse 2015, Fig. 2: exact Fisher vs K-FAC, middle four layers, N = 300")
plot.show(fig, "06_fisher_vs_kfac")
print(f"relative error on these layers: {np.linalg.norm(F_mid - F_tilde) / np.linalg.norm(F_mid):.3f}")

# %% [markdown]
# Compare the left and middle panels block by block (red lines: layer boundaries; all three on the same grey
# scale). The coarse structure (which blocks and which rows are large) survives; the fine structure inside each
# block does not: in the right panel the error is as large as $F$'s own entries in many places, most of all
# in the rows and columns of the first of these layers. To see how much each simplification costs, `mk.studies.compare` measures every
# approximation against the whole $F$:
#
# - **K-FAC** (block-diagonal $A_l \otimes G_l$, what the optimizer uses);
# - **K-FAC tridiagonal** (Martens & Grosse 2015, §4.3: keeps the blocks next to the diagonal, see below);
# - **EKFAC** (George et al. 2018): K-FAC's eigenbasis $U_A \otimes U_G$, with the eigenvalues re-estimated
#   as the second moments of the gradients in that basis;
# - the exact **diagonal** and the exact **block-diagonal** (the best any block-diagonal method can do).
#
# Relative Frobenius errors $\|F - \hat F\|/\|F\|$ (per layer $\|F_{ll} - \hat F_{ll}\|/\|F_{ll}\|$). The
# sources: off-diagonal and diagonal blocks are orthogonal, so K-FAC's squared error is the cross-layer
# part plus the independence part, $E[\bar a \bar a^\top \otimes g g^\top]$ vs $A \otimes G$; the
# nearest Kronecker product of each block (Van Loan & Pitsianis 1993) is a floor no Kronecker product beats.
# We skip the Monte-Carlo rows and the spectra (slow at this size; try them with `minikfac compare`).

# %%
result = mk.studies.compare(net, loss_fn, X, kind="true", F=F, mc_seeds=0, spectra=False)
print(result.table())
errors, sources = result.errors, result.sources

# %% [markdown]
# Reading the table:
#
# - K-FAC's error is large, and most of it is the **cross-layer blocks** it drops: even the exact
#   block-diagonal, which keeps every entry inside the layers, is nearly as far from $F$ (its error is the
#   "cross-layer blocks dropped" row). Inside the blocks, the independence assumption costs less, and is close to
#   the best Kronecker product in the deep layers (the floor itself is high there).
# - **EKFAC** is below K-FAC on every layer. It must be: in the basis $Q = U_A \otimes U_G$ K-FAC's block is
#   *some* diagonal matrix, EKFAC's is the *best* diagonal, $s = \mathrm{diag}(Q^\top F_{ll} Q)$. And
#   $\mathrm{tr}(Q\,\mathrm{diag}(s)\,Q^\top) = \sum s = \mathrm{tr}(F_{ll})$ exactly. We check both.
# - The **diagonal** approximation misses nearly everything (error ≈ 1): the Fisher is far from diagonal.

# %%
ekfac = mk.curvature.EKFAC.from_net(net, loss_fn, X, kind="true")
slices = mk.curvature.layer_slices(net)
trace_gap = max(abs(float(s.sum()) - np.trace(F[sl, sl])) / np.trace(F[sl, sl])
                for s, sl in zip(ekfac.scalings, slices))
print("per-layer error  K-FAC:", np.round(errors["K-FAC"]["layers"], 3))
print("per-layer error  EKFAC:", np.round(errors["EKFAC"]["layers"], 3))
print(f"largest relative gap between EKFAC's and the exact blocks' traces: {trace_gap:.1e}")

# %% [markdown]
# ## Fig. 3: the inverse of $\tilde F$ is nearly block-tridiagonal
#
# The optimizer needs $\tilde F^{-1}$, not $\tilde F$. Martens & Grosse observed that, although $\tilde F$ has large
# blocks far from the diagonal, its *inverse* is dominated by the diagonal and the first off-diagonal
# blocks. We summarise each 420 × 420 block by its mean $|\text{entry}|$, $m_{ij}$, and, since the
# diagonal blocks differ in scale, also by the normalised $m_{ij}/\sqrt{m_{ii} m_{jj}}$ (1 on the
# diagonal). Layers 2-5 are invertible here, no damping needed.

# %%
def normalised(means):
    """m_ij / sqrt(m_ii m_jj) for a (B, B) matrix of block means."""
    scale = np.sqrt(np.diag(means))
    return means / np.outer(scale, scale)


def near_and_far(means):
    """(smallest normalised first off-diagonal block, largest normalised block >= 2 steps off)."""
    m = normalised(means)
    count = len(m)
    near = min(m[i, i + 1] for i in range(count - 1))
    far = max(m[i, j] for i in range(count) for j in range(count) if abs(i - j) >= 2)
    return near, far


F_tilde_inv = np.linalg.inv(F_tilde)  # (1680, 1680)
means = plot.block_means(F_tilde, edges)
means_inv = plot.block_means(F_tilde_inv, edges)
print("block means of |F~^-1| / largest:\n", np.round(means_inv / means_inv.max(), 2))
print("normalised block means of |F~|:\n", np.round(normalised(means), 2))
print("normalised block means of |F~^-1|:\n", np.round(normalised(means_inv), 2))
near_inv, far_inv = near_and_far(means_inv)
near_ft, far_ft = near_and_far(means)
print(f"F~:    smallest neighbour block {near_ft:.2f}, largest block two or more layers apart {far_ft:.2f}")
print(f"F~^-1: smallest neighbour block {near_inv:.2f}, largest block two or more layers apart {far_inv:.2f}")

# %% [markdown]
# Two ways to approximate $\tilde F^{-1}$ cheaply, on the same four layers:
#
# - **block-diagonal** $\breve F^{-1} = \mathrm{diag}\big((A_{ii} \otimes G_{ii})^{-1}\big)$, what K-FAC does;
# - **block-tridiagonal** $\hat F^{-1} = \Xi^\top \Lambda \Xi$ (Martens & Grosse 2015, §4.3): the $\hat F$ that agrees
#   with $\tilde F$ on the diagonal and first off-diagonal blocks and whose inverse is *exactly*
#   block-tridiagonal — the covariance of a chain $w_i = \Psi_{i,i+1} w_{i+1} + \varepsilon_i$ over the
#   layers' gradients, with $\Psi_{i,i+1} = \tilde F_{i,i+1}\tilde F_{i+1,i+1}^{-1}$ a Kronecker product.
#   `KFACTridiagonal` takes the cross factors $(A_{ij}, G_{ij})$ for $j \in \{i, i+1\}$.

# %%
cross = mk.curvature.kfac_cross_factors(net, loss_fn, X, kind="true", pairs="all")
middle = mats.layers  # [1, 2, 3, 4]
sub = {(a, b): cross[(i, j)] for a, i in enumerate(middle) for b, j in enumerate(middle) if a <= b}
tridiagonal = mk.curvature.KFACTridiagonal(sub)
block_diagonal = mk.curvature.KFACBlockDiagonal([sub[(a, a)] for a in range(len(middle))])


def relative(M, reference):
    return np.linalg.norm(M - reference) / np.linalg.norm(reference)


error_tri = relative(tridiagonal.inverse(), F_tilde_inv)
error_bd = relative(block_diagonal.inverse(), F_tilde_inv)
print(f"‖inverse − F~^-1‖ / ‖F~^-1‖: block-diagonal {error_bd:.3f}, block-tridiagonal {error_tri:.3f}")

# %% [markdown]
# And against the **exact** Fisher? The exact $F$ restricted to these layers is nearly singular (its
# smallest eigenvalue, printed below, is about 1e-9 times its largest), so only damped inverses
# $(F + \lambda I)^{-1}$ mean something. For each $\lambda$, the two models get the same exact Tikhonov
# damping, $(\breve F + \lambda I)^{-1}$ and $(\hat F + \lambda I)^{-1}$. This compares the *models*: with
# exact damping the tridiagonal model's inverse is no longer block-tridiagonal and is formed densely here,
# whereas an optimizer damps the factors instead, which keeps the structure (Martens & Grosse 2015, §6.3; tutorial 07).

# %%
eigenvalues_mid = np.linalg.eigvalsh(F_mid)  # ascending, (1680,)
print(f"eigenvalues of F on layers 2-5: smallest {eigenvalues_mid[0]:.1e}, largest {eigenvalues_mid[-1]:.2f}")
identity = np.eye(F_mid.shape[0])
dampings = [1e-4, 1e-3, 1e-2]
vs_exact = {"block-diagonal": [], "block-tridiagonal": [], "K-FAC F~ (all blocks)": []}
for lam in dampings:
    exact_inv = np.linalg.inv(F_mid + lam * identity)
    vs_exact["block-diagonal"].append(relative(block_diagonal.inverse(lam), exact_inv))
    vs_exact["block-tridiagonal"].append(relative(tridiagonal.inverse(lam), exact_inv))
    vs_exact["K-FAC F~ (all blocks)"].append(relative(np.linalg.inv(F_tilde + lam * identity), exact_inv))
for name, values in vs_exact.items():
    print(f"{name:>22}: " + ", ".join(f"λ={lam:g}: {v:.3f}" for lam, v in zip(dampings, values)))
exact_means = plot.block_means(np.linalg.inv(F_mid + 1e-3 * identity), edges)
print("normalised block means of |(F + 1e-3 I)^-1|:\n", np.round(normalised(exact_means), 2))
near_exact, far_exact = near_and_far(exact_means)
print(f"(F + 1e-3 I)^-1: smallest neighbour block {near_exact:.2f}, largest two or more apart {far_exact:.2f}")

# %% [markdown]
# The tridiagonal model's inverse is closer than the block-diagonal one's at every damping, and nearly as
# close as the damped inverse of the full $\tilde F$. But notice the last table: the exact
# $(F + \lambda I)^{-1}$ (λ = 1e-3) on these layers is **not** close to block-tridiagonal — its normalised blocks two
# layers apart (up to 0.54) are barely smaller than its neighbour blocks (0.61-0.73), where $\tilde F^{-1}$ has
# 0.21 against 0.28-0.47. The near-tridiagonal structure belongs to K-FAC's $\tilde F^{-1}$
# (Martens & Grosse's claim, about $\tilde F$); for the exact Fisher of 300 examples it does not hold.

# %%
fig, axes = plt.subplots(1, 4, figsize=(19, 4.8), layout="constrained")
panels = ((F_tilde_inv, r"$|\tilde F^{-1}|$"), (block_diagonal.inverse(), r"block-diagonal $|\breve F^{-1}|$"),
          (tridiagonal.inverse(), r"block-tridiagonal $|\hat F^{-1}|$"))
for ax, (image, title) in zip(axes, panels):
    shown = ax.imshow(np.abs(image), cmap="gray", vmin=0, vmax=np.quantile(np.abs(F_tilde_inv), 0.98))
    for edge in edges[1:-1]:
        ax.axhline(edge - 0.5, color="tab:red", linewidth=0.6)
        ax.axvline(edge - 0.5, color="tab:red", linewidth=0.6)
    ax.set_title(title)
    ax.set_xlabel("parameter index (layers 2-5)")
axes[0].set_ylabel("parameter index (layers 2-5)")
labels = [f"layer {i + 1}" for i in middle]
shown = axes[3].imshow(normalised(means_inv), cmap="gray", vmin=0, vmax=1)
for i in range(4):
    for j in range(4):
        value = normalised(means_inv)[i, j]
        axes[3].text(j, i, f"{value:.2f}", ha="center", va="center", color="black" if value > 0.5 else "white")
axes[3].set_xticks(range(4), labels)
axes[3].set_yticks(range(4), labels)
axes[3].set_xlabel("block column")
axes[3].set_ylabel("block row")
axes[3].set_title(r"$|\tilde F^{-1}|$: block means $m_{ij}/\sqrt{m_{ii}m_{jj}}$")
fig.colorbar(shown, ax=axes[3], fraction=0.046, label="normalised block mean")
fig.suptitle("Martens & Grosse 2015, Fig. 3: the inverse of K-FAC's F̃ and two cheap approximations of it "
             "(first three: |entries|, one grey scale, white at the 98% quantile of |F̃⁻¹|)")
plot.show(fig, "06_inverse_structure")

# %% [markdown]
# In the first panel, look at the blocks next to the diagonal blocks: they are visibly grey, while the blocks
# two or three layers away are nearly black. The block-diagonal model (second panel) keeps only the diagonal
# blocks; the tridiagonal one (third) also keeps its neighbours, and looks much like the first. The numbers in the
# fourth panel measure the same thing: 0.28–0.47 next to the diagonal, 0.14–0.21 farther out.

# %% [markdown]
# ## What we checked
#
# Properties that must hold, or that the numbers above show — none of them says K-FAC is exact.

# %%
kfac_layers, ekfac_layers = errors["K-FAC"]["layers"], errors["EKFAC"]["layers"]
assert all(e <= k + 1e-12 for e, k in zip(ekfac_layers, kfac_layers)), \
    f"EKFAC's block error must never exceed K-FAC's: {ekfac_layers} vs {kfac_layers}"
assert trace_gap < 1e-10, f"EKFAC's trace must equal the exact block's, relative gap {trace_gap:.2e}"
assert errors["K-FAC"]["total"] > 0.3, f"K-FAC should be far from exact here, error {errors['K-FAC']['total']:.3f}"
assert sources["cross_layer"] > sources["independence"]["total"], \
    "on this net, the dropped cross-layer blocks should cost more than the independence assumption"
assert abs(np.hypot(sources["cross_layer"], sources["independence"]["total"]) - errors["K-FAC"]["total"]) < 1e-8, \
    "K-FAC's squared error must split into cross-layer + independence parts"
assert all(b <= i + 1e-12 for b, i in zip(sources["best_kronecker"]["layers"], sources["independence"]["layers"])), \
    "no Kronecker product may beat the nearest one"
assert errors["K-FAC tridiagonal"]["total"] < errors["K-FAC"]["total"], \
    "the tridiagonal model should be closer to F than block-diagonal K-FAC"
assert errors["K-FAC tridiagonal"]["total"] < errors["EKFAC"]["total"], \
    "on the whole F, the tridiagonal model is closer than EKFAC too (the text says 'below both')"
assert errors["diagonal"]["total"] > 0.9, "the diagonal approximation should miss almost all of F here"
assert far_inv < near_inv, "F~^-1: blocks two or more layers apart should be smaller than every neighbour block"
assert far_inv < 0.5 * far_ft, "F~^-1 should be much closer to block-tridiagonal than F~ itself"
assert error_tri < error_bd, f"the tridiagonal inverse should be closer to F~^-1 ({error_tri:.3f} vs {error_bd:.3f})"
assert all(t < b for t, b in zip(vs_exact["block-tridiagonal"], vs_exact["block-diagonal"])), \
    f"the tridiagonal inverse should be closer to (F + λI)^-1 at every λ: {vs_exact}"
assert eigenvalues_mid[0] < 1e-6 * eigenvalues_mid[-1], "F on layers 2-5 is nearly singular (the text says so)"
assert far_exact > 2 * far_inv, "the exact damped inverse is far less tridiagonal than F~^-1 (the text says so)"

# %% [markdown]
# ## Summary
#
# On Martens & Grosse's own network, K-FAC's $\tilde F$ reproduces the coarse structure of the exact Fisher
# but is far from it in norm (relative error ≈ 0.8), mostly because block-diagonal K-FAC drops the
# blocks between layers. EKFAC is never worse than K-FAC on a block and has the exact trace. K-FAC's
# $\tilde F^{-1}$ is close to block-tridiagonal, so the tridiagonal model approximates it (and the damped
# exact inverse) better than the block-diagonal one — though the exact inverse itself is not tridiagonal.
#
# ## Try this
#
# - Set `epochs=0` (an untrained net) or `epochs=20`: how do the errors and the block means change?
# - Use `kind="empirical"` (with `y=y`) in `fisher`, `figure_matrices` and `compare`: is K-FAC closer to
#   the empirical Fisher or the true one?
# - Raise $N$ to 1000 (the CLI's value) and check whether $(F + \lambda I)^{-1}$ becomes more tridiagonal.
