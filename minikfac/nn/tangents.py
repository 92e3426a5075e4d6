"""Tangents for forward mode: what every layer's ``jvp`` checks and how it sums its parts.

``layer.jvp(dx, tangents)`` pushes a tangent of the input and of the layer's
parameters through the linearisation at the last forward's caches. Tangents
may be stacked, (K, ...), to push K directions at once (the K-FAC optimizer's
quadratic model pushes its proposal and its previous update together).
:func:`jvp_inputs` checks the arguments and picks out a layer's own parameter
tangents; :func:`sum_tangents` adds the parts of the output tangent.
"""

from minikfac import backend


def _stacked_count(layer, name, value, shape):
    """K if ``value`` is (K, *shape), None if it is (*shape); ValueError otherwise."""
    got = tuple(value.shape)
    if got == tuple(shape):
        return None
    if len(got) == len(shape) + 1 and got[1:] == tuple(shape):
        return got[0]
    stacked = "(K" + "".join(f", {d}" for d in shape) + ")"
    raise ValueError(f"{layer!r}.jvp: {name} has shape {got}, expected {tuple(shape)} or {stacked}")


def jvp_inputs(layer, dx, input_shape, tangents, reference=None):
    """Check the arguments of ``layer.jvp`` and pick out the layer's own parameter tangents.

    Parameters
    ----------
    layer : a layer (no sub-modules) whose caches were already checked.
    dx : ``None`` or the input tangent, ``input_shape`` or (K, *input_shape).
    input_shape : the shape of the last forward's input.
    tangents : ``None`` or dict Parameter -> (*param_shape) or (K, *param_shape).
    reference : an array of the layer (weight or cache) that dx must share a backend with.

    Returns
    -------
    (dx, own, k): ``own`` maps the layer's parameter names ("weight", "bias")
    to their tangent or ``None``; ``k`` is the stacked count or ``None`` if
    nothing is stacked.
    """
    if tangents is not None and not isinstance(tangents, dict):
        raise TypeError(f"{layer!r}.jvp: tangents must be None or a dict Parameter -> array, "
                        f"got {type(tangents).__name__}")
    named = {"dx": (dx, input_shape, reference)} if dx is not None else {}
    own = {}
    for name, p in layer.named_parameters():
        own[name] = tangents.get(p) if tangents else None
        if own[name] is not None:
            named[name] = (own[name], p.shape, p.data)
    k, k_from = None, None
    for name, (value, shape, ref) in named.items():
        if not backend.is_array(value):
            raise TypeError(f"{layer!r}.jvp: {name} must be an array, got {type(value).__name__}")
        try:
            backend.check_same_backend(**{name: value, "the layer's arrays": ref})
        except ValueError as err:
            raise ValueError(f"{layer!r}.jvp: {err}") from None
        count = _stacked_count(layer, name, value, shape)
        if count is not None and k is not None and count != k:
            raise ValueError(f"{layer!r}.jvp: stacked tangents disagree: {k_from} has K={k}, {name} has K={count}")
        if count is not None:
            k, k_from = count, name
    return dx, own, k


def sum_tangents(terms, shape, k):
    """Sum of the non-None ``terms``, broadcast to ``shape`` (or (k, *shape)); None if all are None.

    Each term is an array that broadcasts to the result (e.g. a bias tangent
    (D_out,) against (N, D_out)); the result is a new array unless there is a
    single full-size term, which is returned as it is.
    """
    result = None
    for term in terms:
        if term is not None:
            result = term if result is None else result + term
    if result is None:
        return None
    full = tuple(shape) if k is None else (k,) + tuple(shape)
    if tuple(result.shape) != full:
        result = backend.get_array_module(result).broadcast_to(result, full).copy()
    return result
