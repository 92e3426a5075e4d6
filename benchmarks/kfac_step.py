"""Per-step cost of K-FAC, Shampoo, SOAP, Muon and Adam against SGD, and how it grows with the batch size.

On the net of each race problem (:data:`minikfac.jobs.race_tracks.PROBLEMS`: digits-MLP,
MNIST-CNN, the MNIST autoencoder) and at each batch size, every method trains
on successive mini-batches in blocks of 2T consecutive steps (T = 20, K-FAC's
inverse interval and a multiple of Shampoo's and SOAP's refresh interval, 10),
so that a K-FAC block holds two refreshes of its inverses and the steps
between them: its real average (and so for Shampoo and SOAP). The
methods take turns block by block (drift of a shared machine hits all alike);
we report the median seconds per step over the repeats, the ratios to SGD
measured in the same run, and each method's log-log slope of time against
batch size over the measured sizes (1 = linear in the batch; K-FAC's
eigendecompositions do not grow with it, so its ratio to SGD falls as the
batch grows, until its statistics, a fixed fraction of the batch, dominate).

Usage: python benchmarks/kfac_step.py [--problems digits-mlp,mnist-cnn,mnist-autoencoder]
       [--methods sgd,adam,kfac,shampoo,soap,muon] [--batch-sizes 64 128 256 512 1024] [--repeats 3]
       [--json PATH] [--out DIR]
"""

import argparse
import json
import os
import time

import numpy as np

from minikfac import backend, plot
from minikfac.jobs import race_tracks, step_cost


def slope(sizes, seconds):
    """Least-squares slope of log(seconds) against log(batch size), over the measured points."""
    points = [(s, t) for s, t in zip(sizes, seconds, strict=True) if t is not None]
    if len(points) < 2:
        return None
    x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(race_tracks.PROBLEMS), help="comma-separated (default: all)")
    parser.add_argument("--methods", default=",".join(race_tracks.METHODS),
                        help="comma-separated, SGD first: the ratios are to its step (default: all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per method (default 3)")
    parser.add_argument("--periods", type=int, default=2, help="inverse periods per block (default 2)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--json", metavar="PATH", help="write the measurements as JSON")
    parser.add_argument("--out", metavar="DIR", help="write the figure kfac_step.png here")
    args = parser.parse_args(argv)
    backend.set_backend(args.backend)
    backend.set_default_dtype("float32")
    started = time.perf_counter()
    methods = race_tracks.check_methods(name for name in args.methods.split(",") if name)
    results = []
    for name in args.problems.split(","):
        cost = step_cost.step_cost(name, args.batch_sizes, args.repeats, args.periods, methods=methods, log=print)
        cost["slopes"] = {m: slope(cost["batch_sizes"], s) for m, s in cost["seconds"].items()}
        results.append(cost)
    seconds = time.perf_counter() - started

    print(f"\nms per step, median of {args.repeats} blocks of {results[0]['steps_per_block']} steps "
          f"(K-FAC: T = {results[0]['inverse_interval']}); {args.backend}, float32")
    others = [m for m in methods if m != "sgd"]
    print(f"{'net':<18}{'batch':>6}" + "".join(f"{m:>9}" for m in methods) + "".join(f"{m + '/sgd':>13}" for m in others))
    for cost in results:
        for i, size in enumerate(cost["batch_sizes"]):
            ms = [cost["seconds"][m][i] for m in methods]
            ratios = [cost["ratio_to_sgd"][m][i] for m in others]
            print(f"{cost['problem']:<18}{size:>6}" + "".join("        —" if t is None else f"{1e3 * t:>9.1f}" for t in ms)
                  + "".join("            —" if r is None else f"{r:>13.2f}" for r in ratios))
        print(f"{'':<18}{'slope':>6}" + "".join("        —" if cost["slopes"][m] is None else
                                                f"{cost['slopes'][m]:>9.2f}" for m in methods))
    print(f"time: {seconds:.0f} s")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        print("wrote " + plot.step_cost(results, os.path.join(args.out, "kfac_step.png"), goal=step_cost.STEP_COST_GOAL))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "dtype": "float32", "seconds": seconds, "results": results}, f,
                      indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
