"""The comparison of Fisher approximations, its figures and the Martens & Grosse network.

Exact cases only where they are exact: with one example (N = 1) every Linear
block of the true Fisher is a Kronecker product, so K-FAC's per-layer error
is 0; the exact block-diagonal has no per-layer error and its whole error is
the cross-layer part by definition. Elsewhere: properties (EKFAC <= K-FAC,
cosines in [-1, 1], the Pythagorean split of K-FAC's error).
"""

import json
import math

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend, models, nn, plot
from minikfac.studies.approximation_errors import compare
from minikfac.studies.monte_carlo import mc_fisher_errors
from minikfac.studies.figure_data import default_figure_layers, figure_matrices
from minikfac.curvature.exact import fisher
from minikfac.curvature.factors import kfac_factors

from .conftest import on

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _mlp(d_in=4, hidden=(5, 3), classes=3, activation="tanh"):
    return models.mlp(d_in, classes, hidden=hidden, activation=activation)


def _data(n, d_in=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d_in)), rng.integers(0, classes, n)


def _compare(net, X, y, **options):
    options = {"mc_samples": (1, 4), "mc_seeds": 1, **options}
    return compare(net, nn.CrossEntropyLoss(), X, y, **options)


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_SIGNATURE


# --------------------------------------------------------------------------- #
# Errors and their sources
# --------------------------------------------------------------------------- #
def test_one_example_kfac_blocks_are_exact():
    net = _mlp()
    X, y = _data(1)
    result = _compare(net, X, y)
    for name in ("K-FAC", "EKFAC", "Shampoo²", "SOAP", "nearest Kronecker", "block-diagonal"):
        assert max(result.errors[name]["layers"]) < 1e-7, name
    # Shampoo's R^½ ⊗ L^½ ∝ A ⊗ G^½ is not: the true Fisher's G of one example has rank K > 1.
    assert min(result.errors["Shampoo"]["layers"]) > 0.01
    assert max(result.sources["independence"]["layers"]) < 1e-7
    assert max(result.sources["best_kronecker"]["layers"]) < 1e-7
    # Only the cross-layer blocks are left, and the block-diagonal drops exactly those.
    cross = result.sources["cross_layer"]
    assert cross > 0.01
    assert result.errors["K-FAC"]["total"] == pytest.approx(cross, rel=1e-6)
    assert result.errors["block-diagonal"]["total"] == pytest.approx(cross, rel=1e-12)


def test_errors_split_into_cross_layer_and_independence():
    net = _mlp()
    X, y = _data(30)
    result = _compare(net, X, y)
    kfac, sources = result.errors["K-FAC"], result.sources
    assert kfac["total"] ** 2 == pytest.approx(sources["cross_layer"] ** 2 + sources["independence"]["total"] ** 2)
    assert kfac["layers"] == pytest.approx(sources["independence"]["layers"], rel=1e-10)
    assert min(kfac["layers"]) > 1e-3  # N = 30 examples: not a Kronecker product any more
    # Nearest Kronecker product <= K-FAC's product; EKFAC <= K-FAC (George et al. 2018).
    for best, kfac_error, ekfac in zip(sources["best_kronecker"]["layers"], kfac["layers"],
                                       result.errors["EKFAC"]["layers"]):
        assert best <= kfac_error + 1e-12
        assert ekfac <= kfac_error + 1e-12
    assert result.errors["EKFAC"]["total"] <= kfac["total"] + 1e-12
    # The Kronecker family: the nearest Kronecker product is the floor (Van Loan & Pitsianis 1993) and its
    # error is the "best Kronecker product" source; SOAP is the best diagonal in Shampoo's eigenbasis, where
    # Shampoo² and Shampoo are diagonal too (Vyas et al. 2024; Morwani et al. 2024).
    errors, nearest = result.errors, result.errors["nearest Kronecker"]["layers"]
    assert nearest == pytest.approx(sources["best_kronecker"]["layers"], rel=1e-8)
    for name in ("K-FAC", "Shampoo²", "Shampoo"):
        assert all(best <= e + 1e-12 for best, e in zip(nearest, errors[name]["layers"])), name
    for soap, shampoo2, shampoo in zip(errors["SOAP"]["layers"], errors["Shampoo²"]["layers"],
                                       errors["Shampoo"]["layers"]):
        assert soap <= min(shampoo2, shampoo) + 1e-12
    to_nearest, family = result.kronecker["to_nearest"], result.kronecker["to_exact"]
    assert set(to_nearest) == {"K-FAC", "Shampoo²", "Shampoo"} | {f"power iteration, {k} rounds" for k in (2, 3, 5)}
    assert all(d > 0 for d in to_nearest["K-FAC"]["layers"])
    assert family["SOAP"] == errors["SOAP"]["layers"] and len(family["power iteration, 5 rounds"]) == 3
    assert result.errors["block-diagonal"]["layers"] == [0.0] * 3
    assert result.errors["block-diagonal"]["total"] == pytest.approx(sources["cross_layer"])
    assert all(0 < e < 1 for e in result.errors["diagonal"]["layers"])
    spectrum = result.sources["kronecker_spectra"][0]
    assert spectrum == sorted(spectrum, reverse=True) and spectrum[0] <= 1


def test_tridiagonal_keeps_kfac_blocks_and_beats_its_whole_error():
    net = _mlp(hidden=(5, 4, 3))
    X, y = _data(50)
    result = _compare(net, X, y, mc_seeds=0)
    tridiagonal, kfac = result.errors["K-FAC tridiagonal"], result.errors["K-FAC"]
    # The softmax's G is singular, so the chain model is built with a tiny factored damping (0.1% of scale).
    assert any("tridiagonal: a factor is singular" in note for note in result.notes)
    assert tridiagonal["layers"] == pytest.approx(kfac["layers"], rel=1e-2)
    assert tridiagonal["total"] < kfac["total"]  # it keeps the cross-layer structure K-FAC drops


def test_cosines_are_cosines_and_the_exact_step_is_one():
    net = _mlp()
    X, y = _data(25)
    result = _compare(net, X, y, damping=1e-2)
    assert result.cosines["exact"] == pytest.approx(1.0, abs=1e-12)
    expected = {"gradient", "exact", "K-FAC", "K-FAC (factored damping)", "K-FAC tridiagonal (factored damping)",
                "EKFAC", "Shampoo²", "Shampoo", "SOAP", "nearest Kronecker", "diagonal", "block-diagonal"}
    assert set(result.cosines) == expected
    assert all(-1 <= c <= 1 + 1e-12 for c in result.cosines.values())
    # With a huge damping every step is ∇/λ: all cosines tend to 1.
    damped = _compare(net, X, y, damping=1e6, mc_seeds=0, spectra=False)
    assert min(damped.cosines.values()) > 0.999


def test_spectra_are_descending_and_kfac_keeps_its_trace():
    net = _mlp()
    X, y = _data(20)
    result = _compare(net, X, y)
    F = fisher(net, nn.CrossEntropyLoss(), X)
    assert set(result.spectra) == {"exact", "K-FAC", "EKFAC"}
    for values in result.spectra.values():
        assert len(values) == F.shape[0] and values == sorted(values, reverse=True)
    assert sum(result.spectra["exact"]) == pytest.approx(np.trace(F))
    assert sum(result.spectra["EKFAC"]) == pytest.approx(np.trace(F))  # EKFAC keeps every block's trace


def test_mc_fisher_errors_match_the_dense_monte_carlo_fisher():
    net = _mlp()
    X, y = _data(12)
    loss_fn = nn.CrossEntropyLoss()
    F = fisher(net, loss_fn, X)
    errors = mc_fisher_errors(net, loss_fn, X, samples=(2, 3), seed=5, chunk_size=5)
    # k = 3 uses all the draws: the same targets as fisher(kind="mc", samples=3) with the same chunks.
    F_mc = fisher(net, loss_fn, X, kind="mc", samples=3, seed=5, chunk_size=5)
    total, blocks = errors[-1]
    assert float(total) == pytest.approx(np.sum((F_mc - F) ** 2), rel=1e-10)
    slices = mk.curvature.layer_slices(net)
    assert [float(b) for b in blocks] == pytest.approx([np.sum((F_mc[s, s] - F[s, s]) ** 2) for s in slices],
                                                       rel=1e-10)
    assert float(errors[0][0]) > 0


def test_monte_carlo_section_and_its_absence():
    net = _mlp()
    X, y = _data(40)
    result = _compare(net, X, y, mc_samples=(1, 8, 64), mc_seeds=2)
    mc = result.monte_carlo
    assert mc["samples"] == [1, 8, 64] and mc["seeds"] == 2
    assert mc["fisher"]["total"][-1] < mc["fisher"]["total"][0]  # 64 samples are better than 1
    assert len(mc["fisher"]["layers"]) == 3 and len(mc["kfac"]["total"]) == 3
    empirical = _compare(net, X, y, kind="empirical", spectra=False)
    assert empirical.monte_carlo == {} and any("Monte-Carlo" in note for note in empirical.notes)
    unlabeled = _compare(net, X, None, spectra=False)
    assert unlabeled.cosines == {} and any("Cosines skipped" in note for note in unlabeled.notes)


def test_to_dict_is_json_and_the_table_prints_every_approximation():
    net = _mlp()
    X, y = _data(15)
    before = [p.data.copy() for p in net.parameters()]
    result = _compare(net, X, y)
    assert all(np.array_equal(p.data, b) and p.grad is None for p, b in zip(net.parameters(), before))
    document = json.loads(json.dumps(result.to_dict()))
    assert set(document) == {"setup", "errors", "sources", "monte_carlo", "cosines", "spectra", "notes", "timings",
                             "kronecker"}
    assert document["setup"]["parameters"] == sum(mk.curvature.layer_sizes(net))
    assert document["setup"]["examples"] == 15
    table = str(result)
    for name in ("K-FAC", "K-FAC tridiagonal", "EKFAC", "Shampoo²", "SOAP", "nearest Kronecker", "diagonal",
                 "block-diagonal", "cross-layer", "k = 4", "nearest Kronecker product K_ll"):
        assert name in table


def test_conv_nets_skip_what_needs_linear_layers():
    net = models.cnn((1, 6, 6), 3, channels=(2,))
    X = np.random.default_rng(0).standard_normal((10, 1, 6, 6))
    y = np.arange(10) % 3
    result = _compare(net, X, y)
    assert "K-FAC tridiagonal" not in result.errors and result.monte_carlo["fisher"] is None
    assert result.errors["EKFAC"]["total"] <= result.errors["K-FAC"]["total"] + 1e-12
    assert any("tridiagonal skipped" in note for note in result.notes)
    mats = figure_matrices(net, nn.CrossEntropyLoss(), X, fisher(net, nn.CrossEntropyLoss(), X))
    assert "block-diagonal" in mats.note
    first = slice(0, mats.boundaries[1])
    assert np.all(mats.approximation[first, mats.boundaries[1]:] == 0)


def test_same_results_on_every_backend(backend_name):
    net = _mlp().to("numpy")  # built on the fixture's backend
    X, y = _data(10)
    reference = _compare(net, X, y).to_dict()
    net.to(backend_name)
    moved = _compare(net, on(backend_name, X), on(backend_name, y)).to_dict()
    for section in ("errors", "sources", "monte_carlo", "cosines"):
        assert _close(moved[section], reference[section]), section


def _close(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(u, v) for u, v in zip(a, b))
    if isinstance(a, float):
        return math.isclose(a, b, rel_tol=1e-8, abs_tol=1e-12)
    return a == b


@pytest.mark.parametrize("bad, message", [
    (dict(kind="mc"), "kind must be one of"),
    (dict(F=np.eye(3)), "F must be the"),
    (dict(damping=0.0), "damping must be a number > 0"),
    (dict(mc_samples=(0, 4)), "mc_samples must be positive ints"),
    (dict(mc_seeds=-1), "mc_seeds must be an int >= 0"),
])
def test_bad_arguments_are_clear_errors(bad, message):
    net = _mlp()
    X, y = _data(5)
    with pytest.raises(ValueError, match=message):
        _compare(net, X, y, **bad)


# --------------------------------------------------------------------------- #
# The figures' matrices and the figures
# --------------------------------------------------------------------------- #
def test_figure_matrices_are_the_middle_layers_of_f_and_kfac():
    net = models.martens_grosse(in_features=6, num_classes=3, hidden=(3, 3, 2, 3, 2))
    X, _ = _data(8, d_in=6)
    loss_fn = nn.CrossEntropyLoss()
    F = fisher(net, loss_fn, X)
    mats = figure_matrices(net, loss_fn, X, F)
    assert mats.layers == [1, 2, 3, 4]
    slices = mk.curvature.layer_slices(net)
    rows = np.concatenate([np.arange(s.start, s.stop) for s in slices[1:5]])
    assert np.array_equal(mats.fisher, F[np.ix_(rows, rows)])
    assert mats.boundaries == [0, 12, 20, 29, 37]  # W̄ of 3x(3+1), 2x(3+1), 3x(2+1), 2x(3+1)
    factors = kfac_factors(net, loss_fn, X)
    for a, layer in enumerate(mats.layers):
        block = slice(mats.boundaries[a], mats.boundaries[a + 1])
        assert np.allclose(mats.approximation[block, block], np.kron(*factors[layer]), rtol=1e-12, atol=1e-15)
    assert not np.allclose(mats.approximation[0:12, 12:24], 0)  # cross-layer blocks A_ij ⊗ G_ij are there
    assert default_figure_layers(3) == [0, 1, 2]
    with pytest.raises(ValueError, match="layers must be increasing layer indices"):
        figure_matrices(net, loss_fn, X, F, layers=[2, 1])


def test_figures_are_written(tmp_path):
    net = _mlp(hidden=(4, 3, 3))
    X, y = _data(20)
    loss_fn = nn.CrossEntropyLoss()
    F = fisher(net, loss_fn, X)
    result = _compare(net, X, y, F=F)
    mats = figure_matrices(net, loss_fn, X, F)
    paths = [
        plot.fisher_vs_kfac(mats.fisher, mats.approximation, mats.boundaries, tmp_path / "fig2.png", title="t"),
        plot.inverse_structure(mats.approximation, mats.boundaries, tmp_path / "fig3.png"),
        plot.spectra(result.spectra, tmp_path / "spectra.png"),
        plot.monte_carlo_error(result.monte_carlo["samples"], {"MC Fisher": result.monte_carlo["fisher"]["total"]},
                               tmp_path / "mc.png"),
        plot.scaling_loglog([8, 16, 32], {"K-FAC": [1e-3, 4e-3, None], "exact": [1e-2, 2e-1, 3.0]},
                            tmp_path / "scaling.png", title="cost", slopes={"exact": 4.2}),
    ]
    for path in paths:
        assert _is_png(path) and path.stat().st_size > 1000


def test_block_means_and_a_singular_inverse():
    M = np.diag([2.0, 2.0, 1.0, 0.0])  # singular: the figure damps it and says so
    assert np.allclose(plot.block_means(M, [0, 2, 4]), [[1.0, 0.0], [0.0, 0.25]])
    inverse, damping = plot.matrices.damped_inverse(M, None)
    assert damping == pytest.approx(2e-6) and np.all(np.isfinite(inverse))
    assert plot.matrices.damped_inverse(np.eye(2), None)[1] == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda p: plot.fisher_vs_kfac(np.eye(4), np.eye(3), [0, 4], p), "F_tilde must be shape"),
    (lambda p: plot.fisher_vs_kfac(np.eye(4), np.eye(4), [0, 3], p), "boundaries must be increasing"),
    (lambda p: plot.fisher_vs_kfac(np.eye(4), np.eye(4), [0, 4], p, quantile=0), "quantile must be"),
    (lambda p: plot.inverse_structure(np.ones((2, 3)), [0, 2], p), "must be a square matrix"),
    (lambda p: plot.spectra({}, p), "eigenvalues is empty"),
    (lambda p: plot.monte_carlo_error([1, 4], {"a": [1.0]}, p), "one value per x entry"),
    (lambda p: plot.scaling_loglog([0, 2], {"a": [1, 2]}, p), "widths must be"),
])
def test_plot_arguments_are_checked(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "x.png")


# --------------------------------------------------------------------------- #
# The network of Martens & Grosse 2015
# --------------------------------------------------------------------------- #
def test_martens_grosse_network():
    net = models.martens_grosse()
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.weight.shape[1], m.weight.shape[0]) for m in linear] == [(256, 20)] + [(20, 20)] * 4 + [(20, 10)]
    assert sum(isinstance(m, nn.Tanh) for m in net.modules()) == 5
    assert sum(mk.curvature.layer_sizes(net)) == 7030
    digits = type("Dataset", (), {"image_shape": (1, 8, 8), "num_classes": 10})()
    assert sum(mk.curvature.layer_sizes(models.build("martens-grosse", digits))) == 3190
    assert models.input_is_flat("martens-grosse")
    assert backend.get_default_dtype() == np.float64
