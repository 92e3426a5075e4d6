"""One framework of benchmarks/laplace_vs_torch.py in its own process: minikfac, or laplace-torch on PyTorch.

Usage: python laplace_vs_torch_worker.py {minikfac|torch} IN.npz OUT.npz REPEATS THREADS

The process limits its BLAS/OpenMP (and torch's intra-op) threads to THREADS
before NumPy or torch start, reads IN.npz and writes its numbers to OUT.npz.

IN.npz holds the trained MLP in minikfac's layout: ``W{i}`` (out, in) and
``b{i}`` (out,) for the Linear layers i = 0, 1, ... with a ReLU between them;
``X_train`` (N, 64), ``y_train`` (N,), ``X_test`` (n, 64), all float64 but
the int64 labels; ``deltas`` (the fixed prior precisions δ, the first one also
the δ of the predictive); ``batch_size`` (of laplace-torch's DataLoader); and, for the torch side only, ``other_tuned_{key}``,
the δ minikfac chose, to evaluate laplace-torch's evidence there.

For each configuration ``key`` = "{subset}_{structure}" (subset "all" or
"last_layer", structure "full", "kron" or "diag"; minikfac's "kfac" is "kron"
here) OUT.npz gets:

- ``{key}_lml`` and ``{key}_logdet`` (len(deltas),): the log marginal
  likelihood and log det of the posterior precision at each δ;
- ``{key}_probs`` and ``{key}_fvar`` (n, C): the probit predictive and the
  logits' variances diag(J Σ Jᵀ) on X_test at δ = deltas[0];
- ``{key}_tuned`` and ``{key}_lml_tuned``: the δ each framework's own tuner
  picks and the evidence there (torch: also ``{key}_lml_other`` at minikfac's δ);
- ``{key}_loglik``, ``{key}_norm2``, ``{key}_params``: log p(D | θ*), ‖θ*‖², P;
- ``{key}_fit``, ``{key}_predict`` (REPEATS,): seconds for the fit (curvature
  and log-likelihood: minikfac's constructor, laplace-torch's constructor and
  ``fit``) and the probit predictive on X_test (including the factorisation
  each framework defers to first use); ``{key}_tune`` (1,): the tuning of δ
  and the evidence there, in the first repeat only;
- for "full": ``{key}_H`` the GGN summed over the data (P, P), for "diag" its
  diagonal (P,), both in the framework's own parameter order; for minikfac
  ``{key}_eigenvalues`` (P,) of the mean GGN (the evidence at any δ follows);
- for "kron": the factors, minikfac's ``{key}_A{i}`` (with the bias row/column
  last) and ``{key}_G{i}`` (means over the data), laplace-torch's
  ``{key}_Aw{i}``, ``{key}_Bw{i}`` (weight) and ``{key}_Bb{i}`` (bias); and,
  minikfac only, ``{key}_sep_lml``, ``{key}_sep_logdet``, ``{key}_sep_probs``,
  ``{key}_sep_fvar``, ``{key}_sep_tuned``: the same quantities for minikfac's factors arranged as
  laplace-torch arranges them (module docstring of laplace_vs_torch.py).

Repeats run round-robin over the configurations; the numbers above come from
the first repeat (later ones only add timings). ``version`` holds the
framework's version string(s).
"""

import os
import sys

FRAMEWORK, IN, OUT, REPEATS, THREADS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = THREADS

import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

SUBSETS = ("all", "last_layer")
STRUCTURES = ("full", "kron", "diag")
OURS = {"full": "full", "kron": "kfac", "diag": "diag"}


def layer_count(data):
    return sum(1 for name in data if name.startswith("W"))


# --------------------------------------------------------------------------- #
# minikfac
# --------------------------------------------------------------------------- #
def separate_bias_kfac(la, X_test, N, deltas):
    """minikfac's K-FAC factors arranged as laplace-torch's "kron": A_w ⊗ G per weight, G alone per bias.

    minikfac's block is N·(A ⊗ G) with A over [a; 1], so it couples a layer's
    weight and bias through the cross factor mean(a) ⊗ G; laplace-torch (its
    curvlinops backend, ``separate_weight_and_bias=True``) keeps two blocks,
    N·(A_w ⊗ G) for vec(W) and N·G for b. Returns the evidence and log det at
    each δ, the probit predictive and logit variances at deltas[0], and the δ
    that maximises this evidence.
    """
    import minikfac as mk
    from minikfac.curvature.kron import unvec, vec
    from minikfac.laplace.posterior import split_last_layer

    blocks = []  # per layer: (eigenvalues and vectors of A_w, of G, bias?)
    for kf in la.curvature.factors:
        a, UA = np.linalg.eigh(kf.A[:-1, :-1])
        g, UG = np.linalg.eigh(kf.G)
        blocks.append((np.maximum(a, 0), UA, np.maximum(g, 0), UG))
    eigenvalues = np.concatenate([np.concatenate([np.outer(a, g).ravel(), g]) for a, _, g, _ in blocks])
    norm2 = float(np.sum(la.mean ** 2))
    lml = [float(mk.laplace.log_marginal_likelihood(float(la.log_likelihood), norm2, eigenvalues, N, d))
           for d in deltas]
    logdet = [float(np.sum(np.log(N * eigenvalues + d))) for d in deltas]
    tuned = mk.laplace.maximise_evidence(norm2, eigenvalues, N)

    delta = deltas[0]
    if la.subset == "last_layer":
        body, model = split_last_layer(la.net, "benchmark")
        inputs = body(X_test)
    else:
        model, inputs = la.net, X_test
    (_, _, f, J), = list(mk.laplace.output_jacobians(model, la.loss_fn, inputs, chunk_size=len(inputs)))
    n, K, P = J.shape
    rows = J.reshape(n * K, P)
    solved = np.empty_like(rows)
    start = 0
    for (a, UA, g, UG), layer in zip(blocks, mk.curvature.parametrised_layers(model), strict=True):
        m, d_in = layer.weight.data.shape
        X = unvec(rows[:, start:start + m * d_in], m)  # (n·K, m, d_in): the weight parts as matrices
        rotated = UG.T @ X @ UA / (N * np.outer(g, a) + delta)
        solved[:, start:start + m * d_in] = vec(UG @ rotated @ UA.T)
        bias = rows[:, start + m * d_in:start + m * (d_in + 1)]
        solved[:, start + m * d_in:start + m * (d_in + 1)] = ((bias @ UG) / (N * g + delta)) @ UG.T
        start += m * (d_in + 1)
    covariance = np.einsum("nkp,nlp->nkl", J, solved.reshape(n, K, P))
    probs = mk.laplace.probit(f, covariance, "softmax")
    return lml, logdet, probs, np.diagonal(covariance, axis1=1, axis2=2).copy(), tuned


def run_minikfac(data, repeats):
    import minikfac as mk

    mk.set_default_dtype("float64")
    net = mk.models.mlp(data["W0"].shape[1], data[f"W{layer_count(data) - 1}"].shape[0],
                        hidden=tuple(data[f"W{i}"].shape[0] for i in range(layer_count(data) - 1)))
    for i, layer in enumerate(mk.curvature.parametrised_layers(net)):
        layer.weight.data[...] = data[f"W{i}"]
        layer.bias.data[...] = data[f"b{i}"]
    loss_fn = mk.nn.CrossEntropyLoss()
    X, y, X_test, deltas = data["X_train"], data["y_train"], data["X_test"], [float(d) for d in data["deltas"]]
    N = len(X)
    out = {"version": np.array(f"minikfac {mk.__version__}, NumPy {np.__version__}")}
    times = {}
    for repeat in range(repeats):
        for subset in SUBSETS:
            for structure in STRUCTURES:
                key = f"{subset}_{structure}"
                start = time.perf_counter()
                la = mk.laplace.Laplace(net, loss_fn, X, y, structure=OURS[structure], prior_precision=deltas[0],
                                        subset=subset)
                fitted = time.perf_counter()
                probs = la.predictive(X_test, method="probit")
                predicted = time.perf_counter()
                times.setdefault(f"{key}_fit", []).append(fitted - start)
                times.setdefault(f"{key}_predict", []).append(predicted - fitted)
                if repeat:
                    continue
                tuned = la.optimize_prior_precision()
                lml_tuned = float(la.log_marginal_likelihood())
                times[f"{key}_tune"] = [time.perf_counter() - predicted]
                la.prior_precision = deltas[0]
                out[f"{key}_probs"] = probs
                out[f"{key}_fvar"] = np.diagonal(la.functional_covariance(X_test)[1], axis1=1, axis2=2).copy()
                out[f"{key}_lml"] = np.array([float(la.log_marginal_likelihood(d)) for d in deltas])
                out[f"{key}_logdet"] = np.array([float(la.log_det_posterior_precision(d)) for d in deltas])
                out[f"{key}_tuned"], out[f"{key}_lml_tuned"] = np.array(tuned), np.array(lml_tuned)
                out[f"{key}_loglik"] = np.array(float(la.log_likelihood))
                out[f"{key}_norm2"] = np.array(float(np.sum(la.mean ** 2)))
                out[f"{key}_params"] = np.array(la.n_params)
                out[f"{key}_eigenvalues"] = la.curvature.eigenvalues()
                if structure == "full":
                    out[f"{key}_H"] = N * la.curvature.to_dense()
                elif structure == "diag":
                    out[f"{key}_H"] = N * la.curvature.diagonal
                else:
                    for i, kf in enumerate(la.curvature.factors):
                        out[f"{key}_A{i}"], out[f"{key}_G{i}"] = kf.A, kf.G
                    lml, logdet, sep_probs, sep_fvar, sep_tuned = separate_bias_kfac(la, X_test, N, deltas)
                    out[f"{key}_sep_lml"], out[f"{key}_sep_logdet"] = np.array(lml), np.array(logdet)
                    out[f"{key}_sep_tuned"] = np.array(sep_tuned)
                    out[f"{key}_sep_probs"], out[f"{key}_sep_fvar"] = sep_probs, sep_fvar
    out.update({name: np.array(seconds) for name, seconds in times.items()})
    return out


# --------------------------------------------------------------------------- #
# laplace-torch
# --------------------------------------------------------------------------- #
def run_torch(data, repeats):
    import importlib.metadata

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import laplace

    torch.set_num_threads(int(THREADS))
    # laplace-torch 0.3's curvlinops backend builds the "full" GGN as linop @ torch.eye(P), in the
    # DEFAULT dtype: left at float32 the GGN of a float64 net is only float32-accurate.
    torch.set_default_dtype(torch.float64)
    layers = []
    for i in range(layer_count(data)):
        linear = torch.nn.Linear(data[f"W{i}"].shape[1], data[f"W{i}"].shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(data[f"W{i}"]))  # torch's weight is (out, in) too
            linear.bias.copy_(torch.from_numpy(data[f"b{i}"]))
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).eval()
    X, y = torch.from_numpy(data["X_train"]), torch.from_numpy(data["y_train"])
    X_test = torch.from_numpy(data["X_test"])
    deltas = [float(d) for d in data["deltas"]]
    loader = DataLoader(TensorDataset(X, y), batch_size=int(data["batch_size"]))
    versions = {name: importlib.metadata.version(name) for name in
                ("laplace-torch", "curvlinops-for-pytorch", "backpack-for-pytorch", "asdfghjkl")}
    out = {"version": np.array(f"laplace-torch {versions['laplace-torch']} (curvlinops "
                               f"{versions['curvlinops-for-pytorch']}), torch {torch.__version__}")}
    times = {}
    for repeat in range(repeats):
        for subset in SUBSETS:
            for structure in STRUCTURES:
                key = f"{subset}_{structure}"
                start = time.perf_counter()
                la = laplace.Laplace(model, "classification", subset_of_weights=subset, hessian_structure=structure,
                                     prior_precision=deltas[0])  # every other default: backend CurvlinopsGGN
                la.fit(loader)
                fitted = time.perf_counter()
                with torch.no_grad():
                    probs = la(X_test, pred_type="glm", link_approx="probit")
                predicted = time.perf_counter()
                times.setdefault(f"{key}_fit", []).append(fitted - start)
                times.setdefault(f"{key}_predict", []).append(predicted - fitted)
                if repeat:
                    continue
                with warnings.catch_warnings():  # its reminder that link_approx defaults to probit
                    warnings.simplefilter("ignore")
                    la.optimize_prior_precision(pred_type="glm", method="marglik")  # Adam, 100 steps, scalar δ
                tuned = float(la.prior_precision.item())
                lml_tuned = float(la.log_marginal_likelihood().item())
                times[f"{key}_tune"] = [time.perf_counter() - predicted]
                with torch.no_grad():
                    lml, logdet = [], []
                    for d in deltas:
                        la.prior_precision = d
                        lml.append(float(la.log_marginal_likelihood().item()))
                        logdet.append(float(la.log_det_posterior_precision.item()))
                    la.prior_precision = float(data[f"other_tuned_{key}"])
                    out[f"{key}_lml_other"] = np.array(float(la.log_marginal_likelihood().item()))
                    la.prior_precision = deltas[0]
                    _, f_var = la._glm_predictive_distribution(X_test)
                out[f"{key}_probs"] = probs.numpy()
                out[f"{key}_fvar"] = torch.diagonal(f_var, dim1=1, dim2=2).numpy().copy()
                out[f"{key}_lml"], out[f"{key}_logdet"] = np.array(lml), np.array(logdet)
                out[f"{key}_tuned"], out[f"{key}_lml_tuned"] = np.array(tuned), np.array(lml_tuned)
                out[f"{key}_loglik"] = np.array(float(la.log_likelihood.item()))
                out[f"{key}_norm2"] = np.array(float((la.mean ** 2).sum().item()))
                out[f"{key}_params"] = np.array(la.n_params)
                if structure == "full" or structure == "diag":
                    out[f"{key}_H"] = la.H.numpy().copy()
                else:
                    for i, F in enumerate(la.H_facs.kfacs):  # [B, A] per weight, [B] per bias, layer by layer
                        name = f"Bw{i // 2}" if len(F) == 2 else f"Bb{i // 2}"
                        out[f"{key}_{name}"] = F[0].numpy().copy()
                        if len(F) == 2:
                            out[f"{key}_Aw{i // 2}"] = F[1].numpy().copy()
    out.update({name: np.array(seconds) for name, seconds in times.items()})
    return out


def main():
    with np.load(IN) as saved:
        data = {name: saved[name] for name in saved.files}
    out = run_minikfac(data, REPEATS) if FRAMEWORK == "minikfac" else run_torch(data, REPEATS)
    np.savez(OUT, **out)


if __name__ == "__main__":
    main()
