"""Losses: negative log-likelihoods of the network's outputs, averaged over the batch.

Every loss here is the negative log-likelihood of a distribution p(y | f) whose
natural parameters are the network outputs f (DESIGN.md, "Conventions"):

    L = (1/N) sum_n l_n,    l_n = -log p(y_n | f_n),    f = out of shape (N, D_out).

Besides the value and its gradient, each loss knows its output distribution,
which is what the curvature module needs:

- ``sample_targets(out, rng)`` draws y ~ p(y | f) for the true (Monte-Carlo)
  Fisher. The empirical Fisher uses the data labels instead, which is a
  different matrix (Kunstner, Balles & Hennig 2019);
- ``output_fisher_sqrt(out)`` gives S with sum_k S[k] S[k]^T =
  E_y[grad_f l grad_f l^T] per example, the Fisher w.r.t. the outputs. For an
  exponential family in its natural parameters this expectation equals the
  Hessian of l w.r.t. f, so the true Fisher and the generalised Gauss-Newton
  matrix coincide (Martens 2020, section 9.2). Backpropagating the K columns of
  S gives the exact Fisher without sampling;
- ``output_hessian_product(out, v)`` gives H_n v_n without forming the
  (N, D_out, D_out) Hessians: with the layers' ``jvp`` it evaluates the
  curvature term (J δ)ᵀ H (J δ) of K-FAC's quadratic model (Martens & Grosse
  2015, section 7);
- ``kl_divergence(out_p, out_q)`` gives KL(p(y | f_n) ‖ p(y | f'_n)) per
  example. Its Hessian in f' at f' = f is the output Fisher, which is why the
  Fisher is the local metric of the KL divergence (Amari 1998; Martens 2020,
  section 9.1).

The three losses: :class:`CrossEntropyLoss` (categorical over softmax logits),
:class:`MSELoss` (Gaussian with unit variance), :class:`BCEWithLogitsLoss`
(independent Bernoullis over sigmoid logits).
"""

import numpy as np

from minikfac import backend
from minikfac.nn.activation import logistic


def _log_softmax(out):
    """Row-wise log-softmax of ``out`` (N, C); the row max is subtracted so exp never overflows."""
    xp = backend.get_array_module(out)
    shifted = out - xp.max(out, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


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


class Loss:
    """Shared mechanics of the losses: checks, the batch mean, caching, backward.

    A subclass lists its caches in ``cache_names`` and implements

    - ``_check_targets(out, y)`` -> y, validated (and cast where documented);
    - ``_nll(out, y)`` -> (per-example NLL (N,), dict of arrays to cache, keyed
      by the name after ``cache_``);
    - ``_per_example_gradient()`` -> grad_f l_n, (N, D_out), read from the
      caches without modifying them (callers may hold the caches);
    - ``_hessian_product(out, v)`` -> H_n v_n for checked arguments;
    - ``_kl(out_p, out_q)`` -> KL per example (N,) for checked arguments;
    - ``sample_targets``, ``output_fisher_sqrt``, ``output_hessian``.
    """

    cache_names = ()
    #: Whether each of the D_out outputs is a random variable of its own (MSE's Gaussians, BCE's
    #: Bernoullis) rather than the D_out logits of one variable (cross-entropy's label).
    independent_outputs = True

    def __init__(self):
        self.clear_cache()

    def output_variables(self, d_out):
        """How many random variables the output distribution of one example has: D_out, or 1 for a label."""
        return d_out if self.independent_outputs else 1

    # ------------------------------------------------------------------ #
    # Value and gradient
    # ------------------------------------------------------------------ #
    def __call__(self, out, y):
        return self.forward(out, y)

    def forward(self, out, y):
        """Mean over the batch of the per-example NLL; caches what ``backward`` needs.

        Parameters
        ----------
        out : (N, D_out) float array, the network outputs f.
        y : targets (shape and dtype depend on the loss), on ``out``'s backend.

        Returns
        -------
        0-d array on ``out``'s backend, ``out``'s dtype (never a Python float:
        reading it would wait for the device).
        """
        xp = backend.get_array_module(out)
        nll, cache = self._nll(out, self._check_targets(self._check_out(out), y))
        for name, value in cache.items():
            setattr(self, "cache_" + name, value)
        # np.mean returns a NumPy scalar on the host; asarray keeps it a 0-d array.
        return xp.asarray(xp.mean(nll))

    def per_example(self, out, y):
        """Per-example NLL l_n, shape (N,), ``out``'s dtype; nothing is cached."""
        nll, _ = self._nll(out, self._check_targets(self._check_out(out), y))
        return nll

    def per_example_gradient(self, out, y):
        """grad_f l_n for targets ``y``: (N, D_out), not divided by N.

        The loss's own caches (from the last ``forward``) are left as they
        were, so this can be called between a forward and its backward. The
        curvature module uses it for sampled targets (Monte-Carlo Fisher) and
        for the data labels (empirical Fisher).
        """
        saved = {name: getattr(self, name) for name in self.cache_names}
        try:
            self.forward(out, y)
            return self._per_example_gradient()  # new array, or a cache about to be replaced
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def backward(self):
        """dL/dout of the last forward: grad_f l_n / N, shape (N, D_out).

        Returns a new array; the caches are left untouched, so calling it twice
        gives the same result. Raises ``RuntimeError`` before any forward.
        """
        for name in self.cache_names:
            if getattr(self, name) is None:
                raise RuntimeError(
                    f"{type(self).__name__}.backward needs the cache of a forward pass; "
                    "call loss_fn(out, y) first"
                )
        grad = self._per_example_gradient()
        return grad / grad.shape[0]  # not /=: grad may be a cache (MSE's residual)

    def output_hessian_product(self, out, v):
        """H_n v_n for every example, H_n = the Hessian of l_n w.r.t. f_n (not divided by N).

        Equals ``output_hessian(out)[n] @ v[n]`` but never forms the (N, D_out,
        D_out) Hessian. The loss's caches are not read or changed.

        Parameters
        ----------
        out : (N, D_out) network outputs f.
        v : (N, D_out), or (K, N, D_out) for K stacked vectors, on ``out``'s backend.

        Returns
        -------
        A new array of ``v``'s shape.
        """
        name = type(self).__name__
        self._check_out(out)
        if not backend.is_array(v):
            raise TypeError(f"{name}.output_hessian_product: v must be an array, got {type(v).__name__}")
        backend.check_same_backend(out=out, v=v)
        shape, got = tuple(out.shape), tuple(v.shape)
        if got[-2:] != shape or v.ndim not in (2, 3):
            raise ValueError(f"{name}.output_hessian_product: v has shape {got}, expected {shape} "
                             f"or (K, {shape[0]}, {shape[1]}) (the shape of out, optionally stacked)")
        return self._hessian_product(out, v)

    def kl_divergence(self, out_p, out_q):
        """KL(p(y | f_n) ‖ q(y | f'_n)) for every example, shape (N,), not averaged.

        p and q are the loss's output distribution at outputs ``out_p`` (f) and
        ``out_q`` (f'), both (N, D_out) on one backend. The divergence is
        >= 0, is 0 where f_n = f'_n (up to the invariances of the
        distribution: adding a constant to all logits of a softmax changes
        nothing), is not symmetric in general, and its Hessian w.r.t. f' at
        f' = f is the output Fisher ``output_hessian(f)[n]``; through the chain
        rule the Hessian of δ ↦ (1/N) Σ_n KL(p_θ ‖ p_{θ+δ}) at δ = 0 is the
        true Fisher of the parameters (Martens 2020, section 9.1). The loss's
        caches are not read or changed.
        """
        name = type(self).__name__
        self._check_out(out_p)
        if not backend.is_array(out_q):
            raise TypeError(f"{name}.kl_divergence: out_q must be an array, got {type(out_q).__name__}")
        backend.check_same_backend(out_p=out_p, out_q=out_q)
        self._check_out(out_q)
        if tuple(out_q.shape) != tuple(out_p.shape):
            raise ValueError(f"{name}.kl_divergence: out_q has shape {tuple(out_q.shape)}, expected the shape "
                             f"of out_p, {tuple(out_p.shape)} (N, D_out)")
        return self._kl(out_p, out_q)

    def clear_cache(self):
        """Drop the cached arrays (``backward`` then raises until the next forward)."""
        for name in self.cache_names:
            setattr(self, name, None)

    # ------------------------------------------------------------------ #
    # Checks shared by the subclasses
    # ------------------------------------------------------------------ #
    def _check_out(self, out):
        name = type(self).__name__
        if not backend.is_array(out):
            raise TypeError(f"{name}: out must be an array of shape (N, D_out), got {type(out).__name__}")
        if out.ndim != 2:
            raise ValueError(f"{name}: out must have shape (N, D_out), got shape {tuple(out.shape)}")
        if out.shape[0] < 1 or out.shape[1] < 1:
            raise ValueError(f"{name}: out must have N >= 1 rows and D_out >= 1 columns, got shape {tuple(out.shape)}")
        if out.dtype.kind != "f":
            raise ValueError(f"{name}: out must be a float32 or float64 array, got dtype {out.dtype}")
        return out

    def _check_array_target(self, out, y):
        """y must be an array on out's backend; return it."""
        name = type(self).__name__
        if not backend.is_array(y):
            raise TypeError(
                f"{name}: y must be an array on out's backend, got {type(y).__name__}; "
                "convert it with minikfac.asarray(y)"
            )
        backend.check_same_backend(out=out, y=y)
        return y

    def _check_rng_draw(self, out, draw):
        """The draw must come from out's backend (rng from default_rng(seed, like=out))."""
        got, want = backend.backend_of(draw), backend.backend_of(out)
        if got != want:
            raise ValueError(
                f"{type(self).__name__}.sample_targets: rng makes {got} arrays but out is a "
                f"{want} array; create rng with minikfac.backend.default_rng(seed, like=out)"
            )
        return draw

    def __repr__(self):
        return f"{type(self).__name__}()"


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
        = diag(p_n) - p_n p_n^T, the Hessian (Martens 2020, section 9.2).
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
        of l_n (Martens 2020, section 9.2). Per example, not divided by N.
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
        their logits and the Hessian of l_n (Martens 2020, section 9.2). Per
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
