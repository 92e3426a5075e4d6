"""How good are predicted class probabilities: likelihood, accuracy, calibration, out-of-distribution detection.

Arrays in, numbers out, on any backend (``xp = get_array_module(p)``); every
function takes class probabilities ``p`` of shape (N, C) (rows summing to 1,
as :meth:`minikfac.laplace.Laplace.predictive` returns them) and, where it
scores them, integer labels ``y`` of shape (N,) in [0, C). Results are 0-d
arrays (or small arrays) on the same backend. The checks of the inputs read
a few numbers back to the host; these metrics are for the end of a run, not
for a training loop.

- **Negative log-likelihood** −(1/N) Σ_n log p_n[y_n]: the test loss, proper
  (it rewards honest probabilities, not only the right argmax).
- **Expected calibration error** (Guo et al. 2017, §2, with the M = 15
  bins): the *top-label* confidence c_n = max_k p_n[k] is put into M
  equal-width bins B_m = ((m−1)/M, m/M] of [0, 1], and

      ECE = Σ_m (|B_m| / N) · |acc(B_m) − conf(B_m)|,

  with acc(B_m) the fraction of correct argmax predictions in the bin and
  conf(B_m) their mean confidence. 15 bins, Guo et al.'s choice, is the default:
  a few hundred test points give each occupied bin tens of points. ECE depends
  on the number of bins and is biased upwards for small N; compare methods with
  the same bins on the same data. :func:`reliability` returns the per-bin
  numbers behind the reliability diagram.
- **OOD detection**: how well a score separates in-distribution inputs from
  out-of-distribution ones, as the area under the ROC curve. :func:`auroc` is the
  Mann–Whitney statistic — the probability that a random positive scores above a
  random negative, ties counted half — computed exactly from ranks, with no
  threshold sweep. :func:`ood_auroc` scores the in-distribution inputs as
  positives, by their top-label confidence or by minus the predictive entropy.
"""

from dataclasses import dataclass

from minikfac import backend

#: The scores of :func:`ood_auroc`: higher confidence, or lower entropy, means "in distribution".
SCORES = ("max_probability", "entropy")
#: Guo et al. 2017's number of bins.
DEFAULT_BINS = 15


def _shape(x):
    return tuple(x.shape) if backend.is_array(x) else type(x).__name__


def check_probabilities(probabilities, caller, name="probabilities"):
    """Check that ``probabilities`` is an (N, C) float array of finite rows in [0, 1] summing to 1; return it.

    The tolerance on the row sums is max(1e-6, 100·C·ε) with ε the dtype's
    machine epsilon (float32 rounding over C classes). ValueError names ``caller``.
    """
    if not backend.is_array(probabilities) or probabilities.ndim != 2 or probabilities.shape[0] < 1 \
            or probabilities.shape[1] < 2:
        raise ValueError(f"{caller}: {name} must be an array of shape (N, C) with N >= 1 and C >= 2 classes, "
                         f"got {_shape(probabilities)}")
    xp = backend.get_array_module(probabilities)
    if probabilities.dtype.kind != "f":
        raise ValueError(f"{caller}: {name} must be floating point, got dtype {probabilities.dtype}")
    if not bool(xp.all(xp.isfinite(probabilities))):
        raise ValueError(f"{caller}: {name} contains NaN or Inf")
    low = float(xp.min(probabilities))
    if low < 0 or float(xp.max(probabilities)) > 1 + 1e-12:
        raise ValueError(f"{caller}: {name} must lie in [0, 1], got values from {low:.3g} to "
                         f"{float(xp.max(probabilities)):.3g}")
    classes = probabilities.shape[1]
    tolerance = max(1e-6, 100 * classes * float(xp.finfo(probabilities.dtype).eps))
    gap = float(xp.max(xp.abs(xp.sum(probabilities, axis=1) - 1)))
    if gap > tolerance:
        raise ValueError(f"{caller}: each row of {name} must sum to 1 (class probabilities, e.g. a softmax), "
                         f"but a row sum is off by {gap:.3g} (tolerance {tolerance:.1g})")
    return probabilities


def check_labels(labels, probabilities, caller):
    """Check integer ``labels`` (N,) in [0, C) on the backend of ``probabilities`` (N, C); return them."""
    n, classes = probabilities.shape
    if not backend.is_array(labels) or labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{caller}: labels must be an array of shape ({n},) (one per row of the probabilities), "
                         f"got {_shape(labels)}")
    backend.check_same_backend(probabilities=probabilities, labels=labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{caller}: labels must be integer class indices, got dtype {labels.dtype}")
    xp = backend.get_array_module(labels)
    low, high = int(xp.min(labels)), int(xp.max(labels))
    if low < 0 or high >= classes:
        raise ValueError(f"{caller}: labels must lie in [0, {classes}) for C = {classes} classes, "
                         f"got values from {low} to {high}")
    return labels


def negative_log_likelihood(probabilities, labels):
    """−(1/N) Σ_n log p_n[y_n], a 0-d array; from ``probabilities`` (N, C) and ``labels`` (N,).

    A probability of exactly 0 for the true class is read as the dtype's
    smallest positive normal number, so the result stays finite (about 708 in
    float64) rather than Inf.
    """
    check_labels(labels, check_probabilities(probabilities, "negative_log_likelihood"), "negative_log_likelihood")
    xp = backend.get_array_module(probabilities)
    chosen = probabilities[xp.arange(labels.shape[0]), labels]
    return -xp.mean(xp.log(xp.maximum(chosen, xp.finfo(probabilities.dtype).tiny)))


def accuracy(probabilities, labels):
    """The fraction of rows whose argmax is the label, a 0-d array; ``probabilities`` (N, C), ``labels`` (N,)."""
    check_labels(labels, check_probabilities(probabilities, "accuracy"), "accuracy")
    xp = backend.get_array_module(probabilities)
    return xp.mean((xp.argmax(probabilities, axis=1) == labels).astype(probabilities.dtype))


def max_probability(probabilities):
    """The top-label confidence max_k p_n[k], (N,), from ``probabilities`` (N, C)."""
    check_probabilities(probabilities, "max_probability")
    return backend.get_array_module(probabilities).max(probabilities, axis=1)


def predictive_entropy(probabilities):
    """−Σ_k p_n[k] log p_n[k] in nats, (N,), from ``probabilities`` (N, C); 0 · log 0 is taken as 0."""
    check_probabilities(probabilities, "predictive_entropy")
    xp = backend.get_array_module(probabilities)
    logs = xp.log(xp.where(probabilities > 0, probabilities, 1))
    return -xp.sum(probabilities * logs, axis=1)


@dataclass
class Reliability:
    """The data of a reliability diagram: M equal-width bins of the top-label confidence.

    edges : (M + 1,) bin edges 0, 1/M, ..., 1; bin m is (edges[m], edges[m + 1]] (the first also holds 0).
    counts : (M,) int, how many predictions fall in each bin.
    confidence : (M,) their mean top-label confidence (NaN for an empty bin).
    accuracy : (M,) the fraction of them whose argmax is right (NaN for an empty bin).
    Arrays on the backend of the probabilities.
    """

    edges: object
    counts: object
    confidence: object
    accuracy: object

    @property
    def num_bins(self):
        """M."""
        return int(self.counts.shape[0])


def _check_bins(bins, caller):
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"{caller}: bins must be an int >= 1, got {bins!r}")
    return bins


def reliability(probabilities, labels, bins=DEFAULT_BINS):
    """Bin the top-label confidences of ``probabilities`` (N, C) against ``labels`` (N,): a :class:`Reliability`.

    ``bins`` equal-width bins ((m−1)/M, m/M] of [0, 1] (Guo et al. 2017, §2; module docstring).
    """
    caller = "reliability"
    bins = _check_bins(bins, caller)
    check_labels(labels, check_probabilities(probabilities, caller), caller)
    xp = backend.get_array_module(probabilities)
    confidence = xp.max(probabilities, axis=1)
    correct = (xp.argmax(probabilities, axis=1) == labels).astype(probabilities.dtype)
    edges = xp.linspace(0, 1, bins + 1, dtype=probabilities.dtype)
    # searchsorted on the left puts c in the bin whose right edge is the first edge >= c: (lo, hi].
    index = xp.clip(xp.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = xp.bincount(index, minlength=bins)
    occupied = counts > 0
    denominator = xp.where(occupied, counts, 1).astype(probabilities.dtype)
    mean_confidence = xp.bincount(index, weights=confidence, minlength=bins) / denominator
    mean_accuracy = xp.bincount(index, weights=correct, minlength=bins) / denominator
    return Reliability(edges=edges, counts=counts,
                       confidence=xp.where(occupied, mean_confidence, xp.nan),
                       accuracy=xp.where(occupied, mean_accuracy, xp.nan))


def expected_calibration_error(probabilities, labels, bins=DEFAULT_BINS):
    """Top-label ECE = Σ_m (|B_m|/N) |acc(B_m) − conf(B_m)| in [0, 1], a 0-d array (Guo et al. 2017, §2).

    ``probabilities`` (N, C), ``labels`` (N,), ``bins`` equal-width bins (default 15, as Guo et al.).
    """
    table = reliability(probabilities, labels, bins)
    xp = backend.get_array_module(probabilities)
    occupied = table.counts > 0
    gaps = xp.where(occupied, xp.abs(table.accuracy - table.confidence), 0)
    return xp.sum(table.counts * gaps) / probabilities.shape[0]


def _check_scores(scores, caller, name):
    if not backend.is_array(scores) or scores.ndim != 1 or scores.shape[0] < 1:
        raise ValueError(f"{caller}: {name} must be an array of shape (n,) with n >= 1, got {_shape(scores)}")
    xp = backend.get_array_module(scores)
    if not bool(xp.all(xp.isfinite(scores))):
        raise ValueError(f"{caller}: {name} contains NaN or Inf")
    return scores


def auroc(positive, negative):
    """Area under the ROC curve of scores ``positive`` (n₊,) against ``negative`` (n₋,), a 0-d array in [0, 1].

    The Mann–Whitney statistic U / (n₊ n₋): the fraction of pairs (i, j) with
    positive[i] > negative[j], ties counted ½. It is computed from the ranks of
    all n₊ + n₋ scores (ties given their average rank), U = Σ ranks of the
    positives − n₊(n₊ + 1)/2, in O(n log n). 1: every positive above every
    negative; 0.5: no separation.
    """
    _check_scores(positive, "auroc", "positive")
    _check_scores(negative, "auroc", "negative")
    backend.check_same_backend(positive=positive, negative=negative)
    xp = backend.get_array_module(positive)
    values = xp.concatenate([positive, negative]).astype(xp.float64)
    total = values.shape[0]
    order = xp.argsort(values)
    ordered = values[order]
    starts_group = xp.concatenate([xp.ones(1, dtype=bool), ordered[1:] != ordered[:-1]])
    starts = xp.flatnonzero(starts_group)  # (G,) first sorted position of each group of equal scores
    sizes = xp.diff(xp.concatenate([starts, xp.full(1, total, dtype=starts.dtype)]))
    group = xp.cumsum(starts_group) - 1
    ranks = xp.empty(total, dtype=xp.float64)
    ranks[order] = starts[group] + (sizes[group] + 1) / 2  # 1-based average rank of the group
    n_pos, n_neg = positive.shape[0], negative.shape[0]
    return (xp.sum(ranks[:n_pos]) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def ood_auroc(in_probabilities, out_probabilities, score="max_probability"):
    """AUROC of telling in-distribution inputs (positives) from out-of-distribution ones, a 0-d array.

    in_probabilities : (N_in, C) predictions on in-distribution inputs (e.g. the test set).
    out_probabilities : (N_out, C) predictions on out-of-distribution inputs.
    score : "max_probability" (the top-label confidence; Hendrycks & Gimpel 2017's baseline) or
        "entropy" (minus the predictive entropy), so that in both a higher score means "in distribution".
    """
    if score not in SCORES:
        raise ValueError(f"ood_auroc: score must be one of {SCORES}, got {score!r}")
    check_probabilities(in_probabilities, "ood_auroc", "in_probabilities")
    check_probabilities(out_probabilities, "ood_auroc", "out_probabilities")
    if in_probabilities.shape[1] != out_probabilities.shape[1]:
        raise ValueError(f"ood_auroc: in_probabilities and out_probabilities must have the same number of classes, "
                         f"got {in_probabilities.shape[1]} and {out_probabilities.shape[1]}")
    if score == "max_probability":
        return auroc(max_probability(in_probabilities), max_probability(out_probabilities))
    return auroc(-predictive_entropy(in_probabilities), -predictive_entropy(out_probabilities))
