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
# # 02. Layers and their caches
#
# K-FAC is built from two things every layer already has during backpropagation: its input a
# (kept in the forward pass) and the gradient g with respect to its output (seen in the backward
# pass). This tutorial opens a small network and shows exactly what each layer keeps.
#
# **What you will see**
#
# - a forward pass layer by layer: each layer's `cache_*` attributes and their shapes;
# - the backward of a Linear layer by hand (dW = gᵀ a, with the 1/N of the mean loss inside g),
#   equal to the library's `.grad` to rounding error;
# - the output gradient g each layer keeps for the curvature module;
# - finite-difference gradient checks of every layer, the loss and the whole network
#   (relative errors between 1e-10 and a few 1e-9, well under 1e-7), and the V-shaped error curve over the
#   step size h;
# - two classic bugs: modifying `dout` in place, and forgetting that `.grad` accumulates.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import gradcheck, plot

mk.set_default_dtype("float64")  # finite differences need float64
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## A small network
#
# Four inputs, two hidden layers (tanh, then ReLU), three classes, cross-entropy loss. A batch of
# N = 8 random examples with random labels is enough to see every mechanism.

# %%
N, D_in, classes = 8, 4, 3
net = mk.nn.Sequential(
    mk.nn.Linear(D_in, 6), mk.nn.Tanh(),
    mk.nn.Linear(6, 5), mk.nn.ReLU(),
    mk.nn.Linear(5, classes),
)
loss_fn = mk.nn.CrossEntropyLoss()
X = rng.standard_normal((N, D_in))
y = rng.integers(0, classes, size=N)
print(net)
for name, p in net.named_parameters():
    print(f"  {name:9s} {p.shape}")


def caches(module):
    """The module's cache_* attributes: name -> shape (None when empty)."""
    return {name: (None if value is None else getattr(value, "shape", value))
            for name, value in vars(module).items() if name.startswith("cache_")}


# %% [markdown]
# ## Forward: what each layer keeps
#
# Each layer stores exactly what its backward will need, in attributes named `cache_*`:
#
# - a Linear layer s = W a + b keeps its input a, (N, D_in): dW needs it;
# - Tanh keeps its *output* y, because tanh'(x) = 1 − y²;
# - ReLU keeps the boolean mask x > 0;
# - the loss keeps the softmax probabilities and the labels.
#
# Before the backward pass the Linear layers' `cache_grad_output` is still empty.

# %%
out = net(X)                        # (N, classes) logits
loss = loss_fn(out, y)              # a 0-d array: the mean negative log-likelihood
for i, layer in enumerate(net):
    print(f"layer {i} {type(layer).__name__:7s} {caches(layer)}")
print(f"loss    {caches(loss_fn)}   value {float(loss):.4f}")

# %% [markdown]
# ## Backward: the output gradient g
#
# `loss_fn.backward()` returns dL/d(out) for the **mean** loss L = (1/N) Σₙ ℓₙ; for softmax
# cross-entropy it is (softmax(f) − onehot(y)) / N, shape (N, classes). `net.backward` walks the
# layers from last to first. Each Linear layer stores g = dL/ds, the gradient with respect to its
# output s (its pre-activation), in `cache_grad_output`, and *adds* dW and db into `.grad`.

# %%
dout = loss_fn.backward()                                   # (N, classes)
probs = loss_fn.cache_probs
onehot = np.eye(classes)[y]
print("max |dout - (p - onehot)/N| =", np.max(np.abs(dout - (probs - onehot) / N)))
net.backward(dout)
for i, layer in enumerate(net):
    print(f"layer {i} {type(layer).__name__:7s} {caches(layer)}")

# %% [markdown]
# ## One Linear layer's backward, by hand
#
# For s = a Wᵀ + b on a batch (a: (N, D_in), s: (N, D_out)) and g = dL/ds (N, D_out):
#
# $$\frac{\partial L}{\partial W} = g^\top a \;(D_{out}, D_{in}), \qquad
#   \frac{\partial L}{\partial b} = \textstyle\sum_n g_n \;(D_{out},), \qquad
#   \frac{\partial L}{\partial a} = g\, W \;(N, D_{in}).$$
#
# There is no explicit 1/N here: it is already inside g, because the loss is a mean. Take the
# middle Linear layer (index 2): its a is the tanh output, its g is what came back through the ReLU.

# %%
middle = net[2]
a, g = middle.cache_input, middle.cache_grad_output          # (N, 6), (N, 5)
dW_by_hand = g.T @ a                                         # (5, 6)
db_by_hand = g.sum(axis=0)                                   # (5,)
dW_error = np.max(np.abs(dW_by_hand - middle.weight.grad))
db_error = np.max(np.abs(db_by_hand - middle.bias.grad))
print(f"a: {a.shape}, g: {g.shape}, dW: {dW_by_hand.shape}")
print(f"max |gᵀa - weight.grad| = {dW_error:.1e},  max |Σ g - bias.grad| = {db_error:.1e}")
# g of the middle layer by hand: the last layer's g pulled back through W and the ReLU mask
g_by_hand = (net[4].cache_grad_output @ net[4].weight.data) * net[3].cache_mask
print(f"max |g by hand - cached g| = {np.max(np.abs(g_by_hand - g)):.1e}")

# %% [markdown]
# Each row gₙ of the cached g is (1/N)·∂ℓₙ/∂s, the per-example gradient scaled by the mean.
# The curvature module needs the per-example gradients ∂ℓₙ/∂s themselves (G = E[g gᵀ], with
# targets sampled from the model for the true Fisher), so it sends its own cotangents through
# the same `backward` and reads the same two caches, `cache_input` and `cache_grad_output`.
# At the last layer N·g is simply softmax − onehot:

# %%
print("N·g of the last layer, first two examples:\n", N * net[4].cache_grad_output[:2])
print("softmax - onehot:\n", (probs - onehot)[:2])

# %% [markdown]
# ## Gradient checks: every layer, the loss, the whole network
#
# A central difference, (f(θ + h eᵢ) − f(θ − h eᵢ)) / 2h, approximates each partial derivative
# with an error O(h²) from truncation plus O(ε/h) from rounding (ε ≈ 2.2e-16 in float64), so
# h ≈ 1e-6 gives errors far below the 1e-7 we demand. `gradcheck.check_module(layer, x)` checks a
# layer's input and parameter gradients on the scalar Σ r ⊙ layer(x) with a fixed random r.
# ReLU has a kink at 0, where finite differences mean nothing: we keep its inputs away from 0.

# %%
away_from_zero = rng.choice([-1.0, 1.0], size=(N, 5)) * rng.uniform(0.1, 1.0, size=(N, 5))
layer_checks = {
    "Linear(4, 6)": gradcheck.check_module(mk.nn.Linear(4, 6), rng.standard_normal((N, 4))),
    "Tanh": gradcheck.check_module(mk.nn.Tanh(), rng.standard_normal((N, 6))),
    "ReLU": gradcheck.check_module(mk.nn.ReLU(), away_from_zero),
    "Linear(5, 3)": gradcheck.check_module(mk.nn.Linear(5, 3), rng.standard_normal((N, 5))),
}
for name, errors in layer_checks.items():
    print(f"{name:13s}", {key: f"{value:.1e}" for key, value in errors.items()})

logits = rng.standard_normal((N, classes))
loss_fn(logits, y)
analytic = loss_fn.backward()
numeric = gradcheck.numerical_gradient(lambda: loss_fn(logits, y), logits)
loss_check = gradcheck.check_gradient(analytic, numeric, "CrossEntropyLoss")
print(f"CrossEntropyLoss  dL/dout: {loss_check:.1e}")

# %% [markdown]
# The whole network: the analytic gradients of one backward pass against finite differences of
# the loss L(θ) = loss_fn(net(X), y), one parameter entry at a time.

# %%
def total_loss():
    return loss_fn(net(X), y)


net.zero_grad()
total_loss()
net.backward(loss_fn.backward())
analytic_grads = {name: p.grad.copy() for name, p in net.named_parameters()}
net_checks = {name: gradcheck.check_gradient(analytic_grads[name], gradcheck.numerical_gradient(total_loss, p.data),
                                             f"net {name}")
              for name, p in net.named_parameters()}
print({name: f"{err:.1e}" for name, err in net_checks.items()})

# %% [markdown]
# ## The V curve: choosing h
#
# Shrinking h first helps (truncation error ∝ h²), then hurts (rounding error ∝ ε/h: the two
# losses agree in more and more leading digits, which cancel). The best h balances them near
# ε^{1/3} ≈ 6e-6. We measure the relative error of each Linear layer's gradient over 13 values of h.

# %%
steps = np.logspace(-13, -1, 13)
linear_names = {0: "Linear 0 (4→6)", 2: "Linear 2 (6→5)", 4: "Linear 4 (5→3)"}
v_curves = {}
for index, label in linear_names.items():
    layer = net[index]
    analytic_layer = np.concatenate([analytic_grads[f"{index}.weight"].ravel(), analytic_grads[f"{index}.bias"]])
    errors = []
    for h in steps:
        numeric_layer = np.concatenate([gradcheck.numerical_gradient(total_loss, layer.weight.data, h=h).ravel(),
                                        gradcheck.numerical_gradient(total_loss, layer.bias.data, h=h)])
        errors.append(gradcheck.relative_error(analytic_layer, numeric_layer))
    v_curves[label] = np.array(errors)
for label, errors in v_curves.items():
    best = int(np.argmin(errors))
    print(f"{label}: best h = {steps[best]:.0e} (error {errors[best]:.1e}); "
          f"h = 1e-13: {errors[0]:.1e}; h = 1e-1: {errors[-1]:.1e}")
smallest_relu_input = float(np.min(np.abs(net[2](net[1](net[0](X))))))  # the ReLU's inputs, (N, 5)
print(f"smallest |ReLU input| in this batch: {smallest_relu_input:.4f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [1.5, 1, 1]})
ax = axes[0]
for label, errors in v_curves.items():
    ax.loglog(steps, errors, marker="o", label=label)
ax.loglog(steps, steps ** 2, "k:", label="∝ h² (truncation)")
ax.loglog(steps, 1e-16 / steps, "k--", label="∝ ε/h (rounding)")
ax.axhline(1e-7, color="tab:red", linewidth=0.8)
ax.text(1e-13, 2e-7, "accepted: < 1e-7", color="tab:red", fontsize=8)
ax.set_ylim(1e-13, 1)
ax.set_xlabel("finite-difference step h (parameter units)")
ax.set_ylabel("relative error of the gradient")
ax.set_title("Central differences: the V curve")
ax.legend(fontsize=7)
for ax, matrix, title in ((axes[1], net[2].cache_input, "cached a of Linear 2 (N × 6)"),
                          (axes[2], N * net[2].cache_grad_output, "cached N·g of Linear 2 (N × 5)")):
    limit = np.max(np.abs(matrix))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xlabel("unit")
    ax.set_ylabel("example n")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="value (red > 0, blue < 0)")
fig.suptitle("A gradient check (left) and what one layer caches for backward (right)")
plot.show(fig, "02_gradient_check_and_caches")

# %% [markdown]
# The left side of the V follows the ε/h slope, the bottom sits near ε^{1/3} (the best h is printed
# above), and the right side follows h² until h ≈ 1e-3. Beyond that, the two layers *before* the
# ReLU jump up: the smallest ReLU input here is below 0.01 in absolute value (printed above), so
# steps of 1e-2 push it across the kink. The last layer, after the ReLU, sees no kink and keeps to
# the h² line.
#
# In the heatmaps, the entries of g where the ReLU was off for that example are exactly 0: no
# gradient flows through an inactive unit. That pattern is what G = E[g gᵀ] will summarise.
#
# ## Two classic bugs
#
# **Modifying `dout` in place.** A ReLU backward written as `dout[~mask] = 0; return dout` looks
# harmless and is a bit faster, but it overwrites the caller's array. The library's layers never do
# that (a Linear layer even keeps the very array it received as its g). The damage shows as soon as
# the same `dout` is needed twice, as in a residual connection y = x + relu(x), whose input gradient
# is dout + relu.backward(dout).

# %%
class InPlaceReLU(mk.nn.ReLU):
    """A ReLU with the classic bug: its backward writes into the caller's dout."""

    def backward(self, dout, input_grad=True):
        dout[~self.cache_mask] = 0
        return dout


def residual_input_grad(relu, x, r):
    """dL/dx of L = Σ r ⊙ (x + relu(x)): the identity branch plus the ReLU branch."""
    relu(x)
    dout = r.copy()
    return dout + relu.backward(dout)


x_res = away_from_zero
r = rng.standard_normal(x_res.shape)
numeric_res = gradcheck.numerical_gradient(lambda: np.sum(r * (x_res + np.maximum(x_res, 0))), x_res)
residual_errors = {type(relu).__name__: gradcheck.relative_error(residual_input_grad(relu, x_res, r), numeric_res)
                   for relu in (mk.nn.ReLU(), InPlaceReLU())}
print({name: f"{err:.1e}" for name, err in residual_errors.items()})

# %% [markdown]
# **Gradients accumulate.** `backward` *adds* into `.grad` (as in PyTorch), so that gradients of
# several losses or several micro-batches can be summed. Forget `zero_grad()` between steps and
# the second gradient is twice the first:

# %%
net.zero_grad()
for _ in range(2):
    total_loss()
    net.backward(loss_fn.backward())
doubled = max(np.max(np.abs(p.grad - 2 * analytic_grads[name])) for name, p in net.named_parameters())
print(f"after two backwards without zero_grad: max |grad - 2·grad₁| = {doubled:.1e}")
net.zero_grad()
print("after zero_grad:", [p.grad for p in net.parameters()][:2], "...")

# %% [markdown]
# ## What we checked

# %%
assert set(caches(net[0])) == {"cache_input", "cache_grad_output"} and net[0].cache_input.shape == (N, D_in), \
    "a Linear layer caches its input a (N, D_in) and its output gradient g"
assert caches(net[1]) == {"cache_output": (N, 6)} and caches(net[3]) == {"cache_mask": (N, 5)}, \
    "Tanh caches its output, ReLU its mask"
assert net[4].cache_grad_output.shape == (N, classes), "the last layer's g is (N, classes)"
assert np.allclose(N * net[4].cache_grad_output, probs - onehot, atol=1e-14, rtol=0), \
    "the last layer's g is (softmax - onehot)/N: the loss is a mean over N"
assert dW_error < 1e-14 and db_error < 1e-14, f"dW = gᵀa, db = Σg by hand match .grad ({dW_error:.1e}, {db_error:.1e})"
assert all(err < 1e-7 for errors in layer_checks.values() for err in errors.values()), \
    f"every layer passes the gradient check: {layer_checks}"
assert loss_check < 1e-7, f"the loss's backward passes the gradient check: {loss_check:.1e}"
assert max(net_checks.values()) < 1e-7, f"the whole net passes the gradient check: {net_checks}"
for label, errors in v_curves.items():
    assert errors.min() < 1e-8, f"{label}: the best h gives a relative error below 1e-8 ({errors.min():.1e})"
    assert errors[0] > 100 * errors.min() and errors[-1] > 100 * errors.min(), \
        f"{label}: too small and too large h are both much worse than the best (the V)"
    assert 1e-9 <= steps[np.argmin(errors)] <= 1e-3, f"{label}: the best h is near ε^(1/3), not at an extreme"
assert smallest_relu_input < 1e-2 and v_curves["Linear 4 (5→3)"][-1] < v_curves["Linear 0 (4→6)"][-1], \
    "at h = 0.1 the layers before the ReLU (inputs within 1e-2 of the kink) are off the h² line, the last is not"
assert np.all(net[2].cache_grad_output[~net[3].cache_mask] == 0), \
    "g of Linear 2 is exactly 0 wherever the ReLU after it was off"
assert residual_errors["ReLU"] < 1e-7, "the library's ReLU gives the right residual gradient"
assert residual_errors["InPlaceReLU"] > 1e-2, "the in-place ReLU corrupts the residual gradient"
assert doubled < 1e-14, f"a second backward without zero_grad doubles .grad ({doubled:.1e})"
assert all(p.grad is None for p in net.parameters()), "zero_grad clears every .grad"

# %% [markdown]
# ## Summary
#
# - Forward caches what backward needs: a Linear layer its input a (N, D_in), Tanh its output,
#   ReLU its mask, the loss its probabilities. Backward adds the output gradient g (N, D_out) to
#   every Linear layer.
# - dW = gᵀ a and db = Σₙ gₙ, with the batch mean's 1/N already inside g.
# - (a, g) per layer is all the curvature module reads: K-FAC's A is built from a, G from g.
# - Every layer, the loss and the whole network pass a float64 central-difference check with
#   relative error far below 1e-7; the error over h has a V shape with its bottom near 1e-5.
# - Backward must not write into `dout`; `.grad` accumulates until `zero_grad()`.
#
# ## Try this
#
# - Try the gradient check in float32: `net.astype("float32")`, then
#   `gradcheck.numerical_gradient(total_loss, net[0].weight.data)`. It refuses: why is that a good
#   idea? (Hint: in the V curve, replace ε = 2e-16 by float32's ε = 1e-7 and find the best error.)
# - Put an input of the ReLU exactly at 0 and rerun `gradcheck.check_module`: what breaks, and why?
# - Replace CrossEntropyLoss by `mk.nn.MSELoss()` with targets of shape (N, 3) and check that the
#   last layer's N·g equals out − y.
