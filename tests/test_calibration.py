"""Calibration and OOD metrics (minikfac.studies.calibration), their figures, and the Laplace digits study.

Known cases: a predictor whose confidence equals its accuracy in each bin has
ECE 0; a hand-built miscalibrated one has the ECE computed by hand; AUROC is 1
for separated scores, ½ for identical ones and equals the brute-force count of
pairs (ties ½) on random scores with ties; NLL is −mean log p[y] by hand. Each
runs on NumPy and on the strict fakegpu backend.
"""

import math

import numpy as np
import pytest

from minikfac import backend
from minikfac.studies import calibration, laplace_digits
from tests.conftest import on


def confident_rows(confidences, predicted, classes=4):
    """Rows with max probability ``confidences[n]`` on class ``predicted[n]``, the rest spread evenly."""
    confidences = np.asarray(confidences, dtype=np.float64)
    rows = np.tile(((1 - confidences) / (classes - 1))[:, None], (1, classes))
    rows[np.arange(len(rows)), predicted] = confidences
    return rows


def test_perfectly_calibrated_predictions_have_zero_ece(backend_name):
    # 15 bins. In (0.6, 0.6667]: 20 predictions of confidence 0.65, 13 right (accuracy 0.65);
    # in (0.8, 0.8667]: 20 of confidence 0.85, 17 right; in (0.9333, 1]: 10 of confidence 1, all right.
    confidence = [0.65] * 20 + [0.85] * 20 + [1.0] * 10
    labels = np.zeros(50, dtype=np.int64)
    predicted = np.array([0] * 13 + [1] * 7 + [0] * 17 + [2] * 3 + [0] * 10)
    p = on(backend_name, confident_rows(confidence, predicted))
    y = on(backend_name, labels)
    assert float(calibration.expected_calibration_error(p, y)) == pytest.approx(0, abs=1e-12)
    table = calibration.reliability(p, y)
    counts = backend.to_numpy(table.counts)
    assert counts.sum() == 50 and sorted(counts[counts > 0].tolist()) == [10, 20, 20]
    assert np.isnan(backend.to_numpy(table.accuracy)[0]), "an empty bin has no accuracy"
    assert float(calibration.accuracy(p, y)) == pytest.approx(40 / 50)


def test_miscalibrated_ece_equals_the_hand_computation(backend_name):
    # 10 bins. Bin (0.9, 1]: 4 predictions at 0.95, 2 right -> |0.5 − 0.95| = 0.45, weight 4/10.
    # Bin (0.5, 0.6]: 6 predictions at 0.55, 6 right -> |1 − 0.55| = 0.45, weight 6/10. ECE = 0.45.
    # Move one of the 0.55s to 0.58: the bin's mean confidence is 0.555, gap 0.445 -> ECE = 0.4·0.45 + 0.6·0.445.
    confidence = [0.95] * 4 + [0.55] * 5 + [0.58]
    predicted = np.array([1, 1, 0, 0] + [2] * 6)
    labels = np.array([1, 1, 2, 2] + [2] * 6)
    p, y = on(backend_name, confident_rows(confidence, predicted)), on(backend_name, labels)
    expected = 0.4 * 0.45 + 0.6 * (1 - 0.555)
    assert float(calibration.expected_calibration_error(p, y, bins=10)) == pytest.approx(expected, abs=1e-12)
    table = calibration.reliability(p, y, bins=10)
    np.testing.assert_allclose(backend.to_numpy(table.confidence)[[5, 9]], [0.555, 0.95], atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(table.accuracy)[[5, 9]], [1.0, 0.5], atol=1e-12)


def test_nll_matches_the_hand_computation(backend_name):
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]])
    y = np.array([0, 1, 2])
    expected = -(math.log(0.7) + math.log(0.1) + math.log(0.25)) / 3
    got = calibration.negative_log_likelihood(on(backend_name, p), on(backend_name, y))
    if backend_name != "numpy":  # NumPy's reductions give NumPy scalars
        assert backend.backend_of(got) == backend_name, "the result stays on the device"
    assert float(got) == pytest.approx(expected, rel=1e-14)
    zero = np.array([[1.0, 0.0]])
    assert math.isfinite(float(calibration.negative_log_likelihood(on(backend_name, zero), on(backend_name, [1]))))
    entropy = calibration.predictive_entropy(on(backend_name, np.array([[0.5, 0.5], [1.0, 0.0]])))
    np.testing.assert_allclose(backend.to_numpy(entropy), [math.log(2), 0.0], atol=1e-15)


def test_auroc_known_cases(backend_name):
    low, high = on(backend_name, np.arange(5.0)), on(backend_name, np.arange(5.0) + 10)
    assert float(calibration.auroc(high, low)) == 1.0
    assert float(calibration.auroc(low, high)) == 0.0
    same = on(backend_name, np.full(7, 0.3))
    assert float(calibration.auroc(same, on(backend_name, np.full(4, 0.3)))) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_the_pairwise_count_with_ties(backend_name, seed):
    rng = np.random.default_rng(seed)
    positive = rng.integers(0, 6, size=23).astype(np.float64)  # few distinct values: many ties
    negative = rng.integers(0, 6, size=31).astype(np.float64) - 1
    pairs = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
    got = calibration.auroc(on(backend_name, positive), on(backend_name, negative))
    assert float(got) == pytest.approx(pairs.mean(), abs=1e-14)


def test_ood_auroc_orients_both_scores(backend_name):
    sharp = confident_rows([0.97, 0.9, 0.95], [0, 1, 2])
    flat = confident_rows([0.4, 0.3, 0.35, 0.5], [0, 1, 2, 3])
    for score in calibration.SCORES:
        got = calibration.ood_auroc(on(backend_name, sharp), on(backend_name, flat), score=score)
        assert float(got) == 1.0, score


@pytest.mark.parametrize("bad, match", [
    (np.array([0.5, 0.5]), r"shape \(N, C\)"),
    (np.array([[0.5, 0.6], [0.5, 0.5]]), "sum to 1"),
    (np.array([[1.2, -0.2]]), r"lie in \[0, 1\]"),
    (np.array([[np.nan, 1.0]]), "NaN"),
    (np.array([[1, 0]]), "floating point"),
])
def test_bad_probabilities_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        calibration.expected_calibration_error(bad, np.zeros(len(np.atleast_2d(bad)), dtype=np.int64))


def test_bad_labels_scores_and_options_are_refused():
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        calibration.negative_log_likelihood(p, np.array([0, 2]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        calibration.accuracy(p, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="integer"):
        calibration.accuracy(p, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="bins must be an int"):
        calibration.reliability(p, np.array([0, 1]), bins=0)
    with pytest.raises(ValueError, match="score must be one of"):
        calibration.ood_auroc(p, p, score="margin")
    with pytest.raises(ValueError, match="same number of classes"):
        calibration.ood_auroc(p, np.full((1, 3), 1 / 3))
    with pytest.raises(ValueError, match="NaN"):
        calibration.auroc(np.array([0.1, np.nan]), np.array([0.2]))
    with pytest.raises(ValueError, match="fakegpu array"):
        calibration.accuracy(on("fakegpu", p), np.array([0, 1]))


def test_reliability_diagrams_are_saved(tmp_path):
    pytest.importorskip("matplotlib")
    from minikfac.plot import calibration as figures

    rng = np.random.default_rng(0)
    p, y = rng.dirichlet(np.ones(3), size=40), rng.integers(0, 3, size=40)
    panels = {"a": calibration.reliability(p, y), "b": calibration.reliability(p, y, bins=5)}
    path = figures.reliability_diagrams(panels, tmp_path / "reliability.png", title="two", columns=1)
    assert (tmp_path / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert path == tmp_path / "reliability.png"
    with pytest.raises(TypeError, match="Reliability"):
        figures.reliability_diagrams({"a": p}, tmp_path / "x.png")


def test_ood_inputs_have_the_digits_shape_and_range():
    X = np.random.default_rng(0).random((5, 64))
    sets = laplace_digits.ood_inputs(X, ("noise", "rotated"))
    assert {name: value.shape for name, value in sets.items()} == {"noise": (5, 64), "rotated": (5, 64)}
    assert all(value.min() >= 0 and value.max() <= 1 for value in sets.values())
    with pytest.raises(ValueError, match="names must be among"):
        laplace_digits.ood_inputs(X, ("svhn",))


def test_a_tiny_study_runs_and_its_numbers_are_finite():
    result = laplace_digits.run(structures=("kfac", "diag"), subsets=("all", "last_layer"), hidden=(8,), epochs=2,
                                train_size=300, progress=False)
    names = [row.name for row in result.methods]
    assert names == ["MAP", "kfac/all", "diag/all", "kfac/last_layer", "diag/last_layer"]
    assert result.n_params == {"all": 65 * 8 + 9 * 10, "last_layer": 9 * 10}
    for row in result.methods:
        numbers = [row.accuracy, row.nll, row.ece, *row.auroc.values()]
        assert all(math.isfinite(x) for x in numbers) and 0 <= row.ece <= 1, row
        assert set(row.auroc) == {"noise", "rotated"}
        if row.structure is not None:
            assert row.prior_precision > 0 and math.isfinite(row.log_evidence)
            assert 0 < row.effective_parameters <= result.n_params[row.subset]
    assert "AUROC noise" in laplace_digits.format_table(result)
    with pytest.raises(ValueError, match="structures must be"):
        laplace_digits.run(structures=("kron",), progress=False)
