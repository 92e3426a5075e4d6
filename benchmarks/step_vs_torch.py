"""One training step, minikfac (NumPy) against PyTorch (CPU), each in its own process.

A step is ``zero_grad``, forward, cross-entropy loss, backward and an SGD
(momentum 0.9) update, in float32, written the natural way in each framework:

    ours:  opt.zero_grad(); loss = loss_fn(net(X), y); net.backward(loss_fn.backward()); opt.step()
    torch: opt.zero_grad(); loss = loss_fn(net(X), y); loss.backward(); opt.step()

Cases: the CNN of ``minikfac.models.cnn((1, 28, 28), 10)`` at batch 32 and 128,
and the MLP 784-256-256-10 (ReLU) at batch 128 and 512. Both frameworks train
on successive mini-batches of the same MNIST images (training on one fixed
batch drives the gradients into float32 denormals, which slow matrix products
down 5-10x). The parent starts one worker process per framework, with the same
number of threads (``--threads``: OPENBLAS/OMP/MKL_NUM_THREADS for ours,
``torch.set_num_threads`` for PyTorch), and has them run blocks of steps in
turn (ours, torch, ours, torch, ...) so that drift of a shared machine hits
both alike. It reports the median over blocks of the time per step and the
ratio ours / torch.

``--layers`` instead times the forward and backward of each layer of our CNN
inside a real training step (medians, this process, no PyTorch).

Usage:
    python benchmarks/step_vs_torch.py [--torch-python PATH] [--threads 1] [--blocks 15] [--json out.json]
    python benchmarks/step_vs_torch.py --layers [--batch 128]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = {"cnn-32": ("cnn", 32), "cnn-128": ("cnn", 128), "mlp-128": ("mlp", 128), "mlp-512": ("mlp", 512)}
MLP_SIZES = (784, 256, 256, 10)


def batches(data, kind, batch, seed=0):
    """Endless successive mini-batches (X, y) as NumPy arrays, the same in both workers."""
    X = data["X"].reshape(len(data["X"]), -1) if kind == "mlp" else data["X"]
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(len(X))
        for start in range(0, len(X) - batch + 1, batch):
            rows = order[start:start + batch]
            yield X[rows], data["y"][rows]
        epoch += 1


# --------------------------------------------------------------------------- #
# The two frameworks' steps: each returns step(X, y) for host arrays X, y
# --------------------------------------------------------------------------- #
def ours(kind):
    import minikfac as mk

    mk.set_default_dtype("float32")
    mk.nn.init.manual_seed(0)
    if kind == "cnn":
        net = mk.models.cnn((1, 28, 28), 10)
    else:
        layers = [mk.nn.Linear(784, 256), mk.nn.ReLU(), mk.nn.Linear(256, 256), mk.nn.ReLU(), mk.nn.Linear(256, 10)]
        net = mk.nn.Sequential(*layers)
    loss_fn = mk.nn.CrossEntropyLoss()
    opt = mk.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(X, y):
        opt.zero_grad()
        loss = loss_fn(net(X), y)
        net.backward(loss_fn.backward())
        opt.step()
        return loss
    return step


def torch_step(kind):
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    if kind == "cnn":
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    else:
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(X, y):
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        opt.zero_grad()
        loss = loss_fn(net(X), y)
        loss.backward()
        opt.step()
        return loss
    return step


def worker(framework, threads, data_path):
    """Serve the parent: read {"case", "steps"} lines, answer the seconds per step of the block."""
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        version = f"PyTorch {torch.__version__}"
    else:
        version = f"NumPy {np.__version__}"
    make = torch_step if framework == "torch" else ours
    data = dict(np.load(data_path))
    steps, feeds = {}, {}
    print(json.dumps({"version": version}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        name = request["case"]
        if name not in steps:
            kind, batch = CASES[name]
            steps[name], feeds[name] = make(kind), batches(data, kind, batch)
        seconds = []
        for _ in range(request["steps"]):
            X, y = next(feeds[name])  # drawn outside the clock: both time the step alone
            start = time.perf_counter()
            float(steps[name](X, y))
            seconds.append(time.perf_counter() - start)
        print(json.dumps({"seconds": sum(seconds) / len(seconds)}), flush=True)


# --------------------------------------------------------------------------- #
# The parent: start the workers, alternate blocks, report
# --------------------------------------------------------------------------- #
class Worker:
    def __init__(self, python, framework, threads, data_path):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(
            [python, __file__, "--worker", framework, "--threads", str(threads), "--data", data_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.version = self._answer()["version"]

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args[2:4]} died (exit code {self.process.wait()})")
        return json.loads(line)

    def block(self, case, steps):
        self.process.stdin.write(json.dumps({"case": case, "steps": steps}) + "\n")
        self.process.stdin.flush()
        return self._answer()["seconds"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def torch_python(requested):
    """The interpreter for PyTorch's worker, or None (with the reason printed)."""
    python = requested or sys.executable
    found = subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0
    if not found:
        print(f"PyTorch cannot be imported by {python}: PyTorch is skipped "
              "(pass --torch-python PATH to an interpreter that has it)")
        return None
    return python


def compare(args):
    import minikfac as mk

    data = mk.data.load("mnist", flat=False, dtype="float32")
    with tempfile.TemporaryDirectory() as folder:
        data_path = os.path.join(folder, "mnist.npz")
        np.savez(data_path, X=data.X_train, y=data.y_train)
        workers = {"ours": Worker(sys.executable, "ours", args.threads, data_path)}
        python = torch_python(args.torch_python)
        if python:
            workers["torch"] = Worker(python, "torch", args.threads, data_path)
        print(f"{args.threads} thread(s); ours: {workers['ours'].version}"
              + (f"; torch: {workers['torch'].version} ({python})" if python else ""))
        rows = []
        for case in args.cases:
            print(f"{case}: warm-up", flush=True)
            for w in workers.values():
                w.block(case, args.warmup)
            times = {name: [] for name in workers}
            for b in range(args.blocks):
                for name, w in workers.items():  # alternate: ours, torch, ours, torch, ...
                    times[name].append(w.block(case, args.steps))
                print(f"{case}: block {b + 1}/{args.blocks}: "
                      + ", ".join(f"{name} {1e3 * t[-1]:.2f} ms" for name, t in times.items()), flush=True)
            row = {"case": case, "threads": args.threads,
                   **{f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()}}
            if "torch" in times:
                row["ratio"] = row["ours_ms"] / row["torch_ms"]
            rows.append(row)
        for w in workers.values():
            w.close()
    print(f"\nmedian time per step over {args.blocks} blocks of {args.steps} steps, {args.threads} thread(s)")
    print(f"{'case':<10}{'ours ms':>10}{'torch ms':>10}{'ours/torch':>12}")
    for row in rows:
        torch_ms = f"{row['torch_ms']:>10.2f}{row['ratio']:>12.2f}" if "ratio" in row else f"{'-':>10}{'-':>12}"
        print(f"{row['case']:<10}{row['ours_ms']:>10.2f}{torch_ms}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def layer_times(args):
    """Median forward and backward time of each layer of our CNN inside real training steps."""
    import minikfac as mk

    data = mk.data.load("mnist", flat=False, dtype="float32")
    mk.set_default_dtype("float32")
    mk.nn.init.manual_seed(0)
    net = mk.models.cnn((1, 28, 28), 10)
    loss_fn = mk.nn.CrossEntropyLoss()
    opt = mk.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    names = [f"{i} {type(layer).__name__}" for i, layer in enumerate(net)]
    forward, backward, step = {n: [] for n in names}, {n: [] for n in names}, []
    feed = batches({"X": data.X_train, "y": data.y_train}, "cnn", args.batch)
    for i in range(args.warmup + args.blocks * args.steps):
        X, y = next(feed)
        start = time.perf_counter()
        opt.zero_grad()
        for name, layer in zip(names, net):
            t = time.perf_counter()
            X = layer(X)
            forward[name].append(time.perf_counter() - t)
        loss_fn(X, y)
        dout = loss_fn.backward()
        for index in range(len(net) - 1, -1, -1):
            t = time.perf_counter()
            dout = net[index].backward(dout, input_grad=index > 0)
            backward[names[index]].append(time.perf_counter() - t)
        opt.step()
        step.append(time.perf_counter() - start)
    skip = args.warmup
    print(f"our CNN, batch {args.batch}, median ms over {len(step) - skip} steps "
          f"({os.environ.get('OPENBLAS_NUM_THREADS', 'default')} BLAS threads)")
    print(f"{'layer':<14}{'forward':>9}{'backward':>10}")
    for name in names:
        print(f"{name:<14}{1e3 * statistics.median(forward[name][skip:]):>9.2f}"
              f"{1e3 * statistics.median(backward[name][skip:]):>10.2f}")
    print(f"{'whole step':<14}{1e3 * statistics.median(step[skip:]):>19.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", help="interpreter with PyTorch (default: this one, if it has it)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--warmup", type=int, default=10, help="steps before the first block")
    parser.add_argument("--json", help="also write the table to this file")
    parser.add_argument("--layers", action="store_true", help="time our CNN's layers instead")
    parser.add_argument("--batch", type=int, default=128, help="batch size for --layers")
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.threads, args.data)
    elif args.layers:
        names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        if any(os.environ.get(name) != str(args.threads) for name in names):
            # BLAS reads them when NumPy starts: set them and start again.
            os.environ.update({name: str(args.threads) for name in names})
            os.execv(sys.executable, [sys.executable, *sys.argv])
        layer_times(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
