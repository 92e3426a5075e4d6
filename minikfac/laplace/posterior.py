"""The Laplace approximation of a trained network's posterior, in the structure of your choice.

Around the MAP θ* of the sum of the data's negative log-likelihood and the
prior's −log N(θ; 0, δ⁻¹I), the posterior is approximated by the Gaussian

    p(θ | D) ≈ N(θ*, Λ⁻¹),     Λ = N·F̂ + δI,

with F̂ the GGN (:mod:`minikfac.curvature.structures`, ``kind="ggn"``) as the
positive semi-definite stand-in for the Hessian of the mean loss, in one of
the structures "full", "block", "kfac", "ekfac", "diag". Every quantity of the
posterior goes through F̂'s common interface: ``eigenvalues`` for the evidence,
``solve`` for the predictive, ``to_dense`` / ``inverse`` for the dense precision
and covariance. MacKay 1992b for the method; Ritter et al. 2018a for its
Kronecker-factored form; Daxberger et al. 2021 (laplace-torch) for the
conventions followed here, so that numbers can be compared:

- the losses of :mod:`minikfac.nn` are means; the Laplace precision uses the
  SUM over the N examples, N·F̂ (laplace-torch's ``H`` with ``reduction="sum"``);
- the prior precision δ is a scalar, the prior mean 0;
- the log-likelihood keeps the likelihood's constant (the Gaussian's
  (D/2) log 2π for :class:`~minikfac.nn.MSELoss`, whose noise is 1).

"full" and "diag" then give laplace-torch's numbers to rounding
(``benchmarks/laplace_vs_torch.py``). "kfac" differs in one choice: minikfac's
block is A ⊗ G over W̄ = [W | b] (the bias as A's last row and column, with
its cross-terms to the weights), while laplace-torch's "kron" keeps two blocks
per layer, A_W ⊗ G for the weights and G for the bias; on the digits MLP of
that benchmark the coupled block's evidence is 32 nats higher at δ = 1.
"""

import numbers

import numpy as np

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.kron import unvec, vec
from minikfac.curvature.linalg import check_dense_size
from minikfac.curvature.params import check_finite, flatten, layer_sizes, parametrised_layers
from minikfac.curvature.structures import approximate, check_structure
from minikfac.laplace import evidence
from minikfac.laplace.predictive import (functional_covariance, layer_covariance, monte_carlo, output_jacobians,
                                         probit)
from minikfac.nn import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, Sequential

SUBSETS = ("all", "last_layer")
METHODS = ("probit", "mc", "map")


def split_last_layer(net, caller):
    """(body, head) of a Sequential whose last module is its last Linear/Conv2d layer."""
    if not isinstance(net, Sequential) or not net.layers or parametrised_layers(net)[-1] is not net.layers[-1]:
        got = (f"a Sequential ending in {type(net.layers[-1]).__name__}" if isinstance(net, Sequential) and net.layers
               else type(net).__name__)
        raise ValueError(f"{caller}: subset='last_layer' needs a Sequential ending in its last Linear layer "
                         f"(e.g. mk.models.mlp), got {got}")
    return Sequential(*net.layers[:-1]), Sequential(net.layers[-1])


def _check_data(X, y, caller):
    statistics.check_data(X, None, "ggn")
    if not backend.is_array(y) or y.shape[0] != X.shape[0]:
        got = tuple(y.shape) if backend.is_array(y) else type(y).__name__
        raise ValueError(f"{caller}: y must be an array with N = {X.shape[0]} rows (like X), got {got}")


class Laplace:
    """The Laplace posterior N(θ*, (N·F̂ + δI)⁻¹) of ``net`` at its current (trained) parameters.

    Parameters
    ----------
    net : the trained network (its parameters are θ*); read, never changed.
    loss_fn : :class:`~minikfac.nn.CrossEntropyLoss`, :class:`~minikfac.nn.BCEWithLogitsLoss`
        or :class:`~minikfac.nn.MSELoss`, the likelihood the net was trained with.
    X, y : the training data, (N, ...) and (N, ...).
    structure : "full", "block", "kfac", "ekfac" or "diag" (memory in
        :mod:`minikfac.curvature.structures`); "full" and "block" refuse, before
        allocating, a matrix above ``minikfac.curvature.linalg.MAX_DENSE_BYTES``.
    prior_precision : δ > 0, the prior N(0, δ⁻¹I); change it later, or tune it
        with :meth:`optimize_prior_precision`.
    subset : "all" parameters, or "last_layer": the posterior over the last
        Linear layer only, the rest fixed at θ* (a GLM on the body's features).
    kind : the curvature matrix, "ggn" (default) or any kind of
        :func:`minikfac.curvature.fisher` ("empirical" uses y). The exact GGN
        pulls back one cotangent per output, D_out per example: for a wide
        output (an autoencoder's 784 pixels) ``kind="mc"`` with a few
        ``samples`` (and ``seed``) costs D_out/samples times less, as
        laplace-torch's stochastic K-FAC does.
    chunk_size : examples per pass (default: a memory budget).

    The posterior is a snapshot of the net at construction: θ*, F̂ and the
    log-likelihood are stored then. If the net's parameters change afterwards,
    the predictive refuses (ValueError) rather than mix a new θ with the old
    Σ; build a new Laplace.

    Attributes
    ----------
    curvature : the :class:`~minikfac.curvature.approximation.Approximation` of the MEAN F̂ (P, P).
    mean : θ* (P,), canonical order (of the last layer only for ``subset="last_layer"``).
    n_data : N. n_params : P. log_likelihood : Σ_n log p(y_n | x_n, θ*), a 0-d array.
    """

    def __init__(self, net, loss_fn, X, y, structure="kfac", prior_precision=1.0, subset="all", kind="ggn",
                 samples=1, seed=0, chunk_size=None):
        caller = "Laplace"
        if not isinstance(loss_fn, (CrossEntropyLoss, BCEWithLogitsLoss, MSELoss)):
            got = type(loss_fn).__name__ if isinstance(loss_fn, Loss) else repr(loss_fn)
            raise TypeError(f"{caller}: loss_fn must be CrossEntropyLoss, BCEWithLogitsLoss or MSELoss, got {got}")
        self.structure = check_structure(structure, caller)
        if subset not in SUBSETS:
            raise ValueError(f"{caller}: subset must be one of {SUBSETS}, got {subset!r}")
        _check_data(X, y, caller)
        backend.check_same_backend(X=X, y=y, parameters=net.parameters()[0].data)
        check_finite(net, caller, X=X)
        statistics.check_kind(kind)
        self.net, self.loss_fn, self.subset, self.kind, self.chunk_size = net, loss_fn, subset, kind, chunk_size
        self.prior_precision = prior_precision
        self._body, self._model = split_last_layer(net, caller) if subset == "last_layer" else (None, net)
        sizes = layer_sizes(self._model)
        dtype = np.result_type(X.dtype, self._model.parameters()[0].data.dtype)
        where = f"{caller}(structure={structure!r})"
        if structure == "full":
            check_dense_size((sum(sizes),) * 2, dtype, where)
        elif structure == "block":
            check_dense_size([(size, size) for size in sizes], dtype, where)
        inputs = self._features(X)
        self.n_data = int(X.shape[0])
        self.log_likelihood = self._log_likelihood(inputs, y)  # first: it checks the labels before the long part
        self.mean = flatten(self._model).copy()
        self.n_params = int(self.mean.shape[0])
        self.curvature = approximate(self._model, loss_fn, inputs, structure, y=y, kind=kind, samples=samples, seed=seed,
                                     chunk_size=chunk_size)

    # -- the data ------------------------------------------------------------ #
    def _features(self, X):
        """X itself, or the body's outputs for the last-layer posterior."""
        if self._body is None:
            return X
        with self._body.mode(training=False):
            features = self._body(X)
        self._body.clear_cache()
        return features

    def _log_likelihood(self, inputs, y):
        xp = backend.get_array_module(inputs)
        step = self.chunk_size or 1024
        total = 0
        with self._model.mode(training=False):
            for start in range(0, inputs.shape[0], step):
                out = self._model(inputs[start:start + step])
                total = total + xp.sum(self.loss_fn.per_example(out, y[start:start + step]))
        self._model.clear_cache()
        return -(total + self.n_data * self.loss_fn.nll_constant(out.shape[1]))

    # -- the prior precision δ --------------------------------------------------- #
    @property
    def prior_precision(self):
        """δ, a Python float > 0; assigning checks it."""
        return self._prior_precision

    @prior_precision.setter
    def prior_precision(self, value):
        self._prior_precision = evidence.check_prior_precision(value, "Laplace")

    def _delta(self, prior_precision):
        if prior_precision is None:
            return self._prior_precision
        return evidence.check_prior_precision(prior_precision, "Laplace")

    def __repr__(self):
        return (f"Laplace(structure={self.structure!r}, subset={self.subset!r}, N={self.n_data}, "
                f"P={self.n_params}, prior_precision={self._prior_precision:.4g})")

    # -- the posterior -------------------------------------------------------- #
    def posterior_precision(self):
        """Λ = N·F̂ + δI, dense (P, P) in the canonical order (refused above the dense limit)."""
        dense = self.n_data * self.curvature.to_dense()
        xp = backend.get_array_module(dense)
        return dense + self._prior_precision * xp.eye(self.n_params, dtype=dense.dtype)

    def posterior_covariance(self):
        """Σ = Λ⁻¹ = (1/N)(F̂ + (δ/N)I)⁻¹, dense (P, P)."""
        return self.curvature.inverse(self._prior_precision / self.n_data) / self.n_data

    def posterior_variance(self):
        """diag(Σ), (P,): each parameter's marginal variance.

        For K-FAC, EKFAC and the diagonal without forming Σ: in a layer's basis
        U_A ⊗ U_G, Σ_ii = Σ_kl (U_G)_ik² (U_A)_jl² / precision_kl for entry (i, j).
        """
        xp = backend.get_array_module(self.mean)
        if not hasattr(self.curvature, "eigenbasis"):
            return xp.diagonal(self.posterior_covariance()).copy()
        parts = []
        for i, rows in enumerate(self._model_rows):
            U_A, U_G, precision = self._layer_basis(i, rows)
            if U_A is None:
                parts.append(1 / vec(precision))
            else:
                parts.append(vec((U_G * U_G) @ (1 / precision) @ (U_A * U_A).T))
        return xp.concatenate(parts)

    def log_det_posterior_precision(self, prior_precision=None):
        """log det Λ = Σ_k log(N λ_k + δ), a 0-d array (closed form in F̂'s eigenvalues)."""
        return evidence.log_det_precision(self.curvature.eigenvalues(), self.n_data, self._delta(prior_precision))

    def effective_parameters(self, prior_precision=None):
        """γ(δ) = Σ_k N λ_k / (N λ_k + δ), a 0-d array in [0, P]."""
        return evidence.effective_parameters(self.curvature.eigenvalues(), self.n_data, self._delta(prior_precision))

    def log_marginal_likelihood(self, prior_precision=None):
        """The Laplace evidence log p(D | δ) (:mod:`minikfac.laplace.evidence`), a 0-d array.

        ``prior_precision`` defaults to the current δ; any δ > 0 costs O(P), no new factorisation.
        """
        xp = backend.get_array_module(self.mean)
        return evidence.log_marginal_likelihood(self.log_likelihood, xp.sum(self.mean * self.mean),
                                                self.curvature.eigenvalues(), self.n_data,
                                                self._delta(prior_precision))

    def log_marginal_likelihood_derivative(self, prior_precision=None):
        """d/dδ of :meth:`log_marginal_likelihood`, ½(γ(δ)/δ − ‖θ*‖²), a 0-d array."""
        xp = backend.get_array_module(self.mean)
        return evidence.log_marginal_likelihood_derivative(xp.sum(self.mean * self.mean),
                                                           self.curvature.eigenvalues(), self.n_data,
                                                           self._delta(prior_precision))

    def optimize_prior_precision(self, bounds=(1e-8, 1e8)):
        """Set δ to the maximiser of the evidence within ``bounds`` (unique: it is concave in δ); return it."""
        xp = backend.get_array_module(self.mean)
        self.prior_precision = evidence.maximise_evidence(xp.sum(self.mean * self.mean),
                                                          self.curvature.eigenvalues(), self.n_data, bounds)
        return self._prior_precision

    # -- the predictive ---------------------------------------------------------- #
    @property
    def _model_rows(self):
        """m_l, the output size of each parametrised layer."""
        return [layer.weight.shape[0] for layer in parametrised_layers(self._model)]

    def _check_unchanged(self, X, caller):
        statistics.check_data(X, None, "ggn")
        backend.check_same_backend(X=X, parameters=self.mean)
        xp = backend.get_array_module(self.mean)
        if not bool(xp.array_equal(flatten(self._model), self.mean)):
            raise ValueError(f"Laplace.{caller}: the net's parameters changed since this Laplace was fitted at θ*; "
                             "its posterior would mix the new θ with the old Σ: build a new Laplace")

    def functional_covariance(self, X):
        """The linearised outputs' mean f(x, θ*) (n, K) and covariance J Σ Jᵀ (n, K, K) for inputs X (n, ...)."""
        self._check_unchanged(X, "functional_covariance")
        inputs = self._features(X)
        means, covariances = [], []
        if hasattr(self.curvature, "eigenbasis"):  # K-FAC, EKFAC, diagonal: no Jacobian is formed
            for chunk in statistics.chunks(self._model, self.loss_fn, inputs, kind="ggn",
                                           chunk_size=self.chunk_size or min(inputs.shape[0], 256)):
                means.append(chunk.output.copy())
                covariances.append(sum(layer_covariance(stats, *self._layer_basis(i, stats.grads.shape[-1]))
                                       for i, stats in enumerate(chunk.layers)))
        else:
            for _, _, f, jacobian in output_jacobians(self._model, self.loss_fn, inputs, self.chunk_size):
                means.append(f)
                covariances.append(functional_covariance(jacobian, self.curvature, self.n_data,
                                                         self._prior_precision))
        xp = backend.get_array_module(inputs)
        return xp.concatenate(means), xp.concatenate(covariances)

    def _layer_basis(self, i, rows):
        """(U_A, U_G, N·values + δ as an (m, n_A) matrix) of layer i's posterior precision."""
        U_A, U_G, values = self.curvature.eigenbasis(i)
        return U_A, U_G, unvec(self.n_data * values + self._prior_precision, rows)

    def predictive(self, X, method="probit", samples=100, seed=0):
        """The linearised (GLM) predictive for inputs X (n, ...).

        method : "probit", "mc" (``samples`` draws, ``seed``) or "map" (the
            network's own prediction at θ*, for comparison).

        Returns class probabilities (n, C) for CrossEntropyLoss, the
        probabilities of a 1 (n, D) for BCEWithLogitsLoss, and for MSELoss the
        predictive mean (n, D) and covariance J Σ Jᵀ + I (n, D, D) as a pair.
        """
        if method not in METHODS:
            raise ValueError(f"Laplace.predictive: method must be one of {METHODS}, got {method!r}")
        if method == "mc" and (isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1):
            raise ValueError(f"Laplace.predictive: samples must be a positive int for method='mc', got {samples!r}")
        if method == "map":
            self._check_unchanged(X, "predictive")
            inputs = self._features(X)
            with self._model.mode(training=False):
                mean = self._model(inputs)
            self._model.clear_cache()
            covariance = None
        else:
            mean, covariance = self.functional_covariance(X)
        xp = backend.get_array_module(mean)
        if isinstance(self.loss_fn, MSELoss):
            noise = xp.eye(mean.shape[1], dtype=mean.dtype)
            return mean, (noise * xp.ones((mean.shape[0], 1, 1), dtype=mean.dtype) if covariance is None
                          else covariance + noise)
        link = "softmax" if isinstance(self.loss_fn, CrossEntropyLoss) else "sigmoid"
        if method == "map":
            return probit(mean, xp.zeros(mean.shape + mean.shape[1:], dtype=mean.dtype), link)
        if method == "probit":
            return probit(mean, covariance, link)
        return monte_carlo(mean, covariance, link, int(samples), seed)
