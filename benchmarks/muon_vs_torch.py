"""minikfac's Muon against ``torch.optim.Muon`` on the same gradients: is it the same optimizer?

    python benchmarks/muon_vs_torch.py --torch-python /path/to/python-with-torch

Both optimizers, with their defaults, take ``--steps`` steps on weight matrices
of several shapes (wide, tall, square) from the same start and the same
sequence of random gradients; the torch side runs in its own process (the
interpreter given, which needs ``torch.optim.Muon``, PyTorch >= 2.9). The
script prints, after each step, the largest relative difference between the two
weight matrices of each shape.

What to expect: torch orthogonalises in bfloat16 (8 bits of mantissa), minikfac
in the parameters' dtype, so the two differ by bfloat16's rounding: on 2 CPU
cores with PyTorch 2.13, 1.6–3.0% of the distance moved after one step and
0.7–0.9% after ten. A different *definition* moves the weights by far more:
the last column runs minikfac with ``nesterov=False`` as that yardstick
(34–48% from the second step on; the first step is the same with or without
Nesterov, since the momentum is then the gradient itself).

Nothing here is a test: PyTorch is never a dependency of minikfac or of its tests.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import minikfac as mk

SHAPES = [(64, 32), (32, 64), (48, 48), (10, 100)]

TORCH_WORKER = r"""
import json, sys
import numpy as np
import torch
data = np.load(sys.argv[1])
shapes = json.loads(sys.argv[2])
steps = int(sys.argv[3])
out = {}
for k, shape in enumerate(shapes):
    w = torch.nn.Parameter(torch.tensor(data[f"w{k}"], dtype=torch.float32))
    opt = torch.optim.Muon([w])          # every default: lr 1e-3, weight decay 0.1, momentum 0.95, Nesterov
    trajectory = []
    for t in range(steps):
        w.grad = torch.tensor(data[f"g{k}"][t], dtype=torch.float32)
        opt.step()
        trajectory.append(w.detach().numpy().copy())
    out[f"w{k}"] = np.stack(trajectory)
np.savez(sys.argv[4], **out)
print(torch.__version__)
"""


def minikfac_trajectories(data, steps, **options):
    """minikfac's Muon on each shape: {shape index: (steps, m, n) weights}, float32."""
    mk.set_default_dtype("float32")
    result = {}
    for k in range(len(SHAPES)):
        param = mk.nn.Parameter(data[f"w{k}"].astype(np.float32).copy())
        opt = mk.optim.Muon([param], **options)
        trajectory = []
        for t in range(steps):
            param.grad = data[f"g{k}"][t].astype(np.float32).copy()
            opt.step()
            trajectory.append(param.data.copy())
        result[k] = np.stack(trajectory)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch-python", required=True, help="a Python interpreter that has torch.optim.Muon")
    parser.add_argument("--steps", type=int, default=10, help="steps per shape (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    rng = np.random.default_rng(args.seed)
    data = {}
    for k, shape in enumerate(SHAPES):
        data[f"w{k}"] = rng.standard_normal(shape).astype(np.float32) / np.sqrt(shape[1])
        data[f"g{k}"] = rng.standard_normal((args.steps, *shape)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = os.path.join(folder, "in.npz"), os.path.join(folder, "out.npz")
        np.savez(inputs, **data)
        done = subprocess.run([args.torch_python, "-c", TORCH_WORKER, inputs, json.dumps(SHAPES), str(args.steps),
                               outputs], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"the torch worker failed:\n{done.stderr[-2000:]}")
        with np.load(outputs) as saved:
            torch_runs = {k: saved[f"w{k}"] for k in range(len(SHAPES))}
    ours = minikfac_trajectories(data, args.steps)
    yardstick = minikfac_trajectories(data, args.steps, nesterov=False)
    print(f"minikfac {mk.__version__} against torch {done.stdout.strip()}, Muon with every default, "
          f"{args.steps} steps, float32")
    print("how far each has moved, ΔW = W_t − W_0: largest |ΔW_minikfac − ΔW_torch| / largest |ΔW_torch|, per shape "
          "(m, n); last column: minikfac with nesterov=False, the largest over the shapes")
    header = "step " + "".join(f"{str(shape):>12}" for shape in SHAPES) + f"{'no Nesterov':>14}"
    print(header)
    def gap(run, k, t):
        moved = torch_runs[k][t] - data[f"w{k}"]
        return np.abs((run[k][t] - data[f"w{k}"]) - moved).max() / np.abs(moved).max()

    for t in range(args.steps):
        gaps = [gap(ours, k, t) for k in range(len(SHAPES))]
        other = max(gap(yardstick, k, t) for k in range(len(SHAPES)))
        print(f"{t + 1:>4} " + "".join(f"{gap:>12.2e}" for gap in gaps) + f"{other:>14.2e}")


if __name__ == "__main__":
    main()
