"""The three likelihoods: categorical (softmax), Gaussian (unit variance) and Bernoulli (sigmoid).

Each is a :class:`minikfac.nn.loss.Loss`: the negative log-likelihood of a
distribution whose natural parameters are the network outputs f, averaged
over the batch, with what the curvature module needs of that distribution
(sampled targets, the square root of the output Fisher, the output Hessian,
the KL divergence). They are exponential families in f, so for each the true
Fisher equals the generalised Gauss–Newton matrix (Martens 2020, §9.2).
"""

import numpy as np

from minikfac import backend
from minikfac.nn.activation import logistic
from minikfac.nn.loss import Loss


def _log_softmax(out):
    """Log-softmax over the last axis of ``out`` (..., C); the max is subtracted so exp never overflows."""
    xp = backend.get_array_module(out)
    shifted = out - xp.max(out, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(out):
    """The categorical probabilities softmax(f) over the last axis of ``out`` (..., C), without overflow."""
    return backend.get_array_module(out).exp(_log_softmax(out))


def _softplus(x):
    """log(1 + exp(x)) elementwise, as max(x, 0) + log1p(exp(−|x|)) so that exp never overflows."""
    xp = backend.get_array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _sigmoid_and_variance(out):
    """sigmoid(f) and sigmoid(f)(1 - sigmoid(f)) elementwise, without overflow.

    From :func:`minikfac.nn.activation.logistic`: the variance is e/(1+e)² with
    e = exp(-|f|) (symmetric in f, and accurate where p(1-p) would round to 0).
    """
    probs, e, r = logistic(out)
    e *= r
    e *= r
    return probs, e


class CrossEntropyLoss(Loss):
    """Categorical NLL over softmax logits (as PyTorch's ``CrossEntropyLoss``, mean reduction).

    l_n = -log softmax(f_n)[y_n] = logsumexp(f_n) - f_{n, y_n}

    Shapes: ``out`` (N, C) logits; ``y`` (N,) integer labels in [0, C).
    Checking the label range reads one boolean back from the device per call
    (a sync); a wrong label would otherwise index silently on the GPU.

    Caches ``cache_probs`` (N, C) = softmax(f) and ``cache_labels`` (N,).
    """

    cache_names = ("cache_probs", "cache_labels")
    independent_outputs = False  # the C logits parametrise one categorical label

    def _check_targets(self, out, y):
        y = self._check_array_target(out, y)
        n, classes = out.shape
        if tuple(y.shape) != (n,):
            raise ValueError(
                f"CrossEntropyLoss: y must hold one integer label per example, shape ({n},), "
                f"got shape {tuple(y.shape)} (out has shape {tuple(out.shape)})"
            )
        if y.dtype.kind not in "iu":
            raise ValueError(f"CrossEntropyLoss: y (labels) must have an integer dtype, got dtype {y.dtype}")
        xp = backend.get_array_module(y)
        if bool(xp.any((y < 0) | (y >= classes))):
            low, high = int(xp.min(y)), int(xp.max(y))
            raise ValueError(
                f"CrossEntropyLoss: y (labels) must lie in [0, {classes}) for C = {classes} classes, "
                f"got labels from {low} to {high}"
            )
        return y

    def _nll(self, out, y):
        xp = backend.get_array_module(out)
        log_probs = _log_softmax(out)
        nll = -xp.take_along_axis(log_probs, y[:, None], axis=1)[:, 0]
        return nll, {"probs": xp.exp(log_probs), "labels": y}

    def _per_example_gradient(self):
        # grad_f l_n = softmax(f_n) - e_{y_n}; the subtraction makes a new array.
        xp = backend.get_array_module(self.cache_probs)
        classes = self.cache_probs.shape[1]
        one_hot = xp.arange(classes)[None, :] == self.cache_labels[:, None]
        return self.cache_probs - one_hot.astype(self.cache_probs.dtype)

    def sample_targets(self, out, rng):
        """Labels y_n ~ Categorical(softmax(f_n)), int64 of shape (N,), on ``out``'s backend.

        Inverse CDF, one uniform u per example: y_n = #{c : cdf_nc <= u_n},
        i.e. the first class whose cumulative probability exceeds u_n.
        """
        xp = backend.get_array_module(self._check_out(out))
        n, classes = out.shape
        u = self._check_rng_draw(out, rng.random((n, 1), dtype=out.dtype))
        cdf = xp.cumsum(xp.exp(_log_softmax(out)), axis=1)
        labels = xp.sum(cdf <= u, axis=1)
        # Rounding can leave cdf[:, -1] slightly below 1 and u above it.
        return xp.minimum(labels, classes - 1).astype(np.int64)

    def output_fisher_sqrt(self, out):
        """S of shape (C, N, C): S[c, n] = sqrt(p_nc) (e_c - p_n), with p_n = softmax(f_n).

        S[c, n] is the gradient grad_f l_n for label c, weighted by sqrt of its
        probability, so sum_c S[c, n] S[c, n]^T = E_y[grad l grad l^T] exactly
        = diag(p_n) - p_n p_n^T, the Hessian (Martens 2020, §9.2).
        Per example, not divided by N.
        """
        xp = backend.get_array_module(self._check_out(out))
        probs = xp.exp(_log_softmax(out))
        eye = xp.eye(out.shape[1], dtype=out.dtype)
        return xp.sqrt(probs).T[:, :, None] * (eye[:, None, :] - probs[None, :, :])

    def output_hessian(self, out):
        """Hessian of l_n w.r.t. f_n, (N, C, C): diag(p_n) - p_n p_n^T."""
        xp = backend.get_array_module(self._check_out(out))
        probs = xp.exp(_log_softmax(out))
        eye = xp.eye(out.shape[1], dtype=out.dtype)
        return probs[:, :, None] * eye[None] - probs[:, :, None] * probs[:, None, :]

    def _hessian_product(self, out, v):
        # (diag(p) - p pᵀ) v = p ⊙ v - p (pᵀ v), one row per example.
        xp = backend.get_array_module(out)
        probs = xp.exp(_log_softmax(out))
        weighted = probs * v
        return weighted - probs * xp.sum(weighted, axis=-1, keepdims=True)

    def _kl(self, out_p, out_q):
        # Σ_c p_c (log p_c − log q_c), both log-probabilities from the stable log-softmax.
        xp = backend.get_array_module(out_p)
        log_p, log_q = _log_softmax(out_p), _log_softmax(out_q)
        return xp.sum(xp.exp(log_p) * (log_p - log_q), axis=1)


class MSELoss(Loss):
    """Squared error as a Gaussian NLL with unit variance: l_n = 1/2 ||f_n - y_n||^2.

    This is -log N(y_n; f_n, I) without its constant (D_out/2) log(2 pi).
    Unlike PyTorch's ``MSELoss`` (which has no 1/2 and averages over the N * D_out
    entries), ours halves and sums over outputs, then averages over examples:
    ours = torch's * D_out / 2. That makes the output Fisher exactly I.

    Shapes: ``out`` and ``y`` (N, D_out); ``y`` may have any real dtype and is
    cast to ``out``'s. Caches ``cache_residual`` (N, D_out) = f - y.
    """

    cache_names = ("cache_residual",)

    def _check_targets(self, out, y):
        return _check_dense_targets(self, out, y)

    def nll_constant(self, d_out):
        """(D_out/2) log(2π), the Gaussian's normalising constant that l_n leaves out."""
        return 0.5 * d_out * float(np.log(2 * np.pi))

    def _nll(self, out, y):
        xp = backend.get_array_module(out)
        residual = out - y
        return 0.5 * xp.sum(residual * residual, axis=1), {"residual": residual}

    def _per_example_gradient(self):
        # grad_f l_n = f_n - y_n; backward's division by N makes the new array.
        return self.cache_residual

    def sample_targets(self, out, rng):
        """y_n ~ N(f_n, I): ``out`` plus standard normal noise, (N, D_out), ``out``'s dtype."""
        self._check_out(out)
        return out + self._check_rng_draw(out, rng.standard_normal(tuple(out.shape), dtype=out.dtype))

    def output_fisher_sqrt(self, out):
        """S of shape (D_out, N, D_out): S[k, n] = e_k, so sum_k S S^T = I per example.

        The Fisher of N(f, I) w.r.t. its mean is I, which is also the Hessian
        of l_n (Martens 2020, §9.2). Per example, not divided by N.
        """
        xp = backend.get_array_module(self._check_out(out))
        n, d_out = out.shape
        eye = xp.eye(d_out, dtype=out.dtype)
        return eye[:, None, :] * xp.ones((1, n, 1), dtype=out.dtype)

    def output_hessian(self, out):
        """Hessian of l_n w.r.t. f_n, (N, D_out, D_out): the identity for every example."""
        xp = backend.get_array_module(self._check_out(out))
        n, d_out = out.shape
        return xp.eye(d_out, dtype=out.dtype)[None] * xp.ones((n, 1, 1), dtype=out.dtype)

    def _hessian_product(self, out, v):
        return v.copy()  # H_n = I; a copy, so that callers may write into the result

    def _kl(self, out_p, out_q):
        # Two Gaussians with the same (unit) covariance: KL = ½‖μ_p − μ_q‖².
        xp = backend.get_array_module(out_p)
        difference = out_p - out_q
        return 0.5 * xp.sum(difference * difference, axis=1)


class BCEWithLogitsLoss(Loss):
    """Independent Bernoullis over sigmoid logits, summed over outputs.

    l_n = sum_j -[y_nj log s(f_nj) + (1 - y_nj) log(1 - s(f_nj))]
        = sum_j max(f_nj, 0) - f_nj y_nj + log1p(exp(-|f_nj|))   (the stable form)

    with s the sigmoid. PyTorch's ``BCEWithLogitsLoss`` averages over all
    N * D_out entries; ours sums over outputs and averages over examples.

    Shapes: ``out`` and ``y`` (N, D_out); targets in [0, 1] (soft targets are
    allowed; the range is not checked, to avoid a device sync); any real dtype,
    cast to ``out``'s. Caches ``cache_probs`` = s(f) and ``cache_targets`` = y.
    """

    cache_names = ("cache_probs", "cache_targets")

    def _check_targets(self, out, y):
        return _check_dense_targets(self, out, y)

    def _nll(self, out, y):
        xp = backend.get_array_module(out)
        probs, e, _ = logistic(out)
        elementwise = xp.maximum(out, 0)
        elementwise -= out * y
        elementwise += xp.log1p(e)  # max(f, 0) − f·y + log(1 + e^(−|f|)), the stable form
        return xp.sum(elementwise, axis=1), {"probs": probs, "targets": y}

    def _per_example_gradient(self):
        # grad_f l_n = s(f_n) - y_n (a new array).
        return self.cache_probs - self.cache_targets

    def sample_targets(self, out, rng):
        """y_nj ~ Bernoulli(s(f_nj)), floats in {0, 1} of ``out``'s dtype and shape (N, D_out)."""
        self._check_out(out)
        u = self._check_rng_draw(out, rng.random(tuple(out.shape), dtype=out.dtype))
        probs, _ = _sigmoid_and_variance(out)
        return (u < probs).astype(out.dtype)

    def output_fisher_sqrt(self, out):
        """S of shape (D_out, N, D_out): S[k, n] = sqrt(v_nk) e_k, v = s(f)(1 - s(f)).

        sum_k S S^T = diag(v_n), the Fisher of independent Bernoullis w.r.t.
        their logits and the Hessian of l_n (Martens 2020, §9.2). Per
        example, not divided by N.
        """
        xp = backend.get_array_module(self._check_out(out))
        _, variance = _sigmoid_and_variance(out)
        eye = xp.eye(out.shape[1], dtype=out.dtype)
        return eye[:, None, :] * xp.sqrt(variance)[None, :, :]

    def output_hessian(self, out):
        """Hessian of l_n w.r.t. f_n, (N, D_out, D_out): diag(s(f_n)(1 - s(f_n)))."""
        xp = backend.get_array_module(self._check_out(out))
        _, variance = _sigmoid_and_variance(out)
        return variance[:, :, None] * xp.eye(out.shape[1], dtype=out.dtype)[None]

    def _hessian_product(self, out, v):
        # diag(s(f_n)(1 - s(f_n))) v_n, with the variance computed without overflow.
        _, variance = _sigmoid_and_variance(out)
        return variance * v

    def _kl(self, out_p, out_q):
        # Σ_j s log(s / t) + (1 − s) log((1 − s) / (1 − t)), s = σ(f), t = σ(f'), with
        # log σ(x) = −softplus(−x) and log(1 − σ(x)) = −softplus(x), so no log of 0 appears.
        xp = backend.get_array_module(out_p)
        s, _ = _sigmoid_and_variance(out_p)
        log_ratio_one = _softplus(-out_q) - _softplus(-out_p)
        log_ratio_zero = _softplus(out_q) - _softplus(out_p)
        return xp.sum(s * log_ratio_one + (1 - s) * log_ratio_zero, axis=1)


def _check_dense_targets(loss, out, y):
    """Targets of MSE and BCE: same shape as ``out``, real dtype, cast to ``out``'s dtype."""
    y = loss._check_array_target(out, y)
    name = type(loss).__name__
    if tuple(y.shape) != tuple(out.shape):
        raise ValueError(
            f"{name}: y must have the shape of out, {tuple(out.shape)} (N, D_out), "
            f"got shape {tuple(y.shape)}"
        )
    if y.dtype.kind not in "fiub":
        raise ValueError(f"{name}: y must have a real (float, int or bool) dtype, got dtype {y.dtype}")
    return y.astype(out.dtype, copy=False)
