"""Losses: negative log-likelihoods of the network's outputs, averaged over the batch.

Every loss here is the negative log-likelihood of a distribution p(y | f) whose
natural parameters are the network outputs f (docs/design.md, "Conventions"):

    L = (1/N) sum_n l_n,    l_n = -log p(y_n | f_n),    f = out of shape (N, D_out).

Besides the value and its gradient, each loss knows its output distribution,
which is what the curvature module needs:

- ``sample_targets(out, rng)`` draws y ~ p(y | f) for the true (Monte-Carlo)
  Fisher. The empirical Fisher uses the data labels instead, which is a
  different matrix (Kunstner et al. 2019);
- ``output_fisher_sqrt(out)`` gives S with sum_k S[k] S[k]^T =
  E_y[grad_f l grad_f l^T] per example, the Fisher w.r.t. the outputs. For an
  exponential family in its natural parameters this expectation equals the
  Hessian of l w.r.t. f, so the true Fisher and the generalised Gauss-Newton
  matrix coincide (Martens 2020, §9.2). Backpropagating the K columns of
  S gives the exact Fisher without sampling;
- ``output_hessian_product(out, v)`` gives H_n v_n without forming the
  (N, D_out, D_out) Hessians: with the layers' ``jvp`` it evaluates the
  curvature term (J δ)ᵀ H (J δ) of K-FAC's quadratic model (Martens & Grosse
  2015, §7);
- ``kl_divergence(out_p, out_q)`` gives KL(p(y | f_n) ‖ p(y | f'_n)) per
  example. Its Hessian in f' at f' = f is the output Fisher, which is why the
  Fisher is the local metric of the KL divergence (Amari 1998; Martens 2020,
  §9.1).

The three losses, in :mod:`minikfac.nn.likelihoods`: ``CrossEntropyLoss``
(categorical over softmax logits), ``MSELoss`` (Gaussian with unit variance),
``BCEWithLogitsLoss`` (independent Bernoullis over sigmoid logits). This
module holds what they share: :class:`Loss`.
"""


from minikfac import backend


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

    def nll_constant(self, d_out):
        """The constant the per-example NLL leaves out, a Python float (0 unless a subclass drops one).

        The exact log-likelihood of one example is ``-(per_example + nll_constant(d_out))``;
        the Laplace evidence needs it, the gradients never do.
        """
        return 0.0

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
        true Fisher of the parameters (Martens 2020, §9.1). The loss's
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
