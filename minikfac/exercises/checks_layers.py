"""Exercises 1-3: a Linear layer, im2col and convolution, softmax cross-entropy.

Each part's ``cases(rng)`` draws random shapes and values, adds the edge cases
that teach something (a batch of one, a layer without bias, non-square shapes
that expose a transpose, huge logits that overflow a naive exp), and computes
the expected result with the library's own layers and losses.
"""

import numpy as np

from minikfac import nn
from minikfac.exercises.feedback import arrays, as_host_array, compare_arrays, sequence
from minikfac.exercises.spec import Case, Exercise, Part
from minikfac.nn import conv


def two_sizes(rng, low=2, high=6):
    """Two different sizes in [low, high], so that a transposed matrix has the wrong shape."""
    first, second = rng.choice(np.arange(low, high + 1), size=2, replace=False)
    return int(first), int(second)


# --------------------------------------------------------------------------- #
# Exercise 1: a Linear layer
# --------------------------------------------------------------------------- #
def linear_layer(W, b):
    """An nn.Linear holding copies of W (D_out, D_in) and b (D_out,) or None."""
    layer = nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
    layer.weight.data = W.copy()
    if b is not None:
        layer.bias.data = b.copy()
    return layer


def _linear_inputs(rng):
    """(label, x, W, b) for random sizes, a batch of one, and a layer without bias."""
    settings = [(int(rng.integers(2, 7)), True), (int(rng.integers(2, 7)), True), (1, True),
                (int(rng.integers(2, 7)), False)]
    inputs = []
    for n, bias in settings:
        d_in, d_out = two_sizes(rng)
        x = rng.standard_normal((n, d_in))
        W = rng.standard_normal((d_out, d_in))
        b = rng.standard_normal(d_out) if bias else None
        label = f"N={n}, D_in={d_in}, D_out={d_out}, {'with' if bias else 'no'} bias"
        inputs.append((label, x, W, b))
    return inputs


def linear_forward_cases(rng):
    cases = []
    for label, x, W, b in _linear_inputs(rng):
        cases.append(Case(label, (x, W, b), linear_layer(W, b)(x), arrays("(N, D_out)", {"N": x.shape[0]})))
    return cases


def linear_backward_cases(rng):
    cases = []
    for label, x, W, b in _linear_inputs(rng):
        layer = linear_layer(W, b)
        dout = rng.standard_normal((x.shape[0], W.shape[0]))
        layer(x)
        dx = layer.backward(dout)
        expected = (dx, layer.weight.grad, None if b is None else layer.bias.grad)
        compare = sequence(["dx", "dW", "db"], ["(N, D_in)", "(D_out, D_in)", "(D_out,)"], {"N": x.shape[0]})
        cases.append(Case(label, (dout, x, W, b), expected, compare))
    return cases


LINEAR = Exercise(
    1, "01_linear_backward", "A Linear layer, forward and backward",
    "s = W a + b on a batch of rows; dL/da, dL/dW, dL/db by the chain rule", "02 layers and caches", 20,
    [Part("1.1", "linear_forward", "the output s = W a + b of the layer for every row a of x (N, D_in): (N, D_out); "
          "W (D_out, D_in), b (D_out,) or None", linear_forward_cases,
          ("W (D_out, D_in) acts on one input *column* a, but the inputs are the *rows* of x: compare the shapes of "
           "both sides. The bias is optional (tutorial 02, 'Forward: what each layer keeps').",
           "s = x Wᵀ + b: x @ W.T, plus b (broadcast over the N rows) when b is not None.")),
     Part("1.2", "linear_backward", "(dx, dW, db): the gradients of the loss w.r.t. x (N, D_in), W (D_out, D_in) and "
          "b (D_out,) (None without a bias), from dout = dL/ds (N, D_out)", linear_backward_cases,
          ("Write one entry, s[n, o] = Σ_i W[o, i] x[n, i] + b[o], and differentiate it; every gradient has the "
           "shape of what it is the gradient of, and dout already holds the loss's 1/N (tutorial 02, 'One Linear "
           "layer's backward, by hand').",
           "dx = dout W (N, D_in); dW = doutᵀ x (D_out, D_in); db = the sum of dout over the batch (not the mean); "
           "db is None without a bias."))],
    forbidden=("minikfac.nn.linear",),
)


# --------------------------------------------------------------------------- #
# Exercise 2: im2col and convolution
# --------------------------------------------------------------------------- #
def _conv_settings(rng):
    """(label, x shape, kernel, stride, padding): random, a batch of one, a kernel as large as the input."""
    settings = []
    for _ in range(3):
        n, c = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kernel = two_sizes(rng, 1, 3)
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
        h, w = int(rng.integers(kernel[0] + 1, 8)), int(rng.integers(kernel[1] + 1, 8))
        settings.append(((n, c, h, w), kernel, stride, padding))
    settings.append(((1, 2, 3, 4), (3, 4), (1, 1), (0, 0)))  # one output position
    return [(f"x {shape}, kernel {kernel}, stride {stride}, padding {padding}", shape, kernel, stride, padding)
            for shape, kernel, stride, padding in settings]


def output_size_cases(rng):
    cases = []
    for _ in range(6):
        size, kernel = int(rng.integers(3, 12)), int(rng.integers(1, 4))
        stride, padding = int(rng.integers(1, 4)), int(rng.integers(0, 3))
        label = f"size={size}, kernel={kernel}, stride={stride}, padding={padding}"
        mistakes = {"the count without the padding": conv.output_size(size, kernel, stride, 0),
                    "the count with the padding on one side only": conv.output_size(size + padding, kernel, stride, 0),
                    "the count without its + 1 (the first position)": conv.output_size(size, kernel, stride,
                                                                                       padding) - 1}
        cases.append(Case(label, (size, kernel, stride, padding), conv.output_size(size, kernel, stride, padding),
                          mistakes=mistakes))
    return cases


def im2col_cases(rng):
    cases = []
    for label, shape, kernel, stride, padding in _conv_settings(rng):
        x = rng.standard_normal(shape)
        expected = conv.im2col(x, kernel, stride, padding)
        n, positions = expected.shape[:2]
        channels_last = expected.reshape(n, positions, shape[1], *kernel).transpose(0, 1, 3, 4, 2)
        mistakes = {"the patches with their columns in (kh, kw, c) order instead of (c, kh, kw)":
                    channels_last.reshape(n, positions, -1)}
        cases.append(Case(label, (x, kernel, stride, padding), expected, arrays("(N, OH·OW, C·KH·KW)"),
                          mistakes=mistakes))
    return cases


def conv2d_forward_cases(rng):
    cases = []
    for i, (label, shape, kernel, stride, padding) in enumerate(_conv_settings(rng)):
        bias = i != 1  # one case without bias
        c_out = int(rng.integers(2, 4))  # >= 2: a wrong reshape of the channels shows
        layer = nn.Conv2d(shape[1], c_out, kernel, stride=stride, padding=padding, bias=bias)
        layer.weight.data = rng.standard_normal(layer.weight.shape)
        b = None
        if bias:
            b = rng.standard_normal(c_out)
            layer.bias.data = b
        x = rng.standard_normal(shape)
        label += f", C_out={c_out}, {'with' if bias else 'no'} bias"
        out = layer(x)
        mistakes = {"the (N·OH·OW, C_out) product reshaped straight to (N, C_out, OH, OW): the channel axis must be "
                    "moved, not reshaped": out.transpose(0, 2, 3, 1).reshape(out.shape)}
        cases.append(Case(label, (x, layer.weight.data.copy(), None if b is None else b.copy(), stride, padding),
                          out, arrays("(N, C_out, OH, OW)"), mistakes=mistakes))
    return cases


IM2COL = Exercise(
    2, "02_im2col", "im2col: convolution as one matrix product",
    "the patches of a sliding window as rows of a matrix, in the weight's (C, KH, KW) order",
    "03 convolution as matrix product", 30,
    [Part("2.1", "output_size", "the number of positions of a sliding window along one axis of a padded input "
          "(an int)", output_size_cases,
          ("Pad both sides first, then count where the window's first index can start: 0, stride, 2·stride, ... "
           "as long as the whole window fits (tutorial 03, 'What a patch is').",
           "floor((size + 2·padding − kernel) / stride) + 1: (size + 2 * padding - kernel) // stride + 1.")),
     Part("2.2", "im2col", "the patches (N, OH·OW, C·KH·KW): row oh·OW + ow holds the window under output position "
          "(oh, ow), its columns in (c, kh, kw) order", im2col_cases,
          ("Pad the last two axes only. Rather than looping over the OH·OW positions, loop over the KH·KW kernel "
           "offsets: one strided slice of the padded input gives one offset of every window at once. The final "
           "axis order decides the column order (tutorial 03, 'What a patch is').",
           "x_padded[:, :, i:i + SH·OH:SH, j:j + SW·OW:SW] (N, C, OH, OW) is offset (i, j) of every window; store "
           "it at [..., i, j] of an (N, C, OH, OW, KH, KW) array, transpose that to (N, OH, OW, C, KH, KW) and "
           "reshape to (N, OH·OW, C·KH·KW).")),
     Part("2.3", "conv2d_forward", "the convolution (N, C_out, OH, OW) of x (N, C_in, H, W) with weight "
          "(C_out, C_in, KH, KW), plus bias, as one matrix product over the patches", conv2d_forward_cases,
          ("Each output entry is the dot product of a patch with a filter, and the weight's matrix view has its "
           "columns in the patches' order. Mind the order of the axes when you shape the result (tutorial 03, "
           "'The convolution is one matrix product').",
           "patches (N·OH·OW, C_in·KH·KW) @ weight.reshape(C_out, -1).T + bias gives (N·OH·OW, C_out); reshape to "
           "(N, OH, OW, C_out), then transpose(0, 3, 1, 2)."))],
    forbidden=("minikfac.nn.conv",),
)


# --------------------------------------------------------------------------- #
# Exercise 3: softmax cross-entropy and its output Fisher
# --------------------------------------------------------------------------- #
def _logits_settings(rng):
    """(label, logits, labels): random, a batch of one with two classes, and huge logits."""
    settings = []
    for n, c, offset in ((int(rng.integers(2, 7)), int(rng.integers(3, 6)), 0.0), (1, 2, 0.0),
                         (int(rng.integers(2, 5)), int(rng.integers(3, 6)), 1000.0)):
        logits = offset + 2.0 * rng.standard_normal((n, c))  # exp(1000) overflows: a naive softmax gives NaN
        labels = rng.integers(0, c, size=n)
        label = f"N={n}, C={c}" + (", logits around 1000 (exp overflows)" if offset else "")
        settings.append((label, logits, labels))
    return settings


def _loss_of(logits, labels):
    loss_fn = nn.CrossEntropyLoss()
    value = loss_fn(logits, labels)
    return loss_fn, value


def softmax_cases(rng):
    cases = []
    for label, logits, labels in _logits_settings(rng):
        by_columns = _loss_of(np.ascontiguousarray(logits.T), np.zeros(logits.shape[1], dtype=int))[0].cache_probs.T
        cases.append(Case(label, (logits,), _loss_of(logits, labels)[0].cache_probs, arrays("(N, C)"),
                          mistakes={"the softmax of each column instead of each row": by_columns}))
    return cases


def cross_entropy_cases(rng):
    return [Case(label, (logits, labels), float(_loss_of(logits, labels)[1]),
                 arrays("() (a number)", {"N": logits.shape[0]}))
            for label, logits, labels in _logits_settings(rng)]


def cross_entropy_grad_cases(rng):
    cases = []
    for label, logits, labels in _logits_settings(rng):
        loss_fn, _ = _loss_of(logits, labels)
        cases.append(Case(label, (logits, labels), loss_fn.backward(), arrays("(N, C)", {"N": logits.shape[0]})))
    return cases


def _fisher_settings(rng):
    return [(label, logits) for label, logits, _ in _logits_settings(rng)[:2]] + \
        [(f"N={n}, C={c}", rng.standard_normal((n, c))) for n, c in [two_sizes(rng, 2, 5)]]


def output_fisher_cases(rng):
    return [Case(label, (logits,), nn.CrossEntropyLoss().output_hessian(logits), arrays("(N, C, C)"))
            for label, logits in _fisher_settings(rng)]


def compare_square_root(expected, got):
    """S (C, N, C) is a square root when Σ_c S[c, n] S[c, n]ᵀ reproduces the output Fisher (N, C, C)."""
    n, c = expected.shape[:2]
    S = as_host_array(got)
    if S is None or S.shape != (c, n, c):
        return compare_arrays(np.zeros((c, n, c)), got, "S", "(C, N, C)")  # explains the type or shape
    message = compare_arrays(expected, np.einsum("kni,knj->nij", S, S), "Σ_c S[c, n] S[c, n]ᵀ", "(N, C, C)")
    return None if message is None else message + "\n(S itself is not compared: any square root is accepted)"


def output_fisher_sqrt_cases(rng):
    return [Case(label, (logits,), nn.CrossEntropyLoss().output_hessian(logits), compare_square_root)
            for label, logits in _fisher_settings(rng)]


SOFTMAX = Exercise(
    3, "03_softmax_cross_entropy", "Softmax cross-entropy, its gradient and its output Fisher",
    "a stable softmax and cross-entropy; the gradient of the mean NLL; the output Fisher and a square root of it",
    "04 Fisher three ways", 30,
    [Part("3.1", "softmax", "p = softmax of each row of the logits (N, C), without overflow", softmax_cases,
          ("exp(1000) overflows. Which constant can you subtract from a row of logits without changing its "
           "softmax? (tutorial 04, 'Four matrices from one formula').",
           "softmax(f) = softmax(f − m) with m the row maximum: e = np.exp(f − f.max(axis=1, keepdims=True)), "
           "then e / e.sum(axis=1, keepdims=True).")),
     Part("3.2", "cross_entropy", "the mean over the batch of −log p[n, y_n] (a number)", cross_entropy_cases,
          ("Do not take the log of your softmax: for logits around 1000 some p underflow to 0. Write "
           "−log softmax(f)[y] in terms of a log-sum-exp, stabilised like 3.1, and average over the examples.",
           "−log softmax(f)[y] = logsumexp(f) − f[y], with logsumexp(f) = m + log Σ_c exp(f_c − m) and m the row "
           "maximum; return the mean over the N rows.")),
     Part("3.3", "cross_entropy_grad", "dL/dlogits (N, C) of the mean loss L", cross_entropy_grad_cases,
          ("Differentiate ℓ_n = −log softmax(f_n)[y_n] with respect to f_n, one example at a time (the form you "
           "used in 3.2 is the easiest); then "
           "remember that L is the mean of N such terms (tutorial 04).",
           "row n is (p_n − e_{y_n}) / N, with e_y the one-hot vector of the label.")),
     Part("3.4", "output_fisher", "the output Fisher F_n = E_{c ~ p_n}[∇_f ℓ_n(c) ∇_f ℓ_n(c)ᵀ] (C, C) of every "
          "example, (N, C, C)", output_fisher_cases,
          ("The per-example gradient for label c is 3.3's row without the 1/N. Expand the expectation over c ~ p_n "
           "of its outer product and simplify, using Σ_c p_n[c] = 1; the result is also the Hessian of ℓ_n "
           "w.r.t. f_n (tutorial 04, 'The GGN is the true Fisher here').",
           "F_n = diag(p_n) − p_n p_nᵀ: p[:, :, None] * np.eye(C) − p[:, :, None] * p[:, None, :].")),
     Part("3.5", "output_fisher_sqrt", "S (C, N, C) with Σ_c S[c, n] S[c, n]ᵀ = F_n (any such S is accepted)",
          output_fisher_sqrt_cases,
          ("F_n is an expectation over labels c ~ p_n of an outer product v vᵀ (3.4), i.e. a sum of C weighted "
           "outer products. Move each weight inside its vector.",
           "F_n = Σ_c p_n[c] (e_c − p_n)(e_c − p_n)ᵀ, so S[c, n] = sqrt(p_n[c]) (e_c − p_n): "
           "np.sqrt(p).T[:, :, None] * (np.eye(C)[:, None, :] − p[None])."))],
    forbidden=("minikfac.nn.likelihoods",),
)
