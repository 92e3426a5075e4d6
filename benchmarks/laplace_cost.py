"""What each Laplace structure costs on nets too big for the exact GGN.

    python benchmarks/laplace_cost.py [--examples 2000] [--repeats 3]

Two nets on MNIST (28×28, the bundled 5,000-image subset), at their initial
weights (the cost does not depend on training):

- the MNIST MLP 784-256-128-10 (P = 235,146), cross-entropy, the exact GGN
  (10 cotangents per example);
- the deep autoencoder 784-200-100-30-100-200-784 (P = 361,014), Bernoulli
  outputs, the Monte-Carlo GGN with one sample (the exact one would pull back
  784 cotangents per example: ``kind="mc"``, as laplace-torch's stochastic K-FAC).

For each of "kfac", "ekfac", "diag" (and "block", which is refused before
anything is allocated, with the size it would need): the seconds to fit
(the curvature over ``--examples`` training images), to tune δ by the evidence
(the first call also eigendecomposes K-FAC's factors), and, for the classifier,
the linearised predictive of 100 test images. Medians over ``--repeats``.
Nothing here is a test.
"""

import argparse
import statistics
import time

import minikfac as mk


def timed(function, repeats):
    """(median seconds, last result) of ``repeats`` calls."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = mk.data.load("mnist", dtype="float64")
    X, labels = data.X_train[:args.examples], data.y_train[:args.examples]
    mk.nn.init.manual_seed(0)
    cases = [("MNIST MLP 784-256-128-10", mk.models.mlp(784, 10, hidden=(256, 128)), mk.nn.CrossEntropyLoss(),
              labels, "ggn"),
             ("autoencoder 784-200-100-30-100-200-784", mk.models.autoencoder(784), mk.nn.BCEWithLogitsLoss(), X,
              "mc")]
    print(f"N = {args.examples} training images, medians of {args.repeats}")
    for name, net, loss_fn, y, kind in cases:
        print(f"\n{name}: P = {mk.training.num_parameters(net):,}, kind = {kind!r}")
        print(f"  {'structure':<10} {'fit s':>8} {'tune δ s':>9} {'predict 100 s':>14}   δ*")
        for structure in ("kfac", "ekfac", "diag", "block"):
            try:
                fit, la = timed(lambda s=structure: mk.laplace.Laplace(net, loss_fn, X, y, structure=s, kind=kind),
                                args.repeats)
            except ValueError as error:
                print(f"  {structure:<10} refused: {str(error).split(';')[0]}")
                continue
            tune, delta = timed(la.optimize_prior_precision, 1)
            predict = "—"
            if isinstance(loss_fn, mk.nn.CrossEntropyLoss):
                predict = f"{timed(lambda la=la: la.predictive(data.X_test[:100]), args.repeats)[0]:.3f}"
            print(f"  {structure:<10} {fit:8.2f} {tune:9.3f} {predict:>14}   {delta:.3g}")


if __name__ == "__main__":
    main()
