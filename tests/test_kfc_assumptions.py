"""KFC's assumptions one at a time (minikfac.studies.kfc_assumptions): the stages against the exact block,
against K-FAC's factors and against a loop written from the formulas; the cases where an assumption is
exact; the output-derivative maps and their spatial autocorrelation."""

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend
from minikfac.curvature import statistics
from minikfac.studies import kfc_assumptions
from tests.conftest import on


def tiny_cnn(bias=True):
    """Conv(1→2, 3×3, pad 1) - ReLU - Conv(2→3, 2×2) - Tanh - Flatten - Linear(3·4·4 → 3) on 5×5 images."""
    mk.nn.init.manual_seed(0)
    return mk.nn.Sequential(mk.nn.Conv2d(1, 2, 3, padding=1, bias=bias), mk.nn.ReLU(),
                            mk.nn.Conv2d(2, 3, 2, bias=bias), mk.nn.Tanh(), mk.nn.Flatten(),
                            mk.nn.Linear(3 * 4 * 4, 3))


def images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 1, 5, 5))


def host(x):
    return backend.to_numpy(x)


def test_exact_stage_is_the_exact_fisher_block_and_kfc_stage_is_kfac(backend_name):
    net, loss_fn = tiny_cnn().to(backend_name), mk.nn.CrossEntropyLoss()
    X = on(backend_name, images(4))
    stages = kfc_assumptions.kfc_stages(net, loss_fn, X)
    blocks = mk.curvature.fisher_blocks(net, loss_fn, X)
    factors = mk.curvature.kfac_factors(net, loss_fn, X)
    assert len(stages) == 3
    for stage, block, (A, G) in zip(stages, blocks, factors):
        assert set(stage) == set(kfc_assumptions.STAGES)
        np.testing.assert_allclose(host(stage["exact"]), host(block), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(host(stage["kfc"]), np.kron(host(A), host(G)), rtol=1e-10, atol=1e-13)


def _loop_stages(net, loss_fn, X):
    """The four stages of every layer from explicit loops over examples and positions (np.kron)."""
    result = []
    chunk = next(iter(statistics.chunks(net, loss_fn, X, kind="true", chunk_size=X.shape[0])))
    for stats in chunk.layers:
        a, g = stats.inputs, stats.grads
        if a.ndim == 2:
            a, g = a[:, None, :], g[:, :, None, :]
        k, n, positions, d_out = g.shape
        size = a.shape[-1] * d_out
        exact, sud, sh = (np.zeros((size, size)) for _ in range(3))
        omega_total, gamma_total = 0.0, 0.0
        for e in range(n):
            for c in range(k):
                row = sum(np.kron(a[e, p], g[c, e, p]) for p in range(positions))
                exact += np.outer(row, row)
            omega = sum(np.outer(a[e, p], a[e, p]) for p in range(positions))
            gamma = sum(np.outer(g[c, e, p], g[c, e, p]) for c in range(k) for p in range(positions)) / positions
            for p in range(positions):
                sud += np.kron(np.outer(a[e, p], a[e, p]), sum(np.outer(g[c, e, p], g[c, e, p]) for c in range(k)))
            sh += np.kron(omega, gamma)
            omega_total, gamma_total = omega_total + omega, gamma_total + gamma
        result.append({"exact": exact / n, "sud": sud / n, "sh": sh / n,
                       "kfc": np.kron(omega_total / n, gamma_total / n)})
    return result


@pytest.mark.parametrize("bias", [True, False])
def test_stages_match_the_formulas_written_as_loops(bias):
    net, loss_fn = tiny_cnn(bias), mk.nn.CrossEntropyLoss()
    X = images(3)
    expected = _loop_stages(net, loss_fn, X)
    for got, want in zip(kfc_assumptions.kfc_stages(net, loss_fn, X, chunk_size=2), expected):
        for name in kfc_assumptions.STAGES:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-14, err_msg=name)


def test_small_blocks_of_positions_give_the_same_sud(monkeypatch):
    net, loss_fn = tiny_cnn(), mk.nn.CrossEntropyLoss()
    X = images(3)
    whole = kfc_assumptions.kfc_stages(net, loss_fn, X)
    monkeypatch.setattr(kfc_assumptions, "BLOCK_NUMBERS", 7)  # a few positions per block
    for a, b in zip(kfc_assumptions.kfc_stages(net, loss_fn, X), whole):
        np.testing.assert_allclose(a["sud"], b["sud"], rtol=1e-12, atol=1e-15)


def test_one_example_makes_iad_exact_but_not_the_spatial_assumptions():
    net, loss_fn = tiny_cnn(), mk.nn.CrossEntropyLoss()
    stages = kfc_assumptions.kfc_stages(net, loss_fn, images(1))
    for layer, stage in enumerate(stages):
        np.testing.assert_allclose(stage["kfc"], stage["sh"], rtol=1e-12, atol=1e-15)
        errors = kfc_assumptions.stage_errors(stage)
        assert errors["step_iad"] < 1e-12
        if layer < 2:  # convolutions: positions differ, so SUD and SH do cost something
            assert errors["kfc"] > 1e-3, errors
        else:  # the Linear layer (one position, one example): K-FAC is exact
            assert errors["kfc"] < 1e-12, errors


def test_one_position_makes_the_spatial_assumptions_exact():
    # a 3×3 kernel on 3×3 images without padding has a 1×1 output: L = 1
    mk.nn.init.manual_seed(1)
    net = mk.nn.Sequential(mk.nn.Conv2d(2, 4, 3), mk.nn.Tanh(), mk.nn.Flatten(), mk.nn.Linear(4, 3))
    X = np.random.default_rng(1).normal(size=(5, 2, 3, 3))
    stage = kfc_assumptions.kfc_stages(net, mk.nn.CrossEntropyLoss(), X)[0]
    np.testing.assert_allclose(stage["sud"], stage["exact"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stage["sh"], stage["exact"], rtol=1e-12, atol=1e-15)
    assert kfc_assumptions.stage_errors(stage)["kfc"] > 1e-3  # but with 5 examples IAD is not


def test_stage_errors_are_cumulative_and_stepwise():
    net, loss_fn = tiny_cnn(), mk.nn.CrossEntropyLoss()
    stage = kfc_assumptions.kfc_stages(net, loss_fn, images(6))[1]
    errors = kfc_assumptions.stage_errors(stage)
    norm = np.linalg.norm(stage["exact"])
    assert errors["kfc"] == pytest.approx(np.linalg.norm(stage["kfc"] - stage["exact"]) / norm, rel=1e-12)
    assert errors["step_sh"] == pytest.approx(np.linalg.norm(stage["sh"] - stage["sud"]) / norm, rel=1e-12)
    assert errors["kfc"] <= errors["step_sud"] + errors["step_sh"] + errors["step_iad"] + 1e-12  # triangle


def test_empirical_kind_and_refused_ggn():
    net, loss_fn = tiny_cnn(), mk.nn.CrossEntropyLoss()
    X, y = images(3), np.array([0, 1, 2])
    stage = kfc_assumptions.kfc_stages(net, loss_fn, X, y=y, kind="empirical")[0]
    np.testing.assert_allclose(stage["exact"], mk.curvature.fisher_blocks(net, loss_fn, X, y=y, kind="empirical")[0],
                               rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="kind"):
        kfc_assumptions.kfc_stages(net, loss_fn, X, kind="ggn")


def test_output_gradient_maps_sum_to_the_bias_gradient(backend_name):
    net, loss_fn = tiny_cnn().to(backend_name), mk.nn.CrossEntropyLoss()
    X, y = on(backend_name, images(4)), on(backend_name, np.array([0, 2, 1, 1]))
    maps = kfc_assumptions.output_gradient_maps(net, loss_fn, X, 1, y=y, kind="empirical", chunk_size=3)
    assert maps.shape == (1, 4, 3, 4, 4)
    net.zero_grad()
    loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    # the bias gradient of the mean loss is the mean over examples of the derivatives summed over positions
    np.testing.assert_allclose(host(maps.sum(axis=(0, 3, 4)).mean(axis=0)), host(net.layers[2].bias.grad),
                               rtol=1e-10, atol=1e-14)
    true_maps = kfc_assumptions.output_gradient_maps(net, loss_fn, X, 0)
    assert true_maps.shape == (3, 4, 2, 5, 5)  # K = 3 classes, N, C_out, OH, OW
    with pytest.raises(ValueError, match="Conv2d"):
        kfc_assumptions.output_gradient_maps(net, loss_fn, X, 2)


def test_spatial_autocorrelation_properties(backend_name):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(200, 3, 8, 8))
    r = host(kfc_assumptions.spatial_autocorrelation(on(backend_name, noise)))
    assert r.shape == (15, 15)
    assert r[7, 7] == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(r, r[::-1, ::-1], rtol=1e-10, atol=1e-12)  # r(δ) = r(−δ)
    off = np.abs(r[5:10, 5:10]).copy()
    off[2, 2] = 0
    assert off.max() < 0.05  # white noise: uncorrelated across positions
    # maps constant along rows: perfectly correlated along a row, not across rows
    rows = np.repeat(rng.normal(size=(300, 1, 6, 1)), 6, axis=3)
    r = host(kfc_assumptions.spatial_autocorrelation(on(backend_name, rows), max_offset=2))
    assert r.shape == (5, 5)
    np.testing.assert_allclose(r[2, :], 1.0, rtol=1e-12)
    assert np.abs(r[[0, 1, 3, 4], :]).max() < 0.15
    with pytest.raises(ValueError, match="C, H, W"):
        kfc_assumptions.spatial_autocorrelation(on(backend_name, np.zeros((4, 4))))


def test_blocks_within_radius_run_from_sud_to_exact(backend_name):
    net, loss_fn = tiny_cnn().to(backend_name), mk.nn.CrossEntropyLoss()
    X = on(backend_name, images(3))
    stages = kfc_assumptions.kfc_stages(net, loss_fn, X)
    # conv 1 has a 5×5 output (pairs up to distance 4), conv 2 a 4×4 one (up to 3)
    blocks = kfc_assumptions.blocks_within_radius(net, loss_fn, X, [0, 1, 3, 4], chunk_size=2)
    assert sorted(blocks) == [0, 1, 3, 4]
    for layer in range(3):
        np.testing.assert_allclose(host(blocks[0][layer]), host(stages[layer]["sud"]), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(host(blocks[4][layer]), host(stages[layer]["exact"]), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(host(blocks[3][1]), host(stages[1]["exact"]), rtol=1e-10, atol=1e-14)
    assert np.linalg.norm(host(blocks[3][0] - stages[0]["exact"])) > 1e-6  # conv 1 still misses distance 4
    np.testing.assert_allclose(host(blocks[1][2]), host(stages[2]["exact"]), rtol=1e-10, atol=1e-14)  # Linear


def test_blocks_within_radius_one_matches_a_loop_over_position_pairs():
    net, loss_fn = tiny_cnn(), mk.nn.CrossEntropyLoss()
    X = images(2)
    chunk = next(iter(statistics.chunks(net, loss_fn, X, kind="true", chunk_size=2)))
    a, g = chunk.layers[1].inputs, chunk.layers[1].grads  # (2, 16, 9), (3, 2, 16, 3): a 4×4 output grid
    assert a.shape == (2, 16, 9) and g.shape == (3, 2, 16, 3)
    expected = np.zeros((9 * 3, 9 * 3))
    for e in range(2):
        for p in range(16):
            for q in range(16):
                if max(abs(p // 4 - q // 4), abs(p % 4 - q % 4)) <= 1:
                    gamma = sum(np.outer(g[c, e, p], g[c, e, q]) for c in range(3))
                    expected += np.kron(np.outer(a[e, p], a[e, q]), gamma)
    got = kfc_assumptions.blocks_within_radius(net, loss_fn, X, [1])[1][1]
    np.testing.assert_allclose(got, expected / 2, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="radii"):
        kfc_assumptions.blocks_within_radius(net, loss_fn, X, [-1])


def test_correlation_within_examples(backend_name):
    rng = np.random.default_rng(0)
    # K = 4 cotangents; the map at column x + 1 is a fixed multiple of the one at x: correlation ±1
    base = rng.normal(size=(4, 2, 1, 3, 1))
    maps = np.concatenate([base, -2.0 * base, 0.5 * base], axis=4)  # (4, 2, 1, 3, 3)
    maps[:, 0, 0, 1, 2] = 0.0  # a dead derivative gives NaN
    r = host(kfc_assumptions.correlation_within_examples(on(backend_name, maps), (0, 1)))
    assert r.shape == (2, 1, 6)
    assert np.isnan(r[0, 0, 3]) and np.sum(np.isnan(r)) == 1
    np.testing.assert_allclose(np.abs(r[~np.isnan(r)]), 1.0, rtol=1e-12)
    # against a direct computation on random maps, offset (1, -1)
    maps = rng.normal(size=(5, 3, 2, 4, 4))
    r = host(kfc_assumptions.correlation_within_examples(on(backend_name, maps), (1, -1)))
    u, v = maps[:, 1, 0, 2, 3], maps[:, 1, 0, 3, 2]  # example 1, channel 0, t = (2, 3) and t + δ = (3, 2)
    position = 2 * 3 + 2  # overlap rows 0..2, columns 1..3 of the 3×3 window: t = (2, 3) is (row 2, col 2)
    assert r[1, 0, position] == pytest.approx(u @ v / np.sqrt((u @ u) * (v @ v)), rel=1e-12)
    with pytest.raises(ValueError, match="does not fit"):
        kfc_assumptions.correlation_within_examples(on(backend_name, maps), (4, 0))
