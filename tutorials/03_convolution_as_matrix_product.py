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
# # 03. Convolution as a matrix product
#
# A convolution layer looks different from a linear layer, but it is one in disguise: cut the
# input into patches, and the convolution is a single matrix product of the patches with the
# flattened kernels. That is how minikfac computes it, and it is what lets K-FAC treat conv layers.
#
# **What you will see**
#
# - im2col: what a patch is, the patches matrix of shape (N·OH·OW, C_in·KH·KW) and its column
#   order (channel, kernel row, kernel column), the same as the weight's matrix view;
# - the convolution as patches @ Wᵀ, equal to a plain loop convolution (with stride and padding);
# - the gradients: dW = gᵀ P (a sum of g·patchᵀ over every position) and dx = col2im(g W);
# - col2im as the adjoint of im2col, ⟨im2col(x), P⟩ = ⟨x, col2im(P)⟩, checked to ~1e-15;
# - a finite-difference check of `mk.nn.Conv2d` with strides and paddings (errors < 1e-7);
# - a figure: an MNIST digit, its patches matrix and four feature maps.

# %%
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import minikfac as mk
from minikfac import gradcheck, plot
from minikfac.nn.conv import col2im, im2col

mk.set_default_dtype("float64")
mk.nn.init.manual_seed(0)
rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True, linewidth=120)

# %% [markdown]
# ## What a patch is
#
# A kernel of size KH × KW slides over the input x of shape (N, C_in, H, W), moving `stride` pixels
# at a time, over a copy of x surrounded by `padding` zeros. At each output position (oh, ow) it
# sees a *patch*: C_in·KH·KW numbers. There are
#
# $$OH = \left\lfloor \frac{H + 2\,\text{padding} - KH}{\text{stride}} \right\rfloor + 1$$
#
# output rows (OW likewise), so L = OH·OW patches per example. `im2col(x, kernel, stride, padding)`
# returns them as an array of shape (N, L, C_in·KH·KW): row oh·OW + ow of example n is the patch
# under position (oh, ow), flattened in the order (channel, kernel row, kernel column).

# %%
N, C_in, H, W = 2, 2, 4, 4
x = np.arange(N * C_in * H * W, dtype=float).reshape(N, C_in, H, W)   # readable numbers
kernel, stride, padding = (3, 3), (1, 1), (0, 0)
patches = im2col(x, kernel, stride, padding)                           # (N, L, C_in·KH·KW)
print("x[0] (2 channels of 4 × 4):\n", x[0])
print("patches:", patches.shape, "= (N, OH·OW, C_in·KH·KW) = (2, 2·2, 2·3·3)")
print("patch of example 0 at (oh, ow) = (0, 1):\n", patches[0, 1])
print("the same numbers cut from x and flattened:\n", x[0, :, 0:3, 1:4].reshape(-1))

# %% [markdown]
# Every patch, with stride and padding too, is the window x_padded[n, :, oh·s : oh·s + KH,
# ow·s : ow·s + KW] flattened row-major (channel first). We check all of them for a strided,
# padded case:

# %%
def patch_by_hand(x, n, oh, ow, kernel, stride, padding):
    """The window under output position (oh, ow) of example n, flattened (C_in·KH·KW,)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return padded[n, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw].reshape(-1)


x = rng.standard_normal((2, 3, 7, 6))
kernel, stride, padding = (3, 2), (2, 1), (1, 1)
patches = im2col(x, kernel, stride, padding)
OH, OW = (7 + 2 - 3) // 2 + 1, (6 + 2 - 2) // 1 + 1
patch_error = max(np.max(np.abs(patches[n, oh * OW + ow] - patch_by_hand(x, n, oh, ow, kernel, stride, padding)))
                  for n in range(2) for oh in range(OH) for ow in range(OW))
print(f"patches {patches.shape}: L = OH·OW = {OH}·{OW}; max difference to the windows: {patch_error}")

# %% [markdown]
# ## The convolution is one matrix product
#
# A Conv2d weight has shape (C_out, C_in, KH, KW). Reshaped row-major to its matrix view
# W_mat of shape (C_out, C_in·KH·KW), each row is one kernel flattened in the same
# (channel, kernel row, kernel column) order as the patches. So every output value is a dot product
# of a kernel row with a patch, and all of them together are
#
# $$S = P\, W_{\text{mat}}^\top + b, \qquad P: (N·L,\ C_{in}·KH·KW),\quad S: (N·L,\ C_{out}),$$
#
# reshaped to (N, OH, OW, C_out) and then to the usual (N, C_out, OH, OW). Here is the same
# convolution written as plain loops, for comparison (slow, but says exactly what a convolution
# is — a cross-correlation, as in every deep-learning framework):

# %%
def conv2d_loops(x, weight, bias, stride, padding):
    """Direct convolution: x (N, C_in, H, W), weight (C_out, C_in, KH, KW) -> (N, C_out, OH, OW)."""
    n_examples, _, height, width = x.shape
    c_out, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh_count, ow_count = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    out = np.zeros((n_examples, c_out, oh_count, ow_count))
    for n in range(n_examples):
        for c in range(c_out):
            for oh in range(oh_count):
                for ow in range(ow_count):
                    window = padded[n, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw]
                    out[n, c, oh, ow] = np.sum(window * weight[c]) + bias[c]
    return out


C_out = 4
conv = mk.nn.Conv2d(3, C_out, kernel_size=(3, 2), stride=(2, 1), padding=1)
conv.bias.data[:] = rng.standard_normal(C_out)                    # non-zero, so that b is tested too
W_mat = conv.weight.data.reshape(C_out, -1)                       # (C_out, C_in·KH·KW) = (4, 18)
P = patches.reshape(-1, W_mat.shape[1])                           # (N·L, 18)
S = P @ W_mat.T + conv.bias.data                                  # (N·L, C_out)
by_matrix = S.reshape(2, OH, OW, C_out).transpose(0, 3, 1, 2)     # (N, C_out, OH, OW)
by_loops = conv2d_loops(x, conv.weight.data, conv.bias.data, (2, 1), (1, 1))
by_layer = conv(x)
forward_error = max(np.max(np.abs(by_matrix - by_loops)), np.max(np.abs(by_layer - by_loops)))
print(f"W_mat {W_mat.shape}, P {P.shape}, output {by_layer.shape}")
print(f"max |patches @ Wᵀ - loops| and |Conv2d - loops|: {forward_error:.1e}")
print("Conv2d caches its patches:", conv.cache_input.shape, "- equal to im2col's:",
      np.array_equal(conv.cache_input, patches))

# %% [markdown]
# ## The gradients
#
# Since S = P W_matᵀ + b is a linear layer applied to N·L "examples" (the patches), its backward is
# the linear layer's. With g = dL/dS of shape (N·L, C_out) (the output gradient, rearranged to the
# patches' row order):
#
# $$\frac{\partial L}{\partial W_{\text{mat}}} = g^\top P = \sum_{n}\sum_{l} g_{n,l}\, p_{n,l}^\top,
#   \qquad \frac{\partial L}{\partial b} = \sum_{n,l} g_{n,l}, \qquad
#   \frac{\partial L}{\partial x} = \operatorname{col2im}(g\, W_{\text{mat}}).$$
#
# The weight gradient is a sum of outer products over every example *and every position*: each
# kernel is shared by all positions. g W_mat (N·L, C_in·KH·KW) is the gradient with respect to each
# patch; col2im adds every patch gradient back onto the pixels it was cut from (a pixel in k
# patches collects k contributions).

# %%
dout = rng.standard_normal(by_layer.shape)                        # some dL/d(output), (N, C_out, OH, OW)
conv.zero_grad()
dx_layer = conv.backward(dout)
g = dout.transpose(0, 2, 3, 1).reshape(-1, C_out)                  # (N·L, C_out), rows in patch order
dW_by_hand = (g.T @ P).reshape(conv.weight.shape)                  # (C_out, C_in, KH, KW)
dW_as_sum = sum(np.outer(g[row], P[row]) for row in range(P.shape[0])).reshape(conv.weight.shape)
dx_by_hand = col2im((g @ W_mat).reshape(2, OH * OW, -1), x.shape, kernel, stride, padding)
grad_errors = {"dW = gᵀP": np.max(np.abs(dW_by_hand - conv.weight.grad)),
               "dW = Σ g pᵀ": np.max(np.abs(dW_as_sum - conv.weight.grad)),
               "db = Σ g": np.max(np.abs(g.sum(axis=0) - conv.bias.grad)),
               "dx = col2im(g W)": np.max(np.abs(dx_by_hand - dx_layer))}
print({name: f"{err:.1e}" for name, err in grad_errors.items()})

# %% [markdown]
# ## col2im is the adjoint of im2col
#
# im2col is linear in x; call it M, so P = M x. Backpropagation through a linear map multiplies by
# its transpose, dx = Mᵀ dP, and col2im is exactly Mᵀ: for every x and every P of the patches'
# shape, ⟨M x, P⟩ = ⟨x, Mᵀ P⟩. (It is *not* the inverse: col2im(im2col(x)) multiplies each pixel
# by the number of patches that contain it.)

# %%
x_test = rng.standard_normal(x.shape)
P_test = rng.standard_normal(patches.shape)
left = np.sum(im2col(x_test, kernel, stride, padding) * P_test)   # ⟨im2col(x), P⟩
right = np.sum(x_test * col2im(P_test, x.shape, kernel, stride, padding))   # ⟨x, col2im(P)⟩
adjoint_error = abs(left - right) / abs(left)
print(f"⟨im2col(x), P⟩ = {left:.10f}\n⟨x, col2im(P)⟩ = {right:.10f}   relative difference {adjoint_error:.1e}")
ones = np.ones((1, 1, 5, 5))
counts = col2im(im2col(ones, (3, 3), (1, 1), (0, 0)), ones.shape, (3, 3), (1, 1), (0, 0))[0, 0]
print("col2im(im2col(ones)) for a 3 × 3 kernel on 5 × 5, stride 1: patches covering each pixel\n", counts)

# %% [markdown]
# ## Gradient check of Conv2d
#
# The finite-difference check of tutorial 02 on two Conv2d layers (float64), one with stride 2 and
# padding 1, one with stride (1, 2) and padding (0, 2): input, weight and bias gradients against
# central differences.

# %%
conv_checks = {}
for stride_, padding_ in (((2, 2), (1, 1)), ((1, 2), (0, 2))):
    layer = mk.nn.Conv2d(2, 3, kernel_size=3, stride=stride_, padding=padding_)
    conv_checks[f"stride {stride_}, padding {padding_}"] = gradcheck.check_module(layer, rng.standard_normal((2, 2, 6, 5)))
for name, errors in conv_checks.items():
    print(f"{name}:", {key: f"{value:.1e}" for key, value in errors.items()})

# %% [markdown]
# ## A picture: an MNIST digit, its patches and four feature maps
#
# A 16 × 16 digit (`mnist16`), a 3 × 3 kernel, stride 1, padding 1: L = 256 positions, each patch
# 9 pixels, so P is 256 × 9 (drawn transposed below, one column per position). We set four
# classic kernels by hand: vertical and horizontal edges (Sobel), a blur and a Laplacian. One
# position is marked on the image and in P.

# %%
mnist16 = mk.data.load("mnist16", flat=False, dtype="float64")
digit, digit_label = mnist16.X_train[:1], int(mnist16.y_train[0])          # (1, 1, 16, 16), its label
sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
filters = {"vertical edges": sobel, "horizontal edges": sobel.T, "blur": np.full((3, 3), 1 / 9),
           "Laplacian": np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])}
picture_conv = mk.nn.Conv2d(1, 4, kernel_size=3, padding=1)
picture_conv.weight.data[:] = np.stack(list(filters.values()))[:, None]    # (4, 1, 3, 3)
picture_conv.bias.data[:] = 0.0
maps = picture_conv(digit)                                                  # (1, 4, 16, 16)
digit_patches = picture_conv.cache_input[0]                                 # (256, 9)
mark = (7, 5)                                                               # (oh, ow)
mark_row = mark[0] * 16 + mark[1]
print("patches of the digit:", digit_patches.shape, f"- row {mark_row} is position {mark}:\n",
      digit_patches[mark_row].reshape(3, 3))
picture_error = np.max(np.abs(maps - conv2d_loops(digit, picture_conv.weight.data, picture_conv.bias.data,
                                                   (1, 1), (1, 1))))

# %%
fig, axes = plt.subplot_mosaic([["image", "m0", "m1", "m2", "m3"], ["patches"] * 5],
                               figsize=(14, 6.2), gridspec_kw={"height_ratios": [1, 0.55]})
axes["image"].imshow(digit[0, 0], cmap="gray_r")
axes["image"].add_patch(Rectangle((mark[1] - 1.5, mark[0] - 1.5), 3, 3, fill=False, edgecolor="tab:red", linewidth=2))
axes["image"].set_title(f"input 16 × 16 (label {digit_label})")
for i, (name, feature_map) in enumerate(zip(filters, maps[0])):
    limit = np.max(np.abs(feature_map))
    axes[f"m{i}"].imshow(feature_map, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[f"m{i}"].set_title(f"map {i}: {name}", fontsize=10)
for name in ("image", "m0", "m1", "m2", "m3"):
    axes[name].set_xlabel("column")
axes["image"].set_ylabel("row")
axes["patches"].imshow(digit_patches.T, cmap="gray_r", aspect="auto", interpolation="nearest")
axes["patches"].add_patch(Rectangle((mark_row - 0.5, -0.5), 1, 9, fill=False, edgecolor="tab:red", linewidth=1.5))
axes["patches"].set_xlabel("patch index l = oh·16 + ow (one of the 256 output positions)")
axes["patches"].set_ylabel("pixel in the 3 × 3 patch")
axes["patches"].set_title("the patches matrix Pᵀ (9 × 256): feature map c = (row c of W_mat, 1 × 9) @ Pᵀ")
fig.suptitle("im2col: one digit, its 256 patches, and four feature maps computed from them "
             "(maps: red > 0, blue < 0, each on its own scale)")
plot.show(fig, "03_im2col_patches_and_maps")

# %% [markdown]
# Look at the red square on the digit and the red column in Pᵀ below it: the nine pixels under the square
# are that column's nine entries, read row by row. Every pixel of every feature map is one such column
# multiplied by the kernel's nine weights — the vertical-edge map is blue along each stroke's left edge
# and red along its right edge (the kernel computes left column minus right column), and the blur map is the
# digit, smoothed. Pixel intensities are in [0, 1], so the
# maps have no unit either.
#
# ## What this has to do with K-FAC
#
# For a linear layer, K-FAC's input factor is A = E[ā āᵀ] built from the layer's inputs. A conv
# layer is a linear layer whose "inputs" are its patches, one per position, and it caches exactly
# them (`cache_input`, shape (N, L, C_in·KH·KW)). KFC (Grosse & Martens 2016) builds the conv
# layer's A factor from these patches (with a 1 appended for the bias) and G from the output
# gradients at every position. minikfac follows the paper's Ω and Γ: A = (1/N) Σₙ Σₗ ā āᵀ *sums*
# over the L positions, G = (1/(N·L)) Σₙ Σₗ g gᵀ *averages* over them (only the product A ⊗ G is
# fixed by the theory); tutorial 10 does it.
#
# ## What we checked

# %%
assert patch_error == 0.0, "each im2col row is the window under its output position, (C, KH, KW) order"
assert patches.shape == (2, OH * OW, 3 * 3 * 2), "patches have shape (N, OH·OW, C_in·KH·KW)"
assert forward_error < 1e-12, f"patches @ W_matᵀ + b equals the loop convolution ({forward_error:.1e})"
assert np.array_equal(conv.cache_input, patches), "Conv2d caches the im2col patches"
assert max(grad_errors.values()) < 1e-12, f"dW = gᵀP = Σ g pᵀ, db = Σ g, dx = col2im(gW): {grad_errors}"
assert adjoint_error < 1e-12, f"col2im is the adjoint of im2col ({adjoint_error:.1e})"
assert counts[2, 2] == 9 and counts[0, 0] == 1 and counts[0, 2] == 3, \
    "col2im(im2col(x)) counts the patches covering each pixel: it is not the inverse"
assert all(err < 1e-7 for errors in conv_checks.values() for err in errors.values()), \
    f"Conv2d passes the gradient check with stride and padding: {conv_checks}"
assert digit_patches.shape == (256, 9) and picture_error < 1e-12, "the digit's 256 × 9 patches give the loop maps"

# %% [markdown]
# ## Summary
#
# - im2col cuts the (padded) input into L = OH·OW patches per example, each C_in·KH·KW numbers in
#   (channel, kernel row, kernel column) order; the kernels' matrix view uses the same order.
# - The convolution is one product, P W_matᵀ + b: a linear layer applied to every patch.
# - Its backward is the linear layer's: dW = gᵀ P sums g·patchᵀ over examples and positions,
#   dx = col2im(g W_mat), with col2im the adjoint (not the inverse) of im2col.
# - Conv2d caches the patches; they are the inputs from which KFC builds the A factor.
#
# ## Try this
#
# - Change stride and padding in the gradient check, e.g. kernel 2 with stride 2 (no overlap):
#   what does `col2im(im2col(ones))` look like then?
# - Count the cost: with stride 1 and size-preserving padding, the patches matrix holds KH·KW
#   times more numbers than the input. Check it with `im2col` on a 28 × 28 image and a 5 × 5 kernel
#   (padding 2), and again without padding.
# - Replace the Sobel kernels by random ones (`mk.nn.Conv2d(1, 4, 3, padding=1)`) and compare the
#   feature maps: which ones still look like edges?
