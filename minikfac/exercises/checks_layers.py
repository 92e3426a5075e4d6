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
    "s = a Wᵀ + b on a batch of rows; dL/da, dL/dW, dL/db by the chain rule", "02 layers and caches", 20,
    [Part("1.1", "linear_forward", "s = x Wᵀ + b for a batch x (N, D_in), W (D_out, D_in), b (D_out,) or None",
          linear_forward_cases, "W has shape (D_out, D_in) and acts on columns (s = W a), so a batch of rows "
          "needs x @ W.T; b broadcasts over the N rows."),
     Part("1.2", "linear_backward", "(dx, dW, db) from dout = dL/ds (N, D_out)", linear_backward_cases,
          "dx = dout W (N, D_in); dW = doutᵀ x (D_out, D_in), the shape of W; db = the sum of dout over the "
          "batch (not the mean: dout already holds the 1/N of the mean loss); db is None without a bias.")],
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
        cases.append(Case(label, (size, kernel, stride, padding), conv.output_size(size, kernel, stride, padding)))
    return cases


def im2col_cases(rng):
    cases = []
    for label, shape, kernel, stride, padding in _conv_settings(rng):
        x = rng.standard_normal(shape)
        expected = conv.im2col(x, kernel, stride, padding)
        cases.append(Case(label, (x, kernel, stride, padding), expected, arrays("(N, OH·OW, C·KH·KW)")))
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
        cases.append(Case(label, (x, layer.weight.data.copy(), None if b is None else b.copy(), stride, padding),
                          layer(x), arrays("(N, C_out, OH, OW)")))
    return cases


IM2COL = Exercise(
    2, "02_im2col", "im2col: convolution as one matrix product",
    "the patches of a sliding window as rows of a matrix, in the weight's (C, KH, KW) order",
    "03 convolution as matrix product", 30,
    [Part("2.1", "output_size", "the output length floor((size + 2·padding − kernel) / stride) + 1",
          output_size_cases, "Count the window's positions on the padded input: its first index runs "
          "0, stride, 2·stride, ... as long as the window fits."),
     Part("2.2", "im2col", "the patches (N, OH·OW, C·KH·KW), row oh·OW + ow, columns in (c, kh, kw) order",
          im2col_cases, "Pad first (np.pad on the last two axes only). Loop over the KH·KW kernel offsets "
          "(i, j): x_padded[:, :, i:i + stride·OH:stride, j:j + stride·OW:stride] is that offset for every "
          "position. Fill an (N, OH, OW, C, KH, KW) array and reshape it: that order makes the columns "
          "(c, kh, kw), like weight.reshape(C_out, -1)."),
     Part("2.3", "conv2d_forward", "the convolution (N, C_out, OH, OW) as patches @ W_matᵀ + b",
          conv2d_forward_cases, "patches (N·OH·OW, C_in·KH·KW) @ weight.reshape(C_out, -1).T gives "
          "(N·OH·OW, C_out); reshape it to (N, OH, OW, C_out) and move C_out to axis 1 (transpose, not "
          "reshape).")],
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
    return [Case(label, (logits,), _loss_of(logits, labels)[0].cache_probs, arrays("(N, C)"))
            for label, logits, labels in _logits_settings(rng)]


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
    "a stable softmax; ∇ of the mean NLL = (p − onehot)/N; F_out = diag(p) − p pᵀ and a square root of it",
    "04 Fisher three ways", 30,
    [Part("3.1", "softmax", "p = softmax of each row of the logits (N, C), without overflow", softmax_cases,
          "softmax(f) = softmax(f − max f): subtract each row's maximum before np.exp, so that the largest "
          "exponent is exp(0) = 1."),
     Part("3.2", "cross_entropy", "the mean over the batch of −log p[n, y_n] (a number)", cross_entropy_cases,
          "−log softmax(f)[y] = logsumexp(f) − f[y]; compute logsumexp as m + log Σ exp(f − m) with m the "
          "row maximum; average over the N examples."),
     Part("3.3", "cross_entropy_grad", "dL/dlogits (N, C) of the mean loss: (p − onehot(y)) / N",
          cross_entropy_grad_cases, "One row per example: p_n − e_{y_n}; the mean over the batch divides "
          "every row by N."),
     Part("3.4", "output_fisher", "F_n = diag(p_n) − p_n p_nᵀ for every example, (N, C, C)",
          output_fisher_cases, "Build it with broadcasting: p[:, :, None] * np.eye(C) − p[:, :, None] * "
          "p[:, None, :]. It is also the Hessian of −log p[y] w.r.t. the logits."),
     Part("3.5", "output_fisher_sqrt", "S (C, N, C) with Σ_c S[c, n] S[c, n]ᵀ = F_n", output_fisher_sqrt_cases,
          "F_n = Σ_c p_c (e_c − p)(e_c − p)ᵀ: the expectation over labels c ~ p of the outer product of the "
          "gradient e_c − p. So S[c, n] = sqrt(p_nc) (e_c − p_n) works.")],
    forbidden=("minikfac.nn.likelihoods",),
)
