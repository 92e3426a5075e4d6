"""K-FAC's state: what the optimizer keeps for each layer, how a step updates it, and what a checkpoint holds.

Per layer (keyed by its index in network order): the running averages of A
and G (:mod:`minikfac.curvature.running_average`: the averages, the rows not
yet folded in, and their decay), then either factored damping's inverses or
the factors' eigendecompositions (and EKFAC's scalings), and the last update
δ₀ as a W̄ matrix. Overall (key ``"global"``): the numbers of
:data:`GLOBAL_STATE`.

A step (:meth:`minikfac.optim.KFAC.step`) works on copies of the layers'
entries: :func:`with_statistics` adds the step's statistics to the running
averages, :func:`refresh` forms the inverses or eigendecompositions,
:func:`update_scalings` refits EKFAC's, and :func:`precondition` applies them
to a gradient. The copies replace the state only when the step is taken.
:meth:`minikfac.optim.KFAC.load_state_dict` checks a checkpoint against this
layout (:func:`checked_global`, :func:`checked_layer_entry`,
:func:`check_complete`) before anything changes.
"""

import math
import numbers

import numpy as np

from minikfac import backend
from minikfac.curvature import damping as damping_rules
from minikfac.curvature import running_average
from minikfac.curvature.ekfac import chunk_scaling_sums
from minikfac.curvature.factors import factor_counts, layer_input_factor_sum, outer_product_sum
from minikfac.curvature.statistics import hessian_weighted
from minikfac.curvature.linalg import psd_eigh
from minikfac.curvature.params import block_shape, has_bias

#: λ never exceeds this (a run of refused steps cannot overflow it); the floor is ``min_damping``.
MAX_DAMPING = 1e8
#: The per-layer state of each way of preconditioning (see :func:`layer_state_names`).
FACTORS = running_average.names("A") + running_average.names("G")
FACTORED_STATE = FACTORS + ("A_inverse", "G_inverse", "update")
EIGEN_STATE = FACTORS + ("a_eigs", "U_A", "g_eigs", "U_G", "update")
EKFAC_STATE = EIGEN_STATE[:-1] + ("scalings", "update")
#: The shape of every per-layer state array, in terms of W̄'s (m, n) = (D_out, D_in + 1).
#: ("*": any number of rows; "" a Python float, Q of :mod:`.running_average`.)
LAYER_STATE_SHAPES = {"A": "nn", "A_rows": "*n", "A_decay": "", "G": "mm", "G_rows": "*m", "G_decay": "",
                      "A_inverse": "nn", "G_inverse": "mm", "a_eigs": "n", "U_A": "nn", "g_eigs": "m", "U_G": "mm",
                      "scalings": "mn", "update": "mn"}
#: The optimizer-wide state: λ, refusals, the damping the inverses were formed with, and the sums behind ρ.
GLOBAL_STATE = ("damping", "refused", "inverse_damping", "actual_change", "predicted_change")


def layer_state_names(hyper):
    """The names of each layer's state arrays for K-FAC's settings ``hyper`` (a dict like ``KFAC.hyper``):
    :data:`EKFAC_STATE`, :data:`FACTORED_STATE` (factored damping) or :data:`EIGEN_STATE` (exact damping)."""
    if hyper["preconditioner"] == "ekfac":
        return EKFAC_STATE
    return FACTORED_STATE if hyper["factored"] else EIGEN_STATE


# --------------------------------------------------------------------------- #
# One step's changes to the per-layer state
# --------------------------------------------------------------------------- #
def with_statistics(state, chunk, decay):
    """The per-layer entries after this step's statistics (new dicts; ``state`` is untouched), and a 0-d
    device bool: were the new statistics finite?

    state : the optimizer's state ({layer index: entry}); chunk : the step's
    :class:`minikfac.curvature.statistics.Chunk`; decay : ε_k, the averages'
    weight on the past (Martens & Grosse 2015, §5). The running averages of A
    and G take this step's rows through :mod:`minikfac.curvature.running_average`,
    which folds them in when the averages are read (:func:`refresh`) or the
    rows would outnumber them.
    """
    xp = backend.get_array_module(chunk.output)
    checks, entries = [], []
    for index, (stats, counts) in enumerate(zip(chunk.layers, factor_counts(chunk.stop - chunk.start, chunk))):
        entry = dict(state.get(index, {}))
        # A from ā: its rows kept while they are fewer than D_in + 1, else summed at once without ā.
        rows, width = stats.raw.size // stats.raw.shape[-1], stats.raw.shape[-1] + has_bias(stats.layer)
        if "A" in entry and running_average.keeps_rows(rows, width):
            checks.append(running_average.add_rows(entry, "A", stats.inputs.reshape(rows, width), counts[0], decay))
        else:
            checks.append(running_average.add_sum(entry, "A", layer_input_factor_sum(stats), counts[0], decay))
        grads = stats.grads.reshape(-1, stats.grads.shape[-1])  # g rows, (K·n·L, D_out)
        if chunk.output_hessian is None:
            checks.append(running_average.add_rows(entry, "G", grads, counts[1], decay))
        else:  # the GGN's G = Σ g (H g)ᵀ, not a Gram matrix: summed at once
            right = hessian_weighted(stats.grads, chunk.output_hessian).reshape(grads.shape)
            checks.append(running_average.add_sum(entry, "G", outer_product_sum(grads, right), counts[1], decay))
        entries.append(entry)
    # Each add returns a number that is finite only if what it stored is (running_average.py).
    return entries, xp.all(xp.isfinite(xp.stack(checks)))


def refresh(entries, damping, how):
    """Form every layer's inverses or eigendecompositions into ``entries``, after folding the kept rows
    into the averages; False if an inverse could not be formed.

    how : "factored" (factored damping's inverses, :func:`minikfac.curvature.damping.factored_inverses`,
    with ``damping`` = γ²), "eigen" (the factors' eigendecompositions, for exact damping) or "ekfac"
    (those, and EKFAC's scalings restarted from K-FAC's eigenvalues in the new basis, George et al. 2018).
    The statistics' finiteness is checked before, for every way.
    """
    for entry in entries:
        running_average.fold(entry, "A")
        running_average.fold(entry, "G")
        if how == "factored":
            inverses = damping_rules.factored_inverses(entry["A"], entry["G"], damping)
            if inverses is None:
                return False
            entry["A_inverse"], entry["G_inverse"] = inverses
            continue
        entry["a_eigs"], entry["U_A"] = psd_eigh(entry["A"])
        entry["g_eigs"], entry["U_G"] = psd_eigh(entry["G"])
        if how == "ekfac":
            entry["scalings"] = damping_rules.exact_denominator(entry["a_eigs"], entry["g_eigs"], 0.0)  # a_j g_i
    return True


def update_scalings(entries, chunk, decay, first):
    """EKFAC's s ← εs + (1−ε)s_new in every entry, s_new = diag(Qᵀ F_l Q) of the chunk in the current
    eigenbasis Q (George et al. 2018); at the ``first`` step s = s_new."""
    for entry, stats in zip(entries, chunk.layers):
        s_new = chunk_scaling_sums(stats, chunk.output_hessian, entry["U_A"], entry["U_G"])
        s_new = s_new / (chunk.stop - chunk.start)  # a mean over examples only
        entry["scalings"] = s_new if first else decay * entry["scalings"] + (1 - decay) * s_new


def precondition(entry, grad, damping, out):
    """Δ = −(damped F̂)⁻¹ ∇h for one layer, written into ``out`` (D_out, D_in + 1).

    grad : ∇h as a W̄ matrix; damping : γ² = λ + η. Factored damping applies
    the damped factors' inverses (G + γ/π I)⁻¹ ∇h (A + πγ I)⁻¹; exact damping
    and EKFAC divide in the eigenbasis by g aᵀ + γ² or s + γ²
    (:mod:`minikfac.curvature.damping`).
    """
    if "A_inverse" in entry:
        damping_rules.inverse_solve(entry["A_inverse"], entry["G_inverse"], grad, out=out)
    else:
        if "scalings" in entry:
            denominator = entry["scalings"] + damping
        else:
            denominator = damping_rules.exact_denominator(entry["a_eigs"], entry["g_eigs"], damping)
        damping_rules.eigenbasis_solve(entry["U_A"], entry["U_G"], grad, denominator, out=out)
    backend.get_array_module(grad).negative(out, out=out)


def checked_global(owner, name, value):
    """A saved optimizer-wide number, checked (:data:`GLOBAL_STATE`): ``refused`` an int, the others floats."""
    if name == "refused":
        valid = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
    else:
        valid = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and (
            0 < value <= MAX_DAMPING if name == "damping" else value >= 0 if name == "inverse_damping" else True)
    if name not in GLOBAL_STATE or not valid:
        raise ValueError(f"{owner}.load_state_dict: state['global'][{name!r}] = {value!r} is not valid "
                         f"(expected {list(GLOBAL_STATE)}: damping in (0, {MAX_DAMPING:g}], refused an integer >= 0, "
                         "inverse_damping >= 0, the sums finite)")
    return int(value) if name == "refused" else float(value)


def checked_layer_entry(owner, layers, key, name, value):
    """A saved per-layer entry, checked against layer ``key``'s shapes and copied to its backend and dtype."""
    if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < len(layers):
        raise ValueError(f"{owner}.load_state_dict: state key {key!r} is not 'global' or a layer index in "
                         f"[0, {len(layers)})")
    if name not in LAYER_STATE_SHAPES:
        raise ValueError(f"{owner}.load_state_dict: state[{key}] has unknown entry {name!r}, expected one of "
                         f"{list(LAYER_STATE_SHAPES)}")
    layer = layers[key]
    m, n = block_shape(layer)
    if not LAYER_STATE_SHAPES[name]:  # Q of a running average: a number in (0, 1]
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value <= 1:
            return float(value)
        raise ValueError(f"{owner}.load_state_dict: state[{key}][{name!r}] = {value!r}, expected a number in (0, 1]")
    expected = tuple({"n": n, "m": m, "*": value.shape[0] if backend.is_array(value) and value.ndim else -1}[axis]
                     for axis in LAYER_STATE_SHAPES[name])
    if not backend.is_array(value) or tuple(value.shape) != expected:
        got = tuple(value.shape) if backend.is_array(value) else type(value).__name__
        raise ValueError(f"{owner}.load_state_dict: state[{key}][{name!r}] has shape {got}, expected "
                         f"{expected} (layer {key}, {layer!r})")
    weight = layer.weight.data
    host = np.array(backend.to_numpy(value), dtype=weight.dtype, copy=True)
    return backend.asarray(host, backend=backend.backend_of(weight))


def check_complete(owner, layers, saved, wanted):
    """The layout of a checkpoint's ``state`` as a whole: a complete ``"global"`` entry, and every layer with
    exactly the names ``wanted`` (:func:`layer_state_names`) or no layer state at all (a checkpoint of step 0)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("global"), dict) \
            or set(saved["global"]) != set(GLOBAL_STATE):
        raise ValueError(f"{owner}.load_state_dict: the checkpoint has no 'global' state with {list(GLOBAL_STATE)}")
    wanted = set(wanted)
    if any(key != "global" for key in saved):
        for index in range(len(layers)):
            entry = saved.get(index) or {}
            if set(entry) != wanted:
                raise ValueError(f"{owner}.load_state_dict: state[{index}] is missing {sorted(wanted - set(entry))} "
                                 f"or has unknown {sorted(set(entry) - wanted)} (a checkpoint holds every "
                                 f"layer's {sorted(wanted)}, or no layer state at step 0)")
