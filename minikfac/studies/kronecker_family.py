"""How near Shampoo comes to the best Kronecker product, beside K-FAC (Morwani et al. 2024).

Morwani et al. 2024 state that Shampoo², R ⊗ L, is one step of the power
iteration for the nearest Kronecker product of the gradients' second moment,
started from (I, I), and that it lands close to that optimum. This study
measures the statement layer by layer on a network's exact Fisher blocks F_ll,
with K-FAC's A ⊗ G beside it (:mod:`minikfac.curvature.shampoo`):

- to the optimum: ‖F̂_ll − K_ll‖_F / ‖K_ll‖_F with K_ll the nearest Kronecker
  product (Van Loan & Pitsianis 1993), for K-FAC, Shampoo² and Shampoo
  (each Shampoo optimally scaled: the c_l minimising ‖F_ll − c_l·(R^p ⊗ L^p)‖_F)
  and for more rounds of the power iteration;
- to the block: ‖F_ll − F̂_ll‖_F / ‖F_ll‖_F for the same, plus EKFAC, SOAP
  (EKFAC in Shampoo's eigenbasis, Vyas et al. 2024) and K_ll itself (the floor
  of every Kronecker product);
- the scales: the optimal c_l over the trace-keeping one (for Shampoo² the
  1/tr F_ll of Morwani et al. 2024), and the gap σ₂/σ₁ of the rearranged
  block, the power iteration's rate per round.

:func:`minikfac.studies.approximation_errors.compare` (``minikfac compare``) adds
Shampoo², Shampoo, SOAP and the nearest Kronecker product to its error table and
prints the distances to the optimum through :func:`distances_to_nearest`.
"""

from dataclasses import asdict, dataclass

from minikfac import backend
from minikfac.curvature import statistics
from minikfac.curvature.ekfac import EKFAC
from minikfac.curvature.exact import fisher_blocks
from minikfac.curvature.kfac_block_diagonal import KFACBlockDiagonal
from minikfac.curvature.params import layer_slices
from minikfac.curvature.rearrangement import kronecker_spectrum
from minikfac.curvature.shampoo import (factor_shapes, kronecker_inner_product, kronecker_power_iteration,
                                        nearest_kronecker_approximation, optimal_scales, powered_factors, shampoo,
                                        shampoo_factors, soap, trace_scales)

#: The approximations whose distance to the nearest Kronecker product is measured, in the tables' order.
TO_NEAREST = ("K-FAC", "Shampoo²", "Shampoo")
#: Powers of Shampoo built by :func:`family_approximations` (1: Shampoo², 1/2: Shampoo).
FAMILY_POWERS = (1, 0.5)


def _value(x):
    return float(backend.to_numpy(x)) if backend.is_array(x) else float(x)


def _squared_norm(M):
    return backend.get_array_module(M).sum(M * M)


def _relative(difference, reference):
    return (_value(_squared_norm(difference)) / _value(_squared_norm(reference))) ** 0.5


def family_approximations(net, loss_fn, X, y=None, kind="true", blocks=None, chunk_size=None, factors=None):
    """Shampoo², Shampoo, SOAP and the nearest Kronecker product of ``net``: name -> Approximation.

    blocks : the exact blocks F_ll of ``kind`` (computed when None). Shampoo's
    factors take one pass over X, SOAP's scalings another; both Shampoos are
    optimally scaled on the blocks. kind : "true", "empirical" or "ggn", the
    same cotangents as the blocks'. factors : Shampoo's (R, L), if at hand.
    """
    statistics.check_kind(kind, ("true", "empirical", "ggn"))
    if blocks is None:
        blocks = fisher_blocks(net, loss_fn, X, y, kind, chunk_size=chunk_size)
    if factors is None:
        factors = shampoo_factors(net, loss_fn, X, y, kind, chunk_size=chunk_size)
    built = {}
    for power in FAMILY_POWERS:
        approx = shampoo(net, loss_fn, X, y, power, kind, "optimal", blocks, factors=factors, chunk_size=chunk_size)
        built[approx.name] = approx
    built["SOAP"] = soap(net, loss_fn, X, y, kind, chunk_size=chunk_size, factors=factors)
    built["nearest Kronecker"] = nearest_kronecker_approximation(blocks, factor_shapes(net), layer_slices(net))
    return built


def distances_to_nearest(approximations, names=TO_NEAREST):
    """name -> {"total", "layers"}: ‖F̂_ll − K_ll‖/‖K_ll‖ per layer, and √(Σ‖F̂_ll − K_ll‖²/Σ‖K_ll‖²).

    approximations : name -> Approximation, with "nearest Kronecker" among
    them; ``names`` that are missing are left out.
    """
    nearest = approximations["nearest Kronecker"]
    count = len(nearest.slices)
    reference = [_squared_norm(nearest.block(i)) for i in range(count)]
    result = {}
    for name in names:
        if name not in approximations:
            continue
        squared = [_squared_norm(approximations[name].block(i) - nearest.block(i)) for i in range(count)]
        result[name] = {"total": (_value(sum(squared)) / _value(sum(reference))) ** 0.5,
                        "layers": [(_value(e) / _value(r)) ** 0.5 for e, r in zip(squared, reference)]}
    return result


@dataclass
class KroneckerDistances:
    """What :func:`kronecker_distances` measured, per layer; every number a host float.

    Attributes
    ----------
    setup : kind, examples N, the factor shapes (n, m) of each layer, the power-iteration rounds.
    to_exact : name -> [‖F_ll − F̂_ll‖/‖F_ll‖].
    to_nearest : name -> {"layers": [‖F̂_ll − K_ll‖/‖K_ll‖], "total": √(Σ‖F̂_ll − K_ll‖²/Σ‖K_ll‖²)},
        K_ll the nearest Kronecker product.
    scales : name -> [optimal c_l / trace-keeping c_l] for Shampoo² and Shampoo.
    kronecker_gap : [σ₂/σ₁ of R(F_ll)], the power iteration's rate per round.
    """

    setup: dict
    to_exact: dict
    to_nearest: dict
    scales: dict
    kronecker_gap: list

    def to_dict(self):
        """A JSON-ready dict."""
        return asdict(self)

    def table(self):
        """The numbers as aligned text, one column per layer."""
        return format_distances(self)

    __str__ = table


def _check_steps(power_steps):
    steps = list(power_steps)
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in steps):
        raise ValueError(f"kronecker_distances: power_steps must be ints >= 1, got {power_steps!r}")
    return sorted(set(steps))


def kronecker_distances(net, loss_fn, X, y=None, kind="true", blocks=None, power_steps=(2, 3, 5), chunk_size=None,
                        approximations=None, to_exact=None):
    """Morwani et al. 2024's statement measured on ``net``: distances to the nearest Kronecker product.

    Parameters
    ----------
    net, loss_fn, X, y : the network, its loss, the data (y for "empirical").
    kind : the Fisher of the blocks and of every factor: "true", "empirical" or "ggn".
    blocks : the exact blocks F_ll (:func:`minikfac.curvature.exact.fisher_blocks`),
        if already computed.
    power_steps : rounds k of :func:`minikfac.curvature.shampoo.kronecker_power_iteration`
        from (I, I) to measure too (k = 1 is Shampoo², optimally scaled).
    approximations : name -> Approximation already built on the same data and
        kind (what :func:`minikfac.studies.approximation_errors.compare` holds);
        those of K-FAC, EKFAC and :func:`family_approximations` that are missing are built.
    to_exact : name -> [‖F_ll − F̂_ll‖/‖F_ll‖] already measured; the rest is measured here.

    Returns
    -------
    :class:`KroneckerDistances`.
    """
    steps = _check_steps(power_steps)
    statistics.check_kind(kind, ("true", "empirical", "ggn"))
    if blocks is None:
        blocks = fisher_blocks(net, loss_fn, X, y, kind, chunk_size=chunk_size)
    shapes = factor_shapes(net)
    factors = shampoo_factors(net, loss_fn, X, y, kind, chunk_size=chunk_size)
    built = dict(approximations or {})
    if "K-FAC" not in built:
        built["K-FAC"] = KFACBlockDiagonal.from_net(net, loss_fn, X, y, kind, chunk_size=chunk_size)
    if "EKFAC" not in built:
        built["EKFAC"] = EKFAC.from_net(net, loss_fn, X, y, kind, chunk_size=chunk_size)
    if not {"Shampoo²", "Shampoo", "SOAP", "nearest Kronecker"} <= set(built):
        built.update(family_approximations(net, loss_fn, X, y, kind, blocks, chunk_size, factors))
    built = {name: built[name] for name in ("K-FAC", "EKFAC", "Shampoo²", "Shampoo", "SOAP", "nearest Kronecker")}
    slices = built["K-FAC"].slices
    for k in steps:
        pairs = [kronecker_power_iteration(B, shape, k) for B, shape in zip(blocks, shapes)]
        built[f"power iteration, {k} rounds"] = KFACBlockDiagonal(pairs, slices)
    measured = dict(to_exact or {})
    to_exact = {name: list(measured[name]) if name in measured else
                [_relative(B - approx.block(i), B) for i, B in enumerate(blocks)] for name, approx in built.items()}
    to_nearest = distances_to_nearest(built, list(TO_NEAREST) + [f"power iteration, {k} rounds" for k in steps])
    xp = backend.get_array_module(blocks[0])
    traces = [xp.trace(B) for B in blocks]
    scales = {}
    for power in (1, 0.5):
        pairs = powered_factors(factors, power)
        optimal = optimal_scales(pairs, [kronecker_inner_product(B, A, G) for B, (A, G) in zip(blocks, pairs)])
        by_trace = trace_scales(pairs, traces)
        scales["Shampoo²" if power == 1 else "Shampoo"] = [_value(o / t) for o, t in zip(optimal, by_trace)]
    gap = []
    for B, (n, m) in zip(blocks, shapes):
        sigma = kronecker_spectrum(B, n, m)
        gap.append(_value(sigma[1] / sigma[0]) if sigma.shape[0] > 1 else 0.0)
    setup = {"kind": kind, "examples": int(X.shape[0]), "shapes": [list(s) for s in shapes], "power_steps": steps}
    return KroneckerDistances(setup, to_exact, to_nearest, scales, gap)


def format_distances(result):
    """The text table of a :class:`KroneckerDistances`."""
    count = len(result.setup["shapes"])
    width = 34

    def row(label, values):
        return f"  {label:<{width}}" + "".join(f"{v:10.4f}" for v in values)

    header = " " * (2 + width) + "".join(f"{'layer ' + str(i + 1):>10}" for i in range(count))
    shapes = ", ".join(f"{n}x{m}" for n, m in result.setup["shapes"])
    lines = [f"The Kronecker family on the exact {result.setup['kind']} Fisher blocks of "
             f"N = {result.setup['examples']:,} examples; factor shapes (A side x G side): {shapes}", "",
             "Distance to the nearest Kronecker product K_ll: ‖F̂_ll − K_ll‖/‖K_ll‖ (Morwani et al. 2024)", header]
    lines += [row(name, value["layers"]) for name, value in result.to_nearest.items()]
    lines += ["", "Distance to the exact block: ‖F_ll − F̂_ll‖/‖F_ll‖", header]
    lines += [row(name, values) for name, values in result.to_exact.items()]
    lines += ["", "Optimal scale ÷ trace-keeping scale (Shampoo²: ÷ 1/tr F_ll)", header]
    lines += [row(name, values) for name, values in result.scales.items()]
    lines += ["", header, row("σ₂/σ₁ of R(F_ll)", result.kronecker_gap)]
    return "\n".join(lines)
