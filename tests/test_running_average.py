"""K-FAC's running averages kept as rows and folded in lazily equal the step-by-step average."""

import numpy as np
import pytest

from minikfac.backend import to_numpy
from minikfac.curvature import running_average
from tests.conftest import on


def step_by_step(blocks, counts, decays, rights=None):
    """A_k = ε_k A_{k-1} + (1 − ε_k) X_kᵀ Y_k / N_k, written out (host, float64)."""
    average = None
    for k, (rows, count, decay) in enumerate(zip(blocks, counts, decays)):
        right = rows if rights is None else rights[k]
        fresh = rows.T @ right / count
        average = fresh if average is None else decay * average + (1 - decay) * fresh
    return average


@pytest.mark.parametrize("d,rows_per_step", [(7, 2), (7, 3), (4, 9), (5, 5)])
def test_lazy_average_equals_the_step_by_step_average(backend_name, d, rows_per_step):
    """Rows fewer than d are kept and folded later (3 < 7), as many as d fold at once (9 > 4): the same A."""
    rng = np.random.default_rng(d * 10 + rows_per_step)
    blocks = [rng.standard_normal((rows_per_step, d)) for _ in range(9)]
    counts = [rows_per_step + k % 3 for k in range(9)]  # N_k need not be the row count (conv: N·L)
    decays = [min(1 - 1 / k, 0.8) for k in range(1, 10)]
    entry = {}
    for k, (rows, count, decay) in enumerate(zip(blocks, counts, decays), start=1):
        running_average.add_rows(entry, "A", on(backend_name, rows), count, decay)
        want = step_by_step(blocks[:k], counts[:k], decays[:k])
        np.testing.assert_allclose(to_numpy(running_average.current(entry, "A")), want, rtol=1e-12, atol=1e-14)
        assert to_numpy(entry["A_rows"]).shape[0] < d  # never more kept rows than the average's size
    running_average.fold(entry, "A")
    assert entry["A_decay"] == 1.0 and to_numpy(entry["A_rows"]).shape == (0, d)
    np.testing.assert_allclose(to_numpy(entry["A"]), step_by_step(blocks, counts, decays), rtol=1e-12)


def test_an_asymmetric_sum_is_folded_at_once():
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((2, 5)) for _ in range(4)]
    rights = [rng.standard_normal((2, 5)) for _ in range(4)]
    decays, counts = [0.0, 0.5, 0.75, 0.8], [2, 2, 2, 2]
    entry = {}
    for k in range(4):
        running_average.add_sum(entry, "G", blocks[k].T @ rights[k], counts[k], decays[k])
        assert entry["G_rows"].shape == (0, 5) and entry["G_decay"] == 1.0
    np.testing.assert_allclose(entry["G"], step_by_step(blocks, counts, decays, rights), rtol=1e-12)


def test_add_leaves_the_previous_state_untouched():
    """A refused step keeps the old entry: add writes new arrays, never into the ones it was given."""
    rng = np.random.default_rng(2)
    entry = {}
    running_average.add_rows(entry, "A", rng.standard_normal((2, 6)), 2, 0.0)
    running_average.add_rows(entry, "A", rng.standard_normal((2, 6)), 2, 0.5)
    old = {name: (v.copy() if hasattr(v, "copy") else v) for name, v in entry.items()}
    tentative = dict(entry)
    for _ in range(3):  # enough rows to fold
        running_average.add_rows(tentative, "A", rng.standard_normal((2, 6)), 2, 0.9)
    for name, value in old.items():
        np.testing.assert_array_equal(entry[name], value)


def test_rows_are_folded_before_their_weights_overflow():
    """A small ε and no fold for many steps: Q would shrink towards 0 and the kept rows' weights 1/√Q grow
    until float32 overflows. They are folded in before Q < MIN_DECAY, and the average stays the EMA's."""
    rng = np.random.default_rng(3)
    blocks = [rng.standard_normal((2, 300)).astype(np.float32) for _ in range(60)]
    decays = [0.0] + [0.1] * 59
    entry = {}
    for rows, decay in zip(blocks, decays):
        assert np.isfinite(running_average.add_rows(entry, "A", rows, 2, decay))
        assert entry["A_decay"] >= running_average.MIN_DECAY
    want = step_by_step([b.astype(np.float64) for b in blocks], [2] * 60, decays)
    np.testing.assert_allclose(running_average.current(entry, "A"), want, rtol=1e-4, atol=1e-6)


def test_the_check_number_shows_a_non_finite_row():
    entry = {}
    running_average.add_rows(entry, "A", np.ones((2, 6)), 2, 0.0)
    rows = np.ones((2, 6))
    rows[1, 3] = np.nan
    assert not np.isfinite(running_average.add_rows(dict(entry), "A", rows, 2, 0.5))  # kept rows
    assert not np.isfinite(running_average.add_sum(dict(entry), "A", rows.T @ rows, 2, 0.5))  # summed at once
