"""One training step of an MLP 784-256-256-10 (ReLU, float32): how close to BLAS?

A step is forward, cross-entropy loss, backward and an SGD update. Its matrix
products are the forward s = a Wᵀ (2·N·P_W FLOPs), the weight gradients gᵀ a
(2·N·P_W) and the input gradients g W of every layer but the first (nobody
needs dL/dX of the data: a network's ``net.backward(dout)`` skips it unless
asked with ``input_grad=True``, as PyTorch does). The usual count 6·N·P
therefore overstates the work by 2·N·784·256; we report both and compute
rates from the FLOPs really done.
Everything else is O(N·units) or O(P). We time, in one run:

- ``step``     the framework's step (median of many);
- ``products`` the same seven matrix products on the same shapes, bare — what
  a perfect framework would cost on this BLAS;
- ``peak``     a large square float32 matrix product: the BLAS's best rate.

Each contender runs 10 calls in a row per turn (warm caches, as in training);
the turns rotate so that drift of a shared machine hits all alike. We report
GFLOP/s for each, the step's rate as a fraction of the products' and of the
peak rate, and the framework overhead (step − products) as a fraction of the
step. If PyTorch is importable, its step on the same network is timed too,
separately (optional; never a dependency); ``benchmarks/step_vs_torch.py``
compares the two in separate processes, alternating, on real data.

Usage: python benchmarks/mlp_step.py [--repeats 30] [--batch-sizes 128 512] [--backend numpy]
"""

import argparse
import statistics
import time

import numpy as np

import minikfac as mk
from minikfac import backend

SIZES = (784, 256, 256, 10)


def build(batch, seed=0):
    mk.nn.init.manual_seed(seed)
    layers = []
    for i, (d_in, d_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(mk.nn.Linear(d_in, d_out, init="kaiming"))
        if i < len(SIZES) - 2:
            layers.append(mk.nn.ReLU())
    net = mk.nn.Sequential(*layers)
    rng = np.random.default_rng(seed)
    x = mk.asarray(rng.random((batch, SIZES[0]), dtype=np.float32))
    y = mk.asarray(rng.integers(0, SIZES[-1], size=batch))
    return net, x, y


def make_step(net, x, y):
    loss_fn = mk.nn.CrossEntropyLoss()
    opt = mk.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        net.backward(loss_fn.backward())  # skips dL/dX of the data
        opt.step()
        return loss
    return step


def make_products(batch):
    """The step's matrix products on preallocated arrays of the same shapes."""
    xp = backend.array_module()
    rng = np.random.default_rng(1)
    acts = [mk.asarray(rng.random((batch, d), dtype=np.float32)) for d in SIZES]
    weights = [mk.asarray(rng.random((o, i), dtype=np.float32)) for i, o in zip(SIZES[:-1], SIZES[1:])]

    def products():
        for a, w in zip(acts, weights):
            a @ w.T  # forward
        for i, (a, g, w) in enumerate(zip(acts[:-1], acts[1:], weights)):
            g.T @ a  # dW
            if i > 0:
                g @ w  # d(input), not for the data
        return xp.zeros(())
    return products


def make_peak(n=1024):
    rng = np.random.default_rng(2)
    a = mk.asarray(rng.random((n, n), dtype=np.float32))
    b = mk.asarray(rng.random((n, n), dtype=np.float32))
    return (lambda: a @ b), 2.0 * n**3


def make_torch_step(batch):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    layers = []
    for i, (d_in, d_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(d_in, d_out))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    x = torch.rand(batch, SIZES[0])
    y = torch.randint(0, SIZES[-1], (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def timed(fn, calls):
    """Seconds per call of ``fn`` over ``calls`` consecutive calls (device synced at the end)."""
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    backend.synchronize(out if backend.is_array(out) else None)
    return (time.perf_counter() - start) / calls


def measure(contenders, repeats, calls=10):
    """Median seconds per call of each callable.

    Contenders take turns in blocks of ``calls`` consecutive calls, so that slow
    drift of the machine hits all alike while each one runs with the warm
    caches it would have inside a training loop.
    """
    for fn in contenders.values():  # warm-up
        timed(fn, calls)
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            samples[name].append(timed(fn, calls))
    return {name: statistics.median(times) for name, times in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    args = parser.parse_args(argv)
    mk.set_backend(args.backend)
    mk.set_default_dtype("float32")
    params = sum(i * o + o for i, o in zip(SIZES[:-1], SIZES[1:]))
    peak_fn, peak_flops = make_peak()
    print(f"MLP {'-'.join(map(str, SIZES))}, ReLU, float32, P = {params:,}, backend {args.backend}, "
          f"median of {args.repeats} blocks of 10 steps")
    print(f"FLOPs per step: 6NP - 2N*{SIZES[0]}*{SIZES[1]} (no input gradient for the data) "
          f"= {6 * params - 2 * SIZES[0] * SIZES[1]:,}*N; 6NP would be {6 * params:,}*N")
    print(f"{'batch':>6} {'step ms':>8} {'products ms':>12} {'step GF/s':>10} {'products GF/s':>14} "
          f"{'peak GF/s':>10} {'step/products':>14} {'step/peak':>10} {'overhead':>9} {'torch ms':>9}")
    results = []
    for batch in args.batch_sizes:
        net, x, y = build(batch)
        contenders = {"step": make_step(net, x, y), "products": make_products(batch), "peak": peak_fn}
        t = measure(contenders, args.repeats)
        torch_step = make_torch_step(batch) if args.backend == "numpy" else None
        if torch_step is not None:
            # Timed on its own, after ours: PyTorch's worker threads keep spinning
            # after each call and would slow whatever runs next in a rotation.
            t["torch"] = measure({"torch": torch_step}, args.repeats)["torch"]
        flops = 6.0 * batch * params - 2.0 * batch * SIZES[0] * SIZES[1]  # what the step does
        rate = {k: flops / t[k] / 1e9 for k in ("step", "products")}
        peak_rate = peak_flops / t["peak"] / 1e9
        row = {"batch": batch, "step_ms": 1e3 * t["step"], "products_ms": 1e3 * t["products"],
               "step_gflops": rate["step"], "products_gflops": rate["products"], "peak_gflops": peak_rate,
               "step_over_products": rate["step"] / rate["products"], "step_over_peak": rate["step"] / peak_rate,
               "overhead": (t["step"] - t["products"]) / t["step"], "torch_ms": 1e3 * t.get("torch", np.nan)}
        results.append(row)
        print(f"{batch:>6} {row['step_ms']:>8.2f} {row['products_ms']:>12.2f} {row['step_gflops']:>10.1f} "
              f"{row['products_gflops']:>14.1f} {peak_rate:>10.1f} {row['step_over_products']:>14.0%} "
              f"{row['step_over_peak']:>10.0%} {row['overhead']:>9.0%} {row['torch_ms']:>9.2f}")
    return results


if __name__ == "__main__":
    main()
