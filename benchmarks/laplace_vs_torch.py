"""minikfac.laplace against laplace-torch on the same trained MLP: the same numbers, and how fast is each?

    .venv/bin/python benchmarks/laplace_vs_torch.py --torch-python /path/to/python-with-laplace-torch
        [--repeats 3] [--threads 1] [--batch-size 128] [--epochs 30] [--deltas 1 10] [--seed 0]

The torch interpreter needs torch and laplace-torch (``PATH -m pip install
laplace-torch``; never into minikfac's environment). Without them the script
says what is missing and exits 0. Note: pip's resolution of laplace-torch 0.3
pulls torchvision 0.29.1 and with it torch 2.14.1 (a CUDA build, 4 GB); the
numbers below were taken with torch 2.13.0+cpu reinstalled and torchvision
removed (laplace-torch does not import it; torchmetrics imports it only if present).

The net is ``mk.models.mlp(64, 10, hidden=(32,))`` (ReLU, P = 2,410), trained
briefly with Adam on ``mk.data.load("digits")`` (N = 1,438) in float64 and
handed to both frameworks; laplace-torch gets the equivalent
``torch.nn.Sequential(Linear, ReLU, Linear)`` in float64. For every
structure, "full", "kron" (minikfac's "kfac") and "diag", over all weights and
over the last layer, the script compares the log-likelihood at θ*, the log det
of the posterior precision and the log marginal likelihood at δ = 1 and 10, the
probit predictive and the logits' variances on the 359 test images at δ = 1,
the GGN itself (dense for "full", its diagonal for "diag", parameters permuted
to one order), the K-FAC factors (the eigenvalues of each weight block), and
the δ each framework's tuner picks with the evidence there (under both
frameworks). Each framework runs in its own process (the worker
benchmarks/laplace_vs_torch_worker.py; laplace-torch under ``--torch-python``),
one after the other, with ``--threads`` BLAS/torch threads; the data go through
temporary .npz files. Timings are medians of ``--repeats`` round-robin repeats:
"fit" (minikfac's constructor; laplace-torch's constructor + ``fit`` on a
DataLoader of ``--batch-size``), "predict" (the probit predictive on the test
set in one call, including any factorisation deferred to first use) and "tune"
(δ and the evidence there, timed once).

laplace-torch's definitions (read in its 0.3 source; paths under site-packages/laplace):

- Default backend ``CurvlinopsGGN`` for every structure (baselaplace.py:163-164).
  "full" is the exact GGN, ``linop @ torch.eye(P)`` of curvlinops'
  GGNLinearOperator (curvature/curvlinops.py:116-147); "diag" the exact GGN
  diagonal from torch.func Jacobians and the softmax Hessian
  (curvature/curvature.py:463-483, the Jacobians by ``jacrev`` of the whole
  batch's outputs, curvature.py:88-124); "kron" curvlinops' KFAC with
  ``FisherType.TYPE2`` (curvlinops.py:168-170): the exact expectation over the
  outputs (KFLR), not an MC sample (that is ``stochastic=True``), the same
  kind of factors as minikfac's ``kind="ggn"``.
- Sums over the data: the loss is ``CrossEntropyLoss(reduction="sum")``
  (curvature.py:70) and the precision is ``H + diag(δ)`` (baselaplace.py:1715,
  1862, 2129): minikfac's N·F̂ + δI. The K-FAC input factor is rescaled by M/N
  per batch of M (curvlinops.py:53-59, 109) and the batches' factors summed
  factor by factor (utils/matrix.py:79-98), so the batch size changes nothing.
- The K-FAC **bias**: ``separate_weight_and_bias=True`` (curvlinops.py:99), so
  each layer has TWO blocks, A_w ⊗ B for vec(W) and B alone for b
  (curvlinops.py:70-72). minikfac (Martens & Grosse's homogeneous coordinates)
  has ONE block A ⊗ G over [W | b], whose A carries the cross term mean(a);
  without it, it equals laplace-torch's. So "kron" is NOT the same matrix: the
  weight and bias blocks agree, the W–b coupling differs, and with it the
  evidence (by 10–32 nats here) and the predictive (up to 0.01 in a
  probability). Table 2 arranges minikfac's own factors laplace-torch's way
  and gets laplace-torch's numbers to ~1e-12.
- K-FAC damping: exact in the eigenbasis, log det = Σ log(a_i g_j + δ) and
  solves with 1/(a_i g_j + δ) (utils/matrix.py:381-456), unless
  ``damping=True`` (then (a_i + √δ)(g_j + √δ)); the default is False
  (baselaplace.py:1776).
- Evidence: ``log_likelihood − ½(log det Λ − log det P₀ + δ‖θ*‖²)``
  (baselaplace.py:1149), the log-likelihood of classification −Σ CE with no
  constant (baselaplace.py:238-264): minikfac's definition.
- The probit predictive: softmax(κ ⊙ f), κ = 1/√(1 + π/8 diag(J Σ Jᵀ))
  (baselaplace.py:703-704), as minikfac's.
- Tuning δ: ``optimize_prior_precision(method="marglik")`` runs Adam (lr 0.1)
  for 100 steps on log δ from δ = 1 (baselaplace.py:501-520), each step a new
  log det (for "full" a P×P one); a scalar δ for these classes, whose override
  (baselaplace.py:1499-1506) replaces the base class's default "diag"
  (line 400). No convergence test. minikfac finds the maximiser itself: the
  evidence is concave in δ, Brent's method on its derivative's root, O(P) per
  evaluation from F̂'s eigenvalues.
- Caveat: the "full" GGN is built with ``torch.eye`` in torch's DEFAULT dtype
  (curvlinops.py:141): with the default float32, a float64 net's GGN is
  accurate to ~2e-8 relative only. The worker sets
  ``torch.set_default_dtype(torch.float64)``.
- Cost: ``jacrev`` of a batch's (M, C) outputs takes M·C backward passes through
  the whole batch, so its time grows like M²: "diag" over all weights fits in
  ~54 s in one batch of 1,438 and ~1 s in batches of 64 (--batch-size).

What to expect (2 shared CPU cores, 1 thread each, minikfac with NumPy 2.4.6
against laplace-torch 0.3 / curvlinops 3.0.1 / torch 2.13.0+cpu, --repeats 3):
- "full" and "diag", all weights and last layer: the same numbers. The summed
  GGN agrees to 6e-16–2e-15 relative (torch's parameters permuted to
  minikfac's order), log det Λ and the evidence at δ = 1 and 10 to ≤ 1e-12
  absolute (values −1840 … −260 nats), the probit probabilities to ≤ 7e-15 and
  the logits' variances to ≤ 4e-14 relative; log p(D | θ*) to 1e-14.
- "kron": the factors agree (eigenvalues of every weight and bias block to
  ~1e-15), the bias convention does not (above). laplace-torch − minikfac:
  log det Λ +64.1 (all) / +21.1 (last layer) at δ = 1, evidence −32.0 / −10.5
  at δ = 1 and −11.6 / −3.3 at δ = 10, probabilities up to 0.010 / 0.0033,
  logit variances 4.5% / 1.1%. minikfac's factors arranged laplace-torch's way:
  ≤ 2e-12 in evidence and log det, ≤ 4e-14 in probabilities.
- δ: laplace-torch's 100 Adam steps land within 0.01–0.3% of the maximiser
  (full: 1.5951 vs 1.5974, diag: 5.3512 vs 5.3344; last layer 1.6388 vs 1.6390,
  3.8437 vs 3.8456; its own kron evidence: 2.3416 vs 2.3331 and 1.9046 vs
  1.9088), up to 3e-3 nats below the maximum.
- Seconds (fit + predict, medians of 3; minikfac / laplace-torch): all full
  7.6 / 15.8 (ratio 2.1), all kron 0.04 / 1.8 (47: minikfac's predictive for
  K-FAC and the diagonal never forms J, laplace-torch's takes jacrev
  Jacobians), all diag 0.61 / 3.9 (6.4), last layer 0.12 / 0.47 (full, 3.8),
  0.013 / 0.21 (kron, 16), 0.11 / 0.16 (diag, 1.5). An earlier run on a
  quieter machine: ratios 1.8, 49, 4.6, 2.4, 13, 1.05. Tuning δ: ≤ 5 ms in
  minikfac; laplace-torch 0.05–0.8 s, but 68–127 s for "full" over all
  weights (100 log dets of 2,410 × 2,410).

Nothing here is a test: PyTorch and laplace-torch are never dependencies of minikfac or of its tests.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import minikfac as mk

HERE = Path(__file__).resolve().parent
WORKER = HERE / "laplace_vs_torch_worker.py"
SUBSETS = ("all", "last_layer")
STRUCTURES = ("full", "kron", "diag")


def train(epochs, seed):
    """The MLP, trained with Adam on digits in float64; returns (net, data)."""
    mk.set_default_dtype("float64")
    mk.nn.init.manual_seed(seed)
    data = mk.data.load("digits")
    net = mk.models.mlp(64, 10, hidden=(32,))
    loss_fn = mk.nn.CrossEntropyLoss()
    adam = mk.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-3)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(data.X_train))
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            adam.zero_grad()
            loss_fn(net(data.X_train[batch]), data.y_train[batch])
            net.backward(loss_fn.backward())
            adam.step()
    return net, data


def torch_positions(sizes):
    """perm with θ_minikfac = θ_torch[perm] for Linear layers of (out, in) ``sizes``, every one with a bias.

    minikfac: per layer vec([W | b]), columns stacked (W[o, i] at i·out + o, b[o] at in·out + o);
    torch: per layer W row-major (W[o, i] at o·in + i), then b.
    """
    perm, offset = [], 0
    for out, d_in in sizes:
        weight = offset + np.arange(out * d_in).reshape(out, d_in)  # torch's positions of W[o, i]
        perm.append(weight.T.reshape(-1))  # in minikfac's order: i-major, o-minor
        perm.append(offset + out * d_in + np.arange(out))
        offset += out * (d_in + 1)
    return np.concatenate(perm)


def run_worker(python, framework, inputs, folder, repeats, threads):
    outputs = os.path.join(folder, f"{framework}.npz")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    done = subprocess.run([python, str(WORKER), framework, inputs, outputs, str(repeats), str(threads)],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"the {framework} worker failed:\n{done.stderr[-3000:]}")
    with np.load(outputs) as saved:
        return {name: saved[name] for name in saved.files}


def relative(a, b):
    """max |a − b| / max |b|."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def kron_factor_gap(ours, theirs, key, layers, N):
    """The largest relative gap between the eigenvalues of N·(A_w ⊗ G) (minikfac) and A_w ⊗ B (torch), and of G·N vs B."""
    gap = 0.0
    for i in range(layers):
        A, G = ours[f"{key}_A{i}"], ours[f"{key}_G{i}"]
        mine = np.sort(np.outer(np.linalg.eigvalsh(A[:-1, :-1]), N * np.linalg.eigvalsh(G)).ravel())
        other = np.sort(np.outer(np.linalg.eigvalsh(theirs[f"{key}_Aw{i}"]),
                                 np.linalg.eigvalsh(theirs[f"{key}_Bw{i}"])).ravel())
        gap = max(gap, relative(other, mine), relative(np.linalg.eigvalsh(theirs[f"{key}_Bb{i}"]),
                                                       N * np.linalg.eigvalsh(G)))
    return gap


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch-python", required=True, help="a Python interpreter with torch and laplace-torch")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per setting (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads per framework (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=30, help="Adam epochs of the MLP (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="laplace-torch's DataLoader batch size for fit (default: %(default)s)")
    parser.add_argument("--deltas", type=float, nargs="+", default=[1.0, 10.0],
                        help="prior precisions δ of the evidence; the first is the predictive's (default: 1 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.batch_size < 1 or args.epochs < 0 or min(args.deltas) <= 0:
        parser.error("--repeats, --threads and --batch-size must be >= 1, --epochs >= 0 and every δ > 0")

    try:
        probe = subprocess.run([args.torch_python, "-c", "import torch, laplace, curvlinops"], capture_output=True,
                               text=True)
        missing = probe.stderr.strip()[-1000:] if probe.returncode else ""
    except OSError as error:
        missing = str(error)
    if missing:
        print(f"{args.torch_python} cannot import torch, laplace-torch and curvlinops; install them into that "
              f"interpreter (python -m pip install laplace-torch):\n{missing}")
        return
    net, data = train(args.epochs, args.seed)
    layers = mk.curvature.parametrised_layers(net)
    sizes = [layer.weight.data.shape for layer in layers]
    accuracy = float(np.mean(np.argmax(net(data.X_test), axis=1) == data.y_test))
    N = len(data.X_train)
    payload = {"X_train": data.X_train, "y_train": data.y_train, "X_test": data.X_test,
               "deltas": np.array(args.deltas, dtype=np.float64), "batch_size": np.array(args.batch_size)}
    for i, layer in enumerate(layers):
        payload[f"W{i}"], payload[f"b{i}"] = layer.weight.data, layer.bias.data
    with tempfile.TemporaryDirectory() as folder:
        inputs = os.path.join(folder, "in.npz")
        np.savez(inputs, **payload)
        ours = run_worker(sys.executable, "minikfac", inputs, folder, args.repeats, args.threads)
        for subset in SUBSETS:
            for structure in STRUCTURES:
                payload[f"other_tuned_{subset}_{structure}"] = ours[f"{subset}_{structure}_tuned"]
        np.savez(inputs, **payload)
        theirs = run_worker(args.torch_python, "torch", inputs, folder, args.repeats, args.threads)

    d0 = args.deltas[0]
    print(f"{ours['version']}  against  {theirs['version']}; {args.threads} thread(s) each, "
          f"laplace-torch fits in batches of {args.batch_size}")
    print(f"MLP 64-32-10 (ReLU), float64, {args.epochs} Adam epochs on digits: N = {N}, "
          f"test accuracy {accuracy:.3f}; δ = {', '.join(f'{d:g}' for d in args.deltas)}")
    print("\n1. The same numbers? minikfac's value, and Δ = laplace-torch − minikfac (relative where marked)")
    header = (f"{'config':<18}{'P':>6}{'Δ loglik':>10}{'GGN rel':>10}"
              + "".join(f"{'logdet Λ δ=' + format(d, 'g'):>16}{'Δ':>10}" for d in args.deltas)
              + "".join(f"{'log evid δ=' + format(d, 'g'):>16}{'Δ':>10}" for d in args.deltas)
              + f"{'max|Δp|':>10}{'var f rel':>10}")
    print(header)
    for subset in SUBSETS:
        for structure in STRUCTURES:
            key = f"{subset}_{structure}"
            model_sizes = sizes if subset == "all" else sizes[-1:]
            if structure == "full":
                perm = torch_positions(model_sizes)
                ggn = relative(theirs[f"{key}_H"][np.ix_(perm, perm)], ours[f"{key}_H"])
            elif structure == "diag":
                ggn = relative(theirs[f"{key}_H"][torch_positions(model_sizes)], ours[f"{key}_H"])
            else:
                ggn = kron_factor_gap(ours, theirs, key, len(model_sizes), N)
            row = (f"{subset + ' ' + ('kron/kfac' if structure == 'kron' else structure):<18}"
                   f"{int(ours[f'{key}_params']):>6}{float(theirs[f'{key}_loglik'] - ours[f'{key}_loglik']):>10.1e}"
                   f"{ggn:>10.1e}")
            for name in ("logdet", "lml"):
                for j in range(len(args.deltas)):
                    row += f"{float(ours[f'{key}_{name}'][j]):>16.4f}"
                    row += f"{float(theirs[f'{key}_{name}'][j] - ours[f'{key}_{name}'][j]):>10.2e}"
            row += f"{np.abs(theirs[f'{key}_probs'] - ours[f'{key}_probs']).max():>10.1e}"
            row += f"{relative(theirs[f'{key}_fvar'], ours[f'{key}_fvar']):>10.1e}"
            print(row)
    print("   GGN rel: max|ΔH|/max|H| of the summed GGN, torch's parameters permuted to minikfac's order "
          "(kron: the eigenvalues of each weight block A_w⊗B vs N·A_w⊗G, and of the bias block B vs N·G)")

    print("\n2. kron with laplace-torch's bias convention: minikfac's own factors as two blocks per layer, "
          "N·A_w⊗G and N·G (no W–b coupling); Δ = laplace-torch − this;\n   δ* this: the maximiser of this evidence "
          "(closed form), δ torch: laplace-torch's Adam; last column: minikfac's evidence − this, at δ = "
          f"{args.deltas[0]:g}")
    print(f"{'config':<18}" + "".join(f"{'Δ logdet δ=' + format(d, 'g'):>16}{'Δ evid δ=' + format(d, 'g'):>16}"
                                      for d in args.deltas)
          + f"{'max|Δp|':>10}{'var f rel':>10}{'δ* this':>10}{'δ torch':>10}{'evid: coupled − separate':>26}")
    for subset in SUBSETS:
        key = f"{subset}_kron"
        row = f"{subset + ' kron':<18}"
        for j in range(len(args.deltas)):
            row += f"{float(theirs[f'{key}_logdet'][j] - ours[f'{key}_sep_logdet'][j]):>16.2e}"
            row += f"{float(theirs[f'{key}_lml'][j] - ours[f'{key}_sep_lml'][j]):>16.2e}"
        row += f"{np.abs(theirs[f'{key}_probs'] - ours[f'{key}_sep_probs']).max():>10.1e}"
        row += f"{relative(theirs[f'{key}_fvar'], ours[f'{key}_sep_fvar']):>10.1e}"
        row += f"{float(ours[f'{key}_sep_tuned']):>10.5g}{float(theirs[f'{key}_tuned']):>10.5g}"
        row += f"{float(ours[f'{key}_lml'][0] - ours[f'{key}_sep_lml'][0]):>26.3f}"
        print(row)

    print("\n3. The tuned δ: minikfac's maximiser (closed form) and laplace-torch's (Adam on log δ, 100 steps), "
          "and the log evidence at each under each framework")
    print(f"{'config':<18}{'δ minikfac':>12}{'δ torch':>12}{'ours @ ours δ':>16}{'ours @ torch δ':>16}"
          f"{'torch @ ours δ':>16}{'torch @ torch δ':>16}")
    for subset in SUBSETS:
        for structure in STRUCTURES:
            key = f"{subset}_{structure}"
            at_theirs = float(mk.laplace.log_marginal_likelihood(float(ours[f"{key}_loglik"]), float(ours[f"{key}_norm2"]),
                                                                 ours[f"{key}_eigenvalues"], N,
                                                                 float(theirs[f"{key}_tuned"])))
            print(f"{subset + ' ' + structure:<18}{float(ours[f'{key}_tuned']):>12.5g}"
                  f"{float(theirs[f'{key}_tuned']):>12.5g}{float(ours[f'{key}_lml_tuned']):>16.4f}{at_theirs:>16.4f}"
                  f"{float(theirs[f'{key}_lml_other']):>16.4f}{float(theirs[f'{key}_lml_tuned']):>16.4f}")

    print(f"\n4. Seconds: fit and probit predictive on {len(data.X_test)} test images (δ = {d0:g}), medians of "
          f"{args.repeats}; tuning δ (one run); ratio = laplace-torch / minikfac of fit + predict")
    print(f"{'config':<18}{'fit':>9}{'predict':>9}{'tune':>9}{'fit':>9}{'predict':>9}{'tune':>9}{'ratio':>8}")
    print(f"{'':<18}{'-------- minikfac ---------':>27}{'------ laplace-torch ------':>27}")
    for subset in SUBSETS:
        for structure in STRUCTURES:
            key = f"{subset}_{structure}"
            medians = {(who, name): statistics.median(run[f"{key}_{name}"].tolist())
                       for who, run in (("ours", ours), ("theirs", theirs)) for name in ("fit", "predict", "tune")}
            ratio = ((medians["theirs", "fit"] + medians["theirs", "predict"])
                     / (medians["ours", "fit"] + medians["ours", "predict"]))
            print(f"{subset + ' ' + structure:<18}"
                  + "".join(f"{medians[who, name]:>9.3f}" for who in ("ours", "theirs")
                            for name in ("fit", "predict", "tune"))
                  + f"{ratio:>8.2f}")


if __name__ == "__main__":
    main()
