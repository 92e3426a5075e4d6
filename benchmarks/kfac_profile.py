"""Where a K-FAC step's time goes: a profile grouped into the algorithm's parts.

Runs a few inverse periods of K-FAC (its defaults) on one race problem under
cProfile and groups the time by the function that does each part of the
step (the names of both the current optimizer and older ones are listed, so
the same script profiles an older checkout: ``PYTHONPATH=old/checkout python
benchmarks/kfac_profile.py``). The shares are of the whole training step
(forward, backward and ``opt.step``), the clock stopped outside it. cProfile
slows Python-heavy code more than BLAS-bound code; read the shares, and take
the step's milliseconds from ``benchmarks/kfac_step.py``.

Usage: OPENBLAS_NUM_THREADS=1 python benchmarks/kfac_profile.py [--problem mnist-autoencoder] [--batch-size 256]
       [--periods 3]
"""

import argparse
import cProfile
import pstats
import time

from minikfac import backend, data, models, nn, training
from minikfac.jobs import race_tracks, step_cost

#: part of the step -> the functions (file suffix, name) whose cumulative time it is; the first found counts.
PARTS = {
    "eigendecompositions (eigh)": [("linalg.py", "psd_eigh")],
    "Cholesky inverses": [("linalg.py", "damped_inverse")],
    "re-forming damped inverses when λ moves": [("kfac.py", "_factored_inverses")],
    "statistics pass (forward + sampled backward)": [("statistics.py", "_chunk_generator")],
    "Gram matrices A, G": [("factors.py", "input_factor_sum")],
    "quadratic model (JVPs, dots)": [("quadratic_model.py", "model_terms")],
    "new objective (guard, ρ)": [("kfac.py", "_objective_at"), ("kfac.py", "_objective")],
}


def cumulative(stats, suffix, name):
    """Total cumulative seconds of the functions called ``name`` in files ending with ``suffix``."""
    return sum(row[3] for (path, _, function), row in stats.stats.items()
               if function == name and path.endswith(suffix))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="mnist-autoencoder", choices=list(race_tracks.PROBLEMS))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--periods", type=int, default=3, help="inverse periods profiled (default 3)")
    args = parser.parse_args(argv)
    backend.set_default_dtype("float32")
    problem = race_tracks.PROBLEMS[args.problem]
    setup = race_tracks.prepare(problem)
    nn.init.manual_seed(0)
    net = models.build(problem.model, setup.dataset)
    loss_fn = setup.loss()
    opt = training.make_optimizer("kfac", net, loss_fn=loss_fn)
    batches = step_cost.cycle_batches(data.DataLoader(setup.X_train, setup.Y_train, args.batch_size, seed=0, drop_last=True))
    interval = opt.hyper["inverse_interval"]
    for _ in range(interval):  # warm-up: one inverse period
        training.train_step(net, loss_fn, opt, *next(batches))
    steps = args.periods * interval
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(steps):
        training.train_step(net, loss_fn, opt, *next(batches))
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    total = cumulative(stats, "training.py", "train_step")
    kfac = cumulative(stats, "kfac.py", "step")
    parts = {}
    for part, candidates in PARTS.items():
        parts[part] = next((t for t in (cumulative(stats, *c) for c in candidates) if t > 0), 0.0)
    # The preconditioner: minus what the older optimizer did inside it (re-forming the inverses).
    parts["applying the preconditioner"] = cumulative(stats, "kfac.py", "_precondition") - \
        parts["re-forming damped inverses when λ moves"]
    parts["forward and backward of the batch (the SGD part)"] = total - kfac
    parts["the rest of the K-FAC step (averages, checks, syncs)"] = kfac - sum(
        t for name, t in parts.items() if name != "forward and backward of the batch (the SGD part)")
    print(f"{args.problem}, batch {args.batch_size}, {steps} steps ({args.periods} inverse periods of {interval}), "
          f"K-FAC defaults; {1e3 * wall / steps:.1f} ms per step under cProfile")
    for part, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        if seconds > 0:
            print(f"  {part:<55} {1e3 * seconds / steps:7.2f} ms  {seconds / total:6.1%}")
    print(f"  {'whole step':<55} {1e3 * total / steps:7.2f} ms  100.0%")


if __name__ == "__main__":
    main()
