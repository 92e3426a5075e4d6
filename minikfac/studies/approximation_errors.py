"""How good is each approximation of the Fisher, and why: errors, their sources, steps, spectra.

For a net, a loss and data X, :func:`compare` measures every approximation F̂
of the exact Fisher F (P, P) of :mod:`minikfac.curvature.approximation` — K-FAC, K-FAC tridiagonal,
EKFAC, the Kronecker family of :mod:`minikfac.curvature.shampoo` (Shampoo² and
Shampoo optimally scaled per layer, SOAP, each block's nearest Kronecker
product), the exact diagonal and the exact block-diagonal — by

- the relative Frobenius error ‖F − F̂‖/‖F‖, and per layer ‖F_ll − F̂_ll‖/‖F_ll‖;
- the sources of K-FAC's error (Martens & Grosse 2015, §3 and §4).
  Off-diagonal and diagonal blocks are orthogonal in the Frobenius inner
  product, so for block-diagonal K-FAC

      ‖F − F̂‖² = ‖F − blockdiag(F)‖²  +  Σ_l ‖F_ll − A_l ⊗ G_l‖²
                  cross-layer blocks     independence: E[ā āᵀ ⊗ g gᵀ] vs E[ā āᵀ] ⊗ E[g gᵀ]

  and no Kronecker product beats the nearest one (Van Loan & Pitsianis 1993,
  :func:`minikfac.curvature.rearrangement.nearest_kronecker`): its error is the floor under K-FAC's;
- how near K-FAC, Shampoo², Shampoo and the power iteration come to that
  nearest Kronecker product (Morwani et al. 2024; :mod:`minikfac.studies.kronecker_family`);
- Monte-Carlo noise: the MC Fisher with k sampled targets per example, and
  K-FAC built from those samples, against k;
- the cosine between the exact damped natural gradient (F + λI)⁻¹∇ and each
  approximation's ``solve(∇, λ)`` (the plain gradient as a baseline);
- spectra: eig(F), K-FAC's products a_j·g_i, EKFAC's re-estimated values.

Memory stays near one dense P×P matrix besides F: approximations are compared
block by block (``block(i)``), and only the tridiagonal model, whose inverse
is banded but not the matrix itself, is formed densely.
"""

import time
from dataclasses import asdict, dataclass, field

from minikfac import backend
from minikfac.curvature import rearrangement, statistics
from minikfac.curvature.approximation import ExactBlockDiagonal, ExactDiagonal
from minikfac.curvature.statistics import per_example_gradients
from minikfac.curvature.ekfac import EKFAC
from minikfac.curvature.exact import fisher
from minikfac.curvature.factors import kfac_factors
from minikfac.curvature.kfac_block_diagonal import KFACBlockDiagonal
from minikfac.curvature.params import layer_slices, parametrised_layers
from minikfac.curvature.kfac_tridiagonal import KFACTridiagonal
from minikfac.nn.linear import Linear
from minikfac.studies.kronecker_family import family_approximations, kronecker_distances
from minikfac.studies.monte_carlo import mc_fisher_errors

MAX_KRONECKER_VALUES = 8  # normalised singular values of R(F_ll) kept per layer


def _value(x):
    """A host float from a 0-d array or number (results are reported on the host)."""
    return float(backend.to_numpy(x)) if backend.is_array(x) else float(x)


def _squared_norm(M):
    xp = backend.get_array_module(M)
    return xp.sum(M * M)


def _relative(squared_error, squared_norm):
    return (max(_value(squared_error), 0.0) / _value(squared_norm)) ** 0.5


def _cosine(u, v):
    xp = backend.get_array_module(u)
    return _value(xp.sum(u * v) / xp.sqrt(_squared_norm(u) * _squared_norm(v)))


@dataclass
class Comparison:
    """What :func:`compare` measured; every number is a host float.

    Attributes
    ----------
    setup : kind, damping, examples N, parameters P, layer names and sizes.
    errors : approximation name -> {"total": ‖F − F̂‖/‖F‖, "layers": [‖F_ll − F̂_ll‖/‖F_ll‖]}.
    sources : "cross_layer" (‖F − blockdiag F‖/‖F‖), "independence" and
        "best_kronecker" ({"total", "layers"}, totals relative to ‖F‖),
        "kronecker_spectra" (per layer, the largest σ_k/‖σ‖ of R(F_ll)).
    monte_carlo : "samples" k, "seeds", "fisher" ({"total": [per k], "layers":
        [[per k] per layer]} or None) and "kfac" ({"total": [per k]}): relative
        errors averaged over the seeds; empty when not measured.
    cosines : name -> cos((F + λI)⁻¹∇, F̂ solve); "gradient" is ∇ itself.
    spectra : name -> eigenvalues, descending.
    notes : what was skipped or approximated, and why. timings : step -> seconds.
    kronecker : the Kronecker family's study
        (:class:`minikfac.studies.kronecker_family.KroneckerDistances` as a dict):
        "to_nearest": name -> {"total", "layers"}, the distance ‖F̂_ll − K_ll‖/‖K_ll‖
        of K-FAC, Shampoo², Shampoo and a few rounds of the power iteration to
        each block's nearest Kronecker product K_ll (whole: √(Σ‖F̂_ll − K_ll‖²/Σ‖K_ll‖²));
        "to_exact", "scales", "kronecker_gap", "setup".
    """

    setup: dict
    errors: dict
    sources: dict
    monte_carlo: dict
    cosines: dict
    spectra: dict
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    kronecker: dict = field(default_factory=dict)

    def to_dict(self):
        """A JSON-ready dict (floats, lists and strings only), one key per attribute."""
        return asdict(self)

    def table(self):
        """The results as aligned text (what ``minikfac compare`` prints)."""
        return format_table(self)

    __str__ = table


def check_fisher(F, size, caller):
    """Raise ValueError unless F is an array of shape (size, size) (``caller`` names the function)."""
    if not backend.is_array(F) or tuple(F.shape) != (size, size):
        got = tuple(F.shape) if backend.is_array(F) else type(F).__name__
        raise ValueError(f"{caller}: F must be the ({size}, {size}) Fisher of this net, got {got}")


def _timed(timings, log, name, function, *args):
    """``function(*args)``, its seconds recorded in ``timings[name]`` and reported through ``log``."""
    started = time.perf_counter()
    result = function(*args)
    timings[name] = time.perf_counter() - started
    if log:
        log(f"  {name}: {timings[name]:.1f} s")
    return result


def _check_options(damping, mc_samples, mc_seeds):
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not 0 < damping < float("inf"):
        raise ValueError(f"compare: damping must be a number > 0 (F is singular whenever N·C < P), got {damping!r}")
    samples = sorted(set(mc_samples))
    if not samples or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in samples):
        raise ValueError(f"compare: mc_samples must be positive ints, got {mc_samples!r}")
    if isinstance(mc_seeds, bool) or not isinstance(mc_seeds, int) or mc_seeds < 0:
        raise ValueError(f"compare: mc_seeds must be an int >= 0, got {mc_seeds!r}")
    return samples


def compare(net, loss_fn, X, y=None, kind="true", damping=1e-3, mc_samples=(1, 4, 16, 64), mc_seeds=2,
            seed=0, F=None, spectra=True, chunk_size=None, log=None):
    """Compare the Fisher approximations of ``net`` on ``X`` with the exact Fisher (module docstring).

    Parameters
    ----------
    net, loss_fn : the network (Linear / Conv2d layers) and its loss.
    X : (N, ...) inputs; y : targets. With ``y`` the cosines use the mean-loss
        gradient ∇ = (1/N) Σ_n ∇ℓ_n (P,); without it they are skipped.
    kind : the Fisher compared, "true", "empirical" (needs y) or "ggn"; the
        approximations are built with the same kind.
    damping : λ > 0 of the natural-gradient steps (F + λI)⁻¹∇.
    mc_samples : the k of the Monte-Carlo section (kind "true" only); the
        k-sample estimates use the first k of max(k) draws. mc_seeds : how many
        independent draws to average over (0 skips the section).
    seed : first seed of those draws. F : the exact (P, P) Fisher, if already
        computed (it is the slow part). spectra : compute eig(F) (O(P³)).
    chunk_size : examples per pass (see :func:`minikfac.curvature.statistics.chunks`).
    log : callable receiving one progress line per step, or None.

    Returns
    -------
    :class:`Comparison`. The network's parameters and gradients are unchanged.
    """
    statistics.check_kind(kind, ("true", "empirical", "ggn"))
    samples = _check_options(damping, mc_samples, mc_seeds)
    timings, notes = {}, []
    layers, slices = parametrised_layers(net), layer_slices(net)
    size = slices[-1].stop
    if F is None:
        F = _timed(timings, log, "exact Fisher", fisher, net, loss_fn, X, y, kind, 1, seed, chunk_size)
    else:
        check_fisher(F, size, "compare")
    xp = backend.get_array_module(F)
    norms = _squared_norm(F), [_squared_norm(F[s, s]) for s in slices]  # ‖F‖², [‖F_ll‖²]
    linear = all(isinstance(layer, Linear) for layer in layers)
    if not linear:
        notes.append("K-FAC tridiagonal skipped: cross-layer factors exist for Linear layers only.")
    approximations = _timed(timings, log, "approximations", _approximations, net, loss_fn, X, y, kind, F,
                            chunk_size, linear)
    errors = _timed(timings, log, "errors", _errors, approximations, F, slices, norms, notes)
    sources = _timed(timings, log, "Kronecker structure", _sources, approximations["K-FAC"], F, slices, norms)
    kronecker = _timed(timings, log, "Kronecker family", _kronecker_family, net, loss_fn, X, y, kind, F, slices,
                       chunk_size, approximations, errors)
    monte_carlo = {}
    if kind != "true" or not mc_seeds:
        notes.append("Monte-Carlo noise: measured for kind='true' with mc_seeds >= 1 only.")
    else:
        monte_carlo = _timed(timings, log, "Monte-Carlo noise", _monte_carlo, net, loss_fn, X, F, norms, samples,
                             mc_seeds, seed, chunk_size, notes)
    cosines = {}
    if y is None:
        notes.append("Cosines skipped: they need the labels y for the gradient.")
    else:
        gradient = per_example_gradients(net, loss_fn, X, y, chunk_size).mean(axis=0)
        cosines = _timed(timings, log, "natural gradients", _cosines, approximations, F, slices, gradient, damping)
    eigenvalues = {}
    if spectra:
        eigenvalues = _timed(timings, log, "spectra", lambda: {
            "exact": backend.to_numpy(xp.linalg.eigvalsh(F)[::-1]).tolist(),
            "K-FAC": backend.to_numpy(approximations["K-FAC"].eigenvalues()).tolist(),
            "EKFAC": backend.to_numpy(approximations["EKFAC"].eigenvalues()).tolist()})
    setup = {"kind": kind, "damping": float(damping), "examples": int(X.shape[0]), "parameters": size,
             "layers": [repr(layer) for layer in layers], "layer_sizes": [s.stop - s.start for s in slices]}
    return Comparison(setup, errors, sources, monte_carlo, cosines, eigenvalues, notes, timings, kronecker)


def _approximations(net, loss_fn, X, y, kind, F, chunk_size, linear):
    """name -> :class:`minikfac.curvature.approximation.Approximation`; the exact diagonal and blocks are read off F."""
    options = dict(y=y, kind=kind, chunk_size=chunk_size)
    slices = layer_slices(net)
    built = {"K-FAC": KFACBlockDiagonal.from_net(net, loss_fn, X, **options)}
    if linear:
        built["K-FAC tridiagonal"] = KFACTridiagonal.from_net(net, loss_fn, X, **options)
    built["EKFAC"] = EKFAC.from_net(net, loss_fn, X, **options)
    built.update(family_approximations(net, loss_fn, X, y, kind, [F[s, s] for s in slices], chunk_size))
    built["diagonal"] = ExactDiagonal(backend.get_array_module(F).diagonal(F).copy(), slices)
    built["block-diagonal"] = ExactBlockDiagonal([F[s, s] for s in slices], slices)
    return built


def _kronecker_family(net, loss_fn, X, y, kind, F, slices, chunk_size, approximations, errors):
    """The study of :mod:`minikfac.studies.kronecker_family` on F's blocks, reusing what compare built, as a dict."""
    return kronecker_distances(net, loss_fn, X, y, kind, [F[s, s] for s in slices], chunk_size=chunk_size,
                               approximations=approximations,
                               to_exact={name: error["layers"] for name, error in errors.items()}).to_dict()


def _errors(approximations, F, slices, norms, notes):
    """name -> {"total", "layers"}; block-diagonal F̂ block by block (F̂'s off-diagonal blocks are 0)."""
    fisher_sq, block_sq = norms
    cross_sq = fisher_sq - sum(block_sq)
    errors = {}
    for name, approx in approximations.items():
        if isinstance(approx, KFACTridiagonal):  # its off-diagonal blocks are not zero: dense, once
            difference = _tridiagonal_dense(approx, F, notes)
            difference -= F
            layer_sq = [_squared_norm(difference[s, s]) for s in slices]
            total = _relative(_squared_norm(difference), fisher_sq)
            del difference
        else:
            layer_sq = [_squared_norm(F[s, s] - approx.block(i)) for i, s in enumerate(slices)]
            total = _relative(cross_sq + sum(layer_sq), fisher_sq)
        errors[name] = {"total": total, "layers": [_relative(e, b) for e, b in zip(layer_sq, block_sq)]}
    return errors


def _tridiagonal_dense(approx, F, notes):
    """The chain model F̂ (P, P); undamped, or with a tiny factored damping if a factor is singular.

    Undamped, the model needs every A_ii and G_ii invertible (Martens & Grosse
    2015, App. B); a softmax output's G is not (its rows sum to 0), nor an
    A whose input is constant (image borders). The tiny damping λ = 1e-6·tr(F)/P
    moves the damped factors by about √(1e-6) = 0.1% of their scale.
    """
    try:
        return approx.to_dense()
    except ValueError:
        xp = backend.get_array_module(F)
        tiny = _value(xp.trace(F)) / F.shape[0] * 1e-6
        notes.append(f"K-FAC tridiagonal: a factor is singular (a softmax output's G, or the A of an input "
                     f"that never changes), so the chain model's inverse does not exist as it stands; its "
                     f"errors use the factors damped by λ = {tiny:.2g}, a millionth of F's mean eigenvalue "
                     f"tr(F)/P, which moves them by about 0.1% of their scale.")
        return approx.to_dense(tiny)


def _sources(kfac, F, slices, norms):
    """Cross-layer, independence and best-Kronecker errors (module docstring).

    Per layer, R(F_ll) (:func:`minikfac.curvature.rearrangement.rearrange`) has ‖R‖ = ‖F_ll‖ and its
    singular values σ_k: the nearest Kronecker product misses Σ_{k>1} σ_k².
    """
    fisher_sq, block_sq = norms
    independence, best, spectra = [], [], []
    for i, s in enumerate(slices):
        factors = kfac.factors[i]
        block = F[s, s]
        independence.append(_squared_norm(block - factors.to_dense()))
        sigma = rearrangement.kronecker_spectrum(block, factors.A.shape[0], factors.G.shape[0])
        best.append(_squared_norm(sigma[1:]) * block_sq[i])
        spectra.append(backend.to_numpy(sigma[:MAX_KRONECKER_VALUES]).tolist())
    return {
        "cross_layer": _relative(fisher_sq - sum(block_sq), fisher_sq),
        "independence": {"total": _relative(sum(independence), fisher_sq),
                         "layers": [_relative(e, b) for e, b in zip(independence, block_sq)]},
        "best_kronecker": {"total": _relative(sum(best), fisher_sq),
                           "layers": [_relative(e, b) for e, b in zip(best, block_sq)]},
        "kronecker_spectra": spectra,
    }


def _cosines(approximations, F, slices, gradient, damping):
    """cos((F + λI)⁻¹∇, step) for each approximation's damped step; "gradient" is ∇ itself.

    The exact steps use one LU solve per matrix (``xp.linalg.solve``): a
    single right-hand side does not repay the eigendecomposition that
    :class:`minikfac.curvature.approximation.Exact` caches for repeated solves.
    """
    xp = backend.get_array_module(F)

    def damped_solve(matrix, v):
        shifted = matrix + damping * xp.eye(matrix.shape[0], dtype=matrix.dtype)
        return xp.linalg.solve(shifted, v)

    natural = damped_solve(F, gradient)
    steps = {"gradient": gradient, "exact": natural}
    for name, approx in approximations.items():
        if isinstance(approx, ExactBlockDiagonal):
            steps[name] = xp.concatenate([damped_solve(F[s, s], gradient[s]) for s in slices])
        elif isinstance(approx, KFACTridiagonal):
            steps[name + " (factored damping)"] = approx.solve(gradient, damping, factored=True)
        elif isinstance(approx, KFACBlockDiagonal) and name == "K-FAC":
            steps[name] = approx.solve(gradient, damping)
            steps[name + " (factored damping)"] = approx.solve(gradient, damping, factored=True)
        else:
            steps[name] = approx.solve(gradient, damping)
    return {name: _cosine(step, natural) for name, step in steps.items()}


def _monte_carlo(net, loss_fn, X, F, norms, samples, seeds, seed, chunk_size, notes):
    """Relative errors of the MC Fisher and of MC K-FAC against k, averaged over ``seeds`` draws."""
    slices = layer_slices(net)
    fisher_sq, block_sq = norms
    cross_sq = fisher_sq - sum(block_sq)
    linear = all(isinstance(layer, Linear) for layer in parametrised_layers(net))
    kfac_runs, fisher_runs = [], []
    for run in range(seeds):
        errors = []
        for k in samples:
            factors = kfac_factors(net, loss_fn, X, kind="mc", samples=k, seed=seed + run, chunk_size=chunk_size)
            layer_sq = [_squared_norm(F[s, s] - _kron(A, G)) for s, (A, G) in zip(slices, factors)]
            errors.append(_relative(cross_sq + sum(layer_sq), fisher_sq))
        kfac_runs.append(errors)
        if linear:
            fisher_runs.append(mc_fisher_errors(net, loss_fn, X, samples, seed + run, chunk_size))
    result = {"samples": list(samples), "seeds": seeds,
              "kfac": {"total": [sum(column) / seeds for column in zip(*kfac_runs)]}, "fisher": None}
    if linear:
        total = [sum(_relative(run[k][0], fisher_sq) for run in fisher_runs) / seeds for k in range(len(samples))]
        layers = [[sum(_relative(run[k][1][i], block_sq[i]) for run in fisher_runs) / seeds
                   for k in range(len(samples))] for i in range(len(slices))]
        result["fisher"] = {"total": total, "layers": layers}
    else:
        notes.append("MC Fisher noise: computed for Linear-only nets (through the per-example kernel).")
    return result


def _kron(A, G):
    """kron(A, G) on A's backend."""
    return backend.get_array_module(A).kron(A, G)


# --------------------------------------------------------------------------- #
# The printed table
# --------------------------------------------------------------------------- #
def _number(value):
    return f"{value:9.2e}" if 0 < abs(value) < 1e-3 else f"{value:9.4f}"


LABEL_WIDTH = 37


def _row(label, values):
    return f"  {label:<{LABEL_WIDTH}}" + "".join(_number(v) for v in values)


def format_table(result):
    """The text table of a :class:`Comparison` (errors, sources, Monte-Carlo noise, cosines)."""
    setup = result.setup
    count = len(setup["layer_sizes"])
    indent = " " * (2 + LABEL_WIDTH)
    header = indent + f"{'whole':>9}" + "".join(f"{'layer ' + str(i + 1):>9}" for i in range(count))
    lines = [f"Exact Fisher ({setup['kind']}) of N = {setup['examples']:,} examples, P = {setup['parameters']:,} "
             f"parameters; layer sizes {', '.join(f'{n:,}' for n in setup['layer_sizes'])}",
             "", "Relative Frobenius error ‖F − F̂‖/‖F‖ (layers: ‖F_ll − F̂_ll‖/‖F_ll‖)", header]
    for name, error in result.errors.items():
        lines.append(_row(name, [error["total"]] + error["layers"]))
    sources = result.sources
    lines += ["", "Sources of K-FAC's error (whole: relative to ‖F‖)", header,
              _row("cross-layer blocks dropped", [sources["cross_layer"]]),
              _row("independence: E[āāᵀ⊗ggᵀ] vs A⊗G", [sources["independence"]["total"]]
                   + sources["independence"]["layers"]),
              _row("best Kronecker product (floor)", [sources["best_kronecker"]["total"]]
                   + sources["best_kronecker"]["layers"])]
    combined = (sources["cross_layer"] ** 2 + sources["independence"]["total"] ** 2) ** 0.5
    lines.append(f"  √(cross² + independence²) = {combined:.4f} = K-FAC's whole error")
    to_nearest = result.kronecker.get("to_nearest")
    if to_nearest:
        lines += ["", "Distance to each block's nearest Kronecker product K_ll, ‖F̂_ll − K_ll‖/‖K_ll‖ "
                      "(Morwani et al. 2024)", header]
        lines += [_row(name, [value["total"]] + value["layers"]) for name, value in to_nearest.items()]
        lines += ["  Shampoo² = c_l·(R ⊗ L), Shampoo = c_l·(R^½ ⊗ L^½), c_l Frobenius-optimal per layer;",
                  "  SOAP = EKFAC in the eigenbasis of (R, L); power iteration: k rounds from (I, I) (1 round is "
                  "Shampoo²)"]
    mc = result.monte_carlo
    if mc:
        lines += ["", f"Monte-Carlo noise, relative error to F (mean of {mc['seeds']} draws)",
                  indent + "".join(f"{'k = ' + str(k):>9}" for k in mc["samples"])]
        if mc["fisher"]:
            lines.append(_row("MC Fisher, k samples per example", mc["fisher"]["total"]))
        lines.append(_row("K-FAC from k samples per example", mc["kfac"]["total"]))
    if result.cosines:
        lines += ["", f"Cosine with the exact step (F + λI)⁻¹∇, λ = {setup['damping']:g}"]
        lines += [_row(name, [value]) for name, value in result.cosines.items()]
    if result.spectra:
        lines += ["", "Largest eigenvalue: " + ", ".join(f"{name} {values[0]:.4g}"
                                                        for name, values in result.spectra.items())]
    if result.notes:
        lines += ["", "Notes:"] + [f"  - {note}" for note in result.notes]
    return "\n".join(lines)
