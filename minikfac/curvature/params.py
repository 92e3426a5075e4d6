"""The canonical parameter order: the rows and columns of every curvature matrix.

docs/design.md fixes one order, and this module owns it. Layers with parameters
(Linear and Conv2d) are taken in network order; each contributes vec(W̄), the
column-stacked vec of its augmented weight matrix

    W̄ = [W | b]        shape (D_out, D_in + 1)   (bias = last column),

where W is the weight's matrix view: (D_out, D_in) for Linear and
(C_out, C_in·KH·KW) for Conv2d, in the order of the im2col patches. A layer
without bias contributes vec(W). With homogeneous inputs ā = [a; 1] the
per-example gradient of W̄ is g āᵀ, and vec(g āᵀ) = ā ⊗ g (Martens & Grosse
2015, §2), which is why K-FAC's block is A ⊗ G in this order.

Note that vec(W̄) is *not* ``weight.ravel()`` followed by ``bias``: vec stacks
columns, so the entries of W's first input column come first.
"""

from minikfac import backend
from minikfac.curvature.kron import unvec, vec
from minikfac.nn.conv import Conv2d
from minikfac.nn.linear import Linear
from minikfac.nn.module import Parameter

SUPPORTED_LAYERS = (Linear, Conv2d)


def _owns_parameters(module):
    return any(isinstance(value, Parameter) for value in vars(module).values())


def parametrised_layers(net):
    """The layers of ``net`` that have parameters, in network order.

    Returns a list of Linear / Conv2d modules. Raises ``TypeError`` if another
    module owns parameters: the curvature module only knows how Linear and
    Conv2d gradients factor into ā ⊗ g.
    """
    layers = []
    for module in net.modules():
        if isinstance(module, SUPPORTED_LAYERS):
            if any(module is layer for layer in layers):
                raise ValueError(f"curvature: {module!r} appears twice in {type(net).__name__}; shared "
                                 "layers are not supported (each layer caches one input)")
            layers.append(module)
        elif _owns_parameters(module):
            raise TypeError(
                f"curvature: {type(module).__name__} has parameters, but only Linear and Conv2d layers "
                "are supported (their gradients are g āᵀ)"
            )
    if not layers:
        raise ValueError(f"curvature: {type(net).__name__} has no Linear or Conv2d layer, so no parameters")
    return layers


def check_finite(net, caller, **named_arrays):
    """ValueError naming the first parameter of ``net`` (or array of ``named_arrays``) with a NaN or Inf.

    For the applications that store what they compute from a trained net (a
    posterior, a penalty): refusing there keeps a NaN from spreading silently
    into every later result. Reads one boolean back per array.
    """
    for name, parameter in net.named_parameters():
        xp = backend.get_array_module(parameter.data)
        if not bool(xp.all(xp.isfinite(parameter.data))):
            raise ValueError(f"{caller}: parameter {name!r} of the net has NaN or Inf entries; train it to finite "
                             "values (or restore a checkpoint) first")
    for name, array in named_arrays.items():
        if backend.is_array(array) and array.dtype.kind == "f":
            xp = backend.get_array_module(array)
            if not bool(xp.all(xp.isfinite(array))):
                raise ValueError(f"{caller}: {name} has NaN or Inf entries")


def has_bias(layer):
    """Whether ``layer`` has a bias (then its input gets the homogeneous coordinate 1)."""
    return layer.bias is not None


def block_shape(layer):
    """(D_out, D_in + 1) of W̄ for ``layer`` ((D_out, D_in) without bias); conv: D_in = C_in·KH·KW."""
    d_out = layer.weight.shape[0]
    d_in = 1
    for d in layer.weight.shape[1:]:
        d_in *= d
    return d_out, d_in + has_bias(layer)


def layer_sizes(net):
    """Number of parameters of each parametrised layer, list of ints, summing to P."""
    return [rows * cols for rows, cols in map(block_shape, parametrised_layers(net))]


def slices_of(sizes):
    """Contiguous ``slice`` objects of the given block sizes, in order, from 0."""
    slices, start = [], 0
    for size in sizes:
        slices.append(slice(start, start + int(size)))
        start += int(size)
    return slices


def layer_slices(net):
    """``slice`` objects locating each layer's block in the canonical (P,) vector."""
    return slices_of(layer_sizes(net))


def homogeneous_inputs(a, bias):
    """ā = [a; 1], the homogeneous coordinates of a layer's input (Martens & Grosse 2015, §2).

    a : (..., D_in), e.g. (N, D_in) for Linear or (N, L, D_in) for a Conv2d's
    patches. Returns (..., D_in + 1) with a trailing 1 when ``bias``, else
    ``a`` itself: then s = W̄ ā with W̄ = [W | b], and the bias is one more column.
    """
    if not bias:
        return a
    xp = backend.get_array_module(a)
    ones = xp.ones(a.shape[:-1] + (1,), dtype=a.dtype)
    return xp.concatenate([a, ones], axis=-1)


def split_augmented(layer, matrix):
    """(W, b) of ``layer`` from W̄ = [W | b] matrices ``matrix`` (..., D_out, D_in + 1): views.

    W comes back in the weight's own shape, (..., *layer.weight.shape); b is
    (..., D_out), or None for a layer without bias (then ``matrix`` is
    (..., D_out, D_in)). The inverse of :func:`augmented_matrix`.
    """
    lead = tuple(matrix.shape[:-2])
    weight = matrix[..., :-1] if has_bias(layer) else matrix
    return weight.reshape(lead + tuple(layer.weight.shape)), matrix[..., -1] if has_bias(layer) else None


def augmented_matrix(layer, which="data"):
    """W̄ = [W | b] of ``layer``, shape (D_out, D_in + 1), from its data or its grad.

    ``which`` is ``"data"`` or ``"grad"``; a grad that is ``None`` raises
    ``ValueError`` (run a backward first).
    """
    if which not in ("data", "grad"):
        raise ValueError(f"augmented_matrix: which must be 'data' or 'grad', got {which!r}")
    weight = getattr(layer.weight, which)
    if weight is None:
        raise ValueError(f"{layer!r}: weight.grad is None; run a backward pass first")
    xp = backend.get_array_module(weight)
    matrix = weight.reshape(weight.shape[0], -1)
    if not has_bias(layer):
        return matrix
    bias = getattr(layer.bias, which)
    if bias is None:
        raise ValueError(f"{layer!r}: bias.grad is None; run a backward pass first")
    return xp.concatenate([matrix, bias[:, None]], axis=1)


def flatten(net, which="data"):
    """The canonical parameter vector (P,): vec(W̄) of each layer, in network order.

    ``which="grad"`` flattens the accumulated gradients instead (same order), so
    that ``F @ flatten(net, "grad")`` is meaningful.
    """
    xp = backend.get_array_module(net.parameters()[0].data)
    return xp.concatenate([vec(augmented_matrix(layer, which)) for layer in parametrised_layers(net)])


def unflatten(net, vector):
    """Split a canonical vector (P,) into per-layer W̄ matrices, list of (D_out, D_in + 1).

    The inverse of :func:`flatten` (a view where possible). Raises TypeError
    if ``vector`` is not an array and ValueError if it does not have shape (P,).
    """
    sizes = layer_sizes(net)
    total = sum(sizes)
    if not backend.is_array(vector):
        raise TypeError(f"unflatten: vector must be an array of shape ({total},), got {type(vector).__name__}")
    if vector.ndim != 1 or vector.shape[0] != total:
        raise ValueError(f"unflatten: vector has shape {tuple(vector.shape)}, expected ({total},) for this net")
    return [unvec(vector[s], block_shape(layer)[0])
            for s, layer in zip(layer_slices(net), parametrised_layers(net))]


def assign(net, vector, which="data"):
    """Write a canonical vector (P,) back into the parameters' ``data`` (or ``grad``).

    The arrays written are new (cast to each parameter's dtype); nothing is
    changed if ``vector`` has the wrong shape or lives on another backend
    than the parameters (ValueError).
    """
    if which not in ("data", "grad"):
        raise ValueError(f"assign: which must be 'data' or 'grad', got {which!r}")
    matrices = unflatten(net, vector)
    backend.check_same_backend(vector=vector, parameters=net.parameters()[0].data)
    for layer, matrix in zip(parametrised_layers(net), matrices):
        weight, bias = split_augmented(layer, matrix)
        dtype = layer.weight.data.dtype
        setattr(layer.weight, which, weight.astype(dtype))
        if bias is not None:
            setattr(layer.bias, which, bias.astype(dtype))
