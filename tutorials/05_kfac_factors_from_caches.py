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
# # 05. K-FAC's factors from the caches
#
# K-FAC replaces each layer's Fisher block by a Kronecker product $A \otimes G$ of two small
# matrices. Both come straight from what the layers cache anyway: their inputs (forward) and the
# gradients w.r.t. their outputs (backward). Here we build them by hand and measure what the
# approximation costs.
#
# **What you will see**
#
# - $A = \frac1N\sum_n \bar a_n \bar a_n^\top$ and $G = \frac1N\sum_n \mathbb{E}[g_n g_n^\top]$ computed
#   from `cache_input` and `cache_grad_output`, equal to `mk.curvature.kfac_factors` to ~1e-15;
# - with one example, $A \otimes G$ *is* the exact Fisher block (true and empirical) to ~1e-16;
# - on a digits net, how far $A \otimes G$ is from the exact block as the batch grows from 1 to 256
#   examples: 0 at N = 1, a jump at N = 2, then (after a peak at a few examples for the hidden
#   layer) a plateau of about 30% (hidden layer) and 70% (output layer);
# - the best Kronecker product of each exact block, the floor no $A \otimes G$ can beat (about
#   26-29% and 60-65% at 256 examples);
# - a box for readers of PyTorch-based K-FAC code: its row-major flattening reads the same block
#   as $G \otimes A$, a permutation of $A \otimes G$ by the commutation matrix $\Pi$, with the same
#   natural-gradient step.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import plot

mk.set_default_dtype("float64")  # exact-Fisher work: float64
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)

# 8x8 digits, a 64-20-10 tanh net (P = 1,300 + 210 = 1,510), partially trained with Adam.
data = mk.data.load("digits")
net = mk.nn.Sequential(mk.nn.Linear(64, 20), mk.nn.Tanh(), mk.nn.Linear(20, 10))
loss_fn = mk.nn.CrossEntropyLoss()
opt = mk.optim.Adam(net.parameters(), lr=0.01)
for epoch in range(2):
    order = rng.permutation(len(data.X_train))
    for start in range(0, len(order), 64):
        batch = order[start:start + 64]
        opt.zero_grad()
        loss_fn(net(data.X_train[batch]), data.y_train[batch])
        net.backward(loss_fn.backward())
        opt.step()
test_accuracy = float(np.mean(np.argmax(net(data.X_test), axis=1) == data.y_test))
layers = mk.curvature.parametrised_layers(net)  # the two Linear layers, in network order
print(f"layer sizes {mk.curvature.layer_sizes(net)}, test accuracy after 2 epochs {test_accuracy:.1%}")

# %% [markdown]
# ## What a Linear layer caches
#
# A Linear layer computes $s = W a + b$. In homogeneous coordinates, $\bar W = [W \mid b]$ of shape
# $(D_{out}, D_{in}+1)$ and $\bar a = [a; 1]$, so $s = \bar W \bar a$ and the gradient of a
# per-example loss is the outer product
#
# $$\nabla_{\bar W} \ell_n = g_n \bar a_n^\top, \qquad g_n = \partial \ell_n / \partial s_n \ (D_{out}),
# \qquad \operatorname{vec}(g \bar a^\top) = \bar a \otimes g$$
#
# (vec stacks columns). Forward stores $a$ in `layer.cache_input` (N, D_in); backward stores what
# it received, $g$, in `layer.cache_grad_output`.
#
# **Which $g$?** Some names first. The network's output on example $n$ is $f_n$ = `net(x_n)`, the
# $C = 10$ logits (one per class); $p_n = \operatorname{softmax}(f_n)$ holds the predicted
# probabilities $p_{nk}$, and $e_k$ is the $k$-th unit vector of length $C$ (the one-hot label $k$). A
# *cotangent* is what `backward` is fed at the top of the net: a vector of $f_n$'s size standing for
# the upstream gradient $\partial\ell_n/\partial f_n$, which the layers pull back one by one, each
# caching what reaches its own output $s$ as $g$. With the data label, the cotangent is the gradient of
# the loss, $\nabla_f\ell_n(k) = p_n - e_k$ for label $k$.
#
# For the true Fisher we need $\mathbb{E}_{y \sim p(y|x_n)}[g g^\top]$, an expectation over the
# *model's* labels. `loss_fn.output_fisher_sqrt(out)` gives, for each example, $K$ cotangents
# $r_{nk}$ with $\sum_k r_{nk} r_{nk}^\top = \mathbb{E}_y[\nabla_f\ell\,\nabla_f\ell^\top] =
# \sum_k p_{nk}\,(p_n - e_k)(p_n - e_k)^\top$. For softmax $K = C = 10$ and $r_{nk} = \sqrt{p_{nk}}\,
# (e_k - p_n)$: the gradient $p_n - e_k$ for label $k$, weighted by the root of its probability and
# with the opposite sign. The sign does not matter: the backward pass is linear, so it only flips the
# sign of each $g_{nk}$, and an outer product does not see it, $(-g)(-g)^\top = g g^\top$. The
# layers' `backward` accepts such a *stack* of cotangents, shape $(K, N, C)$, and pulls all of them
# back at once; then each layer's `cache_grad_output` is $(K, N, D_{out})$ and
# $\mathbb{E}[g_n g_n^\top] = \sum_k g_{nk} g_{nk}^\top$ — exactly, no sampling.
# (This is what `minikfac/curvature/statistics.py` does.) Note the cotangents are per example — not
# divided by N as `loss_fn.backward()` is.

# %%
Xb, yb = data.X_train[:32], data.y_train[:32]
N = Xb.shape[0]

out = net(Xb)                                  # forward: each Linear caches a, (N, D_in)
cotangents = loss_fn.output_fisher_sqrt(out)   # (K, N, C) = (10, 32, 10)
net.zero_grad()
net.backward(cotangents, input_grad=False)     # stacked backward: each Linear caches g, (K, N, D_out)
net.zero_grad()                                # we only wanted the caches, not the summed .grad

by_hand = []
for layer in layers:
    a = layer.cache_input                                   # (N, D_in)
    a_bar = np.concatenate([a, np.ones((N, 1))], axis=1)    # (N, D_in + 1)
    g = layer.cache_grad_output                             # (K, N, D_out)
    A = a_bar.T @ a_bar / N                                 # (D_in + 1, D_in + 1)
    G = np.einsum("kno,knp->op", g, g) / N                  # (D_out, D_out)
    by_hand.append((A, G, a_bar, g))
    print(f"{layer}: a {a.shape}, g {g.shape} -> A {A.shape}, G {G.shape}")

library = mk.curvature.kfac_factors(net, loss_fn, Xb, kind="true")
error_factors_true = max(float(np.abs(A - A_lib).max() / np.abs(A_lib).max() + np.abs(G - G_lib).max()
                               / np.abs(G_lib).max()) for (A, G, _, _), (A_lib, G_lib) in zip(by_hand, library))
print(f"largest relative difference to mk.curvature.kfac_factors(kind='true'): {error_factors_true:.1e}")

# %% [markdown]
# The empirical Fisher's factors use one cotangent per example, the gradient of the loss at the
# data label, $\nabla_f \ell_n(y_n) = p_n - e_{y_n}$ (`loss_fn.per_example_gradient`). $A$ is the
# same for every kind — it only sees the inputs.

# %%
out = net(Xb)
net.backward(loss_fn.per_example_gradient(out, yb)[None], input_grad=False)  # (1, N, C): K = 1
net.zero_grad()
G_emp = [np.einsum("kno,knp->op", layer.cache_grad_output, layer.cache_grad_output) / N for layer in layers]

# The library clears the layers' caches when it is done, so we read ours first.
library_emp = mk.curvature.kfac_factors(net, loss_fn, Xb, y=yb, kind="empirical")
error_factors_emp = 0.0
for G, (A_lib, G_lib), (A_true, _, _, _) in zip(G_emp, library_emp, by_hand):
    error_factors_emp = max(error_factors_emp, float(np.abs(G - G_lib).max() / np.abs(G_lib).max()),
                            float(np.abs(A_true - A_lib).max() / np.abs(A_lib).max()))
print(f"empirical factors, largest relative difference to the library: {error_factors_emp:.1e}")

# %% [markdown]
# ## The exact block, and the one approximation K-FAC makes
#
# The Fisher of the whole net is a $P \times P$ matrix made of blocks $F_{\ell m}$, one per pair of
# layers $(\ell, m)$. K-FAC keeps only the diagonal blocks $F_{\ell\ell}$ and **drops the blocks
# between layers** ($\ell \ne m$): its approximation $\tilde F$ is block-diagonal, one block per layer,
# so that each layer's step can be computed on its own (tutorial 06 measures what that costs). Within
# a block, the layer's exact Fisher block is the average of Kronecker products,
#
# $$F_{\ell\ell} = \frac1N \sum_n \sum_k (\bar a_n \otimes g_{nk})(\bar a_n \otimes g_{nk})^\top
#   = \frac1N \sum_n (\bar a_n \bar a_n^\top) \otimes \Gamma_n, \qquad
#   \Gamma_n = \sum_k g_{nk} g_{nk}^\top \ (D_{out} \times D_{out}),$$
#
# with $\Gamma_n = \mathbb{E}_y[g_n g_n^\top]$ the second moment of example $n$'s output gradient,
# while K-FAC takes the Kronecker product of the averages, $A \otimes G$ with $G = \frac1N\sum_n\Gamma_n$
# (Martens & Grosse 2015, §3): it treats $\bar a$ and $g$ as independent. Let us form the exact block
# from the same caches and check it against `mk.curvature.fisher_blocks` (the output layer, 210 × 210).

# %%
A2, G2, a_bar2, g2 = by_hand[1]
gamma = np.einsum("kno,knp->nop", g2, g2)                    # Γ_n = Σ_k g gᵀ per example, (N, D_out, D_out)
exact_by_hand = sum(np.kron(np.outer(a_bar2[n], a_bar2[n]), gamma[n]) for n in range(N)) / N
blocks = mk.curvature.fisher_blocks(net, loss_fn, Xb, kind="true")
error_block_by_hand = float(np.abs(exact_by_hand - blocks[1]).max() / np.abs(blocks[1]).max())
print(f"exact block from the caches vs fisher_blocks: {error_block_by_hand:.1e}")
print(f"K-FAC's A ⊗ G vs the exact block on these {N} examples: "
      f"{np.linalg.norm(np.kron(A2, G2) - blocks[1]) / np.linalg.norm(blocks[1]):.2f} (relative Frobenius)")

# %% [markdown]
# > **Box — if you come from PyTorch: row- versus column-stacking.**
# >
# > A Kronecker block only means something together with the order in which the matrix
# > $\bar W$ is flattened. This project's vec stacks *columns* (`docs/design.md`; call it
# > cvec): $\operatorname{cvec}(g\bar a^\top) = \bar a \otimes g$, so the Fisher block of
# > $\operatorname{cvec}(\bar W)$ is $\mathbb{E}[\bar a\bar a^\top \otimes gg^\top]$ and K-FAC reads
# > it as $A \otimes G$ (Martens & Grosse 2015's convention). PyTorch stores tensors row-major, and
# > K-FAC code built on it flattens $\bar W$ the same way (`W.reshape(-1)`, bias appended as the
# > last column): that is *row*-stacking, $\operatorname{rvec}(\bar W) = \operatorname{cvec}(\bar W^\top)$,
# > with $\operatorname{rvec}(g\bar a^\top) = g \otimes \bar a$. The same block then reads
# > $G \otimes A$. Nothing else changes: the two vectors hold the same numbers in another order,
# > $\operatorname{rvec}(\bar W) = \Pi \operatorname{cvec}(\bar W)$ for a permutation matrix $\Pi$ (the
# > *commutation matrix*), and $\Pi (A \otimes G) \Pi^\top = G \otimes A$; the exact block permutes the
# > same way, into $\frac1N\sum_n \Gamma_n \otimes \bar a_n\bar a_n^\top$. In matrix form both solve to
# > the same $G^{-1}\,\nabla_{\bar W} L\,A^{-1}$. We check all of it on the output layer (21 columns
# > of 10 rows), with a small damping $\lambda = 10^{-3}$ because $G$ is singular for softmax (its
# > rows sum to zero: shifting all logits equally changes nothing).

# %%
rows, cols = G2.shape[0], A2.shape[0]                          # W̄ is (rows, cols) = (10, 21)
# rvec position i·cols + j holds W̄[i, j], which sits at cvec position j·rows + i.
permutation = (np.arange(cols)[None, :] * rows + np.arange(rows)[:, None]).reshape(-1)
Pi = np.eye(rows * cols)[permutation]                          # rvec(M) = Π @ cvec(M)

net.zero_grad()
loss_fn(net(Xb), yb)
net.backward(loss_fn.backward())
grad_W = mk.curvature.augmented_matrix(layers[1], "grad")      # ∇_W̄ L, (10, 21)
cvec_grad, rvec_grad = mk.curvature.vec(grad_W), grad_W.reshape(-1)   # ours; PyTorch's .reshape(-1)
net.zero_grad()
error_permutation = float(np.abs(Pi @ cvec_grad - rvec_grad).max())
error_commutation = float(np.abs(Pi @ np.kron(A2, G2) @ Pi.T - np.kron(G2, A2)).max())
error_block_order = float(np.abs(Pi @ blocks[1] @ Pi.T - sum(np.kron(gamma[n], np.outer(a_bar2[n], a_bar2[n]))
                                                          for n in range(N)) / N).max())
lam = 1e-3
step_cvec = np.linalg.solve(np.kron(A2, G2) + lam * np.eye(rows * cols), cvec_grad)   # this project
step_rvec = np.linalg.solve(np.kron(G2, A2) + lam * np.eye(rows * cols), rvec_grad)   # PyTorch order
step_matrix_ours = mk.curvature.unvec(step_cvec, rows)
error_same_step = float(np.abs(step_matrix_ours - step_rvec.reshape(rows, cols)).max()
                        / np.abs(step_matrix_ours).max())
print(f"rvec(∇W̄) = Π cvec(∇W̄): {error_permutation:.1e};  Π (A ⊗ G) Πᵀ = G ⊗ A: {error_commutation:.1e};  "
      f"Π F_block Πᵀ = (1/N) Σ Γ_n ⊗ ā āᵀ: {error_block_order:.1e}")
print(f"damped natural-gradient step, cvec with A ⊗ G vs rvec with G ⊗ A (as matrices): {error_same_step:.1e}")
step_mixed = np.linalg.solve(np.kron(A2, G2) + lam * np.eye(rows * cols), rvec_grad)  # A ⊗ G on rvec: wrong
error_mixed = float(np.abs(step_mixed.reshape(rows, cols) - step_matrix_ours).max() / np.abs(step_matrix_ours).max())
print(f"but mixing the conventions (A ⊗ G applied to the rvec gradient) gives another step: {error_mixed:.2f}")

# The full matrices are 210 × 210, too fine to see tiles at this size: we show their top-left
# 42 × 42 corner (dashed lines mark the tile boundaries), and Π in full.
corner = 42
fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
vmax_box = np.quantile(np.abs(np.kron(A2, G2)), 0.98)
panels_box = [(r"$A \otimes G$ (cvec order, this project)", np.kron(A2, G2), rows),
              (r"$G \otimes A$ (rvec order, PyTorch code)", np.kron(G2, A2), cols)]
for ax, (title, matrix, tile) in zip(axes, panels_box):
    image = ax.imshow(matrix[:corner, :corner], cmap="RdBu_r", vmin=-vmax_box, vmax=vmax_box)
    for edge in range(tile, corner, tile):
        ax.axhline(edge - 0.5, color="k", linewidth=0.6, linestyle="--")
        ax.axvline(edge - 0.5, color="k", linewidth=0.6, linestyle="--")
    ax.set_title(f"{title}\ntop-left {corner} × {corner} corner, {tile} × {tile} tiles")
    ax.set_xticks(range(0, corner, 10))
    ax.set_yticks(range(0, corner, 10))
    fig.colorbar(image, ax=ax, shrink=0.8, label="entry (colour scale clipped)")
image = axes[2].imshow(Pi, cmap="Greys", vmin=0, vmax=1, interpolation="none")
axes[2].set_title(r"$\Pi$, the commutation matrix" + "\n(all 210 × 210; black: the 1s)")
axes[2].set_xticks(range(0, rows * cols, 50))
axes[2].set_yticks(range(0, rows * cols, 50))
fig.colorbar(image, ax=axes[2], shrink=0.8, ticks=[0, 1], label="entry")
for ax in axes:
    ax.set(xlabel="column index", ylabel="row index")
plot.show(fig, "05_cvec_vs_rvec")

# %% [markdown]
# > What to look at (the colour scale is clipped at the 98% quantile of the entries' sizes, so the
# > largest entries all show in the darkest red or blue): the left matrix is a 21 × 21 grid of
# > 10 × 10 tiles, each a multiple of $G$ (the corner shows 4 × 4 of them, cut at 42, and the same
# > pattern of $G$ in each); the middle one, the same numbers reordered, is a 10 × 10 grid of
# > 21 × 21 tiles, each a multiple of $A$ (the corner shows 2 × 2 of them); the right panel is the
# > permutation $\Pi$ that turns one into the other (one 1 per row and per column, on 10 parallel
# > lines, one per row of $\bar W$). Both orders give the same natural-gradient step to rounding;
# > only mixing them — PyTorch's flattening with this project's $A \otimes G$ — gives a wrong one.
# > When you port K-FAC code, check which vec it uses before you trust its "A ⊗ G".

# %% [markdown]
# ## One example: K-FAC is exact
#
# With $N = 1$ the sum over examples has one term, $(\bar a \bar a^\top) \otimes \sum_k g_k g_k^\top =
# A \otimes G$ (with $\Gamma_n$ as defined above): nothing is approximated, for any number $K$ of cotangents (true Fisher) and for the
# single label gradient (empirical Fisher). We check it for five different examples, both layers.

# %%
one_example_errors = []
for index in range(5):
    x1, y1 = data.X_train[index:index + 1], data.y_train[index:index + 1]
    for kind in ("true", "empirical"):
        exact = mk.curvature.fisher_blocks(net, loss_fn, x1, y=y1, kind=kind)
        factors = mk.curvature.kfac_factors(net, loss_fn, x1, y=y1, kind=kind)
        for block, (A, G) in zip(exact, factors):
            one_example_errors.append(float(np.abs(np.kron(A, G) - block).max() / np.abs(block).max()))
print(f"N = 1: largest relative difference |A ⊗ G − F_block| over 5 examples x 2 kinds x 2 layers: "
      f"{max(one_example_errors):.1e}")

# %% [markdown]
# ## More examples: how wrong is the independence assumption?
#
# For $N \ge 2$, $\frac1N\sum_n (\bar a_n \bar a_n^\top) \otimes \Gamma_n$ (with $\Gamma_n = \sum_k g_{nk}
# g_{nk}^\top$, example $n$'s output-gradient second moment) is a sum of different
# Kronecker products, which in general is not one. We measure, for batches of
# $N = 1, 2, 4, \dots, 256$ random training examples (several draws for the small ones), the
# relative Frobenius error of each layer's K-FAC block,
#
# $$e_{\rm K-FAC} = \|F_{\ell\ell} - A \otimes G\|_F \,/\, \|F_{\ell\ell}\|_F .$$
#
# How good could *any* Kronecker product be? The best one in Frobenius norm has a closed form (Van
# Loan & Pitsianis 1993): rearrange the block's entries into a matrix $\mathcal R(F_{\ell\ell})$ such
# that every Kronecker product becomes a rank-one matrix, $\mathcal R(A \otimes G) =
# \operatorname{vec}(A)\operatorname{vec}(G)^\top$, and take its top singular pair
# (`mk.curvature.nearest_kronecker`). The rearrangement only moves entries, so it keeps Frobenius
# norms: $\|F_{\ell\ell} - A\otimes G\|_F = \|\mathcal R(F_{\ell\ell}) - \operatorname{vec}(A)
# \operatorname{vec}(G)^\top\|_F$. By the Eckart–Young theorem the best rank-one matrix leaves exactly
# the other singular values, an error $\sqrt{s_2^2 + s_3^2 + \cdots}$, where $s_1 \ge s_2 \ge \dots$ are
# the singular values of $\mathcal R(F_{\ell\ell})$ and $\sum_k s_k^2 = \|F_{\ell\ell}\|_F^2$.
# `mk.curvature.kronecker_spectrum` returns them normalised by that norm, $\sigma_k = s_k /
# \|F_{\ell\ell}\|_F$, so that $\sum_k \sigma_k^2 = 1$ and the best relative error is
# $e_{\rm best} = \sqrt{1 - \sigma_1^2}$: the floor under K-FAC's error.

# %%
sizes = 2 ** np.arange(9)                 # N = 1, 2, 4, ..., 256
draws = {1: 5, 2: 16, 4: 16, 8: 12, 16: 10, 32: 6, 64: 3, 128: 2, 256: 2}
kfac_error = np.zeros((len(sizes), len(layers)))
best_error = np.zeros((len(sizes), len(layers)))
for row, size in enumerate(sizes):
    errors, floors = [], []
    for _ in range(draws[int(size)]):
        X = data.X_train[rng.choice(len(data.X_train), int(size), replace=False)]
        exact = mk.curvature.fisher_blocks(net, loss_fn, X, kind="true")
        factors = mk.curvature.kfac_factors(net, loss_fn, X, kind="true")
        errors.append([np.linalg.norm(B - np.kron(A, G)) / np.linalg.norm(B) for B, (A, G) in zip(exact, factors)])
        spectra = [mk.curvature.kronecker_spectrum(B, A.shape[0], G.shape[0]) for B, (A, G) in zip(exact, factors)]
        floors.append([np.sqrt(max(0.0, 1 - s[0] ** 2)) for s in spectra])
    kfac_error[row], best_error[row] = np.mean(errors, axis=0), np.mean(floors, axis=0)
    print(f"N = {size:3d}: K-FAC error {np.round(kfac_error[row], 3)}, best Kronecker {np.round(best_error[row], 3)}")

# %% [markdown]
# The floor really is attained by `nearest_kronecker`, and it is below K-FAC's product at the
# largest batch (both computed on one batch of 256 here):

# %%
X256 = data.X_train[rng.choice(len(data.X_train), 256, replace=False)]
exact256 = mk.curvature.fisher_blocks(net, loss_fn, X256, kind="true")
factors256 = mk.curvature.kfac_factors(net, loss_fn, X256, kind="true")
nearest_checks = []
for i, (B, (A, G)) in enumerate(zip(exact256, factors256)):
    A_best, G_best, _ = mk.curvature.nearest_kronecker(B, A.shape[0], G.shape[0])
    e_best = np.linalg.norm(B - np.kron(A_best, G_best)) / np.linalg.norm(B)
    e_spectrum = np.sqrt(1 - mk.curvature.kronecker_spectrum(B, A.shape[0], G.shape[0])[0] ** 2)
    e_kfac = np.linalg.norm(B - np.kron(A, G)) / np.linalg.norm(B)
    nearest_checks.append((e_best, e_spectrum, e_kfac))
    print(f"layer {i}: nearest Kronecker {e_best:.3f} (from the spectrum {e_spectrum:.3f}), K-FAC {e_kfac:.3f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4.5))
for i, color in enumerate(["tab:blue", "tab:orange"]):
    name = "hidden" if i == 0 else "output"
    ax.semilogx(sizes, kfac_error[:, i], "o-", color=color, base=2, label=f"K-FAC A⊗G, {name} layer {layers[i]}")
    ax.semilogx(sizes, best_error[:, i], "s--", color=color, base=2, alpha=0.7, label=f"best Kronecker, {name} layer")
ax.set_xlabel("N, examples in the batch")
ax.set_ylabel(r"$\|F_{\ell\ell} - A\otimes G\|_F \,/\, \|F_{\ell\ell}\|_F$")
ax.set_title("K-FAC's block error vs batch size (true Fisher, digits 64-20-10)")
ax.set_ylim(-0.02, 1)
ax.legend(fontsize=8)
plot.show(fig, "05_kfac_error_vs_batch")

# %% [markdown]
# And what the output layer's blocks look like at N = 256 (one colour scale). The canonical order
# runs over the 21 columns of $\bar W$ (20 inputs and the bias), each holding the 10 output units,
# so every block is a 21 × 21 grid of 10 × 10 tiles; a Kronecker product makes every tile a
# multiple of the same $G$.

# %%
B, (A, G) = exact256[1], factors256[1]
A_best, G_best, _ = mk.curvature.nearest_kronecker(B, A.shape[0], G.shape[0])
vmax = np.quantile(np.abs(B), 0.98)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
for ax, (title, matrix) in zip(axes, [("exact block $F_{\\ell\\ell}$", B), ("K-FAC $A \\otimes G$", np.kron(A, G)),
                                      ("nearest Kronecker product", np.kron(A_best, G_best))]):
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_title(f"{title}\nrel. error {np.linalg.norm(matrix - B) / np.linalg.norm(B):.2f}")
    ax.set_xlabel("parameter index")
axes[0].set_ylabel("parameter index")
fig.colorbar(image, ax=axes, shrink=0.8)
plot.show(fig, "05_output_layer_blocks")

# %% [markdown]
# **Reading the curve.** At $N = 1$ the error is zero (previous section). Writing both matrices
# over pairs of examples shows where it comes from:
#
# $$F_{\ell\ell} = \frac1N \sum_n (\bar a_n \bar a_n^\top) \otimes \Gamma_n, \qquad
#   A \otimes G = \frac1{N^2} \sum_{n, m} (\bar a_n \bar a_n^\top) \otimes \Gamma_m
#   \qquad (\Gamma_m = \textstyle\sum_k g_{mk} g_{mk}^\top).$$
#
# K-FAC pairs the input of every example with the output gradients of *every* example, and a
# fraction $(N-1)/N$ of its weight sits on mismatched pairs $n \ne m$. So the error jumps as soon
# as $N = 2$. It does not simply keep growing, though: for the hidden layer it peaks at a few
# examples (about 0.48 at N = 4–8, where a handful of very different digits make up the block) and
# then levels off near 0.3 from N ≈ 64 on; the output layer jumps to about 0.7 and
# stays there. The plateau is the *population* error of the independence assumption for this
# net and data: more examples make $A$, $G$ and $F_{\ell\ell}$ converge, but to different things,
# because $\mathbb{E}[\bar a \bar a^\top \otimes g g^\top] \ne \mathbb{E}[\bar a \bar a^\top] \otimes
# \mathbb{E}[g g^\top]$ when $\bar a$ and $g$ are dependent. (Small-$N$ values are averages over
# 10–16 random batches and still depend on which digits were drawn.)
#
# **K-FAC vs the best Kronecker product.** For the hidden layer K-FAC is within about 0.02 of the
# floor: its block is about as Kronecker-shaped as it can be, and the product of the marginal
# averages is nearly the best product. For the output layer even the best Kronecker product misses
# about 60-65% of the block (Frobenius), and K-FAC about 70%: the output layer's $g$ is built from the
# softmax probabilities $p$, a function of that layer's own input $\bar a$, so $g$ depends strongly on
# $\bar a$ and the independence assumption is far from true there.
# On this net, "$A \otimes G$ captures the Fisher" (as the blog article the project started from, “Kronecker分解(K-FAC):让自然梯度在深度学习中飞起来”, puts
# it) is true of the coarse structure — the diagonal stripes of the pictures above — not of the
# entries. What matters for an optimizer is the step $(A \otimes G)^{-1} \nabla$, which later
# tutorials compare with the exact natural gradient.
#
# ## What we checked

# %%
assert error_factors_true < 1e-12, f"A and G by hand = kfac_factors(kind='true'): {error_factors_true:.1e}"
assert error_factors_emp < 1e-12, f"empirical G by hand = kfac_factors(kind='empirical'): {error_factors_emp:.1e}"
assert error_block_by_hand < 1e-12, f"(1/N) Σ (ā āᵀ) ⊗ Γ_n = fisher_blocks: {error_block_by_hand:.1e}"
assert error_permutation == 0.0, f"PyTorch's row-major flatten is a permutation of ours: {error_permutation:.1e}"
assert error_commutation < 1e-15 and error_block_order < 1e-12, \
    f"Π (A ⊗ G) Πᵀ = G ⊗ A and the exact block permutes the same way: {error_commutation:.1e}, {error_block_order:.1e}"
assert error_same_step < 1e-10, f"both orders give the same damped natural-gradient step: {error_same_step:.1e}"
assert error_mixed > 0.5, f"PyTorch's flattening with this project's A ⊗ G gives a different step: {error_mixed:.2f}"
assert max(one_example_errors) < 1e-12, f"N = 1: A ⊗ G is the exact block: {max(one_example_errors):.1e}"
assert kfac_error[0].max() < 1e-12, "the sweep's N = 1 row is exact too"
assert kfac_error[1:].min() > 0.1, f"from N = 2 on, K-FAC's block error is far from 0: {kfac_error[1:].min():.2f}"
assert np.all(kfac_error[-3:].max(axis=0) - kfac_error[-3:].min(axis=0) < 0.1), \
    f"the error plateaus for N = 64..256: {kfac_error[-3:]}"
assert np.all(best_error <= kfac_error + 1e-9), "no Kronecker product beats the nearest one"
assert all(abs(e_best - e_spec) < 1e-8 and e_best < e_kfac for e_best, e_spec, e_kfac in nearest_checks), \
    f"nearest_kronecker attains the spectrum's floor and beats K-FAC's product: {nearest_checks}"
assert kfac_error[-1, 1] > kfac_error[-1, 0], "the output layer is less Kronecker-shaped than the hidden layer"
assert kfac_error[1:5, 0].max() > kfac_error[-1, 0] + 0.05, "the hidden layer's error peaks at small N"
gaps = [e_kfac - e_best for e_best, _, e_kfac in nearest_checks]
assert gaps[0] < 0.05 and gaps[1] > gaps[0], f"K-FAC is near the floor for the hidden layer, less so for the output: {gaps}"

# %% [markdown]
# ## Summary
#
# - K-FAC's factors are second moments of what the layers cache: $A$ from the inputs $\bar a$
#   (forward), $G$ from the output gradients $g$ (backward) — for the true Fisher, $g$ from
#   backpropagating the model's own label distribution, not the data labels.
# - K-FAC keeps one block per layer and drops the blocks between layers. The exact block is
#   $\mathbb{E}[\bar a \bar a^\top \otimes g g^\top]$; K-FAC uses
#   $\mathbb{E}[\bar a \bar a^\top] \otimes \mathbb{E}[g g^\top]$. They agree for a single example
#   and differ from two examples on; the gap levels off at a property of the net and data, here
#   about 30% for the hidden layer and 70% for the output layer.
# - The best Kronecker product of each block is a floor: K-FAC is near it for the hidden layer and
#   above it for the output layer.
# - "$A \otimes G$" assumes column-stacking; code that flattens row-major (PyTorch) sees the same
#   block as $G \otimes A$, permuted by the commutation matrix $\Pi$, and computes the same step.
#
# ## Try this
#
# 1. Use `kind="empirical"` (with `y=`) or `kind="mc", samples=1` in the sweep: does the plateau
#    change?
# 2. Measure at initialisation (skip the training loop), or train for 20 epochs: how does the
#    output layer's error depend on how confident the net is?
# 3. Remove the `Tanh` (a deep *linear* net) and use `MSELoss` with one-hot targets: for that case
#    K-FAC is exact at every N (Dangel et al. 2025; `tests/test_factors.py`) — check that the curve
#    stays at 0. Does it stay there with `kind="empirical"`?
