"""The exact Fisher of Martens & Grosse's network: time, memory, and the BLAS floor.

The network of Martens & Grosse 2015, Fig. 2: 256-20-20-20-20-20-10, tanh, on
16×16 MNIST (``minikfac.data.load("mnist16")``), P = 7,030 parameters, float64,
cross-entropy, true Fisher on N examples (default 1,000). The goal: at most
6 s on a 2-core machine and a peak memory of at most twice the P×P matrix.

Both ways of :func:`minikfac.curvature.exact.fisher` are measured:

- ``kronecker`` (the default for this net): F_ij = (1/N) Σ_n (ā_ni ā_njᵀ) ⊗ Γ_n^ij
  with Γ_n^ij = Σ_k g_nki g_nkjᵀ: products ā_iᵀ (d_i × N) times (N × P_j) per
  block i <= j and output unit o of layer i, 2·Σ_{i≤j} P_i P_j·N FLOPs, whatever K is;
- ``rows``: all K·N = 10·N rows J_nk (P each) in a symmetric rank-K·N update
  (BLAS syrk), K·P²·N FLOPs.

Next to each, its floor: the same BLAS calls on preallocated random operands
of the same shapes (the values do not change the time), i.e. what a perfect
implementation of that method would cost on this BLAS. Also timed:
``kfac_factors`` (K-FAC's A and G of every layer on the same data; goal < 1 s).

Timings are medians of ``--repeats`` calls, each printed, after a first call
that is reported apart: it also pays for fresh memory from the system (page
faults on the new P×P matrix). The contenders take turns, so that a passing
load on a shared machine slows them alike; the load average is printed. Peak
memory is measured with ``tracemalloc`` (NumPy reports its allocations to it)
in a separate call, as a multiple of the P×P matrix (P²·8 bytes). Training
the net first (``--train-steps``) does not change the times: the work is
dense linear algebra whatever the weights.

Usage: python benchmarks/exact_fisher.py [--examples 1000] [--repeats 3]
       [--train-steps 0] [--methods kronecker rows] [--json PATH]
"""

import argparse
import json
import os
import statistics
import time
import tracemalloc

import numpy as np
from scipy.linalg import blas

import minikfac as mk
from minikfac.curvature.exact import fisher
from minikfac.curvature.params import block_shape, parametrised_layers

SIZES = (256, 20, 20, 20, 20, 20, 10)


def build(examples, train_steps=0, seed=0):
    """The net (Xavier init, optionally trained ``train_steps`` SGD steps), X (N, 256), y (N,)."""
    mk.set_default_dtype("float64")
    mk.nn.init.manual_seed(seed)
    layers = []
    for i, (d_in, d_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(mk.nn.Linear(d_in, d_out))
        if i < len(SIZES) - 2:
            layers.append(mk.nn.Tanh())
    net = mk.nn.Sequential(*layers)
    data = mk.data.load("mnist16", dtype="float64")
    if examples > data.X_train.shape[0]:
        raise SystemExit(f"--examples: mnist16 has {data.X_train.shape[0]} training images, asked for {examples}")
    X, y = data.X_train[:examples], data.y_train[:examples]
    loss_fn = mk.nn.CrossEntropyLoss()
    optimizer = mk.optim.SGD(net.parameters(), lr=0.03, momentum=0.9)
    for step in range(train_steps):
        batch = slice((step * 100) % examples, (step * 100) % examples + 100)
        optimizer.zero_grad()
        loss_fn(net(X[batch]), y[batch])
        net.backward(loss_fn.backward(), input_grad=False)
        optimizer.step()
    net.zero_grad()
    if train_steps:
        accuracy = float((mk.to_numpy(net(X)).argmax(axis=1) == y).mean())
        print(f"after {train_steps} SGD steps: loss {float(loss_fn(net(X), y)):.3f}, accuracy {accuracy:.1%} on the N examples")
    return net, loss_fn, X, y


def measure(contenders, repeats):
    """Wall times of one first call and of ``repeats`` further calls of each callable.

    The contenders take turns (one call each per turn), so that other work on
    a shared machine slows them all alike. Returns {name: (first, [seconds, ...])}.
    """
    first = {}
    for name, fn in contenders.items():
        start = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - start
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"  {name:<18} first {first[name]:6.3f}, then " + "  ".join(f"{t:6.3f}" for t in values)
              + f"   median {statistics.median(values):.3f} s")
    return {name: (first[name], times[name]) for name in contenders}


def peak_memory(fn):
    """Peak bytes traced by tracemalloc during ``fn()`` (the result is dropped afterwards)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rows_floor(size, rows, chunk_rows=512):
    """One syrk pass over random rows (rows × P), ``chunk_rows`` at a time, into a P×P matrix."""
    rng = np.random.default_rng(0)
    J = rng.standard_normal((chunk_rows, size))
    C = np.zeros((size, size), order="F")

    def run():
        nonlocal C
        for start in range(0, rows, chunk_rows):
            part = J[:min(chunk_rows, rows - start)]
            C = blas.dsyrk(1.0, part.T, beta=1.0, c=C, trans=0, lower=0, overwrite_c=1)
    return run


def kronecker_floor(layers, examples):
    """The Kronecker method's products, bare: ā_iᵀ (d_i × N) times (N × P_j), for i <= j and each o."""
    rng = np.random.default_rng(0)
    shapes = [block_shape(layer) for layer in layers]  # (D_out, D_in + 1)
    inputs = [rng.standard_normal((examples, d)) for _, d in shapes]
    rights = [rng.standard_normal((examples, o * d)) for o, d in shapes]
    pairs = [(i, j) for i in range(len(shapes)) for j in range(i, len(shapes))]
    outputs = {(i, j): np.empty((inputs[i].shape[1], rights[j].shape[1])) for i, j in pairs}

    def run():
        for i, j in pairs:
            for _ in range(shapes[i][0]):  # one product per output unit of layer i
                np.matmul(inputs[i].T, rights[j], out=outputs[i, j])
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="N, examples of mnist16 (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (default 3)")
    parser.add_argument("--train-steps", type=int, default=0, help="SGD steps before measuring (default 0)")
    parser.add_argument("--methods", nargs="+", default=["kronecker", "rows"], choices=["kronecker", "rows"])
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.examples < 1 or args.repeats < 1 or args.train_steps < 0:
        parser.error("--examples and --repeats must be >= 1, --train-steps >= 0")

    net, loss_fn, X, y = build(args.examples, args.train_steps)
    layers = parametrised_layers(net)
    sizes = [o * d for o, d in map(block_shape, layers)]
    size, n, classes = sum(sizes), args.examples, SIZES[-1]
    matrix_bytes = size * size * 8
    flops = {"rows": float(classes) * size * size * n,
             "kronecker": sum(2.0 * sizes[i] * sizes[j] * n for i in range(len(sizes)) for j in range(i, len(sizes)))}
    print(f"Martens & Grosse net {'-'.join(map(str, SIZES))}, tanh, mnist16, N = {n}, P = {size:,}, float64, "
          f"true Fisher (K = {classes}); P×P = {matrix_bytes / 1e6:.0f} MB; after {args.train_steps} SGD steps; "
          f"load average {os.getloadavg()[0]:.2f}")
    results = {"examples": n, "parameters": size, "matrix_bytes": matrix_bytes, "train_steps": args.train_steps,
               "repeats": args.repeats, "load_average_before": os.getloadavg()[0], "methods": {}}
    contenders = {f"fisher {method}": lambda method=method: fisher(net, loss_fn, X, kind="true", method=method)
                  for method in args.methods}
    try:
        from minikfac.curvature.factors import kfac_factors
    except ImportError:
        kfac_factors = None
    if kfac_factors is not None:
        contenders["kfac_factors"] = lambda: kfac_factors(net, loss_fn, X, kind="true")
    times = measure(contenders, args.repeats)
    # The floors last: they keep their operands (hundreds of MB) for the whole
    # rotation, which changes how fast the kernel hands out fresh pages to others.
    floors = measure({f"floor {method}": rows_floor(size, classes * n) if method == "rows"
                      else kronecker_floor(layers, n) for method in args.methods}, args.repeats)
    for method in args.methods:
        first, values = times[f"fisher {method}"]
        seconds, floor = statistics.median(values), statistics.median(floors[f"floor {method}"][1])
        peak = peak_memory(lambda: fisher(net, loss_fn, X, kind="true", method=method))
        results["methods"][method] = {"seconds": seconds, "first_call_seconds": first, "times": values,
                                      "floor_seconds": floor, "floor_times": floors[f"floor {method}"][1],
                                      "peak_bytes": peak, "peak_over_matrix": peak / matrix_bytes,
                                      "flops": flops[method], "gflops": flops[method] / seconds / 1e9,
                                      "floor_gflops": flops[method] / floor / 1e9}
    if kfac_factors is not None:
        results["kfac_factors_seconds"] = statistics.median(times["kfac_factors"][1])
        results["kfac_factors_times"] = times["kfac_factors"][1]
    results["load_average_after"] = os.getloadavg()[0]

    print(f"\n{'':<18} {'median s':>9} {'first s':>8} {'floor s':>8} {'GFLOP/s':>8} {'floor GFLOP/s':>14} "
          f"{'peak / P²':>10}")
    for method, row in results["methods"].items():
        print(f"{'fisher ' + method:<18} {row['seconds']:>9.3f} {row['first_call_seconds']:>8.3f} "
              f"{row['floor_seconds']:>8.3f} {row['gflops']:>8.1f} {row['floor_gflops']:>14.1f} "
              f"{row['peak_over_matrix']:>10.2f}")
    if "kfac_factors_seconds" in results:
        print(f"{'kfac_factors':<18} {results['kfac_factors_seconds']:>9.3f}")
    print(f"goal: <= 6 s and peak <= 2 P²; load average after: {results['load_average_after']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
