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
# # 01. The Kronecker product
#
# K-FAC replaces each layer's Fisher block, a matrix with (D_out·(D_in + 1))² entries, by a Kronecker
# product A ⊗ G of two small matrices. This tutorial shows why that is a good deal: A ⊗ G can be
# multiplied, inverted and diagonalised through A and G alone, without ever being formed.
#
# **What you will see**
#
# - the 2×2 example of the blog article this project started from, “Kronecker分解(K-FAC):让自然梯度在深度学习中飞起来”
#   (February 2025), computed and checked;
# - `vec` (stacking columns) and the identity (A ⊗ G) vec(X) = vec(G X Aᵀ);
# - (A ⊗ G)⁻¹ = A⁻¹ ⊗ G⁻¹, and the eigenvalues of A ⊗ G as all products aⱼ·gᵢ;
# - what never forming A ⊗ G saves: memory (k⁴ against 2k² numbers) and arithmetic (flops counted
#   from the shapes: dense solve ≈ k⁶, factored ≈ k³), and the time it takes, measured on a log-log
#   plot with fitted slopes;
# - why a linear layer's gradient is a Kronecker product: vec(g āᵀ) = ā ⊗ g.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import plot
from minikfac.curvature import kron

mk.set_default_dtype("float64")
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## The definition, on the article's example
#
# For A of shape (n, n) and G of shape (m, m), A ⊗ G is the (n·m, n·m) matrix made of n × n
# blocks, block (i, j) being A[i, j]·G:
#
# $$A \otimes G = \begin{pmatrix} a_{11} G & \cdots & a_{1n} G \\ \vdots & & \vdots \\
#   a_{n1} G & \cdots & a_{nn} G \end{pmatrix}.$$
#
# The article's example: A = [[1, 2], [3, 4]] and G = [[0, 1], [1, 0]] (G swaps two entries).

# %%
A = np.array([[1.0, 2.0], [3.0, 4.0]])
G = np.array([[0.0, 1.0], [1.0, 0.0]])
AG = np.kron(A, G)
article_AG = np.array([[0, 1, 0, 2], [1, 0, 2, 0], [0, 3, 0, 4], [3, 0, 4, 0]], dtype=float)
print("A ⊗ G =\n", AG)
print("same as the article's matrix:", np.array_equal(AG, article_AG))
print("block (0, 1) = A[0, 1]·G =\n", AG[0:2, 2:4])

# %% [markdown]
# The order matters: G ⊗ A is a different matrix (the same entries, rows and columns permuted).

# %%
print("G ⊗ A =\n", np.kron(G, A))

# %% [markdown]
# ## vec stacks columns
#
# vec turns an (m, n) matrix into a vector of length m·n by stacking its **columns**:
# vec(X)[j·m + i] = X[i, j]. This is the convention of the papers (and of minikfac). NumPy stores
# arrays row by row, so `X.reshape(-1)` stacks *rows*; the column-stacking vec is
# `X.T.reshape(-1)` or `X.reshape(-1, order="F")` (Fortran order). `mk.curvature.vec` and `unvec`
# do it for you.

# %%
X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (m, n) = (2, 3)
print("X =\n", X)
print("vec(X)           =", mk.curvature.vec(X))
print("X.T.reshape(-1)  =", X.T.reshape(-1))
print("order='F'        =", X.reshape(-1, order="F"))
print("X.reshape(-1)    =", X.reshape(-1), " <- rows, not vec")
print("unvec(vec(X), 2) =\n", mk.curvature.unvec(mk.curvature.vec(X), 2))

# %% [markdown]
# ## The product rule: (A ⊗ G) vec(X) = vec(G X Aᵀ)
#
# With A (n, n), G (m, m) and X (m, n), multiplying by the big matrix is two small products.
# Why: write x_i for column i of X, so vec(X) stacks x_1, …, x_n. Block row j of A ⊗ G is
# (A[j, 1] G, …, A[j, n] G), so block j of the product is
#
# $$\sum_i A[j, i]\, G x_i = G \Big(\sum_i x_i A[j, i]\Big) = G X A[j, :]^\top ,$$
#
# which is column j of G X Aᵀ. Stacking the blocks j = 1, …, n gives vec(G X Aᵀ).
# Dense, the product costs (mn)² multiplications; factored, m·n·(m + n).
# `mk.curvature.kron_matvec(A, G, X)` computes G X Aᵀ and returns it in X's own form.

# %%
n, m = 3, 4
A = rng.standard_normal((n, n))
G = rng.standard_normal((m, m))
X = rng.standard_normal((m, n))
dense = np.kron(A, G) @ mk.curvature.vec(X)                 # (m·n, m·n) @ (m·n,)
factored = mk.curvature.kron_matvec(A, G, X)                # (m, n) = G X Aᵀ
matvec_error = np.max(np.abs(dense - mk.curvature.vec(factored)))
print(f"max |(A⊗G) vec(X) - vec(G X Aᵀ)| = {matvec_error:.2e}")
# The same product with NumPy's row-major reshape instead of vec is wrong:
wrong = np.max(np.abs(np.kron(A, G) @ X.reshape(-1) - (G @ X @ A.T).reshape(-1)))
print(f"with row-stacking instead (X.reshape(-1)): error {wrong:.2f}")

# %% [markdown]
# ## Inverse and eigenpairs come from the factors
#
# Two more rules make K-FAC cheap (Van Loan 2000):
#
# - $(A \otimes G)^{-1} = A^{-1} \otimes G^{-1}$, so a solve is vec(G⁻¹ X A⁻ᵀ);
# - if A u = a u and G v = g v then $(A \otimes G)(u \otimes v) = (a\,g)\,(u \otimes v)$: the
#   eigenvalues of A ⊗ G are all products aⱼ gᵢ, its eigenvectors the Kronecker products.
#
# K-FAC's A and G are symmetric positive semi-definite (averages of outer products), so we build
# such factors. `kron.kron_eigh` returns the m·n eigenvalues and the two small eigenvector matrices;
# `kron.kron_solve` solves (A ⊗ G + λI) x = vec(X) through them.

# %%
def random_spd(k, rng):
    """A symmetric positive definite (k, k) matrix, like a K-FAC factor: (1/2k) Σ x xᵀ + 0.1 I."""
    samples = rng.standard_normal((2 * k, k))
    return samples.T @ samples / (2 * k) + 0.1 * np.eye(k)


A, G = random_spd(3, rng), random_spd(4, rng)
big = np.kron(A, G)                                         # (12, 12)
inverse_error = np.max(np.abs(np.linalg.inv(big) - np.kron(np.linalg.inv(A), np.linalg.inv(G))))
print(f"max |(A⊗G)⁻¹ - A⁻¹⊗G⁻¹| = {inverse_error:.2e}")

values, U_A, U_G = kron.kron_eigh(A, G)                     # (12,), (3, 3), (4, 4)
eig_error = np.max(np.abs(np.sort(values) - np.linalg.eigvalsh(big)))
print(f"eigenvalues from the factors vs eigvalsh of the dense matrix: max difference {eig_error:.2e}")
# Column j·m + i of kron(U_A, U_G) is an eigenvector with eigenvalue values[j·m + i]:
U = np.kron(U_A, U_G)
eigvec_error = np.max(np.abs(big @ U - U * values[None, :]))
print(f"max |(A⊗G) U - U diag(values)| = {eigvec_error:.2e}")

X = rng.standard_normal((4, 3))
solve_error = np.max(np.abs(mk.curvature.vec(kron.kron_solve(A, G, X)) - np.linalg.solve(big, mk.curvature.vec(X))))
print(f"max |kron_solve - dense solve| = {solve_error:.2e}")

# %% [markdown]
# ## What it costs never to form A ⊗ G
#
# Take square factors of size k (a layer with k inputs and k outputs). The dense A ⊗ G holds k⁴
# numbers, the factors 2k². A dense solve costs O(k⁶) (Gaussian elimination on a k²-sized
# matrix); the factored solve two k×k eigendecompositions and four k×k products, O(k³). The
# dense matrix-vector product costs O(k⁴), the factored one O(k³).
#
# Counting needs no clock. A flop is one addition or multiplication; with N = k²:
#
# - dense product: N² multiplications and as many additions, 2k⁴ flops; factored, G X then (G X) Aᵀ,
#   two k × k products of 2k³ flops each, 4k³;
# - dense solve: LU of the N × N matrix, (2/3)N³ = (2/3)k⁶ flops, plus 2N² for the two triangular
#   solves; factored: two k × k symmetric eigendecompositions with eigenvectors, about 9k³ flops each
#   (the usual count for LAPACK's symmetric eigensolver), and four k × k products, 26k³ in all.
#
# Then we time both for growing k (best of a few repeats: the machine may be shared), check that they
# agree, and fit the log-log slope on the three largest sizes, where the O(·) terms dominate. The
# counts are what the O(·) claims are about; the times show what they mean on one machine, and change
# with its load, so the checks at the end use the counts and the memory, not the clock.

# %%
def best_time(function, repeats):
    """The fastest of `repeats` calls, in seconds (the least disturbed by other work)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


sizes = [4, 8, 12, 16, 24, 32, 40]
flops = {"dense matvec": [2 * k**4 for k in sizes], "factored matvec": [4 * k**3 for k in sizes],
         "dense solve": [2 / 3 * k**6 + 2 * k**4 for k in sizes], "factored solve": [26 * k**3 for k in sizes]}
timings = {"dense matvec": [], "factored matvec": [], "dense solve": [], "factored solve": []}
dense_bytes, factor_bytes, solve_differences = [], [], []
for k in sizes:
    A, G = random_spd(k, rng), random_spd(k, rng)
    X = rng.standard_normal((k, k))
    big = np.kron(A, G)                                     # (k², k²): formed here only to compare
    dense_bytes.append(big.nbytes)
    factor_bytes.append(A.nbytes + G.nbytes)
    x = mk.curvature.vec(X)
    repeats = 5 if k < 32 else 3
    timings["dense matvec"].append(best_time(lambda: big @ x, repeats))
    timings["factored matvec"].append(best_time(lambda: mk.curvature.kron_matvec(A, G, X), repeats))
    timings["dense solve"].append(best_time(lambda: np.linalg.solve(big, x), repeats))
    timings["factored solve"].append(best_time(lambda: kron.kron_solve(A, G, X), repeats))
    dense_solution = np.linalg.solve(big, x)
    factored_solution = mk.curvature.vec(kron.kron_solve(A, G, X))
    solve_differences.append(np.max(np.abs(dense_solution - factored_solution)) / np.max(np.abs(dense_solution)))

slopes = {name: np.polyfit(np.log(sizes[-3:]), np.log(t[-3:]), 1)[0] for name, t in timings.items()}
count_slopes = {name: np.polyfit(np.log(sizes[-3:]), np.log(c[-3:]), 1)[0] for name, c in flops.items()}
print(f"{'k':>3} {'dense MB':>9} {'factors kB':>10}   " + "  ".join(f"{name:>15}" for name in timings))
for i, k in enumerate(sizes):
    row = "  ".join(f"{timings[name][i] * 1e3:12.3f} ms" for name in timings)
    print(f"{k:3d} {dense_bytes[i] / 1e6:9.3f} {factor_bytes[i] / 1e3:10.1f}   {row}")
print("log-log slopes on k = 24..40, measured:", {name: round(float(s), 2) for name, s in slopes.items()})
print("                         counted flops:", {name: round(float(s), 2) for name, s in count_slopes.items()})
print(f"flops at k = {sizes[-1]}: solve {flops['dense solve'][-1]:.1e} dense vs {flops['factored solve'][-1]:.1e} "
      f"factored ({flops['dense solve'][-1] / flops['factored solve'][-1]:.0f}x); product "
      f"{flops['dense matvec'][-1]:.1e} vs {flops['factored matvec'][-1]:.1e} "
      f"({flops['dense matvec'][-1] / flops['factored matvec'][-1]:.0f}x)")
print(f"largest relative difference between dense and factored solutions: {max(solve_differences):.1e}")
speedup = timings["dense solve"][-1] / timings["factored solve"][-1]
print(f"at k = {sizes[-1]}, measured here: the factored solve is {speedup:.0f}x faster; it is "
      f"{dense_bytes[-1] / factor_bytes[-1]:.0f}x smaller")
for name in timings:
    print(f"{name:>15}: measured slope {slopes[name]:.2f}, counted {count_slopes[name]:.2f}, "
          f"difference {slopes[name] - count_slopes[name]:+.2f}")

# %% [markdown]
# Compare the measured slopes with the counted ones (6 and 3 for the solves, 4 and 3 for the
# products; the dense solve's counted slope is a hair under 6 because of its 2k⁴ term); the last
# lines printed above put them side by side. The measured slopes depend on the machine and its load,
# and they are rarely the counted ones, for reasons that push both ways. The dense solve often comes
# out somewhat below 6: LAPACK's blocked LU does more flops per second on a larger matrix, so its time
# grows more slowly than its flop count over this small range. The dense product can come out above
# its theoretical 4: between k = 24 and k = 40 the k² × k² matrix grows from 2.7 MB to 20 MB and
# outgrows the processor's faster caches, so each of its k⁴ numbers also gets slower to read (the
# same effect can push the solve's slope up). The factored operations usually sit well below 3: at
# these sizes they take microseconds, and fixed Python and call overheads still count. What matters
# is the gap between the two families, and it widens as k grows. For the tiniest k the dense product
# can even win: one call on a 16 × 16 matrix beats two calls on 4 × 4 ones.
# (With the article's 1,000 units per layer, k = 1,000, the dense block would need 8 TB in float64.)

# %%
fig, (ax_time, ax_memory) = plt.subplots(1, 2, figsize=(11, 4.2))
# colour: dense (red) or factored (blue); marker and line: product (open circles, dashed) or solve
# (filled squares, solid)
styles = {"dense matvec": ("tab:red", "--", "o", "none"), "factored matvec": ("tab:blue", "--", "o", "none"),
          "dense solve": ("tab:red", "-", "s", "tab:red"), "factored solve": ("tab:blue", "-", "s", "tab:blue")}
for name, values in timings.items():
    color, line, marker, face = styles[name]
    ax_time.loglog(sizes, values, line, marker=marker, markerfacecolor=face, markersize=7, color=color,
                   label=f"{name} (slope {slopes[name]:.1f})")
ax_time.set_xlabel("factor size k (A, G are k × k; A ⊗ G is k² × k²)")
ax_time.set_ylabel("time (s), best of repeats")
ax_time.set_title("Solving and multiplying with A ⊗ G (slopes fit on k ≥ 24)")
ax_time.legend(fontsize=8, handlelength=3.5)
ax_memory.loglog(sizes, dense_bytes, "o-", color="tab:red", label="dense A ⊗ G: 8k⁴ bytes")
ax_memory.loglog(sizes, factor_bytes, "o-", color="tab:blue", label="A and G: 16k² bytes")
ax_memory.set_xlabel("factor size k")
ax_memory.set_ylabel("memory (bytes, float64)")
ax_memory.set_title("Storing A ⊗ G")
ax_memory.legend(fontsize=8)
for ax in (ax_time, ax_memory):
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.minorticks_off()
plot.show(fig, "01_kronecker_cost")

# %% [markdown]
# What to look at: on the left, the red lines (dense) climb much more steeply than the blue ones
# (factored), and the squares (solves) more steeply than the circles (products); the vertical
# distance between the solid red and solid blue lines is the speed-up of the factored solve, and it
# grows with k. On the right, the dense matrix's memory grows like k⁴ and the factors' like k².

# %% [markdown]
# ## Why a layer's gradient is a Kronecker product
#
# A linear layer computes s = W a + b. Append a 1 to the input, ā = [a; 1], and write
# W̄ = [W | b], so that s = W̄ ā. For one example with output gradient g = ∂ℓ/∂s (D_out,), the
# gradient is the outer product ∂ℓ/∂W̄ = g āᵀ, of shape (D_out, D_in + 1), and with column-stacking
#
# $$\operatorname{vec}(g\,\bar a^\top) = \bar a \otimes g .$$
#
# That is why the Fisher block E[vec(∇W̄) vec(∇W̄)ᵀ] = E[(ā ⊗ g)(ā ⊗ g)ᵀ] = E[ā āᵀ ⊗ g gᵀ]
# (the mixed-product rule (P ⊗ Q)(R ⊗ S) = PR ⊗ QS), which K-FAC approximates by
# E[ā āᵀ] ⊗ E[g gᵀ] = A ⊗ G. We check the first identity on a real layer: the library's
# backward for one example, and ā ⊗ g built from what the layer cached.

# %%
layer = mk.nn.Linear(3, 2)
a = rng.standard_normal((1, 3))                             # one example, (N, D_in) = (1, 3)
s = layer(a)                                                # (1, 2)
g_seed = rng.standard_normal((1, 2))                        # some dℓ/ds, e.g. from a loss
layer.backward(g_seed)
a_bar = np.append(layer.cache_input[0], 1.0)                # (D_in + 1,) = (4,)
g = layer.cache_grad_output[0]                              # (D_out,) = (2,)
grad_W_bar = mk.curvature.augmented_matrix(layer, "grad")   # [dW | db], (2, 4)
gradient_error = np.max(np.abs(mk.curvature.vec(grad_W_bar) - np.kron(a_bar, g)))
print("vec(∇W̄) =", mk.curvature.vec(grad_W_bar))
print("ā ⊗ g   =", np.kron(a_bar, g))
outer = np.kron(a_bar, g)[:, None] * np.kron(a_bar, g)[None, :]
mixed_error = np.max(np.abs(outer - np.kron(np.outer(a_bar, a_bar), np.outer(g, g))))
print(f"max |(ā⊗g)(ā⊗g)ᵀ - āāᵀ ⊗ ggᵀ| = {mixed_error:.1e}")

# %% [markdown]
# ## What we checked

# %%
assert np.array_equal(np.kron(np.array([[1, 2], [3, 4]]), np.array([[0, 1], [1, 0]])), article_AG.astype(int)), \
    "the article's 2x2 example of A ⊗ G"
assert np.array_equal(mk.curvature.vec(np.arange(6.0).reshape(2, 3)), np.arange(6.0).reshape(2, 3).T.reshape(-1)), \
    "vec stacks columns: vec(X) = X.T.reshape(-1)"
assert matvec_error < 1e-12, f"(A⊗G) vec(X) = vec(G X Aᵀ): error {matvec_error:.1e}"
assert wrong > 1e-3, "row-stacking (X.reshape(-1)) does not satisfy the identity"
assert inverse_error < 1e-10, f"(A⊗G)⁻¹ = A⁻¹⊗G⁻¹: error {inverse_error:.1e}"
assert eig_error < 1e-12 and eigvec_error < 1e-12, "eigenpairs of A ⊗ G are products of the factors'"
assert solve_error < 1e-10, f"kron_solve agrees with the dense solve: {solve_error:.1e}"
assert max(solve_differences) < 1e-10, f"factored and dense solves agree to 1e-10: {max(solve_differences):.1e}"
assert all(d == 8 * k**4 and f == 16 * k**2 for d, f, k in zip(dense_bytes, factor_bytes, sizes)), \
    "in float64 the dense A ⊗ G takes 8k⁴ bytes, the two factors 16k²"
assert flops["dense solve"][-1] > 100 * flops["factored solve"][-1], \
    f"at k = {sizes[-1]} the dense solve needs over 100× the flops of the factored one"
assert flops["dense matvec"][-1] > 10 * flops["factored matvec"][-1], \
    f"at k = {sizes[-1]} the dense product needs over 10× the flops (k/2 = {sizes[-1] // 2}×)"
assert abs(count_slopes["dense solve"] - 6) < 0.1 and abs(count_slopes["factored solve"] - 3) < 1e-9, \
    f"counted, the solves grow like k⁶ and k³: {count_slopes}"
assert gradient_error < 1e-14, f"a Linear layer's gradient: vec(g āᵀ) = ā ⊗ g ({gradient_error:.1e})"
assert mixed_error < 1e-12, "mixed-product rule: (ā⊗g)(ā⊗g)ᵀ = āāᵀ ⊗ ggᵀ"

# %% [markdown]
# ## Summary
#
# - A ⊗ G is a block matrix of scaled copies of G; vec stacks columns (`X.T.reshape(-1)` in NumPy).
# - Products, inverses and eigendecompositions of A ⊗ G reduce to the small factors:
#   (A ⊗ G) vec(X) = vec(G X Aᵀ), (A ⊗ G)⁻¹ = A⁻¹ ⊗ G⁻¹, eigenvalues aⱼ gᵢ.
# - Never forming A ⊗ G turns k⁴ memory into 2k² and a k⁶ solve into k³; the table and the figure
#   show the gap growing with k.
# - A linear layer's per-example gradient is vec(g āᵀ) = ā ⊗ g: the reason K-FAC's blocks have
#   Kronecker form at all (tutorials to come build A and G from a real network).
#
# ## Try this
#
# - Swap the factors: compare `np.kron(G, A) @ vec(X)` with `vec(G X Aᵀ)`. Which identity holds
#   for G ⊗ A?
# - Make A and G rectangular factors of sizes n ≠ m (a layer with 100 inputs and 10 outputs) and
#   redo the timing: which factor dominates the factored cost?
# - Add damping: compare `kron.kron_solve(A, G, X, damping=0.1)` with the dense
#   `np.linalg.solve(np.kron(A, G) + 0.1 * np.eye(k * k), vec(X))`. Is (A ⊗ G + λI)⁻¹ still a
#   Kronecker product?
