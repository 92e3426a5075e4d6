"""Inverting a layer's K-FAC block: through its factors (O(m³ + n³)) or densely (O((m·n)³)).

A layer's block A ⊗ G has size (m·n, m·n) for A (n, n) and G (m, m). K-FAC
never inverts it: (A ⊗ G + λI)⁻¹ is applied through the eigendecompositions
of A and G (Martens & Grosse 2015, §6.3; Van Loan 2000), which is what
``KroneckerFactors(A, G).eigen()`` computes and caches. The dense alternative
inverts the (m·n)² matrix. For square layers m = n = w the costs grow like
w³ and (w²)³ = w⁶: on log-log axes, slopes 3 and 6.

We time, for widths w from ``--min-width`` growing by √2:

- ``factored``  both factors' ``eigh`` (what K-FAC does, via minikfac);
- ``dense``     ``numpy.linalg.inv`` of the formed kron(A, G) (forming it is
                not timed), until one inverse takes ``--dense-limit`` seconds.

Each time is the median of ``--repeats`` runs, float64, NumPy with its BLAS
threads. Slopes come from ``numpy.polyfit`` of log time on log width over the
largest ``--fit-points`` widths of each series (small sizes measure overhead,
not the asymptotic cost). Before timing, the two inverses are checked to agree.

Usage: python benchmarks/kron_inverse.py [--max-width 2048] [--dense-limit 2]
       [--repeats 5] [--json PATH] [--out DIR]
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from minikfac.curvature.kron import KroneckerFactors


def spd(width, rng):
    """A well-conditioned symmetric positive definite (w, w) factor, like a damped K-FAC factor."""
    M = rng.standard_normal((width, width))
    return M @ M.T / width + 0.5 * np.eye(width)


def median_seconds(function, repeats):
    """Median wall time of ``repeats`` calls of ``function``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def widths_from(min_width, max_width):
    """Widths min_width·√2^k (rounded) up to max_width."""
    widths, k = [], 0
    while True:
        width = int(round(min_width * 2 ** (k / 2)))
        if width > max_width:
            return widths
        if not widths or width != widths[-1]:
            widths.append(width)
        k += 1


def check_agreement(width=8, seed=0):
    """The factored inverse equals the dense one (to 1e-10 relative) before anything is timed."""
    rng = np.random.default_rng(seed)
    A, G = spd(width, rng), spd(width, rng)
    dense = np.linalg.inv(np.kron(A, G))
    factored = KroneckerFactors(A, G).inverse()
    error = np.abs(dense - factored).max() / np.abs(dense).max()
    if error > 1e-10:
        raise AssertionError(f"factored and dense inverses differ: relative error {error:.3g}")
    return error


def measure(widths, repeats, dense_limit, seed=0):
    """Median seconds per width: (factored list, dense list with None after the limit)."""
    rng = np.random.default_rng(seed)
    factored, dense = [], []
    dense_on = True
    for width in widths:
        A, G = spd(width, rng), spd(width, rng)
        factored.append(median_seconds(lambda: KroneckerFactors(A, G).eigen(), repeats))
        if dense_on:
            block = np.kron(A, G)
            dense.append(median_seconds(lambda: np.linalg.inv(block), repeats))
            dense_on = dense[-1] < dense_limit
        else:
            dense.append(None)
        shown = "—" if dense[-1] is None else f"{dense[-1]:.3g}"
        print(f"  w = {width:5d}: factored {factored[-1]:.3g} s, dense {shown} s", flush=True)
    return factored, dense


def fitted_slope(widths, times, points):
    """Slope of log(time) against log(width) over the last ``points`` measured widths, and those widths."""
    measured = [(w, t) for w, t in zip(widths, times) if t is not None]
    used = measured[-points:]
    if len(used) < 2:
        return None, [w for w, _ in used]
    slope = np.polyfit(np.log([w for w, _ in used]), np.log([t for _, t in used]), 1)[0]
    return float(slope), [w for w, _ in used]


def print_table(widths, factored, dense):
    print(f"{'width':>6} {'block size':>11} {'factored (s)':>13} {'dense (s)':>11} {'dense/factored':>15}")
    for w, f, d in zip(widths, factored, dense):
        dense_text = "—" if d is None else f"{d:.3e}"
        ratio = "—" if d is None else f"{d / f:.0f}×"
        print(f"{w:6d} {w * w:11d} {f:13.3e} {dense_text:>11} {ratio:>15}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-width", type=int, default=8)
    parser.add_argument("--max-width", type=int, default=2048, help="largest width for the factored inverse")
    parser.add_argument("--dense-limit", type=float, default=2.0,
                        help="stop the dense inverse after the first width where it takes this many seconds")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fit-points", type=int, default=3, help="largest widths used for each slope")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the measurements as JSON")
    parser.add_argument("--out", metavar="DIR", help="write the log-log figure kron_inverse.png here")
    args = parser.parse_args(argv)
    if args.min_width < 1 or args.max_width < args.min_width or args.repeats < 1 or args.fit_points < 2:
        parser.error("need 1 <= min-width <= max-width, repeats >= 1 and fit-points >= 2")

    error = check_agreement(seed=args.seed)
    print(f"factored and dense inverses agree (relative error {error:.1e} at w = 8)")
    widths = widths_from(args.min_width, args.max_width)
    factored, dense = measure(widths, args.repeats, args.dense_limit, args.seed)
    print_table(widths, factored, dense)
    slopes, fit_widths = {}, {}
    for label, times in (("factored (eigh of A and G)", factored), ("dense inv(A ⊗ G)", dense)):
        slopes[label], fit_widths[label] = fitted_slope(widths, times, args.fit_points)
        shown = "n/a" if slopes[label] is None else f"{slopes[label]:.2f}"
        print(f"log-log slope of {label}: {shown} (fitted on widths {fit_widths[label]}; theory: "
              f"{3 if label.startswith('factored') else 6})")

    results = {
        "widths": widths, "block_sizes": [w * w for w in widths],
        "seconds": {"factored (eigh of A and G)": factored, "dense inv(A ⊗ G)": dense},
        "slopes": slopes, "fit_widths": fit_widths, "repeats": args.repeats, "statistic": "median",
        "dense_limit_s": args.dense_limit, "dtype": "float64", "numpy": np.__version__,
        "machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
        "check_relative_error": error,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"wrote {args.json}")
    if args.out:
        from minikfac import plot  # matplotlib only when a figure is asked for

        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "kron_inverse.png")
        plot.scaling_loglog(widths, results["seconds"], path,
                            title="Inverting a layer block A ⊗ G (square layers, float64)", slopes=slopes)
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
